#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (fuzz/corpus/TARGET/*).

Run from the repository root: python3 fuzz/make_seeds.py. The engine's input format is
described in fuzz/src/engine.rs: a variant byte, then records (control byte; 10 structured
bytes, or 0x80|… with a length byte and raw bytes).
"""
import os, re, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# --- engine -------------------------------------------------------------------------------
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08

def rec(c, kind, flags=0, client=1, cport=1, sel=0, dsel=0, ttl=64, plen=0, coff=0, cval=0):
    return bytes([c, kind, flags, client, cport, sel, dsel, ttl, plen, coff, cval])

def raw(c, data):
    return bytes([0x80 | c, len(data)]) + data

END = 0x10  # end of burst

# 1. A TCP connection's life to VIP:80, a ping, an ARP request.
s = bytes([0])
s += rec(END, 0, SYN) + rec(END | 2, 0, ACK, plen=10) + rec(END, 0, ACK | PSH, plen=100)
s += rec(END, 0, FIN | ACK) + rec(END, 6) + rec(END, 8, sel=0x10)
put("engine", "handshake", s)

# 2. Persistence: two clients of one /24 to VIP:443, a second connection, an ICMP error
#    about the first, then time passes (expiry).
s = bytes([0])
for client in (1, 2):
    s += rec(0, 0, SYN, client=client, cport=5, dsel=3) + rec(END, 0, ACK, client=client, cport=5, dsel=3, plen=20)
s += rec(END, 0, SYN, client=1, cport=6, dsel=3) + rec(END, 7, 3, client=1, cport=5, dsel=3)
s += rec(END | 0x40 | 0x0e, 0, ACK, client=1, cport=5, dsel=3)
put("engine", "persistence", s)

# 3. Every service kind and odd frames: UDP 53, port-0 VIP, fwmark ports, a fragment, a VLAN
#    tag, IP options, TTL 1, a big DF packet, garbage.
s = bytes([0])
s += rec(0, 4, dsel=4) + rec(0, 0, SYN, sel=3, dsel=6) + rec(0, 0, SYN, sel=4, dsel=5 | 0x18)
s += rec(0, 11, SYN) + rec(0, 0, SYN, sel=0x20) + rec(0, 0, SYN, sel=0x40) + rec(END, 0, SYN, ttl=1)
s += rec(0, 0, ACK, plen=0xff) + rec(1, 0, SYN, sel=6) + rec(END, 10, 47)
s += raw(0, bytes(range(60))) + raw(1, b"\xff" * 14) + raw(0, b"") + rec(END, 9, client=3)
put("engine", "services", s)

# 4. A flood: more SYNs than the 64-entry table holds, then the clients' ACKs (eviction),
#    with sloppy_tcp, drop_entry, secure_tcp and conn_reuse_mode 2 (variant 0x39).
s = bytes([0x39])
for i in range(80):
    s += rec(END if i % 16 == 15 else 0, 0, SYN, client=i & 0x1f, cport=i)
s += rec(END | 0x0e, 0, ACK)
for i in range(80):
    s += rec(0, 0, ACK, client=i & 0x1f, cport=i, plen=5)
s += rec(END, 0, RST)
put("engine", "flood", s)

# 5. Quiesced servers and expire_nodest_conn / expire_quiescent_template (variant 0xc2).
s = bytes([0xc2]) + rec(END, 0, SYN, dsel=3) + rec(END, 0, SYN) + rec(END | 0x4e, 0, SYN, cport=2, dsel=3)
put("engine", "quiesced", s)

# --- proto --------------------------------------------------------------------------------
doc = open(os.path.join(os.path.dirname(ROOT), "..", "docs", "protocol.md")).read()
reqs = [l[2:].encode() for l in doc.splitlines() if l.startswith("→ ")]
def framed(bodies):
    return b"".join(struct.pack(">I", len(b)) + b for b in bodies)
put("proto", "doc-examples", framed(reqs))
put("proto", "transaction", framed([r for r in reqs if b"Stage" in r or b"Commit" in r]))
put("proto", "listings", framed([b'{"v":1,"op":"SysctlShow"}', b'{"v":1,"op":"LinkShow"}', b'{"v":1,"op":"ConfigShow"}', b'{"v":1,"op":{"Ipvs":{"List":{"service":null,"numeric":true,"connections":true,"stats":false,"rate":false,"thresholds":false,"persistent_conn":false,"exact":false,"sort":false}}}}']))
put("proto", "truncated", struct.pack(">I", 100) + b'{"v":1,"op":')
put("proto", "bad-version", framed([b'{"v":9,"op":"SysctlShow"}', b'[]', b'{"op":"SysctlShow"}']))

# --- ipvsadm ------------------------------------------------------------------------------
for name, line in [
    ("add-service", "-A -t 198.51.100.100:80 -s rr -p 600 -M 255.255.255.0"),
    ("add-server", "-a -t 198.51.100.100:80 -r 198.51.100.11:80 -g -w 3 -x 100 -y 50"),
    ("fwmark", "-A -f 10 -s wlc -p"),
    ("list", "-L -n -c --stats --exact"),
    ("set", "--set 900 120 300"),
    ("restore", "-A -t 10.0.0.1:80 -s wrr\n-a -t 10.0.0.1:80 -r 10.0.0.11 -g -w 2\n-D -u 10.0.0.1:53\n-E -f 3 -s sh -b flag-1,flag-2\n-C\n"),
]:
    put("ipvsadm", name, line)

# --- iptables -----------------------------------------------------------------------------
for name, line in [
    ("mark-append", "-t mangle -A PREROUTING -d 198.51.100.100 -p tcp --dport 80 -j MARK --set-mark 10"),
    ("mark-insert", "-t mangle -I PREROUTING 1 -i dpdk0 -d 198.51.100.0/24 -p udp --dport 5000:5100 -j MARK --set-mark 0x20"),
    ("list", "-t mangle -L -n -v --line-numbers"),
    ("lbadm-mark", "add -i dpdk1 -d 10.0.0.1 --set-mark 3"),
]:
    put("iptables", name, line)

# --- config_file --------------------------------------------------------------------------
put("config_file", "saved", """# lbadm save
addr add 198.51.100.2/24 dev dpdk0
addr add 198.51.100.100/32 dev dpdk0
iptables -t mangle -A PREROUTING -d 198.51.100.100/32 -p tcp -m tcp --dport 443 -j MARK --set-mark 10
sysctl -w net.ipv4.vs.expire_nodest_conn=1
sysctl -w net.ipv4.vs.drop_entry=1
--set 900 120 300
-A -t 198.51.100.100:80 -s rr
-a -t 198.51.100.100:80 -r 198.51.100.11:80 -g -w 1
-A -f 10 -s wlc -p 600
-a -f 10 -r 198.51.100.12:0 -g -w 2
""")
put("config_file", "truncated", "addr add 198.51.100.2/24 dev dpdk0\n-A -t 198.51.100.100:80 -s r")
put("config_file", "bad-line", "-A -t 10.0.0.1:80\n-a -t 10.0.0.9:80 -r 10.0.0.11\n")
put("config_file", "comments", "\n# nothing\n   \n-A -u 10.0.0.1:53 -s sh\n")

# --- keepalived_conf ----------------------------------------------------------------------
# The repository's keepalived.conf files (the documented example and keepalived's own DR
# samples adapted for the tests), then small files for the corners: groups and ranges,
# every checker, include (in the target `include self…` is the input itself), errors.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for src, name in [
    ("docs/examples/health.keepalived.conf", "health-example"),
    ("control/tests/data/keepalived/keepalived.conf.sample.dr", "sample-dr"),
    ("control/tests/data/keepalived/keepalived.conf.fwmark.dr", "fwmark-dr"),
]:
    with open(os.path.join(REPO, src), "rb") as f:
        put("keepalived_conf", name, f.read())
put("keepalived_conf", "group", """global_defs { router_id LVS1 }
virtual_server_group web {
  192.0.2.10-12 80
  fwmark 7
}
virtual_server group web {
  delay_loop 3
  lb_algo wrr
  lb_kind DR
  persistence_timeout 600
  persistence_granularity 255.255.255.0
  protocol TCP
  quorum 2
  hysteresis 1
  sorry_server 10.0.0.99 80
  real_server 10.0.0.11 80 { weight 2 TCP_CHECK { connect_timeout 3 connect_port 80 } }
  real_server 10.0.0.12 80 {
    weight 0
    inhibit_on_failure
    HTTP_GET { url { path /health status_code 200-299 digest 9b3a0c85a887a256d6939da88aabd8cd } retry 2 delay_before_retry 1 }
  }
  real_server 10.0.0.13 80 { MISC_CHECK { misc_path "/bin/true" misc_timeout 2 misc_dynamic } }
  real_server 10.0.0.14 80 { SSL_GET { url { path / } } }
}
""")
put("keepalived_conf", "include", "include other.conf\ninclude self\nvirtual_server fwmark 3 { lb_kind DR real_server 10.0.0.5 0 { } }\n")
put("keepalived_conf", "nat-refused", "virtual_server 10.0.0.1 80 {\n  lb_kind NAT\n  real_server 10.0.0.2 8080 {}\n}\n")
put("keepalived_conf", "unbalanced", "virtual_server 10.0.0.1 80 { lb_kind DR\n real_server 10.0.0.2 80 { weight 70000\n")
put("keepalived_conf", "vrrp-only", "! comment\nvrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n  virtual_ipaddress { 192.0.2.10/24 }\n}\n")

# --- sync ---------------------------------------------------------------------------------
# One byte of syncid filter for the backup, then an IPVS sync datagram (version 1, the
# kernel's struct layout: ip_vs_sync_mesg header, ip_vs_sync_v4/v6 entries, options).
import socket, struct

def ip4(a):
    return socket.inet_aton(a)

def v4(proto, flags, state, c, cp, v, vp, d, dp, fwmark=0, timeout=900, opts=b""):
    body = struct.pack("!IHHHHII", flags, state, cp, vp, dp, fwmark, timeout) + ip4(c) + ip4(v) + ip4(d)
    size = 4 + len(body) + len(opts)
    e = struct.pack("!BBH", 0, proto, size) + body + opts
    return e + b"\0" * (-len(e) % 4)

def v6(proto, flags, state, c, cp, v, vp, d, dp):
    a = lambda s: socket.inet_pton(socket.AF_INET6, s)
    body = struct.pack("!IHHHHII", flags, state, cp, vp, dp, 0, 120) + a(c) + a(v) + a(d)
    return struct.pack("!BBH", 1, proto, 4 + len(body)) + body

def mesg(syncid, entries):
    payload = b"".join(entries)
    return struct.pack("!BBHBBH", 0, syncid, 8 + len(payload), len(entries), 1, 0) + payload

DR, NOOUTPUT, TEMPLATE, INACTIVE = 0x0003, 0x0200, 0x1000, 0x0100
conn = v4(6, DR | NOOUTPUT, 1, "203.0.113.1", 40000, "198.51.100.100", 80, "10.0.0.11", 80)
tmpl = v4(0, DR | NOOUTPUT | TEMPLATE | INACTIVE, 0, "203.0.113.0", 0, "0.0.0.10", 0, "10.0.0.12", 0, fwmark=10, timeout=600)
seq = bytes([1, 24]) + bytes(range(24))
pe = bytes([2, 4]) + b"\x01\x02\x03\x04" + bytes([3, 3]) + b"sip"
put("sync", "conn-and-fwmark-template", b"\0" + mesg(0, [conn, tmpl]))
put("sync", "options", b"\0" + mesg(3, [v4(17, DR | NOOUTPUT, 0, "203.0.113.2", 5060, "198.51.100.100", 5060, "10.0.0.13", 5060, opts=seq + pe)]))
put("sync", "ipv6", b"\0" + mesg(0, [v6(6, DR, 1, "2001:db8::1", 40000, "2001:db8::100", 80, "2001:db8::11", 80)]))
put("sync", "foreign-syncid", b"\x05" + mesg(3, [conn]))
put("sync", "many", b"\0" + mesg(1, [v4(6, DR | NOOUTPUT, 1, "203.0.113.%d" % i, 40000 + i, "198.51.100.100", 80, "10.0.0.11", 80) for i in range(1, 40)]))
put("sync", "truncated", b"\0" + mesg(0, [conn])[:30])
put("sync", "version0", b"\0" + bytes([1, 0, 0, 4]))
