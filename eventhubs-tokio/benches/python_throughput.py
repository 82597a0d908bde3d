#!/usr/bin/env python3
"""The workload of `throughput.rs`, done by Microsoft's Python SDK
(`azure-eventhub`), for a ratio against the Rust client.

    EVENTHUB_CONNECTION_STRING='Endpoint=sb://127.0.0.1:PORT;...;EntityPath=eh1' \\
        python3 eventhubs-tokio/benches/python_throughput.py --events 5000

Sends EVENTS events of SIZE bytes to one partition in batches of BATCH
(`create_batch(partition_id=...)`, `send_batch`, one after the other), then
reads them back with `EventHubConsumerClient.receive_batch` (prefetch
PREFETCH). As in the Rust benchmark, connection and link set-up are not
timed: one batch is sent before the send clock starts, and the receive
clock starts at the first event received, counting the EVENTS after it.

Prints `key value` lines: send_events_per_s, receive_events_per_s,
events, event_size. Exits non-zero on any failure.
"""

import argparse
import os
import sys
import threading
import time

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient


def send(cs, partition, events, batch_size, body):
    """Returns (first sequence number of the warm-up batch, seconds to send
    `events` events after it)."""
    producer = EventHubProducerClient.from_connection_string(cs)
    with producer:
        props = producer.get_partition_properties(partition)
        first = 0 if props["is_empty"] else props["last_enqueued_sequence_number"] + 1

        def one_batch(n):
            batch = producer.create_batch(partition_id=partition)
            for _ in range(n):
                batch.add(EventData(body))
            producer.send_batch(batch)

        one_batch(batch_size)  # warm-up: opens the sender link
        start = time.perf_counter()
        sent = 0
        while sent < events:
            n = min(batch_size, events - sent)
            one_batch(n)
            sent += n
        took = time.perf_counter() - start
        after = producer.get_partition_properties(partition)["last_enqueued_sequence_number"]
        expected = first + batch_size + events - 1
        if after != expected:
            raise RuntimeError(f"partition {partition} ends at {after}, expected {expected}")
    return first, took


def receive(cs, partition, first, events, prefetch, size, timeout=300.0):
    """Seconds to receive the `events` events after the one at `first`."""
    consumer = EventHubConsumerClient.from_connection_string(cs, consumer_group="$Default")
    state = {"count": 0, "t_first": None, "t_last": None, "error": None, "next": first}
    done = threading.Event()

    def on_batch(_context, batch):
        for ev in batch:
            if ev.sequence_number != state["next"]:
                state["error"] = f"sequence number {ev.sequence_number}, expected {state['next']}"
                done.set()
                return
            state["next"] += 1
            if state["count"] == 0:
                state["t_first"] = time.perf_counter()
                if len(b"".join(ev.body)) != size:
                    state["error"] = "event body of the wrong size"
                    done.set()
                    return
            state["count"] += 1
            if state["count"] == events + 1:
                state["t_last"] = time.perf_counter()
                done.set()
                return

    def on_error(_context, error):
        state["error"] = repr(error)
        done.set()

    thread = threading.Thread(
        target=consumer.receive_batch,
        kwargs=dict(
            on_event_batch=on_batch,
            on_error=on_error,
            partition_id=partition,
            starting_position=first,
            starting_position_inclusive=True,
            prefetch=prefetch,
            max_batch_size=prefetch,
        ),
        daemon=True,
    )
    thread.start()
    finished = done.wait(timeout)
    consumer.close()
    thread.join(timeout=10)
    if state["error"]:
        raise RuntimeError(state["error"])
    if not finished or state["t_last"] is None:
        raise RuntimeError(f"received {state['count']} of {events + 1} events in {timeout} s")
    return state["t_last"] - state["t_first"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--partition", default="1")
    p.add_argument("--prefetch", type=int, default=300)
    args = p.parse_args()
    cs = os.environ.get("EVENTHUB_CONNECTION_STRING")
    if not cs:
        sys.exit("EVENTHUB_CONNECTION_STRING is not set")
    if args.events < 1 or args.batch < 1:
        sys.exit("--events and --batch must be at least 1")
    body = b"x" * args.size
    first, send_s = send(cs, args.partition, args.events, args.batch, body)
    recv_s = receive(cs, args.partition, first, args.events, args.prefetch, args.size)
    print(f"send_events_per_s {args.events / send_s:.1f}")
    print(f"receive_events_per_s {args.events / recv_s:.1f}")
    print(f"events {args.events}")
    print(f"event_size {args.size}")


if __name__ == "__main__":
    main()
