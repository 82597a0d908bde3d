#!/usr/bin/env python3
"""AMQP 1.0 round-trip client on Apache Qpid Proton (python-qpid-proton).

Sends --count messages of --size bytes to --address, then receives them back
from the same address and checks every body and the order.  Plain, standard
AMQP 1.0 only (SASL ANONYMOUS/PLAIN, one connection, one session, one sender
link and one receiver link, data-section bodies), so it can be pointed at any
broker: proton_broker.py, RabbitMQ, or the eventhubs-proto test broker.

Message i (0-based) has
  * message-id   "<run>-<i>"  (string)
  * body         one data section of exactly --size bytes (at least the
                 prefix): b"<i>:<run>:" followed by a deterministic filler
                 pattern that depends on i, so corruption, truncation and
                 reordering are all detected.
<run> is a random 8-hex-digit run id (or --run-id); messages left in the
queue by an earlier run (other run id) are consumed, counted as "stale" and
ignored.  --mode send / --mode receive run only one half (use the same
--run-id for both).

Sending: with --settled the sender link asks for snd-settle-mode settled and
every transfer is pre-settled; otherwise (default) deliveries are unsettled
and the client waits until the peer has accepted every one of them before it
starts receiving (any other outcome is an error).  Receiving: the receiver
link uses the same mode (--settled asks the peer to pre-settle; otherwise
every message is accepted and settled by the client) unless --recv-settled /
--recv-unsettled says otherwise.

Prints one line of JSON on stdout, e.g.
  {"sent":10,"received":10,"accepted":10,"ok":true, ...timings...}
and exits 0 on success, 1 on a failed check or peer error, 2 on timeout.
Diagnostics go to stderr.

Example:
  python3 tests/interop/proton_client.py --port 5672 --sasl PLAIN \\
      --user user --password pass --address q1 --count 1000 --size 100
"""

import argparse
import json
import os
import sys
import time

from proton import Delivery, Endpoint, Message
from proton.handlers import MessagingHandler
from proton.reactor import AtLeastOnce, AtMostOnce, Container


def log(msg):
    sys.stderr.write("[client %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Bodies:
    def __init__(self, run, size):
        self.run = run.encode()
        self.size = size
        self.pattern = bytes(range(256)) * (size // 256 + 2)

    def make(self, i):
        prefix = b"%d:%s:" % (i, self.run)
        n = max(0, self.size - len(prefix))
        off = (i * 7) % 256
        return prefix + self.pattern[off:off + n]

    def parse(self, body):
        """-> (index, run) or (None, None)"""
        try:
            idx, run, _ = bytes(body[:64]).split(b":", 2)
            return int(idx), run
        except Exception:
            return None, None


class RoundTrip(MessagingHandler):
    def __init__(self, args):
        super().__init__(prefetch=0, auto_accept=False, auto_settle=True)
        self.args = args
        self.run = args.run_id or os.urandom(4).hex()
        self.bodies = Bodies(self.run, args.size)
        self.recv_settled = args.settled if args.recv_settled is None else args.recv_settled
        self.credit = args.credit or max(1, min(1000, (8 << 20) // max(1, args.size)))
        self.sent = 0
        self.accepted = 0
        self.received = 0
        self.stale = 0
        self.errors = []
        self.conn = None
        self.sender = None
        self.receiver = None
        self.done = False
        self.timed_out = False
        self.t0 = time.monotonic()
        self.t_open = self.t_sent = self.t_acked = self.t_recv_start = self.t_recv_done = None
        self.container = None
        self.timer = None

    # -- helpers -------------------------------------------------------------
    def fail(self, msg):
        log("ERROR: " + msg)
        self.errors.append(msg)
        self.finish()

    def finish(self):
        if self.done:
            return
        self.done = True
        if self.timer:
            self.timer.cancel()
        if self.conn is not None and self.conn.state & Endpoint.LOCAL_ACTIVE:
            self.conn.close()
        # give the close a moment, then stop hard
        self.container.schedule(2.0, _Stopper(self.container))

    # -- container -------------------------------------------------------------
    def on_start(self, event):
        a = self.args
        self.container = event.container
        self.timer = event.container.schedule(a.timeout, _Timeout(self))
        url = "amqp://%s:%d" % (a.host, a.port)
        kw = dict(reconnect=False, container_id=a.container_id)
        if a.sasl == "NONE":
            kw["sasl_enabled"] = False
        else:
            kw["sasl_enabled"] = True
            kw["allowed_mechs"] = a.sasl
            kw["allow_insecure_mechs"] = True
            if a.sasl == "PLAIN":
                kw["user"] = a.user
                kw["password"] = a.password
        if a.max_frame_size:
            kw["max_frame_size"] = a.max_frame_size
        if a.idle_timeout:
            kw["heartbeat"] = a.idle_timeout
        if a.hostname:
            kw["virtual_host"] = a.hostname
        log("connecting to %s sasl=%s address=%r count=%d size=%d %s run=%s" %
            (url, a.sasl, a.address, a.count, a.size,
             "pre-settled" if a.settled else "unsettled", self.run))
        self.conn = event.container.connect(url, **kw)

    def on_connection_opened(self, event):
        self.t_open = time.monotonic()
        t = event.transport
        log("connection open: remote container-id=%r, remote max-frame-size=%s, "
            "remote idle-timeout=%s" % (event.connection.remote_container,
                                        t.remote_max_frame_size if t else "?",
                                        t.remote_idle_timeout if t else "?"))
        if self.args.mode in ("both", "send") and self.args.count > 0:
            opts = AtMostOnce() if self.args.settled else AtLeastOnce()
            self.sender = event.container.create_sender(
                self.conn, self.args.address, name="sender-" + self.run, options=opts)
        else:
            self.start_receiving(event.container)

    def start_receiving(self, container):
        if self.receiver is not None:
            return
        if self.args.mode == "send" or self.args.count == 0:
            self.finish()
            return
        self.t_recv_start = time.monotonic()
        opts = AtMostOnce() if self.recv_settled else AtLeastOnce()
        self.receiver = container.create_receiver(
            self.conn, self.args.address, name="receiver-" + self.run, options=opts)
        self.receiver.flow(self.credit)

    # -- sending -------------------------------------------------------------
    def on_link_opened(self, event):
        link = event.link
        log("link %r attached (%s): remote max-message-size=%s remote snd-settle-mode=%s "
            "rcv-settle-mode=%s" % (link.name, "sender" if link.is_sender else "receiver",
                                    link.remote_max_message_size, link.remote_snd_settle_mode,
                                    link.remote_rcv_settle_mode))

    def on_sendable(self, event):
        s = event.sender
        if s != self.sender:
            return
        while s.credit > 0 and self.sent < self.args.count:
            m = Message(body=self.bodies.make(self.sent), inferred=True,
                        id="%s-%d" % (self.run, self.sent))
            s.send(m)
            self.sent += 1
        if self.sent == self.args.count and self.t_sent is None:
            self.t_sent = time.monotonic()
            if self.args.settled:
                self.t_acked = self.t_sent
                self.start_receiving(event.container)

    def on_accepted(self, event):
        if event.link != self.sender:
            return
        self.accepted += 1
        if self.accepted == self.args.count and not self.args.settled:
            self.t_acked = time.monotonic()
            self.start_receiving(event.container)

    def on_rejected(self, event):
        if event.link == self.sender:
            self.fail("delivery %r rejected: %s" % (event.delivery.tag,
                                                     event.delivery.remote.condition))

    def on_released(self, event):
        if event.link == self.sender:
            st = event.delivery.remote_state
            self.fail("delivery %r %s by peer" % (
                event.delivery.tag, "modified" if st == Delivery.MODIFIED else "released"))

    def on_settled(self, event):
        # settled by the peer without an outcome we know of
        dlv = event.delivery
        if event.link == self.sender and dlv.remote_state not in (
                Delivery.ACCEPTED, Delivery.REJECTED, Delivery.RELEASED, Delivery.MODIFIED):
            self.fail("delivery %r settled by peer with state %r" % (dlv.tag, dlv.remote_state))

    # -- receiving -------------------------------------------------------------
    def on_message(self, event):
        if event.receiver != self.receiver:
            return
        dlv = event.delivery
        body = event.message.body
        idx, run = self.bodies.parse(body) if isinstance(body, (bytes, memoryview)) else (None, None)
        if run is not None and run != self.bodies.run:
            self.stale += 1
        elif idx is None:
            self.fail("message %d: unexpected body %r" % (self.received, repr(body)[:80]))
        elif idx != self.received:
            self.fail("order: expected message %d, got %d" % (self.received, idx))
        elif bytes(body) != self.bodies.make(idx):
            self.fail("message %d: body mismatch (len %d, expected %d)" %
                      (idx, len(body), len(self.bodies.make(idx))))
        else:
            self.received += 1
        if not dlv.settled:
            self.accept(dlv)
        else:
            dlv.settle()  # pre-settled by the peer: just free it locally
        if self.receiver.credit < self.credit // 2:
            self.receiver.flow(self.credit - self.receiver.credit)
        if self.received == self.args.count and not self.done:
            self.t_recv_done = time.monotonic()
            self.finish()

    # -- errors ----------------------------------------------------------------
    def on_transport_error(self, event):
        cond = event.transport.condition
        if not self.done or not self.errors:
            self.errors.append("transport: %s" % (
                "%s: %s" % (cond.name, cond.description) if cond else "closed"))
            log("ERROR: " + self.errors[-1])
        self.done = True
        if self.timer:
            self.timer.cancel()
        event.container.stop()

    def on_connection_error(self, event):
        self.fail("connection closed by peer: %s" % event.connection.remote_condition)

    def on_session_error(self, event):
        self.fail("session closed by peer: %s" % event.session.remote_condition)

    def on_link_error(self, event):
        self.fail("link %r closed by peer: %s" % (event.link.name, event.link.remote_condition))

    def on_connection_closed(self, event):
        if not self.done:
            self.fail("connection closed by peer")
        event.container.stop()

    def on_disconnected(self, event):
        if not self.done:
            cond = event.transport.condition if event.transport else None
            self.fail("disconnected" + (": %s: %s" % (cond.name, cond.description) if cond else ""))
        event.container.stop()

    def summary(self):
        def dt(a, b):
            return round(b - a, 3) if a is not None and b is not None else None
        ok = (not self.errors and not self.timed_out and
              self.sent == (self.args.count if self.args.mode != "receive" else 0) and
              (self.args.mode == "send" or self.received == self.args.count) and
              (self.args.settled or self.args.mode == "receive" or
               self.accepted == self.args.count))
        send_s = dt(self.t_open, self.t_acked)
        recv_s = dt(self.t_recv_start, self.t_recv_done)
        out = {"sent": self.sent, "received": self.received, "accepted": self.accepted,
               "ok": ok, "stale": self.stale, "size": self.args.size,
               "settled": self.args.settled, "recv_settled": self.recv_settled,
               "address": self.args.address, "connect_s": dt(self.t0, self.t_open),
               "send_s": send_s, "recv_s": recv_s,
               "send_msgs_per_s": round(self.sent / send_s) if send_s else None,
               "recv_msgs_per_s": round(self.received / recv_s) if recv_s else None,
               "total_s": round(time.monotonic() - self.t0, 3)}
        if self.timed_out:
            out["error"] = "timeout after %ss" % self.args.timeout
        elif self.errors:
            out["error"] = self.errors[0]
        return out


class _Timeout:
    def __init__(self, h):
        self.h = h

    def on_timer_task(self, event):
        log("ERROR: timeout after %ss (sent %d, accepted %d, received %d)" %
            (self.h.args.timeout, self.h.sent, self.h.accepted, self.h.received))
        self.h.timed_out = True
        self.h.timer = None
        self.h.finish()


class _Stopper:
    def __init__(self, c):
        self.c = c

    def on_timer_task(self, event):
        self.c.stop()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5672)
    p.add_argument("--sasl", default="ANONYMOUS", choices=["ANONYMOUS", "PLAIN", "NONE"],
                   help="SASL mechanism (NONE = no SASL layer)")
    p.add_argument("--user", default="user")
    p.add_argument("--password", default="pass")
    p.add_argument("--hostname", default=None,
                   help="hostname field of the open frame (default: --host)")
    p.add_argument("--address", default="interop")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--size", type=int, default=64, help="body size in bytes")
    p.add_argument("--settled", action="store_true", help="send pre-settled")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--recv-settled", dest="recv_settled", action="store_true", default=None,
                   help="ask the peer to pre-settle what we receive (default: as --settled)")
    g.add_argument("--recv-unsettled", dest="recv_settled", action="store_false",
                   help="receive unsettled and accept each message")
    p.add_argument("--mode", default="both", choices=["both", "send", "receive"],
                   help="send then receive (default), or only one half; give both halves "
                        "the same --run-id")
    p.add_argument("--run-id", default=None,
                   help="run id embedded in bodies (default: random); messages with "
                        "another run id are counted as stale and skipped")
    p.add_argument("--credit", type=int, default=0,
                   help="receiver credit window (default min(1000, 8 MiB / size))")
    p.add_argument("--max-frame-size", type=int, default=0,
                   help="max-frame-size to announce (default: Proton's, 4294967295)")
    p.add_argument("--idle-timeout", type=float, default=0,
                   help="idle timeout (seconds) to announce; default none")
    p.add_argument("--container-id", default=None)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args(argv)

    h = RoundTrip(args)
    c = Container(h)
    try:
        c.run()
    except Exception as e:  # a handler raised
        h.errors.append("exception: %r" % (e,))
        log("ERROR: %r" % (e,))
    out = h.summary()
    sys.stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    if out["ok"]:
        return 0
    return 2 if h.timed_out else 1


if __name__ == "__main__":
    sys.exit(main())
