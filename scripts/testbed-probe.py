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

Standard library only.
"""
import argparse
import socket
import struct
import sys
import threading

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["serve-tcp", "serve-udp", "tcp", "udp"])
    ap.add_argument("--name", default="server")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dst")
    ap.add_argument("--src")
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    try:
        if a.mode == "serve-tcp":
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
