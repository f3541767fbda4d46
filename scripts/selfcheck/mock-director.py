#!/usr/bin/python3
"""MOCK director: a testbed self-check, NOT the product and never used by `make test`.

A few dozen lines of Python that accept the director's command line
(`[EAL options] -- --socket PATH`), open one AF_PACKET socket per
`--vdev net_af_packetN,iface=X` (what DPDK's af_packet PMD does), answer ARP and ICMP echo for
their addresses, resolve real servers by ARP and forward client->VIP TCP by DR (destination
MAC rewrite, TTL - 1, IP checksum). Its control socket speaks a private protocol with
mock-lbadm.py and knows only the commands the testbeds use.

Purpose: when a namespace test or the demo fails, run them against this mock
(scripts/selfcheck/run.sh). If they pass here, the testbed (namespaces, bridge, veth offloads,
real-server sysctls, routes, HTTP servers) is sound and the fault is in the director.
"""
import ipaddress, os, select, signal, socket, struct, sys, time

args = sys.argv[1:]
eal, app = (args[:args.index('--')], args[args.index('--') + 1:]) if '--' in args else (args, [])
ifaces = [eal[j + 1].split('iface=')[1].split(',')[0] for j, a in enumerate(eal) if a == '--vdev']
sock_path = app[app.index('--socket') + 1] if '--socket' in app else '/run/director.sock'

class Port:
    def __init__(s, i, ifname):
        s.name, s.ifname = f'dpdk{i}', ifname
        s.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        s.sock.bind((ifname, 0))
        s.mac = bytes.fromhex(open(f'/sys/class/net/{ifname}/address').read().strip().replace(':', ''))
        s.addrs = []  # ipaddress.IPv4Interface
ports = [Port(i, f) for i, f in enumerate(ifaces)]
neigh = {}       # ip str -> mac bytes
services = {}    # (vip, port) -> {'sched':..., 'servers': [ip], 'rr': idx}
conns = {}       # (cip,cport,vip,vport) -> [server, active(bool)]

def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def local_port(ip):
    for p in ports:
        for a in p.addrs:
            if str(a.ip) == ip: return p
def egress(ip):
    for p in ports:
        for a in p.addrs:
            if a.network.prefixlen < 32 and ipaddress.IPv4Address(ip) in a.network: return p

def arp_frame(p, op, tha, tpa, spa, dst):
    return dst + p.mac + b'\x08\x06' + struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, op, p.mac,
        socket.inet_aton(spa), tha, socket.inet_aton(tpa))

def rx(p, f):
    if len(f) < 14: return
    dst, src, et = f[:6], f[6:12], struct.unpack('!H', f[12:14])[0]
    if et == 0x0806 and len(f) >= 42:
        _, _, _, _, op, sha, spa, tha, tpa = struct.unpack('!HHBBH6s4s6s4s', f[14:42])
        spa, tpa = socket.inet_ntoa(spa), socket.inet_ntoa(tpa)
        if spa != '0.0.0.0': neigh[spa] = sha
        if op == 1 and local_port(tpa) is p:
            p.sock.send(arp_frame(p, 2, sha, spa, tpa, sha))
        return
    if et != 0x0800 or dst != p.mac: return
    ip = bytearray(f[14:]); ihl = (ip[0] & 15) * 4
    proto, s_ip, d_ip = ip[9], socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    l4 = ip[ihl:]
    if proto == 6 and len(l4) >= 14:
        sport, dport = struct.unpack('!HH', l4[:4]); flags = l4[13]
        svc = services.get((d_ip, dport))
        if svc:
            key = (s_ip, sport, d_ip, dport)
            c = conns.get(key)
            if c is None or (flags & 0x12) == 0x02 and not c[1]:
                if not (flags & 0x02) or (flags & 0x10): return
                if not svc['servers']: return
                srv = svc['servers'][svc['rr'] % len(svc['servers'])]; svc['rr'] += 1
                c = conns[key] = [srv, True]
            if flags & 0x05: c[1] = False
            out = egress(c[0]); mac = neigh.get(c[0])
            if out is None or mac is None or ip[8] <= 1: return
            ip[8] -= 1; ip[10:12] = b'\0\0'; ip[10:12] = struct.pack('!H', csum(bytes(ip[:ihl])))
            out.sock.send(mac + out.mac + b'\x08\x00' + bytes(ip))
            return
    if proto == 1 and local_port(d_ip) and len(l4) >= 8 and l4[0] == 8:
        icmp = bytearray(l4); icmp[0] = 0; icmp[2:4] = b'\0\0'; icmp[2:4] = struct.pack('!H', csum(bytes(icmp)))
        hdr = bytearray(ip[:ihl]); hdr[12:16], hdr[16:20] = ip[16:20], ip[12:16]; hdr[8] = 64
        hdr[10:12] = b'\0\0'; hdr[10:12] = struct.pack('!H', csum(bytes(hdr)))
        p.sock.send(src + p.mac + b'\x08\x00' + bytes(hdr) + bytes(icmp))

def control(argv):
    a = argv
    if a[:2] == ['addr', 'add']:
        p = [x for x in ports if x.name == a[a.index('dev') + 1]][0]; p.addrs.append(ipaddress.IPv4Interface(a[2]))
        for x in p.addrs:  # gratuitous ARP
            p.sock.send(arp_frame(p, 1, b'\0' * 6, str(x.ip), str(x.ip), b'\xff' * 6))
        return 0, ''
    if a[:2] == ['addr', 'show']:
        return 0, ''.join(f'{x} dev {p.name}\n' for p in ports for x in p.addrs)
    if a[:2] == ['neigh', 'show']:
        return 0, ''.join(f'{ip} dev {egress(ip).name if egress(ip) else "?"} lladdr {m.hex(":")} REACHABLE\n' for ip, m in neigh.items())
    if a[:2] == ['link', 'show']:
        return 0, ''.join(f'{p.name} {p.ifname} {p.mac.hex(":")}\n' for p in ports)
    if a[0] == '-A':
        vip, port = a[a.index('-t') + 1].split(':'); services[(vip, int(port))] = {'sched': a[a.index('-s') + 1], 'servers': [], 'rr': 0}; return 0, ''
    if a[0] == '-a':
        vip, port = a[a.index('-t') + 1].split(':'); rip = a[a.index('-r') + 1].split(':')[0]
        services[(vip, int(port))]['servers'].append(rip); return 0, ''
    if a[:2] == ['-L', '-n']:
        o = 'IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n'
        for (vip, port), s in services.items():
            o += f"TCP  {vip}:{port} {s['sched']}\n"
            for r in s['servers']:
                act = sum(1 for k, c in conns.items() if c[0] == r and c[1]); ina = sum(1 for k, c in conns.items() if c[0] == r and not c[1])
                o += '  -> %-28s %-7s %-6d %-10u %-10u\n' % (f'{r}:{port}', 'Route', 1, act, ina)
        return 0, o
    return 2, f'mock: unsupported {a}\n'

stop = False
def on_term(*_):
    global stop; stop = True
signal.signal(signal.SIGTERM, on_term); signal.signal(signal.SIGINT, on_term)
ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try: os.unlink(sock_path)
except FileNotFoundError: pass
ctl.bind(sock_path); ctl.listen(8)
print(f'mock director: ports {[(p.name, p.ifname) for p in ports]} socket {sock_path}', flush=True)
last_arp = 0
while not stop:
    try: r, _, _ = select.select([ctl] + [p.sock for p in ports], [], [], 0.1)
    except InterruptedError: continue
    for s in r:
        if s is ctl:
            c, _ = ctl.accept(); data = b''
            while True:
                b = c.recv(65536)
                if not b: break
                data += b
            rc, out = control(data.decode().split('\0'))
            c.sendall(f'{rc}\n{out}'.encode()); c.close()
        else:
            p = [x for x in ports if x.sock is s][0]
            f, addr = s.recvfrom(65535)
            if addr[2] != socket.PACKET_OUTGOING: rx(p, f)
    if time.time() - last_arp > 0.3:
        last_arp = time.time()
        for s in services.values():
            for rip in s['servers']:
                p = egress(rip)
                if p and rip not in neigh:
                    p.sock.send(arp_frame(p, 1, b'\0' * 6, rip, str([a for a in p.addrs if a.network.prefixlen < 32][0].ip), b'\xff' * 6))
os.unlink(sock_path)
print('mock director: stopped', flush=True)
sys.exit(0)
