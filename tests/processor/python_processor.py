#!/usr/bin/env python3
"""The official Python processor: azure-eventhub's EventHubConsumerClient
with the blob checkpoint store (azure-eventhub-checkpointstoreblob), driven
by eventhubs-tokio/tests/processor_fleet.rs beside our processor in the same
consumer group and container.

  python_processor.py EVENTHUB_CONN_STR STORAGE_CONN_STR CONTAINER EVENTS_OUT STOP_FILE \
      INTERVAL EXPIRY LIMIT

Writes one JSON line per event to EVENTS_OUT (partition_id, sequence_number,
offset, owner_id "python"), flushed, then checkpoints that event. Prints
`python: claimed partition P` and `python: closed partition P (REASON)` as
partitions come and go. Stops when STOP_FILE exists (or after LIMIT
seconds) by closing the client, which relinquishes its ownership, then
prints `python: stopped`.
"""
import json
import logging
import os
import sys
import threading
import time

from azure.eventhub import EventHubConsumerClient
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore


def main(argv):
    conn_str, storage, container, events_out, stop_file = argv[1:6]
    interval, expiry, limit = float(argv[6]), float(argv[7]), float(argv[8])
    logging.basicConfig(level=logging.WARNING)
    store = BlobCheckpointStore.from_connection_string(storage, container)
    client = EventHubConsumerClient.from_connection_string(
        conn_str,
        consumer_group="$Default",
        checkpoint_store=store,
        load_balancing_interval=interval,
        partition_ownership_expiration_interval=expiry,
    )
    out = open(events_out, "a", encoding="utf-8")
    lock = threading.Lock()

    def on_event(ctx, event):
        if event is None:
            return
        with lock:
            out.write(
                json.dumps(
                    {
                        "partition_id": ctx.partition_id,
                        "sequence_number": event.sequence_number,
                        "offset": str(event.offset),
                        "owner_id": "python",
                    }
                )
                + "\n"
            )
            out.flush()
        ctx.update_checkpoint(event)

    def on_partition_initialize(ctx):
        print(f"python: claimed partition {ctx.partition_id}", flush=True)

    def on_partition_close(ctx, reason):
        print(f"python: closed partition {ctx.partition_id} ({reason})", flush=True)

    def on_error(ctx, error):
        pid = ctx.partition_id if ctx else None
        print(f"python: error on {pid}: {error!r}", flush=True)

    receiving = threading.Thread(
        target=client.receive,
        kwargs={
            "on_event": on_event,
            "on_partition_initialize": on_partition_initialize,
            "on_partition_close": on_partition_close,
            "on_error": on_error,
            "starting_position": "-1",
        },
        daemon=True,
    )
    receiving.start()
    print("python: started", flush=True)
    deadline = time.monotonic() + limit
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        time.sleep(0.1)
    client.close()
    receiving.join(timeout=30)
    out.close()
    print("python: stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv)
