//! ARP view for Ethernet/IPv4 ARP only (RFC 826; 28 bytes), and in-place reply rewriting.
//!
//! `new_checked` rejects anything that is not htype 1 / ptype 0x0800 / hlen 6 / plen 4 with
//! [`WireError::BadArp`], so every accessor works on fixed offsets. The view covers the ARP
//! payload only (from the L3 offset); bytes after the 28 ARP bytes (Ethernet padding) are
//! ignored.

use std::net::Ipv4Addr;

use super::ethernet::{self, ethertype};
use super::{be16, ip_at, put16, put_ip, MacAddr, WireError};

/// ARP operation codes.
pub mod op {
    /// ARP request.
    pub const REQUEST: u16 = 1;
    /// ARP reply.
    pub const REPLY: u16 = 2;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// Zero-copy view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than 28 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds 28 bytes (`Truncated`) of Ethernet/IPv4 ARP
    /// (`BadArp` otherwise). The operation code is not checked.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if be16(b, field::HTYPE) != HTYPE_ETHERNET
            || be16(b, field::PTYPE) != ethertype::IPV4
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::BadArp);
        }
        Ok(ArpPacket { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 after `new_checked`).
    #[inline]
    pub fn htype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 after `new_checked`).
    #[inline]
    pub fn ptype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length (6 after `new_checked`).
    #[inline]
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4 after `new_checked`).
    #[inline]
    pub fn plen(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation ([`op::REQUEST`], [`op::REPLY`], or anything else).
    #[inline]
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::SHA..])
    }

    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::SPA)
    }

    /// Target hardware address.
    #[inline]
    pub fn tha(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::THA..])
    }

    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::TPA)
    }

    /// Gratuitous ARP (sender and target protocol addresses equal).
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        let b = self.buffer.as_ref();
        b[field::SPA..field::SPA + 4] == b[field::TPA..field::TPA + 4]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed Ethernet/IPv4 preamble (htype 1, ptype 0x0800, hlen 6, plen 4).
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        put16(b, field::HTYPE, HTYPE_ETHERNET);
        put16(b, field::PTYPE, ethertype::IPV4);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: u16) {
        put16(self.buffer.as_mut(), field::OPER, op);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sha(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SHA..field::SHA + 6].copy_from_slice(&mac.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_spa(&mut self, ip: Ipv4Addr) {
        put_ip(self.buffer.as_mut(), field::SPA, ip);
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_tha(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::THA..field::THA + 6].copy_from_slice(&mac.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_tpa(&mut self, ip: Ipv4Addr) {
        put_ip(self.buffer.as_mut(), field::TPA, ip);
    }
}

/// Rewrites an ARP request frame in place into the reply announcing `my_mac` for the
/// requested address: Ethernet dst = requester's sha, Ethernet src = `my_mac`, op = REPLY,
/// sha = `my_mac`, spa = old tpa, tha = old sha, tpa = old spa. Anything between the
/// Ethernet addresses and `l3_offset` (a VLAN tag) and any trailing padding are preserved.
///
/// `l3_offset` is where the ARP packet starts (14, or 18 with a VLAN tag; see
/// [`ethernet::parse_l2`]). Errors: `Truncated` if the frame is too short or
/// `l3_offset < 14`; `BadArp` if it is not an Ethernet/IPv4 ARP *request*. The caller decides
/// beforehand whether the target address (`tpa`) is one it should answer for.
#[inline]
pub fn make_reply_in_place(
    frame: &mut [u8],
    l3_offset: usize,
    my_mac: MacAddr,
) -> Result<(), WireError> {
    if l3_offset < ethernet::HEADER_LEN || frame.len() < l3_offset {
        return Err(WireError::Truncated);
    }
    let (l2, l3) = frame.split_at_mut(l3_offset);
    let mut arp = ArpPacket::new_checked(l3)?;
    if arp.operation() != op::REQUEST {
        return Err(WireError::BadArp);
    }
    let requester = arp.sha();
    let (spa, tpa) = (arp.spa(), arp.tpa());
    arp.set_operation(op::REPLY);
    arp.set_sha(my_mac);
    arp.set_spa(tpa);
    arp.set_tha(requester);
    arp.set_tpa(spa);
    l2[0..6].copy_from_slice(&requester.0);
    l2[6..12].copy_from_slice(&my_mac.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{parse_l2, EthernetFrame};
    use crate::wire::testrng::XorShift;

    /// A real ARP request as captured on a LAN ("who-has 192.168.1.1 tell 192.168.1.100"),
    /// 42 bytes + 18 bytes of zero padding.
    const ARP_REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
        0x00, 0x1c, 0x42, 0x9a, 0x3b, 0x6f, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4, request
        0x00, 0x1c, 0x42, 0x9a, 0x3b, 0x6f, // sha
        0xc0, 0xa8, 0x01, 0x64, // spa 192.168.1.100
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
        0xc0, 0xa8, 0x01, 0x01, // tpa 192.168.1.1
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn parse_real_request() {
        let l2 = parse_l2(&ARP_REQUEST).unwrap();
        assert_eq!(l2.ethertype, ethertype::ARP);
        let a = ArpPacket::new_checked(&ARP_REQUEST[l2.l3_offset..]).unwrap();
        assert_eq!(
            (a.htype(), a.ptype(), a.hlen(), a.plen()),
            (1, 0x0800, 6, 4)
        );
        assert_eq!(a.operation(), op::REQUEST);
        assert_eq!(a.sha(), "00:1c:42:9a:3b:6f".parse().unwrap());
        assert_eq!(a.spa(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(a.tha(), MacAddr::ZERO);
        assert_eq!(a.tpa(), Ipv4Addr::new(192, 168, 1, 1));
        assert!(!a.is_gratuitous());
    }

    #[test]
    fn reply_in_place_untagged() {
        let me: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let mut f = ARP_REQUEST;
        make_reply_in_place(&mut f, 14, me).unwrap();
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.dst(), "00:1c:42:9a:3b:6f".parse().unwrap());
        assert_eq!(e.src(), me);
        assert_eq!(e.ethertype(), ethertype::ARP);
        let a = ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), op::REPLY);
        assert_eq!(a.sha(), me);
        assert_eq!(a.spa(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(a.tha(), "00:1c:42:9a:3b:6f".parse().unwrap());
        assert_eq!(a.tpa(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(&f[42..], &[0u8; 18]);
        // A reply is not a request: answering it again is refused.
        assert_eq!(make_reply_in_place(&mut f, 14, me), Err(WireError::BadArp));
    }

    #[test]
    fn reply_in_place_tagged_keeps_vlan() {
        let me: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let mut f = Vec::new();
        f.extend_from_slice(&ARP_REQUEST[..12]);
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x07]); // prio 1, VID 7
        f.extend_from_slice(&ARP_REQUEST[12..42]);
        let l2 = parse_l2(&f).unwrap();
        assert_eq!(
            (l2.vlan, l2.l3_offset, l2.ethertype),
            (Some(7), 18, ethertype::ARP)
        );
        make_reply_in_place(&mut f, l2.l3_offset, me).unwrap();
        assert_eq!(&f[12..18], &[0x81, 0x00, 0x20, 0x07, 0x08, 0x06]);
        let a = ArpPacket::new_checked(&f[18..]).unwrap();
        assert_eq!(a.operation(), op::REPLY);
        assert_eq!(a.tpa(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(&f[0..6], &ARP_REQUEST[6..12]);
    }

    #[test]
    fn rejects_non_ethernet_ipv4() {
        for (off, val) in [(14usize, 0x01u8), (15, 6), (16, 0x86), (18, 8), (19, 16)] {
            let mut f = ARP_REQUEST;
            f[off] = val;
            assert_eq!(
                ArpPacket::new_checked(&f[14..]).err(),
                Some(WireError::BadArp),
                "offset {off}"
            );
            assert_eq!(
                make_reply_in_place(&mut f, 14, MacAddr::ZERO),
                Err(WireError::BadArp)
            );
        }
        let mut f = ARP_REQUEST;
        assert_eq!(
            make_reply_in_place(&mut f, 10, MacAddr::ZERO),
            Err(WireError::Truncated)
        );
        assert_eq!(
            make_reply_in_place(&mut f, 61, MacAddr::ZERO),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn setters_roundtrip() {
        let mut b = [0u8; 28];
        let mut a = ArpPacket::new_unchecked(&mut b[..]);
        a.set_ethernet_ipv4();
        a.set_operation(op::REPLY);
        a.set_sha(MacAddr([1, 2, 3, 4, 5, 6]));
        a.set_spa(Ipv4Addr::new(10, 0, 0, 1));
        a.set_tha(MacAddr([6, 5, 4, 3, 2, 1]));
        a.set_tpa(Ipv4Addr::new(10, 0, 0, 1));
        let a = ArpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(a.operation(), op::REPLY);
        assert_eq!(a.sha(), MacAddr([1, 2, 3, 4, 5, 6]));
        assert_eq!(a.tha(), MacAddr([6, 5, 4, 3, 2, 1]));
        assert!(a.is_gratuitous());
    }

    #[test]
    fn every_truncation() {
        for n in 0..=ARP_REQUEST.len() {
            let p = &ARP_REQUEST[..n];
            let ok = n >= 14 + PACKET_LEN;
            if n >= 14 {
                let r = ArpPacket::new_checked(&p[14..]);
                assert_eq!(r.is_ok(), ok, "{n}");
                if let Ok(a) = r {
                    let _ = (a.operation(), a.sha(), a.spa(), a.tha(), a.tpa());
                }
            }
            let mut v = p.to_vec();
            assert_eq!(
                make_reply_in_place(&mut v, 14, MacAddr::ZERO).is_ok(),
                ok,
                "{n}"
            );
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift::new(31);
        for i in 0..50_000 {
            let len = rng.below(64);
            let mut b = rng.bytes(len);
            if i % 2 == 0 && len >= 6 {
                b[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
            }
            if let Ok(a) = ArpPacket::new_checked(&b[..]) {
                let _ = (a.htype(), a.ptype(), a.hlen(), a.plen(), a.operation());
                let _ = (a.sha(), a.spa(), a.tha(), a.tpa(), a.is_gratuitous());
            }
            let mut f = rng.bytes(14);
            f.extend_from_slice(&b);
            let off = rng.below(40);
            let _ = make_reply_in_place(&mut f, off, MacAddr::BROADCAST);
        }
    }
}
