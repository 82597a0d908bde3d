#!/usr/bin/env bash
# This project's client and Microsoft's Rust SDK side by side against the
# emulator binary: batched send (one partition and round-robin), single
# events (round trip and send-to-receive latency), receive with prefetch
# 300 and the memory of 32 receiving links; CPU time per event of each
# client process, events/s, and the ratios.
#
#   bash interop/ms-rust-sdk/bench.sh [OPTIONS]      (OPTIONS: bench --help)
#
# Builds the emulator (in the workspace's target directory, CARGO_TARGET_DIR
# or target/) and this crate (its own lockfile, in MS_SDK_TARGET_DIR, by
# default interop/ms-rust-sdk/target) with the release profile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
workspace_target=${CARGO_TARGET_DIR:-$root/target}
sdk_target=${MS_SDK_TARGET_DIR:-$here/target}
cargo build --release --quiet -p eventhubs-emulator
CARGO_TARGET_DIR=$sdk_target cargo build --release --quiet --locked --manifest-path "$here/Cargo.toml"
exec "$sdk_target/release/ms-rust-sdk-interop" bench \
    --emulator "$workspace_target/release/eventhubs-emulator" "$@"
