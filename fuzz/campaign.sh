#!/usr/bin/env bash
# A fuzzing campaign: every target in turn for SLICE seconds, round after
# round, until TOTAL executions have run over all targets (or ROUNDS rounds).
# Each run's executions (libFuzzer's final stats) go to LOG, one line per
# run, and a summary per target is printed at the end; crashes land in
# artifacts/<target>/ as libFuzzer writes them and stop the campaign.
#
#   SLICE=60 TOTAL=60000000 bash campaign.sh [TARGET ...]
#
# SANITIZER (default none: the targets are safe Rust, and without
# AddressSanitizer they run several times faster; `address` for ASan)
# is passed to `cargo fuzz build -s`. The corpus is corpus/<target>/,
# seeded from the checked-in corpus-min/<target>/ when empty.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
slice=${SLICE:-60}
total=${TOTAL:-100000000}
rounds=${ROUNDS:-1000000}
sanitizer=${SANITIZER:-none}
log=${LOG:-$here/campaign.log}
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=(frame_decode message_decode value_decode engine_server client_input http_response management_request)
fi
triple=$(rustc -vV | sed -n 's/^host: //p')
for t in "${targets[@]}"; do
    RUSTC_BOOTSTRAP=1 cargo fuzz build -s "$sanitizer" "$t" >/dev/null
    mkdir -p "corpus/$t" "artifacts/$t"
    if [ -z "$(ls -A "corpus/$t")" ] && [ -d "corpus-min/$t" ]; then
        cp corpus-min/"$t"/* "corpus/$t/"
    fi
done
# The summary counts this campaign's runs only, whatever LOG held before.
first_line=$(($(cat "$log" 2>/dev/null | wc -l) + 1))
done_units=0
round=0
while [ "$done_units" -lt "$total" ] && [ "$round" -lt "$rounds" ]; do
    round=$((round + 1))
    for t in "${targets[@]}"; do
        out=$(mktemp)
        rc=0
        "target/$triple/release/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
            -max_total_time="$slice" -print_final_stats=1 \
            -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 >"$out" 2>&1 || rc=$?
        units=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
        units=${units:-0}
        done_units=$((done_units + units))
        echo "$(date -u +%FT%TZ) round=$round target=$t sanitizer=$sanitizer secs=$slice units=$units rc=$rc" >>"$log"
        if [ "$rc" -ne 0 ]; then
            echo "$t exited with $rc; its output:" >&2
            tail -40 "$out" >&2
            rm -f "$out"
            exit "$rc"
        fi
        rm -f "$out"
    done
done
awk -v first="$first_line" 'NR >= first { for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } u[f["target"]] += f["units"]; all += f["units"] }
     END { for (t in u) printf "%-20s %12d\n", t, u[t]; printf "%-20s %12d\n", "all", all }' "$log"
