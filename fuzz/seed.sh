#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the checked-in fixtures. The corpus
# directories are gitignored; run this once before fuzzing (it only adds
# files, so running it again over a grown corpus is harmless).
#
#   frame_decode   <- proton/streams/*.bin and traces/**/*.bin as whole
#                     streams, plus every frame of them on its own
#   message_decode <- proton/messages/*.bin, plus every transfer payload of
#                     the streams (Event Hubs batches among them)
#   value_decode   <- proton/values/*.bin, plus every performative and SASL
#                     body of the streams and every section of the messages
#   engine_server  <- the client byte streams, raw and after a handshake
#   client_input   <- whole sessions of the client core against the broker
#                     model, recorded by eventhubs-emulator/tests/fuzz_seeds.rs
#                     (a cargo test run in the main workspace), one of them
#                     edited to a 1 ms idle-time-out, plus the broker
#                     streams of the real-client traces as feed records
#   http_response  <- eventhubs-proto/tests/fixtures/http/*.bin: Blob Storage
#                     replies (chunked List Blobs pages and errors, HEAD
#                     and PUT replies) and bare XML bodies, with a mode byte
#   management_request <- pipelined management requests (create, update,
#                     get, list, delete hubs and consumer groups, bad
#                     values, malformed XML), signed by the harness
#
# Needs python3 (standard library only) to split streams into frames.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fixtures="$here/../eventhubs-proto/tests/fixtures"
corpus="$here/corpus"

mkdir -p "$corpus/frame_decode" "$corpus/message_decode" "$corpus/value_decode"

copy() { # copy DEST_TARGET FILE...: named after the fixture's path
    local dest="$corpus/$1"
    shift
    local f rel
    for f in "$@"; do
        rel="${f#"$fixtures"/}"
        cp "$f" "$dest/${rel//\//__}"
    done
}

shopt -s nullglob globstar
copy frame_decode "$fixtures"/proton/streams/*.bin "$fixtures"/traces/**/*.bin
copy message_decode "$fixtures"/proton/messages/*.bin
copy value_decode "$fixtures"/proton/values/*.bin

python3 - "$fixtures" "$corpus" <<'PY'
import glob, os, struct, sys

fixtures, corpus = sys.argv[1], sys.argv[2]

def skip(b, i):
    """Offset just past the AMQP value that starts at b[i]."""
    code = b[i]
    i += 1
    if code == 0x00:                       # described: descriptor, value
        return skip(b, skip(b, i))
    hi = code & 0xF0
    if hi == 0x40:
        return i
    if hi in (0x50, 0x60, 0x70, 0x80, 0x90):
        return i + {0x50: 1, 0x60: 2, 0x70: 4, 0x80: 8, 0x90: 16}[hi]
    if hi in (0xA0, 0xC0, 0xE0):           # 1-byte length or size
        return i + 1 + b[i]
    if hi in (0xB0, 0xD0, 0xF0):           # 4-byte length or size
        return i + 4 + struct.unpack(">I", b[i:i + 4])[0]
    raise ValueError(f"format code {code:#x}")

def write(target, name, data):
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)

def frames(b):
    """(index, frame bytes) of a stream, protocol headers skipped."""
    i = n = 0
    while i + 8 <= len(b):
        if b[i:i + 4] == b"AMQP":
            i += 8
            continue
        size = struct.unpack(">I", b[i:i + 4])[0]
        if size < 8 or i + size > len(b):
            return
        yield n, b[i:i + size]
        i += size
        n += 1

streams = glob.glob(f"{fixtures}/proton/streams/*.bin")
streams += glob.glob(f"{fixtures}/traces/**/*.bin", recursive=True)
for path in sorted(streams):
    stem = os.path.relpath(path, fixtures).replace("/", "__")[:-4]
    for n, fr in frames(open(path, "rb").read()):
        write("frame_decode", f"{stem}__frame{n:04}.bin", fr)
        body = fr[fr[4] * 4:]
        if not body:
            continue                       # heartbeat
        try:
            end = skip(body, 0)
        except (ValueError, IndexError, struct.error):
            continue
        write("value_decode", f"{stem}__frame{n:04}__body.bin", body[:end])
        if fr[5] == 0 and body[:3] == b"\x00\x53\x14" and end < len(body):
            write("message_decode", f"{stem}__frame{n:04}__payload.bin", body[end:])

for path in sorted(glob.glob(f"{fixtures}/proton/messages/*.bin")):
    stem = os.path.relpath(path, fixtures).replace("/", "__")[:-4]
    b = open(path, "rb").read()
    i = n = 0
    try:
        while i < len(b):
            end = skip(b, i)
            write("value_decode", f"{stem}__section{n}.bin", b[i:end])
            i, n = end, n + 1
    except (ValueError, IndexError, struct.error):
        pass
PY

# engine_server: client byte streams, raw (mode 0) and after the target's
# own handshake (mode 1).
mkdir -p "$corpus/engine_server"
for f in "$fixtures"/proton/streams/*.client.bin "$fixtures"/traces/**/*.client.bin; do
    base=$(basename "$f" .bin)
    { printf '\x00'; cat "$f"; } > "$corpus/engine_server/$base.raw"
    { printf '\x01'; cat "$f"; } > "$corpus/engine_server/$base.handshake"
done

# client_input: recorded sessions (the generator replays each one and
# checks that it goes as deep as the session did), and the traces' broker
# streams behind the full scenario byte (0x3c), in long feed records.
mkdir -p "$corpus/client_input"
FUZZ_SEEDS_DIR="$corpus/client_input" cargo test --quiet \
    --manifest-path "$here/../Cargo.toml" -p eventhubs-emulator --test fuzz_seeds
python3 - "$fixtures" "$corpus" <<'PY'
import glob, os, struct, sys

fixtures, corpus = sys.argv[1], sys.argv[2]
for path in sorted(glob.glob(f"{fixtures}/traces/**/*.broker.bin", recursive=True)):
    b = open(path, "rb").read()
    out = bytearray([0x3C])
    for i in range(0, len(b), 0xFFFF):
        piece = b[i:i + 0xFFFF]
        out += bytes([0xE0]) + struct.pack(">H", len(piece)) + piece
    name = os.path.relpath(path, fixtures).replace("/", "__")
    open(os.path.join(corpus, "client_input", "trace__" + name), "wb").write(out)

# The whole-chunk session with the broker's open asking for idle-time-out
# 1 ms instead of 240 s (uint 0x0003a980): heartbeats every 500 us, the
# input that once left the heartbeat timer due for ever.
d = os.path.join(corpus, "client_input")
b = open(os.path.join(d, "sas_whole.bin"), "rb").read()
pat = bytes([0x70, 0x00, 0x03, 0xA9, 0x80])
if pat in b:
    patched = b.replace(pat, bytes([0x70, 0, 0, 0, 1]), 1)
    open(os.path.join(d, "sas_whole_idle_1ms.bin"), "wb").write(patched)
PY

# http_response: replies shaped like Azurite's (see fixtures/http/gen.py).
mkdir -p "$corpus/http_response"
copy http_response "$fixtures"/http/*.bin

# management_request: a flags byte (bit 0: the harness signs with a Manage
# key), then pipelined HTTP/1.1 requests.
mkdir -p "$corpus/management_request"
python3 - "$corpus/management_request" <<'PY'
import os, sys

out = sys.argv[1]
ATOM = "http://www.w3.org/2005/Atom"
SB = "http://schemas.microsoft.com/netservices/2010/10/servicebus/connect"

def entry(kind, inner):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<entry xmlns="{ATOM}"><content type="application/xml">'
            f'<{kind} xmlns="{SB}">{inner}</{kind}></content></entry>')

def req(method, path, body="", headers=()):
    h = [f"{method} {path}?api-version=2017-04 HTTP/1.1", "Host: 127.0.0.1:5300"]
    h += list(headers)
    if body or method == "PUT":
        h += ["Content-Type: application/atom+xml;type=entry;charset=utf-8", f"Content-Length: {len(body.encode())}"]
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()

hub = lambda inner: entry("EventHubDescription", inner)
group = lambda inner: entry("ConsumerGroupDescription", inner)
lifecycle = b"".join([
    req("PUT", "/telemetry", hub("<MessageRetentionInDays>3</MessageRetentionInDays><PartitionCount>5</PartitionCount>")),
    req("GET", "/$Resources/EventHubs"),
    req("PUT", "/telemetry", hub("<MessageRetentionInDays>3</MessageRetentionInDays>")),
    req("PUT", "/telemetry", hub("<MessageRetentionInDays>5</MessageRetentionInDays><Status>SendDisabled</Status><UserMetadata>m</UserMetadata>"), ["If-Match: *"]),
    req("PUT", "/telemetry/consumergroups/cg", group("<UserMetadata>x</UserMetadata>")),
    req("GET", "/telemetry/consumergroups"),
    req("GET", "/telemetry/consumergroups/$Default"),
    req("DELETE", "/telemetry/consumergroups/cg"),
    req("GET", "/telemetry"),
    req("DELETE", "/telemetry"),
    req("GET", "/telemetry"),
])
seeds = {
    "lifecycle": (1, lifecycle),
    "lifecycle_unsigned": (0, lifecycle),
    "lifecycle_weak": (2, lifecycle),
    "lifecycle_days": (1 | 12, lifecycle),
    "bad_values": (1, b"".join([
        req("PUT", "/h", hub("<PartitionCount>33</PartitionCount>")),
        req("PUT", "/h", hub("<MessageRetentionInDays>0</MessageRetentionInDays>")),
        req("PUT", "/-h", hub("")),
        req("PUT", "/h", hub("<PartitionCount>x</PartitionCount>")),
        req("PUT", "/h", "<entry"),
        req("PUT", "/eh1", hub("<PartitionCount>9</PartitionCount>"), ["If-Match: *"]),
        req("DELETE", "/eh1/consumergroups/$Default"),
        req("POST", "/eh1"),
        req("GET", "/health"),
    ])),
    "chunked": (1, b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + hex(len(hub("").encode()))[2:].encode() + b"\r\n" + hub("").encode() + b"\r\n0\r\n\r\n"
                   + req("GET", "/c")),
}
for name, (flags, data) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([flags]) + data)
PY

for t in frame_decode message_decode value_decode engine_server client_input http_response management_request; do
    echo "$t: $(find "$corpus/$t" -type f | wc -l) files"
done
