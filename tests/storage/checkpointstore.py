#!/usr/bin/env python3
"""The official Python blob checkpoint store (azure-eventhub-checkpointstoreblob)
on a container our store also uses, driven by tests/storage/mod.rs.

  checkpointstore.py read  CONN_STR CONTAINER NAMESPACE HUB GROUP
      prints {"ownership": [...], "checkpoints": [...]} as list_ownership
      and list_checkpoints return them.
  checkpointstore.py write CONN_STR CONTAINER NAMESPACE HUB GROUP OWNER
      lists ownership, then claims partition 1 at its listed ETag (a steal),
      partition 2 at its listed ETag, and partition 3 (never owned); then
      checkpoints 1 (offset 3072, sequence number 30) and 3 (5120, 50).
      Prints {"claimed": [ids won], "etags": {id: etag}}.
"""
import json
import sys

from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore


def main(argv):
    command, conn_str, container, namespace, hub, group = argv[1:7]
    store = BlobCheckpointStore.from_connection_string(conn_str, container)
    with store:
        if command == "read":
            ownership = store.list_ownership(namespace, hub, group)
            checkpoints = store.list_checkpoints(namespace, hub, group)
            print(json.dumps({"ownership": list(ownership), "checkpoints": list(checkpoints)}))
        elif command == "write":
            owner = argv[7]
            listed = {o["partition_id"]: o for o in store.list_ownership(namespace, hub, group)}
            claims = []
            for pid in ("1", "2"):
                o = dict(listed[pid])
                o["owner_id"] = owner
                claims.append(o)
            claims.append({
                "fully_qualified_namespace": namespace,
                "eventhub_name": hub,
                "consumer_group": group,
                "partition_id": "3",
                "owner_id": owner,
            })
            won = store.claim_ownership(claims)
            for pid, offset, seq in (("1", "3072", 30), ("3", "5120", 50)):
                store.update_checkpoint({
                    "fully_qualified_namespace": namespace,
                    "eventhub_name": hub,
                    "consumer_group": group,
                    "partition_id": pid,
                    "offset": offset,
                    "sequence_number": seq,
                })
            print(json.dumps({
                "claimed": sorted(o["partition_id"] for o in won),
                "etags": {o["partition_id"]: o["etag"] for o in won},
            }))
        else:
            raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv)
