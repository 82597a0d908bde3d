#!/usr/bin/env python3
"""Compatibility suite: Microsoft's official Python SDK (`azure-eventhub`)
against the local Event Hubs emulator.

    python3 tests/python_sdk/compat.py --port 5672
    python3 tests/python_sdk/compat.py --transport tls --port 5671 --ca cert.pem
    python3 tests/python_sdk/compat.py --transport wss --port 443 --ca cert.pem

Over plain AMQP (the default, as Microsoft's emulator serves it) it runs the
whole suite. Over `tls` (the emulator's `--tls-listen`) or `wss`
(`--wss-listen`, AMQP over WebSocket over TLS) it runs the transport
scenarios: the client is configured as for the service (a connection string
without `UseDevelopmentEmulator`, namespace host `--host`, default
`localhost`), dials `--port` through the SDK's `custom_endpoint_address` and
verifies the emulator's certificate against `--ca` (`connection_verify`).
`wss` needs `python3 -m pip install websocket-client`.

Runs every scenario, prints `PASS name` or `FAIL name: reason` for each, then
`N passed, M failed`, and exits non-zero if any failed. Needs only
`python3 -m pip install azure-eventhub`.

The emulator keeps events across scenarios (and across runs against the same
process), so every scenario tags its events with a fresh uuid and never
assumes a partition is empty.
"""

import argparse
import datetime
import logging
import sys
import threading
import time
import traceback
import uuid

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient, TransportType
from azure.eventhub import exceptions as eh_exceptions

HUB = "eh1"
PARTITIONS = ["0", "1"]
MAX_MESSAGE_SIZE = 1024 * 1024
RECEIVE_TIMEOUT = 10.0

PORT = 5672
# "amqp" (plain, UseDevelopmentEmulator), "tls" or "wss"; set by main().
TRANSPORT = "amqp"
HOST = "localhost"
CA = None


def connection_string(key="SAS_KEY_VALUE", hub=HUB):
    if TRANSPORT == "amqp":
        return (
            f"Endpoint=sb://127.0.0.1:{PORT};SharedAccessKeyName=RootManageSharedAccessKey;"
            f"SharedAccessKey={key};UseDevelopmentEmulator=true;EntityPath={hub}"
        )
    # The service's form: TLS, no port (the SDK would dial 5671 or 443).
    return (
        f"Endpoint=sb://{HOST}/;SharedAccessKeyName=RootManageSharedAccessKey;"
        f"SharedAccessKey={key};EntityPath={hub}"
    )


def transport_kwargs(host=None, ca="default"):
    """The client options that reach the emulator's TLS or WebSocket-over-TLS
    listener: the SDK's transport, its custom endpoint (host and port to
    dial; the TLS server name is its host) and the certificate to trust.
    `ca=None` leaves the SDK's default trust store (certifi)."""
    if TRANSPORT == "amqp":
        return {}
    kwargs = {
        "transport_type": TransportType.Amqp if TRANSPORT == "tls" else TransportType.AmqpOverWebsocket,
        "custom_endpoint_address": f"sb://{host or HOST}:{PORT}",
    }
    ca = CA if ca == "default" else ca
    if ca is not None:
        kwargs["connection_verify"] = ca
    return kwargs


def producer(**kwargs):
    return EventHubProducerClient.from_connection_string(connection_string(), **transport_kwargs(), **kwargs)


def consumer(consumer_group="$Default", **kwargs):
    return EventHubConsumerClient.from_connection_string(
        connection_string(), consumer_group=consumer_group, **transport_kwargs(), **kwargs
    )


def tag():
    """A fresh marker for one scenario's events."""
    return uuid.uuid4().hex


def body(ev):
    data = b"".join(b if isinstance(b, bytes) else str(b).encode() for b in ev.body)
    return data.decode("utf-8", errors="replace")


def text(v):
    """Application property / annotation values come back as bytes for AMQP
    strings with this SDK: compare as text."""
    return v.decode() if isinstance(v, bytes) else v


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class Receiver:
    """`EventHubConsumerClient.receive` for one partition on a thread,
    collecting events (and, when tracked, the last-enqueued properties seen
    with each) and errors. `ready` is set by the first callback, i.e. once the
    link is attached and receiving."""

    def __init__(self, partition_id, starting_position=None, consumer_group="$Default",
                 client_kwargs=None, **receive_kwargs):
        self.client = consumer(consumer_group, **(client_kwargs or {}))
        self.events = []
        self.last_enqueued = []
        self.errors = []
        self.ready = threading.Event()
        self._lock = threading.Lock()
        kwargs = dict(
            on_event=self._on_event,
            on_error=self._on_error,
            partition_id=partition_id,
            max_wait_time=0.2,
        )
        if starting_position is not None:
            kwargs["starting_position"] = starting_position
        kwargs.update(receive_kwargs)
        self.thread = threading.Thread(target=self.client.receive, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _on_event(self, context, event):
        self.ready.set()
        if event is None:
            return
        with self._lock:
            self.events.append(event)
            self.last_enqueued.append(context.last_enqueued_event_properties)

    def _on_error(self, context, error):
        with self._lock:
            self.errors.append(error)

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def wait_for(self, predicate, timeout=RECEIVE_TIMEOUT):
        """Waits until `predicate(events)` holds; returns the events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.snapshot()
            if predicate(evs):
                return evs
            time.sleep(0.05)
        evs = self.snapshot()
        raise AssertionError(
            f"timed out after {timeout}s with {len(evs)} events received, errors={self.errors!r}"
        )

    def wait_error(self, timeout=RECEIVE_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.errors:
                    return self.errors[0]
            time.sleep(0.05)
        raise AssertionError(f"no error reported within {timeout}s")

    def close(self):
        self.client.close()
        self.thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Receivers:
    """Several receivers started together (each connection takes the SDK
    most of a second) and closed together."""

    def __init__(self, *specs):
        self.all = []
        for args, kwargs in specs:
            self.all.append(Receiver(*args, **kwargs))

    def __enter__(self):
        return self.all

    def __exit__(self, *exc):
        for r in self.all:
            r.client.close()
        for r in self.all:
            r.thread.join(timeout=10)


def spec(*args, **kwargs):
    return args, kwargs


def receive_tagged(partition_id, marker, count, starting_position="-1", **kwargs):
    """The `count` events whose body starts with `marker`, from one partition."""
    with Receiver(partition_id, starting_position, **kwargs) as r:
        evs = r.wait_for(lambda evs: sum(body(e).startswith(marker) for e in evs) >= count)
    mine = [e for e in evs if body(e).startswith(marker)]
    assert len(mine) == count, f"expected {count} tagged events, got {len(mine)}"
    return mine


def last_sequence_numbers(client):
    return {p: client.get_partition_properties(p)["last_enqueued_sequence_number"] for p in PARTITIONS}


def where_landed(marker, before, count):
    """Receives every partition after the sequence numbers in `before` until
    `count` events tagged `marker` are found: {partition: [events]}."""
    group = Receivers(*(spec(p, before[p], starting_position_inclusive=False) for p in PARTITIONS))
    receivers = dict(zip(PARTITIONS, group.all))
    try:
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        while time.monotonic() < deadline:
            found = {
                p: [e for e in r.snapshot() if body(e).startswith(marker)] for p, r in receivers.items()
            }
            if sum(len(v) for v in found.values()) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"only {sum(len(v) for v in found.values())} of {count} events found")
    finally:
        group.__exit__(None, None, None)


def lookup3_hash(key):
    """The service's partition-key hash (lookup3 hashlittle2, seeds 0/0,
    low 16 bits of c ^ b as a signed int16), as the .NET SDK ports it."""
    data = key.encode("utf-8")
    m = 0xFFFFFFFF

    def rot(x, k):
        return ((x << k) | (x >> (32 - k))) & m

    a = b = c = (0xDEADBEEF + len(data)) & m
    if not data:
        return 0
    i, n = 0, len(data)
    while n > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & m
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & m
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & m
        a = (a - c) & m; a ^= rot(c, 4); c = (c + b) & m
        b = (b - a) & m; b ^= rot(a, 6); a = (a + c) & m
        c = (c - b) & m; c ^= rot(b, 8); b = (b + a) & m
        a = (a - c) & m; a ^= rot(c, 16); c = (c + b) & m
        b = (b - a) & m; b ^= rot(a, 19); a = (a + c) & m
        c = (c - b) & m; c ^= rot(b, 4); b = (b + a) & m
        i += 12
        n -= 12
    tail = data[i:] + b"\0" * (12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - rot(b, 14)) & m
    a ^= c; a = (a - rot(c, 11)) & m
    b ^= a; b = (b - rot(a, 25)) & m
    c ^= b; c = (c - rot(b, 16)) & m
    a ^= c; a = (a - rot(c, 4)) & m
    b ^= a; b = (b - rot(a, 14)) & m
    c ^= b; c = (c - rot(b, 24)) & m
    h = (c ^ b) & 0xFFFF
    return h - 0x10000 if h >= 0x8000 else h


def expected_partition(key, count=len(PARTITIONS)):
    # Truncated modulo, as .NET/Java/JS (|h mod n| == |h| mod n).
    return str(abs(lookup3_hash(key)) % count)


# ---------------------------------------------------------------- scenarios


def get_eventhub_properties():
    with producer() as p:
        before = utcnow()
        props = p.get_eventhub_properties()
    assert props["eventhub_name"] == HUB, props
    assert props["partition_ids"] == PARTITIONS, props
    created = props["created_at"]
    assert isinstance(created, datetime.datetime), type(created)
    assert created.tzinfo is not None, created
    assert datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc) < created, created
    assert created <= before + datetime.timedelta(seconds=5), (created, before)


def get_partition_properties():
    marker = tag()
    with producer() as p:
        for pid in PARTITIONS:
            props = p.get_partition_properties(pid)
            assert props["eventhub_name"] == HUB, props
            assert props["id"] == pid, props
            for k in ("beginning_sequence_number", "last_enqueued_sequence_number"):
                assert isinstance(props[k], int), (k, props)
            assert isinstance(props["last_enqueued_offset"], str), props
            assert isinstance(props["is_empty"], bool), props
            assert isinstance(props["last_enqueued_time_utc"], datetime.datetime), props
        before = p.get_partition_properties("1")
        sent_at = utcnow()
        batch = p.create_batch(partition_id="1")
        for i in range(3):
            batch.add(EventData(f"{marker} {i}"))
        p.send_batch(batch)
        after = p.get_partition_properties("1")
    assert after["last_enqueued_sequence_number"] == before["last_enqueued_sequence_number"] + 3, (before, after)
    assert after["is_empty"] is False, after
    assert isinstance(after["last_enqueued_offset"], str), after
    assert int(after["last_enqueued_offset"]) > int(before["last_enqueued_offset"]), (before, after)
    assert after["beginning_sequence_number"] <= after["last_enqueued_sequence_number"], after
    slack = datetime.timedelta(seconds=2)
    assert sent_at - slack <= after["last_enqueued_time_utc"] <= utcnow() + slack, (sent_at, after)
    # The last event read back has exactly these values.
    last = receive_tagged("1", marker, 3, after["last_enqueued_sequence_number"] - 2,
                          starting_position_inclusive=True)[-1]
    assert body(last) == f"{marker} 2", body(last)
    assert last.sequence_number == after["last_enqueued_sequence_number"]
    assert last.offset == after["last_enqueued_offset"], (last.offset, after)
    assert last.enqueued_time == after["last_enqueued_time_utc"], (last.enqueued_time, after)


def unknown_partition():
    with producer(retry_total=0) as p:
        # $management answers 404; the SDK raises ConnectError.
        try:
            p.get_partition_properties("7")
        except eh_exceptions.ConnectError as e:
            assert "404" in str(e), str(e)
        else:
            raise AssertionError("get_partition_properties('7') succeeded")
        # Sending checks the id against partition_ids first (ConnectError,
        # as the SDK's live tests expect of the service).
        for bad in ("7", "XYZ", "-1"):
            try:
                p.send_batch([EventData("never")], partition_id=bad)
            except eh_exceptions.ConnectError as e:
                assert f"Invalid partition {bad}" in str(e), str(e)
            else:
                raise AssertionError(f"sent to partition {bad!r}")


def send_batch_round_robin():
    marker = tag()
    with producer() as p:
        before = last_sequence_numbers(p)
        for b in range(4):
            batch = p.create_batch()
            for i in range(3):
                batch.add(EventData(f"{marker} {b} {i}"))
            p.send_batch(batch)
    found = where_landed(marker, before, 12)
    # Every batch lands whole, in order, on one partition; batches alternate.
    home = {}
    for pid, evs in found.items():
        for e in evs:
            b = body(e).split()[1]
            assert home.setdefault(b, pid) == pid, f"batch {b} split across partitions"
        seqs = [e.sequence_number for e in evs]
        assert seqs == sorted(seqs), seqs
    assert len(home) == 4, home
    assert {len(v) for v in found.values()} == {6}, {k: len(v) for k, v in found.items()}
    assert home["0"] != home["1"] and home["1"] != home["2"] and home["2"] != home["3"], home


def send_batch_partition_key():
    # The lookup3 port matches the .NET test vectors before it is trusted.
    for key, h in [("7", -15263), ("131", 30562), ("FWfAT", -22341), ("$0cb", 26269),
                   ("sOdeEAsyQoEuEFPGerWO", -6503), ("-4189260826195535198", 453),
                   ("FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs", 5226)]:
        assert lookup3_hash(key) == h, (key, lookup3_hash(key), h)
    marker = tag()
    keys = [f"key-{marker}-{i}" for i in range(4)] + ["7", "131"]
    with producer() as p:
        before = last_sequence_numbers(p)
        for key in keys:
            for round_ in range(2):
                batch = p.create_batch(partition_key=key)
                for i in range(2):
                    batch.add(EventData(f"{marker} {key} {round_} {i}"))
                p.send_batch(batch)
            p.send_batch([EventData(f"{marker} {key} list 0")], partition_key=key)
    found = where_landed(marker, before, 5 * len(keys))
    landed = {}
    for pid, evs in found.items():
        for e in evs:
            key = body(e).split()[1]
            assert landed.setdefault(key, pid) == pid, f"key {key} on several partitions"
            assert text(e.partition_key) == key, (e.partition_key, key)
            assert text(e.system_properties[b"x-opt-partition-key"]) == key
    for key in keys:
        assert landed[key] == expected_partition(key), (key, landed[key], expected_partition(key))


def buffered_producer_keys():
    # The SDK's buffered producer hashes keys on the client and sends each
    # event, key kept, to its partition's link, as the service accepts.
    marker = tag()
    keys = [f"buf-{marker}-{i}" for i in range(6)] + ["7", "131"]
    sent, failed = [], []
    with producer(
        buffered_mode=True,
        max_wait_time=0.2,
        on_success=lambda events, pid: sent.append((pid, len(events))),
        on_error=lambda events, pid, error: failed.append((pid, error)),
    ) as p:
        before = last_sequence_numbers(p)
        for key in keys:
            for i in range(3):
                p.send_event(EventData(f"{marker} {key} {i}"), partition_key=key)
        p.flush()
    assert not failed, failed
    assert sum(n for _, n in sent) == 3 * len(keys), sent
    found = where_landed(marker, before, 3 * len(keys))
    for pid, evs in found.items():
        for e in evs:
            key = body(e).split()[1]
            assert pid == expected_partition(key), (key, pid, expected_partition(key))
            assert text(e.partition_key) == key, (e.partition_key, key)


def send_batch_partition_id():
    marker = tag()
    with producer() as p:
        before = last_sequence_numbers(p)
        for pid in PARTITIONS:
            batch = p.create_batch(partition_id=pid)
            for i in range(2):
                batch.add(EventData(f"{marker} {pid} {i}"))
            p.send_batch(batch)
            p.send_batch([EventData(f"{marker} {pid} list")], partition_id=pid)
        after = last_sequence_numbers(p)
    for pid in PARTITIONS:
        assert after[pid] == before[pid] + 3, (pid, before, after)
    found = where_landed(marker, before, 6)
    for pid, evs in found.items():
        assert [body(e) for e in evs] == [f"{marker} {pid} 0", f"{marker} {pid} 1", f"{marker} {pid} list"], evs
        assert all(e.partition_key is None for e in evs)


def send_event_single():
    marker = tag()
    key = f"k-{marker}"
    with producer() as p:
        before = last_sequence_numbers(p)
        p.send_event(EventData(f"{marker} to0"), partition_id="0")
        p.send_event(EventData(f"{marker} to1"), partition_id="1")
        p.send_event(EventData(f"{marker} key a"), partition_key=key)
        p.send_event(EventData(f"{marker} key b"), partition_key=key)
        p.send_event(EventData(f"{marker} any"))
    found = where_landed(marker, before, 5)
    where = {body(e)[len(marker) + 1:]: pid for pid, evs in found.items() for e in evs}
    assert where["to0"] == "0" and where["to1"] == "1", where
    assert where["key a"] == where["key b"] == expected_partition(key), where
    assert "any" in where, where


def properties_round_trip():
    marker = tag()
    props = {"s": f"str-{marker}", "i": 42, "neg": -7, "f": 2.5, "t": True, "fl": False,
             "by": b"\x00\x01\xff"}
    with producer() as p:
        ev = EventData(f"{marker} props")
        ev.properties = dict(props)
        ev.message_id = f"mid-{marker}"
        ev.content_type = "application/json"
        ev.correlation_id = f"cid-{marker}"
        p.send_batch([ev], partition_id="0")
        raw = EventData(b"\x00\x01binary\xff")
        raw.properties = {"marker": marker}
        p.send_event(raw, partition_id="0")
    got = receive_tagged("0", marker, 1, "-1")[0]
    back = {text(k): v for k, v in got.properties.items()}
    assert set(back) == set(props), back
    assert text(back["s"]) == props["s"], back
    for k in ("i", "neg", "f", "t", "fl", "by"):
        assert back[k] == props[k] and type(back[k]) is type(props[k]), (k, back[k], props[k])
    assert got.message_id == f"mid-{marker}", got.message_id
    assert got.content_type == "application/json", got.content_type
    assert got.correlation_id == f"cid-{marker}", got.correlation_id
    sysp = got.system_properties
    assert text(sysp[b"message-id"]) == f"mid-{marker}", sysp
    assert isinstance(got.sequence_number, int) and isinstance(got.offset, str), got
    assert isinstance(got.enqueued_time, datetime.datetime), got.enqueued_time
    # A binary body round-trips byte for byte.
    with Receiver("0", "-1") as r:
        evs = r.wait_for(lambda evs: any(text((e.properties or {}).get(b"marker")) == marker for e in evs))
    e = [e for e in evs if text((e.properties or {}).get(b"marker")) == marker][0]
    assert b"".join(e.body) == b"\x00\x01binary\xff", e.body


def receive_earliest():
    marker = tag()
    with producer() as p:
        p.send_batch([EventData(f"{marker} {i}") for i in range(3)], partition_id="1")
        begin = p.get_partition_properties("1")["beginning_sequence_number"]
    with Receiver("1", "-1") as r:
        evs = r.wait_for(lambda evs: sum(body(e).startswith(marker) for e in evs) >= 3)
    assert evs[0].sequence_number == begin, (evs[0].sequence_number, begin)
    seqs = [e.sequence_number for e in evs]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gaps or disorder"
    assert [body(e) for e in evs if body(e).startswith(marker)] == [f"{marker} {i}" for i in range(3)]


def receive_latest():
    marker = tag()
    with producer() as p:
        p.send_event(EventData(f"{marker} before"), partition_id="0")
        with Receiver("0", "@latest") as r:
            assert r.ready.wait(RECEIVE_TIMEOUT), "receiver never started"
            time.sleep(0.3)
            p.send_event(EventData(f"{marker} after"), partition_id="0")
            evs = r.wait_for(lambda evs: any(body(e) == f"{marker} after" for e in evs))
            time.sleep(0.3)
            evs = r.snapshot()
    assert [body(e) for e in evs] == [f"{marker} after"], [body(e) for e in evs]


def receive_from_sequence_number():
    marker = tag()
    with producer() as p:
        p.send_batch([EventData(f"{marker} {i}") for i in range(3)], partition_id="0")
        last = p.get_partition_properties("0")["last_enqueued_sequence_number"]
    s = last - 1  # the middle event
    with Receivers(spec("0", s, starting_position_inclusive=True),
                   spec("0", s, starting_position_inclusive=False),
                   # A dict of positions per partition works the same.
                   spec("0", {"0": s}, starting_position_inclusive={"0": True})) as (inc, exc, by_dict):
        evs = inc.wait_for(lambda evs: len(evs) >= 2)
        assert evs[0].sequence_number == s and body(evs[0]) == f"{marker} 1", (evs[0].sequence_number, body(evs[0]))
        evs = exc.wait_for(lambda evs: len(evs) >= 1)
        assert evs[0].sequence_number == s + 1 and body(evs[0]) == f"{marker} 2", (evs[0].sequence_number, body(evs[0]))
        evs = by_dict.wait_for(lambda evs: len(evs) >= 1)
        assert evs[0].sequence_number == s, evs[0].sequence_number


def receive_from_offset():
    marker = tag()
    with producer() as p:
        p.send_batch([EventData(f"{marker} {i}") for i in range(3)], partition_id="1")
        last = p.get_partition_properties("1")["last_enqueued_sequence_number"]
    mine = receive_tagged("1", marker, 3, last - 2, starting_position_inclusive=True)
    offsets = [e.offset for e in mine]
    assert all(isinstance(o, str) for o in offsets), offsets
    assert [int(o) for o in offsets] == sorted(int(o) for o in offsets), offsets
    middle = offsets[1]
    with Receivers(spec("1", middle, starting_position_inclusive=True),
                   spec("1", middle, starting_position_inclusive=False)) as (inc, exc):
        evs = inc.wait_for(lambda evs: len(evs) >= 1)
        assert body(evs[0]) == f"{marker} 1" and evs[0].offset == middle, (body(evs[0]), evs[0].offset)
        evs = exc.wait_for(lambda evs: len(evs) >= 1)
        assert body(evs[0]) == f"{marker} 2", body(evs[0])


def receive_from_enqueued_time():
    marker = tag()
    with producer() as p:
        p.send_event(EventData(f"{marker} old"), partition_id="0")
        time.sleep(0.05)
        cut = utcnow()
        time.sleep(0.05)
        p.send_event(EventData(f"{marker} new"), partition_id="0")
        time.sleep(0.05)  # distinct enqueued times (ms resolution)
        p.send_event(EventData(f"{marker} newer"), partition_id="0")
    with Receiver("0", cut) as r:
        evs = r.wait_for(lambda evs: len(evs) >= 2)
    assert [body(e) for e in evs[:2]] == [f"{marker} new", f"{marker} newer"], [body(e) for e in evs]
    at = evs[0].enqueued_time
    assert at >= cut, (at, cut)
    # Exactly at an event's enqueued time: inclusive gets it, exclusive does not.
    with Receivers(spec("0", at, starting_position_inclusive=True),
                   spec("0", at, starting_position_inclusive=False)) as (inc, exc):
        evs = inc.wait_for(lambda evs: len(evs) >= 1)
        assert body(evs[0]) == f"{marker} new", body(evs[0])
        evs = exc.wait_for(lambda evs: len(evs) >= 1)
        assert body(evs[0]) == f"{marker} newer" and evs[0].enqueued_time > at, body(evs[0])


def owner_level_stealing():
    nr = {"client_kwargs": {"retry_total": 0}}
    with Receivers(spec("1", "@latest", owner_level=0, **nr),
                   spec("0", "@latest", **nr)) as (low, plain):
        assert low.ready.wait(RECEIVE_TIMEOUT) and plain.ready.wait(RECEIVE_TIMEOUT), "receivers never started"
        with Receivers(spec("1", "@latest", owner_level=1, **nr),
                       spec("0", "@latest", owner_level=0, **nr)) as (high, owner0):
            assert high.ready.wait(RECEIVE_TIMEOUT), "owner_level=1 receiver never started"
            assert owner0.ready.wait(RECEIVE_TIMEOUT), "owner_level=0 receiver never started"
            # A higher (or any, over none) owner level takes the partition.
            for loser, text in ((low, "higher epoch of '1'"), (plain, "higher epoch of '0'")):
                stolen = loser.wait_error()
                assert isinstance(stolen, eh_exceptions.ConnectionLostError), repr(stolen)
                assert "amqp:link:stolen" in str(stolen), str(stolen)
                assert text in str(stolen), str(stolen)
            # A lower owner level, or none, is refused while it runs.
            with Receivers(spec("1", "@latest", owner_level=0, **nr),
                           spec("1", "@latest", **nr)) as (lower, none):
                for refused in (lower.wait_error(), none.wait_error()):
                    assert isinstance(refused, eh_exceptions.ConnectionLostError), repr(refused)
                    assert "amqp:link:stolen" in str(refused), str(refused)
                assert "epoch 0 cannot be created" in str(lower.errors[0]), str(lower.errors[0])
                assert "non-epoch receiver is not allowed" in str(none.errors[0]), str(none.errors[0])
                assert not lower.events and not none.events
            assert not high.errors and not owner0.errors, (high.errors, owner0.errors)
            # The owners still receive.
            marker = tag()
            with producer() as p:
                p.send_event(EventData(f"{marker} owned"), partition_id="1")
                p.send_event(EventData(f"{marker} owned"), partition_id="0")
            for r in (high, owner0):
                r.wait_for(lambda evs: any(body(e) == f"{marker} owned" for e in evs))


def last_enqueued_event_properties():
    marker = tag()
    with producer() as p:
        p.send_batch([EventData(f"{marker} {i}") for i in range(3)], partition_id="0")
        props = p.get_partition_properties("0")
    start = props["last_enqueued_sequence_number"] - 2
    with Receiver("0", start, starting_position_inclusive=True,
                  track_last_enqueued_event_properties=True) as r:
        r.wait_for(lambda evs: len(evs) >= 3)
        infos = list(r.last_enqueued)
    info = infos[2]
    assert info is not None, infos
    assert info["sequence_number"] == props["last_enqueued_sequence_number"], (info, props)
    assert info["offset"] == props["last_enqueued_offset"], (info, props)
    assert isinstance(info["offset"], str), info
    assert info["enqueued_time"] == props["last_enqueued_time_utc"], (info, props)
    retrieval = info["retrieval_time"]
    assert isinstance(retrieval, datetime.datetime), info
    assert info["enqueued_time"] <= retrieval <= utcnow() + datetime.timedelta(seconds=2), info
    # Without tracking the SDK reports nothing.
    with Receiver("0", start) as r:
        r.wait_for(lambda evs: len(evs) >= 1)
        assert r.last_enqueued[0] is None, r.last_enqueued[0]


def wrong_key_rejected():
    bad = EventHubProducerClient.from_connection_string(connection_string(key="not-the-key"), retry_total=0)
    try:
        try:
            bad.get_eventhub_properties()
        except eh_exceptions.AuthenticationError as e:
            assert "401" in str(e), str(e)
        else:
            raise AssertionError("get_eventhub_properties succeeded with a wrong key")
        try:
            bad.send_event(EventData("never"), partition_id="0")
        except eh_exceptions.AuthenticationError as e:
            assert "401" in str(e), str(e)
        else:
            raise AssertionError("send_event succeeded with a wrong key")
    finally:
        bad.close()
    c = EventHubConsumerClient.from_connection_string(
        connection_string(key="not-the-key"), consumer_group="$Default", retry_total=0)
    with c:
        try:
            c.get_partition_ids()
        except eh_exceptions.AuthenticationError:
            pass
        else:
            raise AssertionError("consumer get_partition_ids succeeded with a wrong key")


def batch_near_max_size():
    marker = tag()
    with producer() as p:
        batch = p.create_batch(partition_id="1")
        assert batch.max_size_in_bytes == MAX_MESSAGE_SIZE, batch.max_size_in_bytes
        n = 0
        for size in (16000, 1000, 10):
            while True:
                try:
                    batch.add(EventData(f"{marker} {n} ".encode() + b"x" * size))
                except ValueError:
                    break
                n += 1
        assert MAX_MESSAGE_SIZE - 64 <= batch.size_in_bytes <= MAX_MESSAGE_SIZE, batch.size_in_bytes
        before = p.get_partition_properties("1")["last_enqueued_sequence_number"]
        p.send_batch(batch)
        after = p.get_partition_properties("1")["last_enqueued_sequence_number"]
        assert after == before + n, (before, after, n)
        # The same producer keeps working.
        p.send_event(EventData(f"{marker} after"), partition_id="1")
    # The last of the big batch reads back intact.
    got = receive_tagged("1", f"{marker} {n - 1} ", 1, after, starting_position_inclusive=True)[0]
    assert got.sequence_number == after, (got.sequence_number, after)


def oversized_event_refused():
    marker = tag()
    big = EventData(f"{marker} ".encode() + b"z" * (MAX_MESSAGE_SIZE + 100))
    with producer(retry_total=0) as p:
        before = p.get_partition_properties("0")["last_enqueued_sequence_number"]
        # A single event: the SDK sends it and the service rejects it.
        try:
            p.send_event(big, partition_id="0")
        except eh_exceptions.EventDataSendError as e:
            # A settled `rejected` disposition with amqp:link:message-size-exceeded,
            # in the service's words.
            assert "LinkMessageSizeExceeded" in str(e), str(e)
            assert f"exceeds the limit ({MAX_MESSAGE_SIZE} bytes)" in str(e), str(e)
        else:
            raise AssertionError("a single event above 1 MiB was accepted")
        # A list: the SDK refuses it before sending.
        try:
            p.send_batch([big], partition_id="0")
        except ValueError as e:
            assert "size limit" in str(e), str(e)
        else:
            raise AssertionError("a list above 1 MiB was accepted")
        # The link survives the rejection: the next send works.
        p.send_event(EventData(f"{marker} small"), partition_id="0")
        after = p.get_partition_properties("0")["last_enqueued_sequence_number"]
    assert after == before + 1, (before, after)


def consumer_group_cg1():
    marker = tag()
    with producer() as p:
        p.send_event(EventData(f"{marker} for cg1"), partition_id="0")
    got = receive_tagged("0", marker, 1, "-1", consumer_group="cg1")
    assert body(got[0]) == f"{marker} for cg1"
    c = consumer("cg1")
    with c:
        assert c.get_partition_ids() == PARTITIONS


def missing_consumer_group():
    with Receiver("0", "-1", consumer_group="nope", client_kwargs={"retry_total": 0}) as r:
        e = r.wait_error()
        assert not r.events, r.events
    assert isinstance(e, eh_exceptions.ConnectionLostError), repr(e)
    assert "amqp:not-found" in str(e), str(e)


def missing_event_hub():
    p = EventHubProducerClient.from_connection_string(connection_string(hub="nohub"), retry_total=0)
    with p:
        # $management answers 404: the SDK raises ConnectError.
        try:
            p.get_eventhub_properties()
        except eh_exceptions.ConnectError as e:
            assert "404" in str(e) and "could not be found" in str(e), str(e)
        else:
            raise AssertionError("properties of a hub that does not exist")
        # Sending looks the hub up the same way first.
        try:
            p.send_event(EventData("x"), partition_id="0")
        except eh_exceptions.ConnectError as e:
            assert "404" in str(e), str(e)
        else:
            raise AssertionError("sent to a hub that does not exist")


def send_batch_receive_back():
    """A batch with properties and an event of 256 KiB (many TLS records
    and, over WebSocket, several AMQP frames) to one partition, received
    back byte for byte over the same transport."""
    marker = tag()
    big = f"{marker} big ".encode() + bytes(range(256)) * 1024
    with producer() as p:
        before = p.get_partition_properties("0")["last_enqueued_sequence_number"]
        batch = p.create_batch(partition_id="0")
        for i in range(3):
            ev = EventData(f"{marker} {i}")
            ev.properties = {"i": i, "transport": TRANSPORT}
            batch.add(ev)
        batch.add(EventData(big))
        p.send_batch(batch)
        after = p.get_partition_properties("0")["last_enqueued_sequence_number"]
    assert after == before + 4, (before, after)
    with Receiver("0", before, starting_position_inclusive=False) as r:
        evs = r.wait_for(lambda evs: len(evs) >= 4)
    assert [e.sequence_number for e in evs[:4]] == list(range(before + 1, before + 5)), evs
    assert [body(e) for e in evs[:3]] == [f"{marker} {i}" for i in range(3)], [body(e)[:80] for e in evs]
    for i, e in enumerate(evs[:3]):
        back = {text(k): text(v) for k, v in e.properties.items()}
        assert back == {"i": i, "transport": TRANSPORT}, back
    assert b"".join(evs[3].body) == big, len(b"".join(evs[3].body))


def untrusted_certificate_refused():
    """The SDK really verifies the emulator's certificate: without
    `connection_verify` (certifi's public roots only) the self-signed
    certificate is refused, and with it, a name the certificate does not
    carry (dialing 127.0.0.1) is refused too."""
    for what, kwargs, mismatch in (
        ("default trust store", transport_kwargs(ca=None), False),
        ("host 127.0.0.1", transport_kwargs(host="127.0.0.1"), True),
    ):
        p = EventHubProducerClient.from_connection_string(connection_string(), retry_total=0, **kwargs)
        try:
            with p:
                p.get_eventhub_properties()
        except eh_exceptions.ConnectError as e:
            assert "CERTIFICATE_VERIFY_FAILED" in str(e), (what, str(e))
            assert ("mismatch" in str(e)) == mismatch, (what, str(e))
        else:
            raise AssertionError(f"connected with {what}")


SCENARIOS = [
    get_eventhub_properties,
    get_partition_properties,
    unknown_partition,
    send_batch_round_robin,
    send_batch_partition_key,
    buffered_producer_keys,
    send_batch_partition_id,
    send_event_single,
    properties_round_trip,
    receive_earliest,
    receive_latest,
    receive_from_sequence_number,
    receive_from_offset,
    receive_from_enqueued_time,
    owner_level_stealing,
    last_enqueued_event_properties,
    wrong_key_rejected,
    batch_near_max_size,
    oversized_event_refused,
    consumer_group_cg1,
    missing_consumer_group,
    missing_event_hub,
]

# Over TLS and WebSocket over TLS: the transport, not the broker, is under
# test (the broker behind every listener is the same).
TRANSPORT_SCENARIOS = [
    get_eventhub_properties,
    send_batch_receive_back,
    untrusted_certificate_refused,
]


def main():
    global PORT, TRANSPORT, HOST, CA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--transport", choices=["amqp", "tls", "wss"], default="amqp",
                        help="plain AMQP (the whole suite), AMQP over TLS or over WebSocket over TLS")
    parser.add_argument("--host", default="localhost",
                        help="tls/wss: the namespace host, a name the emulator's certificate carries")
    parser.add_argument("--ca", help="tls/wss: PEM file of the emulator's certificate (or its CA)")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print tracebacks, timings and the SDK's warnings")
    args = parser.parse_args()
    PORT = args.port
    TRANSPORT, HOST, CA = args.transport, args.host, args.ca
    if TRANSPORT != "amqp" and not CA:
        parser.error(f"--transport {TRANSPORT} needs --ca")
    scenarios = SCENARIOS if TRANSPORT == "amqp" else TRANSPORT_SCENARIOS
    # The SDK logs expected failures (stolen links, refused attaches) as
    # warnings: keep them out of the report unless asked.
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    if not args.verbose:
        logging.getLogger("azure").setLevel(logging.CRITICAL)
    passed = failed = 0
    for scenario in scenarios:
        name = scenario.__name__
        if args.only and args.only not in name:
            continue
        started = time.monotonic()
        try:
            scenario()
        except Exception as e:  # pylint: disable=broad-except
            failed += 1
            reason = f"{type(e).__name__}: {e}".replace("\n", " ")
            print(f"FAIL {name}: {reason[:500]}", flush=True)
            if args.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print(f"PASS {name}", flush=True)
        if args.verbose:
            print(f"  ({time.monotonic() - started:.1f}s)", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
