#!/usr/bin/env bash
# Check the interop peers against each other / against RabbitMQ.
#
#   bash tests/interop/selftest.sh proton     proton_client.py vs proton_broker.py
#   bash tests/interop/selftest.sh rabbitmq   proton_client.py vs RabbitMQ on
#                                             127.0.0.1:5672 (run .ci/rabbitmq.sh first)
#
# Prints one line per case ("PASS name {json}" / "FAIL name ...") and a final
# "N passed, N failed" line; exits non-zero if anything failed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
pass=0
fail=0
BROKER_PIDS=()
TMP=$(mktemp -d)

cleanup() {
    for pid in "${BROKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    if [ "$fail" = 0 ]; then rm -rf "$TMP"; else echo "logs kept in $TMP" >&2; fi
}
trap cleanup EXIT

# start_broker VAR_PREFIX args... -> sets PORT_<prefix>, PID_<prefix>
start_broker() {
    local name=$1; shift
    local out=$TMP/broker-$name.out err=$TMP/broker-$name.err
    "$PY" "$HERE/proton_broker.py" --port 0 -q "$@" >"$out" 2>"$err" &
    local pid=$!
    BROKER_PIDS+=("$pid")
    for _ in $(seq 1 100); do
        if grep -q '^LISTENING ' "$out" 2>/dev/null; then break; fi
        sleep 0.1
    done
    local port
    port=$(awk '/^LISTENING /{print $2; exit}' "$out")
    if [ -z "$port" ]; then echo "broker $name did not start:"; cat "$err"; exit 1; fi
    printf -v "PORT_$name" '%s' "$port"
    printf -v "PID_$name" '%s' "$pid"
}

# expect 0|fail  name  client-args...
run_case() {
    local expect=$1 name=$2; shift 2
    local t0 t1 json rc
    t0=$(date +%s.%N)
    json=$("$PY" "$HERE/proton_client.py" "$@" 2>"$TMP/client-$name.err")
    rc=$?
    t1=$(date +%s.%N)
    local wall
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
    if { [ "$expect" = 0 ] && [ "$rc" = 0 ]; } || { [ "$expect" = fail ] && [ "$rc" != 0 ]; }; then
        echo "PASS $name (${wall}s) $json"
        pass=$((pass + 1))
    else
        echo "FAIL $name rc=$rc (${wall}s) $json"
        tail -n 5 "$TMP/client-$name.err" | sed 's/^/    /'
        fail=$((fail + 1))
    fi
}

mode=${1:-proton}

case "$mode" in
proton)
    start_broker std
    start_broker f512 --max-frame-size 512
    start_broker f4096 --max-frame-size 4096
    P=$PORT_std
    run_case 0 unsettled-10k --port "$P" --address q-unsettled --count 10000 --size 100 --timeout 120
    run_case 0 presettled-10k --port "$P" --address q-settled --count 10000 --size 100 --settled --timeout 120
    run_case 0 plain-ok --port "$P" --sasl PLAIN --user user --password pass --address q-plain --count 100
    run_case fail plain-wrong-password --port "$P" --sasl PLAIN --user user --password wrong --address q-plain --count 1 --timeout 10
    run_case fail no-sasl-refused --port "$P" --sasl NONE --address q-plain --count 1 --timeout 10
    run_case 0 1mib-x5-frame512 --port "$PORT_f512" --max-frame-size 512 --address q-big --count 5 --size 1048576 --timeout 120
    run_case 0 1mib-x5-frame512-presettled --port "$PORT_f512" --max-frame-size 512 --address q-big2 --count 5 --size 1048576 --settled --timeout 120
    run_case 0 1mib-x5-frame4096 --port "$PORT_f4096" --max-frame-size 4096 --address q-big --count 5 --size 1048576 --timeout 120
    run_case 0 unsettled-10k-frame512 --port "$PORT_f512" --max-frame-size 512 --address q-small --count 10000 --size 100 --timeout 120
    # clean shutdown on SIGTERM
    kill -TERM "$PID_std"
    if wait "$PID_std"; then
        echo "PASS broker-sigterm-exit-0"; pass=$((pass + 1))
    else
        echo "FAIL broker-sigterm-exit-0 (rc=$?)"; fail=$((fail + 1))
    fi
    ;;
rabbitmq)
    R="--port ${RABBITMQ_AMQP_PORT:-5672}"
    run_case 0 rmq-plain-guest-1000 $R --sasl PLAIN --user guest --password guest --address /queue/interop-selftest --count 1000 --size 100 --timeout 60
    run_case 0 rmq-anonymous-presettled-1000 $R --sasl ANONYMOUS --address /queue/interop-selftest --count 1000 --size 100 --settled --timeout 60
    run_case 0 rmq-amq-queue-1000 $R --sasl ANONYMOUS --address /amq/queue/interop-selftest --count 1000 --size 100 --timeout 60
    run_case 0 rmq-1mib-x5-frame512 $R --sasl ANONYMOUS --address /queue/interop-selftest-big --count 5 --size 1048576 --max-frame-size 512 --timeout 120
    run_case fail rmq-plain-wrong-password $R --sasl PLAIN --user guest --password wrong --address /queue/interop-selftest --count 1 --timeout 20
    ;;
*)
    echo "usage: $0 proton|rabbitmq" >&2; exit 2 ;;
esac

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
