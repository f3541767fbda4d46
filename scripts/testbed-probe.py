#!/usr/bin/env python3
"""Name responders and one-shot clients for the director's network-namespace testbeds.

The seeds' persistence experiments (PPC, PCC, firewall marks) use several services per real
server: web on 80 and 443, telnet on 23, DNS on 53. Each responder below tells the client
which real server answered, like scripts/testbed-httpd.py does for HTTP.

Servers (run on a real server, inside its namespace):
  serve-tcp --name N --port P   accept, send "N\\n", close (the "telnet" banner of the seeds)
  serve-udp --name N --port P   answer every datagram with "N\\n", from the address the
                                datagram was sent to (IP_PKTINFO): in DR that is the VIP held
                                on lo, so the client's connected socket accepts the reply

Clients (run on the client, one exchange, exit 0 and print the answer, else exit 1):
  tcp --dst A --port P [--src S] [--timeout T]   connect from S (any port), read until EOF
  udp --dst A --port P [--src S] [--timeout T]   send one query from S, print the reply

Many connections (the multi-worker tests):
  serve-tcp-ports --name N --ports A-B   like serve-tcp on every port of A..B, one thread
  serve-hold --port P [--backlog B]      accept every connection and keep it open (discarding
                                         what arrives) until the client closes it
  tcp-many --dst A --ports A-B --src S1,S2,... --count N [--duration D] [--timeout T]
      N exchanges with serve-tcp(-ports) one after the other, exchange i to port A + i mod
      (B-A+1) from source S(i mod k) (any port); stops early after D seconds. Prints one line
      per exchange, "ok SRC PORT ANSWER" or "err SRC PORT REASON", then
      "done OK ERR"; exit 0 (the caller judges the lines)
  hold --dst A --port P --src S1,S2,... --count N [--window W] [--timeout T] [--hold-secs H]
      opens N connections to A:P, connection i from source S(i mod k), at most W handshakes
      in flight; prints "established E failed F SECONDS" once every connection is settled
      (or after T seconds), then keeps them all open for H seconds (or until killed)
Both hold modes raise their open-files limit as far as the hard limit allows.

Standard library only.
"""
import argparse
import errno
import resource
import selectors
import socket
import struct
import sys
import threading
import time

SOL_IP = getattr(socket, "SOL_IP", 0)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


def serve_tcp(name, bind, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(128)
    reply = (name + "\n").encode()

    def handle(conn):
        try:
            conn.settimeout(5)
            conn.sendall(reply)
            conn.shutdown(socket.SHUT_WR)
            # Wait for the client's FIN (or a short timeout) so the server never resets.
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass
        except OSError:
            pass
        finally:
            conn.close()

    print(f"testbed-probe tcp {name} listening on {bind}:{port}", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def serve_udp(name, bind, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(SOL_IP, IP_PKTINFO, 1)
    s.bind((bind, port))
    reply = (name + "\n").encode()
    print(f"testbed-probe udp {name} listening on {bind}:{port}", flush=True)
    while True:
        data, anc, _flags, peer = s.recvmsg(65535, socket.CMSG_SPACE(12))
        local = None
        for level, typ, cdata in anc:
            if level == SOL_IP and typ == IP_PKTINFO and len(cdata) >= 12:
                # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                local = cdata[8:12]  # the datagram's destination address
        if local is not None:
            pkt = struct.pack("I4s4s", 0, local, b"\0\0\0\0")
            s.sendmsg([reply], [(SOL_IP, IP_PKTINFO, pkt)], 0, peer)
        else:
            s.sendto(reply, peer)


def client_tcp(dst, port, src, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((dst, port))
    chunks = []
    while True:
        b = s.recv(4096)
        if not b:
            break
        chunks.append(b)
    s.close()
    return b"".join(chunks).decode(errors="replace").strip()


def client_udp(dst, port, src, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect((dst, port))
    s.send(b"which server?\n")
    data = s.recv(65535)
    s.close()
    return data.decode(errors="replace").strip()


def raise_nofile(need):
    """Raises the open-files limit to at least `need` (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return
        except (ValueError, OSError):
            need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def port_range(text):
    a, _, b = text.partition("-")
    a = int(a)
    b = int(b) if b else a
    if not (0 < a <= b < 65536):
        raise ValueError(f"bad port range {text!r}")
    return list(range(a, b + 1))


def serve_tcp_ports(name, bind, ports):
    """serve-tcp on many ports with one selector: send the name, half-close, close on EOF."""
    raise_nofile(len(ports) + 4096)
    sel = selectors.DefaultSelector()
    for p in ports:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((bind, p))
        srv.listen(1024)
        srv.setblocking(False)
        sel.register(srv, selectors.EVENT_READ, "listen")
    reply = (name + "\n").encode()
    print(f"testbed-probe tcp-ports {name} listening on {bind}:{ports[0]}-{ports[-1]}", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data == "listen":
                try:
                    conn, _ = s.accept()
                except OSError:
                    continue
                try:
                    conn.setblocking(False)
                    conn.send(reply)
                    conn.shutdown(socket.SHUT_WR)
                    sel.register(conn, selectors.EVENT_READ, "conn")
                except OSError:
                    conn.close()
            else:
                try:
                    more = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    more = b""
                if not more:
                    sel.unregister(s)
                    s.close()


def serve_hold(bind, port, backlog):
    """Accepts every connection and holds it open until the peer closes it."""
    raise_nofile(65536)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((bind, port))
    srv.listen(backlog)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, None)
    print(f"testbed-probe hold listening on {bind}:{port} backlog {backlog}", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is srv:
                for _ in range(256):
                    try:
                        conn, _ = srv.accept()
                    except OSError:
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, 1)
            else:
                try:
                    more = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    more = b""
                if not more:
                    sel.unregister(s)
                    s.close()


def client_tcp_many(dst, ports, srcs, count, duration, timeout):
    ok = err = 0
    deadline = time.monotonic() + duration if duration else None
    for i in range(count):
        if deadline is not None and time.monotonic() >= deadline:
            break
        port = ports[i % len(ports)]
        src = srcs[i % len(srcs)] if srcs else ""
        try:
            answer = client_tcp(dst, port, src or None, timeout)
            if not answer:
                raise OSError("empty answer")
            print(f"ok {src or '-'} {port} {answer}", flush=True)
            ok += 1
        except (OSError, socket.timeout) as e:
            print(f"err {src or '-'} {port} {e}".replace("\n", " "), flush=True)
            err += 1
    print(f"done {ok} {err}", flush=True)


def client_hold(dst, port, srcs, count, window, timeout, hold_secs):
    """Opens `count` connections (at most `window` handshakes pending) and holds them."""
    raise_nofile(count + 1024)
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    established = []
    failed = 0
    pending = 0
    nxt = 0
    deadline = t0 + timeout
    while (nxt < count or pending) and time.monotonic() < deadline:
        while nxt < count and pending < window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                if srcs:
                    s.bind((srcs[nxt % len(srcs)], 0))
                e = s.connect_ex((dst, port))
            except OSError as ex:
                e = ex.errno
            nxt += 1
            if e in (0, errno.EINPROGRESS):
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            else:
                s.close()
                failed += 1
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                established.append(s)
            else:
                s.close()
                failed += 1
    failed += pending + (count - nxt)
    print(f"established {len(established)} failed {failed} {time.monotonic() - t0:.2f}", flush=True)
    end = time.monotonic() + hold_secs
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    for s in established:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "mode",
        choices=["serve-tcp", "serve-udp", "tcp", "udp", "serve-tcp-ports", "serve-hold", "tcp-many", "hold"],
    )
    ap.add_argument("--name", default="server")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int)
    ap.add_argument("--ports", help="A-B (serve-tcp-ports, tcp-many)")
    ap.add_argument("--dst")
    ap.add_argument("--src", help="source address; tcp-many and hold: a comma-separated list")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--duration", type=float, default=0.0)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--hold-secs", type=float, default=60.0)
    ap.add_argument("--backlog", type=int, default=8192)
    a = ap.parse_args()
    srcs = [x for x in (a.src or "").split(",") if x]
    if a.mode in ("serve-tcp", "serve-udp", "tcp", "udp", "serve-hold", "hold") and a.port is None:
        ap.error(f"{a.mode} needs --port")
    if a.mode in ("serve-tcp-ports", "tcp-many") and not a.ports:
        ap.error(f"{a.mode} needs --ports")
    try:
        if a.mode == "serve-tcp-ports":
            serve_tcp_ports(a.name, a.bind, port_range(a.ports))
        elif a.mode == "serve-hold":
            serve_hold(a.bind, a.port, a.backlog)
        elif a.mode == "tcp-many":
            client_tcp_many(a.dst, port_range(a.ports), srcs, a.count, a.duration, a.timeout)
        elif a.mode == "hold":
            client_hold(a.dst, a.port, srcs, a.count, a.window, a.timeout, a.hold_secs)
        elif a.mode == "serve-tcp":
            serve_tcp(a.name, a.bind, a.port)
        elif a.mode == "serve-udp":
            serve_udp(a.name, a.bind, a.port)
        elif a.mode == "tcp":
            print(client_tcp(a.dst, a.port, a.src, a.timeout))
        else:
            print(client_udp(a.dst, a.port, a.src, a.timeout))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"testbed-probe {a.mode}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
