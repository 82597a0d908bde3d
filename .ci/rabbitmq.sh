#!/usr/bin/env bash
# Install, configure and start a local RabbitMQ with AMQP 1.0 on 127.0.0.1:5672,
# for the interop tests (tests/interop/).  Idempotent: safe to run again; a
# node that is already up (and accepts AMQP 1.0) is left alone.
#
#   bash .ci/rabbitmq.sh          install (if needed), configure, start, wait
#   bash .ci/rabbitmq.sh stop     stop the node started by this script
#   bash .ci/rabbitmq.sh status   exit 0 iff AMQP 1.0 connections are accepted
#
# Environment knobs:
#   RABBITMQ_WAIT_SECS   how long to wait for AMQP 1.0 to come up (default 120)
#   RABBITMQ_AMQP_PORT   AMQP listener port on 127.0.0.1 (default 5672)
#
# Everything listens on loopback only: AMQP (0-9-1 and 1.0 share the port),
# epmd (ERL_EPMD_ADDRESS) and the Erlang distribution listener
# (inet_dist_use_interface); no management plugin.  Runs without systemd: the
# node is started in the background through the Debian wrapper, which drops
# privileges to the rabbitmq user.
#
# Debian 12 ships RabbitMQ 3.10.8 (AMQP 1.0 through the rabbitmq_amqp1_0
# plugin, enabled here).  RabbitMQ 4.x has AMQP 1.0 built in; the script
# detects the major version and only enables the plugin on 3.x.
#
# Needs python3 with python-qpid-proton for the readiness probe.
set -euo pipefail

WAIT_SECS=${RABBITMQ_WAIT_SECS:-120}
PORT=${RABBITMQ_AMQP_PORT:-5672}
NODENAME=rabbit@localhost
LOG_DIR=/var/log/rabbitmq
CONSOLE_LOG=$LOG_DIR/console.log

export ERL_EPMD_ADDRESS=127.0.0.1
export RABBITMQ_NODENAME=$NODENAME
# CLI tools (rabbitmqctl, ...) start a hidden Erlang node: keep it on loopback too
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"

say() { echo "[rabbitmq.sh $(date +%H:%M:%S)] $*" >&2; }

# --- readiness probe: a real AMQP 1.0 open/close with Proton ------------------
probe() {
    python3 - "$PORT" <<'EOF' >/dev/null 2>&1
import sys
from proton.handlers import MessagingHandler
from proton.reactor import Container

class Probe(MessagingHandler):
    ok = False
    def on_start(self, event):
        event.container.schedule(5.0, self)
        self.conn = event.container.connect(
            "amqp://127.0.0.1:%s" % sys.argv[1], reconnect=False,
            allowed_mechs="PLAIN", user="guest", password="guest",
            allow_insecure_mechs=True)
    def on_connection_opened(self, event):
        self.ok = True
        event.connection.close()
    def on_connection_closed(self, event):
        event.container.stop()
    def on_transport_error(self, event):
        event.container.stop()
    def on_disconnected(self, event):
        event.container.stop()
    def on_timer_task(self, event):
        event.container.stop()

p = Probe()
Container(p).run()
sys.exit(0 if p.ok else 1)
EOF
}

node_pid() {
    # the beam process of our node (started through the Debian wrapper)
    pgrep -u rabbitmq -f "beam.smp.*-s rabbit boot" | head -n1 || true
}

case "${1:-start}" in
    status)
        if probe; then say "AMQP 1.0 up on 127.0.0.1:$PORT"; exit 0; fi
        say "not accepting AMQP 1.0 on 127.0.0.1:$PORT"; exit 1 ;;
    stop)
        pid=$(node_pid)
        if [ -z "$pid" ]; then say "no running node"; exit 0; fi
        say "stopping node (beam pid $pid)"
        rabbitmqctl -n "$NODENAME" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        epmd -kill >/dev/null 2>&1 || true   # only exits if no node is registered
        exit 0 ;;
    start) ;;
    *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

T0=$(date +%s.%N)

# --- 1. install ----------------------------------------------------------------
if ! command -v rabbitmq-server >/dev/null 2>&1 || [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    say "installing rabbitmq-server (apt)"
    export DEBIAN_FRONTEND=noninteractive
    # keep the package's postinst from starting a node with the default
    # (all-interfaces) configuration
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold rabbitmq-server >/dev/null
    if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
else
    say "rabbitmq-server already installed"
fi
T_INSTALLED=$(date +%s.%N)

VERSION=$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)
VERSION=${VERSION%%-*}          # 3.10.8-1.1+deb12u1 -> 3.10.8
MAJOR=${VERSION%%.*}
say "RabbitMQ version $VERSION"

# --- 2. configure -----------------------------------------------------------------
mkdir -p /etc/rabbitmq "$LOG_DIR"
chown rabbitmq:rabbitmq "$LOG_DIR" 2>/dev/null || true

ENV_CONF=$(cat <<EOF
# written by .ci/rabbitmq.sh -- loopback only
NODENAME=$NODENAME
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=$PORT
# Erlang distribution listener on loopback only
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
# epmd (started by the first Erlang VM) on loopback only
export ERL_EPMD_ADDRESS=127.0.0.1
EOF
)

if [ "$MAJOR" -ge 4 ] 2>/dev/null; then
    AMQP10_CONF="# AMQP 1.0 is built into RabbitMQ 4.x
# SASL ANONYMOUS maps to guest (loopback only, as guest itself)
anonymous_login_user = guest
anonymous_login_pass = guest"
else
    AMQP10_CONF="# AMQP 1.0 plugin (rabbitmq_amqp1_0, 3.x): SASL ANONYMOUS / no SASL -> guest
amqp1_0.default_user = guest
amqp1_0.default_vhost = /
amqp1_0.protocol_strict_mode = false"
fi

RMQ_CONF=$(cat <<EOF
# written by .ci/rabbitmq.sh -- loopback only, no management plugin
listeners.tcp.1 = 127.0.0.1:$PORT
# guest/guest may only log in from localhost (the default, stated explicitly)
loopback_users.guest = true
$AMQP10_CONF
log.file.level = info
log.console = false
EOF
)

changed=0
write_if_changed() {  # path content
    if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
        printf '%s\n' "$2" > "$1"
        chown rabbitmq:rabbitmq "$1" 2>/dev/null || true
        changed=1
    fi
}
write_if_changed /etc/rabbitmq/rabbitmq-env.conf "$ENV_CONF"
write_if_changed /etc/rabbitmq/rabbitmq.conf "$RMQ_CONF"

if [ "$MAJOR" -lt 4 ] 2>/dev/null; then
    if ! grep -q rabbitmq_amqp1_0 /etc/rabbitmq/enabled_plugins 2>/dev/null; then
        say "enabling rabbitmq_amqp1_0 (offline)"
        rabbitmq-plugins enable --offline rabbitmq_amqp1_0 >/dev/null
        changed=1
    fi
fi

# --- 3. start -----------------------------------------------------------------------
pid=$(node_pid)
if [ -n "$pid" ] && [ "$changed" = 1 ]; then
    say "configuration changed: restarting running node (beam pid $pid)"
    rabbitmqctl -n "$NODENAME" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    pid=""
fi

if [ -n "$pid" ] && probe; then
    say "node already running (beam pid $pid) and accepting AMQP 1.0 on 127.0.0.1:$PORT"
    exit 0
fi

if [ -z "$pid" ]; then
    # epmd on loopback before any Erlang VM can start one on all interfaces
    if ! pgrep -x epmd >/dev/null 2>&1; then
        su rabbitmq -s /bin/sh -c "ERL_EPMD_ADDRESS=127.0.0.1 epmd -daemon" || true
    fi
    say "starting node in the background (log: $CONSOLE_LOG, $LOG_DIR/)"
    # the Debian wrapper switches to the rabbitmq user; setsid detaches it
    # from this shell's session so it survives the script
    setsid nohup /usr/sbin/rabbitmq-server >"$CONSOLE_LOG" 2>&1 </dev/null &
fi
T_STARTED=$(date +%s.%N)

# --- 4. wait for AMQP 1.0 -----------------------------------------------------------
deadline=$(( $(date +%s) + WAIT_SECS ))
until probe; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "RabbitMQ did not accept AMQP 1.0 on 127.0.0.1:$PORT within ${WAIT_SECS}s"
        tail -n 30 "$CONSOLE_LOG" >&2 2>/dev/null || true
        tail -n 30 "$LOG_DIR/$NODENAME.log" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 1
done
T_READY=$(date +%s.%N)

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
say "RabbitMQ $VERSION ready on 127.0.0.1:$PORT (AMQP 1.0): install $(secs "$T0" "$T_INSTALLED")s," \
    "start-to-ready $(secs "$T_STARTED" "$T_READY")s, total $(secs "$T0" "$T_READY")s"
