#!/usr/bin/env python3
"""A small AMQP 1.0 broker on Apache Qpid Proton's Container/reactor API.

Used as an independent, real AMQP 1.0 peer for interop tests of the
eventhubs-proto engine.  Requires python-qpid-proton (tested with 0.40.0).

  * listens on HOST:PORT (default 127.0.0.1, --port 0 = ephemeral) and prints
    "LISTENING <port>" on stdout (flushed) once the socket is bound;
  * SASL mechanisms ANONYMOUS and PLAIN (PLAIN user/password from --user /
    --password, default user/pass; a wrong password gets sasl-outcome auth);
    --no-sasl-required also accepts connections that skip the SASL layer;
  * queues by address: a link on which the peer *sends* (our receiver) with
    target address X appends every message to queue X and accepts it (unsettled
    deliveries get disposition accepted + settled; pre-settled ones are just
    stored).  A link on which the peer *receives* (our sender) with source
    address X is fed from queue X as credit allows (round robin between
    consumers).  If the peer asked for snd-settle-mode settled, deliveries are
    sent pre-settled; otherwise they stay unsettled until the peer settles
    them: accepted/rejected -> removed, released/modified -> put back at the
    head of the queue.  Unsettled deliveries of a link/connection that goes
    away are put back too (in order).
  * messages are stored as the raw bytes of the delivery payload (nothing is
    decoded or re-encoded), so whatever the client encodes comes back byte for
    byte;
  * drain is honoured (credit is consumed/advanced with "drained" when the
    queue is empty);
  * --max-frame-size (default 65536, minimum 512) so small values force
    multi-frame transfers; --max-message-size (default 256 MiB, 0 = no limit)
    is announced on every attach;
  * exits 0 on SIGTERM / SIGINT; connections, links and errors are logged to
    stderr (-v for per-link details, -q for errors only).

Example:
  python3 tests/interop/proton_broker.py --port 0 --max-frame-size 512
"""

import argparse
import collections
import os
import signal
import sys
import time

import proton
from proton import Delivery, Endpoint, Handler, Link, Terminus, Transport
from proton.reactor import Container
from proton._reactor import Acceptor  # not re-exported by proton.reactor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proton_sasl_plain import SaslPlainServer  # noqa: E402

VERBOSE = 1


def log(level, msg):
    if level <= VERBOSE:
        sys.stderr.write("[broker %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
        sys.stderr.flush()


class Terminate(BaseException):
    """Raised from the SIGTERM handler to leave Container.run()."""


class Queue:
    def __init__(self, name):
        self.name = name
        self.messages = collections.deque()   # raw payload bytes
        self.consumers = []                   # sender links
        self.rr = 0
        self.enqueued = 0
        self.dequeued = 0

    def dispatch(self, broker):
        """Hand messages to consumers with credit, round robin."""
        if not self.consumers:
            return
        progress = True
        while self.messages and progress:
            progress = False
            n = len(self.consumers)
            for i in range(n):
                link = self.consumers[(self.rr + i) % n]
                if link.credit > 0 and self.messages:
                    broker.send_to(link, self, self.messages.popleft())
                    progress = True
            self.rr = (self.rr + 1) % max(1, len(self.consumers))
        # nothing left: honour drain requests
        if not self.messages:
            for link in self.consumers:
                if link.drain_mode and link.credit > 0:
                    link.drained()


class LinkState:
    def __init__(self, queue, presettle=False):
        self.queue = queue
        self.presettle = presettle
        self.tag = 0
        self.unsettled = collections.OrderedDict()  # delivery tag -> payload
        self.partial = {}                           # receiving: the delivery in progress
        self.count = 0


class BrokerAcceptor(Acceptor):
    """Acceptor that configures each server Transport (SASL, frame size)
    before it sees any input."""

    def __init__(self, container, host, port, broker):
        self.broker = broker
        super().__init__(container, host, port, None)

    def on_selectable_readable(self, event):
        from proton._io import IO
        from proton._handlers import IOHandler
        from proton._url import Url
        sock, name = IO.accept(self._selectable)
        r = self._reactor
        c = r.connection(self._handler or r.handler)
        c._acceptor = self
        c.url = Url(host=name[0], port=name[1])
        t = Transport(Transport.SERVER)
        self.broker.configure_transport(t, name)
        t.bind(c)
        s = r.selectable(delegate=sock)
        s._transport = t
        t._selectable = s
        IOHandler.update(t, s, r.now)


class Broker(Handler):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.queues = {}
        self.container = None
        self.acceptor = None
        self.sasl = SaslPlainServer(" ".join(args.mechs), args.user, args.password,
                                    on_result=self._sasl_result)
        self.stats = collections.Counter()

    # -- helpers ---------------------------------------------------------
    def _sasl_result(self, mech, authcid, ok):
        if mech == "PLAIN":
            log(0 if not ok else 1, "SASL PLAIN user=%r %s" %
                (authcid.decode(errors="replace"), "OK" if ok else "REJECTED (auth)"))
        else:
            log(1, "SASL %s" % mech)

    def queue(self, name):
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queue(name)
        return q

    def cname(self, conn):
        return getattr(conn, "_bname", None) or "?"

    def configure_transport(self, t, peer):
        t.max_frame_size = self.args.max_frame_size
        if self.args.idle_timeout:
            t.idle_timeout = self.args.idle_timeout
        t.require_auth(not self.args.no_sasl_required)
        s = t.sasl()
        s.allow_insecure_mechs = True
        s.allowed_mechs(" ".join(self.args.mechs))
        self.sasl.install(t)
        self.stats["connections"] += 1
        log(1, "accepted TCP connection #%d from %s:%s" %
            (self.stats["connections"], peer[0], peer[1]))

    # -- container ---------------------------------------------------------
    def on_reactor_init(self, event):
        self.container = event.container
        self.acceptor = BrokerAcceptor(event.container, self.args.host, self.args.port, self)
        port = self.acceptor._selectable._delegate.getsockname()[1]
        log(1, "Proton %s broker listening on %s:%d (max-frame-size %d, mechs %s)" %
            (".".join(map(str, proton.VERSION)), self.args.host, port,
             self.args.max_frame_size, " ".join(self.args.mechs)))
        sys.stdout.write("LISTENING %d\n" % port)
        sys.stdout.flush()

    # -- connection --------------------------------------------------------
    def on_connection_remote_open(self, event):
        c = event.connection
        t = event.transport
        c._bname = "%r from %s:%s" % (c.remote_container, c.url.host, c.url.port)
        user = t.user if t else None
        mech = t.sasl().mech if t else None
        log(1, "connection open: container-id=%r hostname=%r sasl=%s user=%r "
            "remote max-frame-size=%s" %
            (c.remote_container, c.remote_hostname, mech, user,
             t.remote_max_frame_size if t else None))
        if c.state & Endpoint.LOCAL_UNINIT:
            c.container = self.args.container_id
            c.open()

    def on_connection_remote_close(self, event):
        c = event.connection
        cond = c.remote_condition
        if cond:
            log(0, "connection %s closed by peer with error %s: %s" %
                (self.cname(c), cond.name, cond.description))
        else:
            log(1, "connection %s closed by peer" % self.cname(c))
        self._release_connection(c)
        if c.state & Endpoint.LOCAL_ACTIVE:
            c.close()

    def on_session_remote_open(self, event):
        s = event.session
        if s.state & Endpoint.LOCAL_UNINIT:
            s.open()

    def on_session_remote_close(self, event):
        s = event.session
        if s.remote_condition:
            log(0, "session closed by peer with error %s" % s.remote_condition)
        link = s.connection.link_head(0)
        while link:
            if link.session == s:
                self._release_link(link)
            link = link.next(0)
        if s.state & Endpoint.LOCAL_ACTIVE:
            s.close()

    # -- links -------------------------------------------------------------
    def on_link_remote_open(self, event):
        link = event.link
        if not (link.state & Endpoint.LOCAL_UNINIT):
            return
        if link.is_sender:
            # peer receives from queue "source address"
            addr = link.remote_source.address
            if link.remote_source.dynamic:
                addr = "dynamic-%d" % (len(self.queues) + 1)
                link.source.dynamic = True
            link.source.address = addr
            link.target.copy(link.remote_target)
            if link.target.type == Terminus.UNSPECIFIED:
                link.target.type = Terminus.TARGET
            presettle = link.remote_snd_settle_mode == Link.SND_SETTLED
            link.snd_settle_mode = Link.SND_SETTLED if presettle else Link.SND_UNSETTLED
        else:
            addr = link.remote_target.address
            link.target.address = addr
            link.source.copy(link.remote_source)
            # Proton decodes a source without address as "unspecified"
            # (and would then omit it); always echo a source
            if link.source.type == Terminus.UNSPECIFIED:
                link.source.type = Terminus.SOURCE
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.rcv_settle_mode = Link.RCV_FIRST
            presettle = False
        if self.args.max_message_size:
            link.max_message_size = self.args.max_message_size
        if addr is None:
            log(0, "link %r refused: no address" % link.name)
            link.open()
            link.condition = proton.Condition("amqp:not-found", "an address is required")
            link.close()
            return
        q = self.queue(addr)
        link._bstate = LinkState(q, presettle)
        link.open()
        log(1, "link %r attached: peer %s %r (peer snd-settle-mode %d rcv-settle-mode %d)" %
            (link.name, "receives from" if link.is_sender else "sends to", addr,
             link.remote_snd_settle_mode, link.remote_rcv_settle_mode))
        if link.is_sender:
            q.consumers.append(link)
            q.dispatch(self)
        else:
            link.flow(self.args.credit)

    def on_link_remote_close(self, event, closed=True):
        link = event.link
        what = "closed" if closed else "detached (closed=false)"
        if link.remote_condition:
            log(0, "link %r %s by peer with error %s" % (link.name, what, link.remote_condition))
        else:
            log(1, "link %r %s by peer" % (link.name, what))
        self._release_link(link)
        if link.state & Endpoint.LOCAL_ACTIVE:
            if closed:
                link.close()
            else:
                link.detach()

    def on_link_remote_detach(self, event):
        self.on_link_remote_close(event, closed=False)

    def on_link_flow(self, event):
        link = event.link
        st = getattr(link, "_bstate", None)
        if st is None or not link.is_sender:
            return
        st.queue.dispatch(self)
        if link.drain_mode and link.credit > 0 and not st.queue.messages:
            link.drained()

    # -- deliveries ----------------------------------------------------------
    def send_to(self, link, q, payload):
        st = link._bstate
        st.tag += 1
        tag = str(st.tag)
        dlv = link.delivery(tag)
        link.send(payload)
        link.advance()
        q.dequeued += 1
        self.stats["sent"] += 1
        if st.presettle:
            dlv.settle()
        else:
            st.unsettled[tag] = payload

    def on_delivery(self, event):
        dlv = event.delivery
        link = event.link
        st = getattr(link, "_bstate", None)
        if st is None:
            return
        if link.is_receiver:
            self._incoming(link, dlv, st)
        else:
            self._outcome(link, dlv, st)

    def _incoming(self, link, dlv, st):
        # Deliveries on a link arrive one after another, so one buffer per
        # link suffices. (Proton's Python binding decodes dlv.tag as UTF-8,
        # which fails on binary tags, so the tag cannot be the key.)
        if dlv.aborted:
            st.partial.pop("current", None)
            dlv.settle()
            link.flow(1)
            return
        if not dlv.readable:
            return
        buf = st.partial.setdefault("current", bytearray())
        n = dlv.pending
        if n:
            data = link.recv(n)
            if data:
                buf += data
        if dlv.partial:
            return
        del st.partial["current"]
        link.advance()
        st.queue.messages.append(bytes(buf))
        st.queue.enqueued += 1
        st.count += 1
        self.stats["received"] += 1
        if not dlv.settled:
            dlv.update(Delivery.ACCEPTED)
        dlv.settle()
        if link.credit < self.args.credit // 2:
            link.flow(self.args.credit - link.credit)
        st.queue.dispatch(self)

    def _outcome(self, link, dlv, st):
        if not (dlv.updated or dlv.remote_settled):
            return
        state = dlv.remote_state
        payload = st.unsettled.get(dlv.tag)
        if payload is None:
            if dlv.remote_settled:
                dlv.settle()
            return
        if state in (Delivery.RELEASED, Delivery.MODIFIED):
            del st.unsettled[dlv.tag]
            st.queue.messages.appendleft(payload)
            self.stats["requeued"] += 1
            dlv.settle()
            st.queue.dispatch(self)
        elif state in (Delivery.ACCEPTED, Delivery.REJECTED) or dlv.remote_settled:
            if state == Delivery.REJECTED:
                self.stats["rejected"] += 1
                log(0, "delivery %s on %r rejected by peer: %s" %
                    (dlv.tag, link.name, dlv.remote.condition))
            else:
                self.stats["acked"] += 1
            del st.unsettled[dlv.tag]
            dlv.settle()

    def _release_link(self, link):
        st = getattr(link, "_bstate", None)
        if st is None:
            return
        q = st.queue
        if link in q.consumers:
            q.consumers.remove(link)
        if st.unsettled:
            log(1, "link %r gone with %d unsettled deliveries: requeued" %
                (link.name, len(st.unsettled)))
            q.messages.extendleft(reversed(list(st.unsettled.values())))
            self.stats["requeued"] += len(st.unsettled)
            st.unsettled.clear()
            q.dispatch(self)
        link._bstate = None

    def _release_connection(self, conn):
        link = conn.link_head(0)
        while link:
            self._release_link(link)
            link = link.next(0)

    # -- transport -----------------------------------------------------------
    def on_transport_error(self, event):
        t = event.transport
        cond = t.condition
        log(0, "transport error%s: %s" %
            (" on " + self.cname(event.connection) if event.connection else "",
             "%s: %s" % (cond.name, cond.description) if cond else "?"))

    def on_transport_closed(self, event):
        c = event.connection
        if c is not None:
            self._release_connection(c)
            log(1, "TCP connection closed (%s)" % self.cname(c))
        # Proton's global IOHandler unbinds the transport and drops the socket

    def summary(self):
        qs = ", ".join("%s: %d queued, %d in, %d out" %
                       (q.name, len(q.messages), q.enqueued, q.dequeued)
                       for q in self.queues.values())
        return "stats %s; queues: %s" % (dict(self.stats), qs or "none")


def main(argv=None):
    global VERBOSE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5672, help="0 = ephemeral (default 5672)")
    p.add_argument("--max-frame-size", type=int, default=65536,
                   help="advertised max-frame-size (>= 512, default 65536)")
    p.add_argument("--max-message-size", type=int, default=256 * 1024 * 1024,
                   help="max-message-size announced on attach (0 = unlimited)")
    p.add_argument("--idle-timeout", type=float, default=0,
                   help="idle timeout in seconds to announce (0 = none)")
    p.add_argument("--credit", type=int, default=1000,
                   help="credit window granted to each incoming (peer-sending) link")
    p.add_argument("--user", default="user")
    p.add_argument("--password", default="pass")
    p.add_argument("--mechs", nargs="+", default=["PLAIN", "ANONYMOUS"],
                   help="SASL mechanisms offered (default PLAIN ANONYMOUS)")
    p.add_argument("--no-sasl-required", action="store_true",
                   help="also accept clients that skip the SASL layer")
    p.add_argument("--container-id", default="proton-broker")
    p.add_argument("-v", "--verbose", action="count", default=1)
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.max_frame_size < 512:
        p.error("--max-frame-size must be >= 512 (AMQP minimum)")
    VERBOSE = 0 if args.quiet else args.verbose

    def on_signal(signum, frame):
        raise Terminate(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    broker = Broker(args)
    container = Container(broker)
    container.container_id = args.container_id
    try:
        container.run()
    except Terminate as e:
        log(0 if VERBOSE == 0 else 1, "got %s, exiting; %s" % (e, broker.summary()))
        return 0
    log(0, "container stopped unexpectedly; %s" % broker.summary())
    return 1


if __name__ == "__main__":
    sys.exit(main())
