#!/usr/bin/env bash
# Microsoft's Rust SDK (azure_messaging_eventhubs) against the emulator
# binary: 50 short sends and 50 short receives, each run on a fresh client;
# fails on any run that stalls (does not finish within 10 s) or errs.
#
#   bash interop/ms-rust-sdk/run.sh [stall|stall-send|stall-receive] [OPTIONS]
#
# Builds the emulator (in the workspace's target directory) and this crate
# (its own lockfile, in MS_SDK_TARGET_DIR, by default
# interop/ms-rust-sdk/target), both with the dev profile, which CI's
# `cargo test --workspace` has already built the emulator with; both lose
# the race this guards against as readily as release builds do.
# MS_SDK_PROFILE=release builds both with the release profile instead.
# Options go to the binary (`--help`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
workspace_target=${CARGO_TARGET_DIR:-$root/target}
sdk_target=${MS_SDK_TARGET_DIR:-$here/target}
case ${MS_SDK_PROFILE:-dev} in
    dev) profile=(); dir=debug ;;
    release) profile=(--release); dir=release ;;
    *) echo "MS_SDK_PROFILE must be dev or release" >&2; exit 2 ;;
esac
cargo build "${profile[@]}" --quiet -p eventhubs-emulator
CARGO_TARGET_DIR=$sdk_target cargo build "${profile[@]}" --quiet --locked --manifest-path "$here/Cargo.toml"
command=${1:-stall}
[ $# -gt 0 ] && shift
exec "$sdk_target/$dir/ms-rust-sdk-interop" "$command" \
    --emulator "$workspace_target/$dir/eventhubs-emulator" --runs 50 "$@"
