//! The engine's side of the kernel leg: which frames belong to the host, and the rate cap on
//! them.
//!
//! With a snapshot whose `host_leg` is set, what the director's own stack would have
//! answered or dropped goes to the host instead ([`Verdict::Host`]): IPv4 to one of the
//! director's addresses that no service takes (TCP and UDP to ports without a service, TCP
//! without a connection to such a port, ICMP other than echo requests and errors about our
//! connections, other IP protocols), IPv4 link-local multicast and broadcasts, ARP (a copy,
//! after the director answered and learned), and every ethertype the dataplane does not
//! speak. Local real servers' connections go there too, unpoliced (they are service
//! traffic). Everything else is unchanged: service traffic never reaches the host.
//!
//! Each worker polices what it hands to the host with its share of `--kernel-pps`
//! (`host_policed` counts the excess), so a flood at the director's addresses costs a worker
//! a token check per packet and the host at most the cap.

use super::{Engine, Verdict};
use crate::counters::DropReason;
use crate::wire::Ipv4Packet;

impl Engine {
    /// A frame for the host, within the kernel leg's rate cap: [`Verdict::Host`], or a drop
    /// counted as `host_policed` when this worker's share of the cap is used up.
    #[inline]
    pub(super) fn to_host(&mut self, now: u32) -> Verdict {
        if self.host_police.take(now) {
            Verdict::Host
        } else {
            Verdict::Drop(DropReason::HostPoliced)
        }
    }

    /// An IPv4 frame to a group MAC with the kernel leg on: link-local multicast (VRRP,
    /// OSPF, IGMP: 224.0.0.0/24), the limited broadcast and the broadcast address of one of
    /// the receiving port's subnets go to the host; other multicast is not the director's.
    pub(super) fn ipv4_group(&mut self, frame: &[u8], l3: usize, in_port: u16, now: u32) -> Verdict {
        let Some(ip) = frame.get(l3..).and_then(|b| Ipv4Packet::new_checked(b).ok()) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        let d = u32::from(ip.dst());
        let link_local = d & 0xffff_ff00 == 0xe000_0000;
        let subnet_broadcast = || {
            self.snap.ports.get(in_port as usize).is_some_and(|p| {
                p.addrs.iter().any(|&(a, len)| len > 0 && len < 31 && d == u32::from(a) | (u32::MAX >> len))
            })
        };
        if link_local || d == u32::MAX || subnet_broadcast() {
            self.to_host(now)
        } else {
            Verdict::Drop(DropReason::NotLocal)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use super::super::tests::{emitted, engine, snapshot, tcp, CIP, CLIENT_MAC, DIP, PORT_MAC, RS_MACS, VIP};
    use super::*;
    use crate::conn::tcp_flags::{ACK, RST, SYN};
    use crate::snapshot::Snapshot;
    use crate::wire::{Frame, MacAddr, TcpFlags};

    fn with_leg(mut s: Snapshot) -> Snapshot {
        s.host_leg = true;
        s
    }

    fn leg_engine() -> Engine {
        let (mut e, _) = engine("rr");
        e.set_snapshot(Arc::new(with_leg(snapshot("rr"))));
        e
    }

    fn to_dip(dport: u16, flags: u8) -> Vec<u8> {
        Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 40000).dst(DIP, dport).flags(TcpFlags(flags)).build()
    }

    fn ethertype(dst: MacAddr, ty: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&CLIENT_MAC.0);
        f[12..14].copy_from_slice(&ty.to_be_bytes());
        f
    }

    #[test]
    fn traffic_no_service_takes_goes_to_the_host_unchanged() {
        let mut e = leg_engine();
        // ssh to the director's address, the answer to the host's own connection (SYN-ACK,
        // then ACKs), UDP to a port without a service, another protocol (GRE).
        let frames = [
            to_dip(22, SYN),
            to_dip(54321, SYN | ACK),
            to_dip(54321, ACK),
            Frame::udp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 5353).dst(VIP, 53).build(),
            Frame::raw_ip(47).src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(CIP).dst_ip(DIP).build(),
            Frame::icmp_echo_reply(7, 1).src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(RS_IP).dst_ip(DIP).build(),
            ethertype(PORT_MAC, 0x86dd, 80),
            ethertype(MacAddr([0x33, 0x33, 0, 0, 0, 1]), 0x86dd, 80),
            ethertype(MacAddr([0x01, 0x80, 0xc2, 0, 0, 0x0e]), 0x88cc, 60),
        ];
        for f in frames {
            let mut g = f.clone();
            assert_eq!(e.process(&mut g, 0, 0), Verdict::Host, "{:02x?}", &f[..16]);
            assert_eq!(g, f, "the host gets the frame as it arrived");
        }
        assert_eq!(e.counters().ports[0].to_host, 9);
    }

    const RS_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 11);

    #[test]
    fn service_traffic_and_what_the_director_answers_stay_in_the_dataplane() {
        let mut e = leg_engine();
        let mut syn = tcp(40000, SYN);
        assert_eq!(e.process(&mut syn, 0, 0), Verdict::Forward(0), "a service's SYN is forwarded by DR");
        // An ACK to the service's port without a connection: the RST a Linux director's IPVS
        // would cause, not the host.
        let mut stray = tcp(40001, ACK);
        let v = e.process(&mut stray, 0, 0);
        assert!(matches!(v, Verdict::Emit { reason: DropReason::NoConnection, .. }), "{v:?}");
        let rst = emitted(&e, v);
        assert_eq!(rst[47] & RST, RST);
        // Echo requests are answered by the director itself.
        let mut ping = Frame::icmp_echo(1, 1).src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src_ip(CIP).dst_ip(DIP).build();
        assert_eq!(e.process(&mut ping, 0, 0), Verdict::Reply);
        // Tagged frames and unicast to other MACs are nobody's.
        let mut tagged = Frame::tcp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 1).dst(DIP, 22).vlan(Some(5)).build();
        assert_eq!(e.process(&mut tagged, 0, 0), Verdict::Drop(DropReason::Vlan));
        let mut other = ethertype(RS_MACS[0], 0x86dd, 80);
        assert_eq!(e.process(&mut other, 0, 0), Verdict::Drop(DropReason::NotOurMac));
        assert_eq!(e.counters().ports[0].to_host, 0);
    }

    #[test]
    fn link_local_multicast_and_broadcasts_reach_the_host_other_groups_do_not() {
        let mut e = leg_engine();
        let group = |dst: Ipv4Addr, mac: MacAddr, proto: u8| {
            Frame::raw_ip(proto).src_mac(CLIENT_MAC).dst_mac(mac).src_ip(CIP).dst_ip(dst).build()
        };
        let vrrp = group(Ipv4Addr::new(224, 0, 0, 18), MacAddr([1, 0, 0x5e, 0, 0, 18]), 112);
        let limited = Frame::udp().src_mac(CLIENT_MAC).dst_mac(MacAddr::BROADCAST).src(CIP, 68).dst(Ipv4Addr::BROADCAST, 67).build();
        let subnet = Frame::udp().src_mac(CLIENT_MAC).dst_mac(MacAddr::BROADCAST).src(CIP, 520).dst(Ipv4Addr::new(198, 51, 100, 255), 520).build();
        for mut f in [vrrp, limited, subnet] {
            assert_eq!(e.process(&mut f, 0, 0), Verdict::Host);
        }
        let mut sync = group(Ipv4Addr::new(239, 1, 1, 1), MacAddr([1, 0, 0x5e, 1, 1, 1]), 17);
        assert_eq!(e.process(&mut sync, 0, 0), Verdict::Drop(DropReason::NotLocal));
    }

    #[test]
    fn arp_is_answered_and_copied_to_the_host() {
        let mut e = leg_engine();
        let req = Frame::arp_request(CLIENT_MAC, CIP, DIP).build();
        let mut f = req.clone();
        let v = e.process(&mut f, 0, 0);
        let Verdict::ReplyAndHost { len } = v else { panic!("{v:?}") };
        assert_eq!(&e.scratch()[..len as usize], &req[..], "the host gets the request as it arrived");
        assert_ne!(f, req, "the frame itself became the director's answer");
        let mut reply = Frame::arp_reply(RS_MACS[0], RS_IP, PORT_MAC, DIP).build();
        assert_eq!(e.process(&mut reply, 0, 0), Verdict::Host, "the host learns from replies too");
        let mut other = Frame::arp_request(CLIENT_MAC, CIP, Ipv4Addr::new(198, 51, 100, 77)).build();
        assert_eq!(e.process(&mut other, 0, 0), Verdict::Host);
    }

    #[test]
    fn a_flood_for_the_host_is_policed_to_the_cap() {
        let mut e = leg_engine();
        // host_pps 1000 per worker in the test engine: a burst of 100, then 1000 per second.
        let mut passed = 0;
        for i in 0..5000u32 {
            let mut f = Frame::udp().src_mac(CLIENT_MAC).dst_mac(PORT_MAC).src(CIP, 1000 + (i % 1000) as u16).dst(DIP, 9).build();
            // 5000 packets over two seconds (32 ticks).
            if e.process(&mut f, 0, i * 32 / 5000) == Verdict::Host {
                passed += 1;
            }
        }
        assert!((1900..=2100).contains(&passed), "{passed} passed: burst 100 + 1000/s over ~2 s");
        assert_eq!(e.counters().drops[DropReason::HostPoliced as usize], 5000 - passed);
        // Service traffic is not policed.
        let mut syn = tcp(40000, SYN);
        assert_eq!(e.process(&mut syn, 0, 31), Verdict::Forward(0));
    }

    #[test]
    fn local_real_servers_get_their_connections_through_the_host() {
        let mut s = with_leg(snapshot("rr"));
        for rs in s.servers.iter_mut().flatten() {
            rs.local = rs.slot == 1;
        }
        let (mut e, _) = engine("rr");
        e.set_snapshot(Arc::new(s.clone()));
        let mut hosts = 0;
        for sport in 0..4u16 {
            let f = tcp(41000 + sport, SYN);
            let mut g = f.clone();
            match e.process(&mut g, 0, 0) {
                Verdict::Host => {
                    assert_eq!(g, f, "delivered unchanged, TTL included");
                    hosts += 1;
                    let mut ack = tcp(41000 + sport, ACK);
                    assert_eq!(e.process(&mut ack, 0, 0), Verdict::Host, "the whole connection follows");
                }
                Verdict::Forward(0) => {}
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(hosts, 2, "rr alternates between the remote and the local server");
        // Without the kernel leg a local server is unreachable, and says so.
        s.host_leg = false;
        e.set_snapshot(Arc::new(s));
        let drops: Vec<Verdict> = (0..2).map(|i| e.process(&mut tcp(42000 + i, SYN), 0, 0)).collect();
        assert!(drops.contains(&Verdict::Drop(DropReason::NoKernelInterface)), "{drops:?}");
    }
}
