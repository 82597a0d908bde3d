#!/usr/bin/env python3
"""Microsoft's official Python SDK (`azure-eventhub`) with an Entra ID
credential against the emulator configured to trust an OAuth2 server.

    python3 tests/python_sdk/entra.py --port 5672 --token-url URL --client-id ID --secret S

The credential is what the SDK takes from azure-identity: an object whose
`get_token(*scopes)` returns an `AccessToken(token, expires_on)`; here it
runs the OAuth 2.0 client credentials grant against `--token-url` (the
OAuth2 server of tests/oauth2) for the scope the SDK asks for. The SDK puts
the token on CBS as type `jwt`. Scenarios: send and receive with it; a
token with a forged signature and a token for an identity without a role
are refused. Prints `PASS name` / `FAIL name: reason`, then
`N passed, M failed`; exits non-zero if any failed.
"""

import argparse
import base64
import json
import logging
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid

from azure.core.credentials import AccessToken
from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient

ARGS = None
RECEIVE_TIMEOUT = 15.0


class OAuth2ClientCredential:
    """A TokenCredential: client credentials grant at a token URL."""

    def __init__(self, token_url, client_id, secret, tamper=False):
        self.token_url, self.client_id, self.secret, self.tamper = token_url, client_id, secret, tamper
        self.scopes = []

    def get_token(self, *scopes, **kwargs):  # pylint: disable=unused-argument
        self.scopes.append(scopes)
        form = urllib.parse.urlencode({
            "client_id": self.client_id,
            "grant_type": "client_credentials",
            "client_secret": self.secret,
            "scope": scopes[0],
        }).encode()
        with urllib.request.urlopen(urllib.request.Request(self.token_url, data=form), timeout=10) as r:
            reply = json.load(r)
        token = reply["access_token"]
        if self.tamper:
            # Claims changed after signing: the signature no longer matches.
            head, claims, sig = token.split(".")
            data = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
            data["oid"] = "someone-else"
            claims = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
            token = f"{head}.{claims}.{sig}"
        return AccessToken(token, int(time.time()) + int(reply["expires_in"]))


def client_kwargs(credential):
    # Plain AMQP on the emulator's port, as from_connection_string does for
    # UseDevelopmentEmulator=true.
    return {
        "fully_qualified_namespace": f"127.0.0.1:{ARGS.port}",
        "eventhub_name": "eh1",
        "credential": credential,
        "use_tls": False,
    }


def send_and_receive():
    cred = OAuth2ClientCredential(ARGS.token_url, ARGS.client_id, ARGS.secret)
    marker = uuid.uuid4().hex
    with EventHubProducerClient(**client_kwargs(cred)) as p:
        batch = p.create_batch(partition_id="0")
        for i in range(3):
            batch.add(EventData(f"{marker} {i}"))
        p.send_batch(batch)
        props = p.get_eventhub_properties()
        assert props["partition_ids"] == ["0", "1"], props
    assert cred.scopes and cred.scopes[0][0].startswith("https://eventhubs.azure.net"), cred.scopes
    got = []
    done = threading.Event()

    def on_event(_ctx, event):
        if event is not None and event.body_as_str().startswith(marker):
            got.append(event.body_as_str())
            if len(got) == 3:
                done.set()

    consumer = EventHubConsumerClient(consumer_group="$Default", **client_kwargs(cred))
    worker = threading.Thread(
        target=lambda: consumer.receive(on_event=on_event, partition_id="0", starting_position="-1", max_wait_time=1),
        daemon=True,
    )
    worker.start()
    try:
        assert done.wait(RECEIVE_TIMEOUT), f"received {got}"
    finally:
        consumer.close()
        worker.join(10)
    assert got == [f"{marker} {i}" for i in range(3)], got


def refused(credential):
    # No retries: a refused token is not transient.
    with EventHubProducerClient(retry_total=0, **client_kwargs(credential)) as p:
        try:
            p.send_batch([EventData("refused")], partition_id="0")
        except Exception as e:  # pylint: disable=broad-except
            text = f"{type(e).__name__}: {e}"
            assert "401" in text or "nauthorized" in text or "Authentication" in text, text
            return
    raise AssertionError("the send was accepted")


def forged_token_is_refused():
    refused(OAuth2ClientCredential(ARGS.token_url, ARGS.client_id, ARGS.secret, tamper=True))


def identity_without_role_is_refused():
    refused(OAuth2ClientCredential(ARGS.token_url, ARGS.norole_client_id, ARGS.secret))


SCENARIOS = [send_and_receive, forged_token_is_refused, identity_without_role_is_refused]


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--norole-client-id", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    ARGS = parser.parse_args()
    logging.basicConfig(level=logging.WARNING if ARGS.verbose else logging.CRITICAL)
    if not ARGS.verbose:
        logging.getLogger("azure").setLevel(logging.CRITICAL)
    passed = failed = 0
    for scenario in SCENARIOS:
        try:
            scenario()
        except Exception as e:  # pylint: disable=broad-except
            failed += 1
            print(f"FAIL {scenario.__name__}: {type(e).__name__}: {e}"[:600], flush=True)
            if ARGS.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print(f"PASS {scenario.__name__}", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
