"""Microsoft's legacy Python SDK for Service Bus (azure-servicebus 0.21.1,
`ServiceBusService`), an independent client of the Atom management API,
against the emulator's HTTP listener.

    legacy_management.py PORT

Creates, reads, updates and deletes event hubs with it, checks what it
parses from the emulator's replies and the errors it raises, and leaves
one hub, `py-made` (3 partitions), for the caller to use over AMQP. Prints
`OK <n> checks` and exits 0, or fails on the first wrong answer.
"""

import sys

from azure.common import AzureConflictHttpError, AzureMissingResourceHttpError
from azure.servicebus import ServiceBusService
from azure.servicebus.models import EventHub

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    checks += 1


port = int(sys.argv[1])
# The SDK builds https://<namespace><host_base>; the emulator serves plain
# HTTP on 127.0.0.1:PORT. It signs "http://127.0.0.1:PORT:80/<path>?query"
# (a URL with an explicit port), which the emulator's scope check takes.
sbs = ServiceBusService(
    service_namespace="127.0.0.1",
    host_base=f":{port}",
    shared_access_key_name="RootManageSharedAccessKey",
    shared_access_key_value="SAS_KEY_VALUE",
)
sbs._httpclient.protocol = "http"

made = sbs.create_event_hub(
    "py-hub",
    EventHub(partition_count=4, message_retention_in_days=2, user_metadata="from <python> & co"),
    fail_on_exist=True,
)
check(made is True, "create_event_hub returns True")
hub = sbs.get_event_hub("py-hub")
check(hub.name == "py-hub", f"name {hub.name!r}")
check(hub.partition_count == 4, f"partition_count {hub.partition_count!r}")
check(hub.partition_ids == ["0", "1", "2", "3"], f"partition_ids {hub.partition_ids!r}")
check(hub.message_retention_in_days == 2, f"retention {hub.message_retention_in_days!r}")
check(hub.status == "Active", f"status {hub.status!r}")
check(hub.user_metadata == "from <python> & co", f"user_metadata {hub.user_metadata!r}")
check(hub.size_in_bytes == 0, f"size {hub.size_in_bytes!r}")
check(hub.author == "emulatorNs1", f"author {hub.author!r}")

try:
    sbs.create_event_hub("py-hub", EventHub(partition_count=4), fail_on_exist=True)
    check(False, "a second create is a conflict")
except AzureConflictHttpError as e:
    check("<Code>409</Code>" in str(e), f"conflict body {e}")
check(sbs.create_event_hub("py-hub") is False, "create without fail_on_exist says False")

hub = sbs.update_event_hub("py-hub", EventHub(message_retention_in_days=5, partition_count=4))
check(hub.message_retention_in_days == 5, f"updated retention {hub.message_retention_in_days!r}")
check(hub.partition_count == 4, "partitions kept")
check(sbs.get_event_hub("py-hub").message_retention_in_days == 5, "update visible to get")

check(sbs.get_event_hub("eh1").partition_ids == ["0", "1"], "the configured hub eh1")

check(sbs.delete_event_hub("py-hub", fail_not_exist=True) is True, "delete")
try:
    sbs.delete_event_hub("py-hub", fail_not_exist=True)
    check(False, "a second delete is a 404")
except AzureMissingResourceHttpError as e:
    check("<Code>404</Code>" in str(e), f"not found body {e}")
check(sbs.delete_event_hub("py-hub") is False, "delete without fail_not_exist says False")
try:
    sbs.get_event_hub("py-hub")
    check(False, "get of a deleted hub fails")
except Exception as e:  # the SDK reads the empty feed as "not found"
    check("not found" in str(e).lower(), f"missing hub: {type(e).__name__}: {e}")

try:
    sbs.create_event_hub("bad name", EventHub(partition_count=2), fail_on_exist=True)
    check(False, "a name with a space is refused")
except Exception as e:
    check("<Code>400</Code>" in str(e), f"bad name body {e}")

check(
    sbs.create_event_hub("py-made", EventHub(partition_count=3), fail_on_exist=True) is True,
    "the hub left for AMQP",
)
print(f"OK {checks} checks")
