#!/usr/bin/python3
"""MOCK lbadm for mock-director.py (testbed self-check only): `mock-lbadm.py --socket PATH ARGS…`."""
import socket, sys
a = sys.argv[1:]; path = '/run/director.sock'
if a[:1] == ['--socket']: path, a = a[1], a[2:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
s.sendall('\0'.join(a).encode()); s.shutdown(socket.SHUT_WR)
data = b''
while True:
    b = s.recv(65536)
    if not b: break
    data += b
rc, _, out = data.decode().partition('\n'); sys.stdout.write(out); sys.exit(int(rc))
