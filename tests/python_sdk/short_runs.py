#!/usr/bin/env python3
"""Short runs of Microsoft's official Python SDK (`azure-eventhub`) against
the emulator, each on a fresh client, reporting runs that never finish: the
same loop `interop/ms-rust-sdk` runs with Microsoft's Rust SDK.

    python3 tests/python_sdk/short_runs.py --port 5672 [--runs 50] [--timeout 10]

A send run: a producer client, 1,000 events of 1 KiB to partition 0 in
batches of 100, close. A receive run: a consumer client reads 100 events of
partition 0 from the earliest one (the first send run put them there),
close. Prints one line per stalled or failed run, then `N passed, M failed`;
exits non-zero if any run stalled or failed.
"""

import argparse
import sys
import threading
import time

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient


def connection_string(port):
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        f"SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1"
    )


def send_run(cs, events=1000, batch_size=100, size=1024):
    producer = EventHubProducerClient.from_connection_string(cs)
    try:
        body = b"x" * size
        for _ in range(events // batch_size):
            batch = producer.create_batch(partition_id="0")
            for _ in range(batch_size):
                batch.add(EventData(body))
            producer.send_batch(batch)
    finally:
        producer.close()


def receive_run(cs, events=100, timeout=10.0):
    consumer = EventHubConsumerClient.from_connection_string(cs, consumer_group="$Default")
    got = []
    done = threading.Event()

    def on_event(_context, event):
        if event is not None:
            got.append(event)
            if len(got) >= events:
                done.set()

    t = threading.Thread(
        target=consumer.receive,
        kwargs={"on_event": on_event, "partition_id": "0", "starting_position": "-1"},
        daemon=True,
    )
    t.start()
    try:
        if not done.wait(timeout):
            raise TimeoutError(f"received {len(got)} of {events} events")
    finally:
        consumer.close()
        t.join(timeout)


def run_once(work, timeout):
    """Runs `work` on a daemon thread: 'done', 'stalled' or the error."""
    outcome = {}

    def target():
        try:
            work()
            outcome["r"] = "done"
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            outcome["r"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return outcome.get("r", "stalled")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    cs = connection_string(args.port)
    passed = failed = 0
    for name, work in [
        ("send", lambda: send_run(cs)),
        ("receive", lambda: receive_run(cs, timeout=args.timeout)),
    ]:
        stalled = errors = 0
        started = time.monotonic()
        for run in range(1, args.runs + 1):
            r = run_once(work, args.timeout)
            if r == "done":
                passed += 1
                continue
            failed += 1
            if r == "stalled":
                stalled += 1
            else:
                errors += 1
            print(f"{name} run {run}/{args.runs}: {r.upper() if r == 'stalled' else 'FAILED: ' + r}")
        mean = (time.monotonic() - started) / args.runs * 1e3
        print(f"python-sdk {name}: {args.runs} runs, {stalled} stalled, {errors} failed (mean {mean:.0f} ms per run)")
    print(f"python-sdk: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
