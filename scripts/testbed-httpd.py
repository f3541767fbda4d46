#!/usr/bin/env python3
"""Tiny HTTP server for the director's network-namespace testbeds (demo.sh and the Rust tests).

It runs on a real server inside its namespace and tells the client which server answered:

  GET  <any path>   -> 200, body "<name>\n"
  POST <any path>   -> 200, body "<name> <sha256-hex-of-request-body> <body-length>\n"
                       (the upload sink: the client compares the digest with its own to prove
                       that every byte crossed the director intact)
  GET  /bytes/<N>   -> 200, N bytes of a deterministic pattern (for download tests), with the
                       header X-Sha256 giving their digest

Bind it to 0.0.0.0 so that it accepts connections addressed to the VIP held on `lo` (DR).
Responses carry "Connection: close": one TCP connection per request, so the load balancer
schedules every request anew. Standard library only; quiet unless --verbose.
"""
import argparse
import hashlib
import http.server
import sys

CHUNK = 64 * 1024
MAX_BYTES = 256 * 1024 * 1024  # bound on /bytes/<N> and on accepted uploads


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so that "Expect: 100-continue" from curl is answered at once; every response
    # still closes the connection.
    protocol_version = "HTTP/1.1"
    server_name_label = "server"
    verbose = False

    def _reply(self, body, extra_headers=()):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def do_GET(self):
        parts = self.path.split("/")
        if len(parts) == 3 and parts[1] == "bytes" and parts[2].isdigit():
            n = min(int(parts[2]), MAX_BYTES)
            pattern = bytes(range(256))
            body = (pattern * (n // 256 + 1))[:n]
            self._reply(body, [("X-Sha256", hashlib.sha256(body).hexdigest())])
            return
        self._reply((self.server_name_label + "\n").encode())

    do_HEAD = do_GET

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BYTES:
            self.send_error(413)
            return
        digest = hashlib.sha256()
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                break  # client went away: the digest then covers what arrived
            digest.update(chunk)
            remaining -= len(chunk)
        got = length - remaining
        self._reply(f"{self.server_name_label} {digest.hexdigest()} {got}\n".encode())

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="name returned to clients (e.g. rs1)")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    Handler.server_name_label = args.name
    Handler.verbose = args.verbose
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    http.server.ThreadingHTTPServer.daemon_threads = True
    srv = http.server.ThreadingHTTPServer((args.bind, args.port), Handler)
    print(f"testbed-httpd {args.name} listening on {args.bind}:{args.port}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
