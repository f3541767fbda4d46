//! UDP datagram view (RFC 768).
//!
//! `new_checked` guarantees buffer >= 8 bytes and 8 <= length field <= buffer length. The
//! buffer may be longer than the length field (the payload stops at the length field). A
//! checksum field of 0 means "no checksum" (IPv4); a computed checksum of 0 is sent as 0xffff.

use std::net::Ipv4Addr;

use super::checksum::l4_checksum_v4;
use super::ipv4::protocol;
use super::{be16, put16, WireError};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Zero-copy view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checks; header accessors panic if it is shorter than 8 bytes
    /// (the payload is always clamped to the buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after validating it: `Truncated` if shorter than 8 bytes, `BadUdpLen`
    /// if the length field is below 8 or above the buffer length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let l = be16(b, field::LENGTH) as usize;
        if l < HEADER_LEN || l > b.len() {
            return Err(WireError::BadUdpLen);
        }
        Ok(UdpPacket { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload).
    #[inline]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// True when the length field says there is no payload (length 8) or less.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() as usize <= HEADER_LEN
    }

    /// Checksum field (0 = none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The datagram (header + payload) as delimited by the length field, clamped.
    #[inline]
    fn datagram(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..(self.len() as usize).min(b.len())]
    }

    /// Payload: bytes 8 up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.datagram();
        &d[HEADER_LEN.min(d.len())..]
    }

    /// True if the checksum is absent (0) or correct over the pseudo header and the datagram.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        l4_checksum_v4(src, dst, protocol::UDP, self.datagram()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (checksum not updated).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (checksum not updated).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, csum);
    }

    /// Mutable payload (bytes 8 up to the length field).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let end = (be16(b, field::LENGTH) as usize).min(b.len());
        &mut b[HEADER_LEN.min(end)..end]
    }

    /// Computes and stores the checksum over the pseudo header and the datagram (as
    /// delimited by the length field); a computed 0 is stored as 0xffff.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = match l4_checksum_v4(src, dst, protocol::UDP, self.datagram()) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::checksum::{fold, pseudo_header_v4};
    use crate::wire::ethernet::parse_l2;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::testrng::XorShift;

    /// A DNS query for "example.com" A from 192.168.1.100:53124 to 8.8.8.8:53 (71-byte frame)
    /// with IP checksum 0x4a7e and UDP checksum 0x7c2c (verified with tcpdump -vv).
    #[rustfmt::skip]
    pub(crate) const DNS_FRAME: [u8; 71] = [
        // ethernet
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x00, 0x1c, 0x42, 0x9a, 0x3b, 0x6f, 0x08, 0x00,
        // ipv4
        0x45, 0x00, 0x00, 0x39, 0x5e, 0x1a, 0x00, 0x00, 0x40, 0x11, 0x4a, 0x7e,
        0xc0, 0xa8, 0x01, 0x64, 0x08, 0x08, 0x08, 0x08,
        // udp
        0xcf, 0x84, 0x00, 0x35, 0x00, 0x25, 0x7c, 0x2c,
        // dns: id 0x1234, RD, 1 question: example.com A IN
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00,
        0x00, 0x01, 0x00, 0x01,
    ];

    #[test]
    fn parse_real_dns_query() {
        let l2 = parse_l2(&DNS_FRAME).unwrap();
        let ip = Ipv4Packet::new_checked(&DNS_FRAME[l2.l3_offset..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), protocol::UDP);
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (53124, 53));
        assert_eq!(u.len(), 37);
        assert!(!u.is_empty());
        assert_eq!(u.payload().len(), 29);
        assert_eq!(&u.payload()[12..20], b"\x07example");
        assert!(u.verify_checksum(ip.src(), ip.dst()));
        assert!(!u.verify_checksum(ip.src(), Ipv4Addr::new(8, 8, 4, 4)));
        let orig = u.checksum();
        let mut b = ip.payload().to_vec();
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        u.fill_checksum(Ipv4Addr::new(192, 168, 1, 100), Ipv4Addr::new(8, 8, 8, 8));
        assert_eq!(u.checksum(), orig);
    }

    #[test]
    fn zero_checksum_means_none_and_computed_zero_is_ffff() {
        let mut b = [0u8; 8];
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_len(8);
        assert!(u.verify_checksum(Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)));
        // Find ports so that the checksum computes to 0: the data sum must be 0xffff.
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let ph = pseudo_header_v4(s, d, protocol::UDP, 8);
        // sum = ph + sport + dport(0) + len(8) must be 0xffff (one's complement).
        let rest = !fold(ph + 8); // one's-complement sum of the other words
        u.set_src_port(!rest);
        u.fill_checksum(s, d);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum(s, d));
    }

    #[test]
    fn payload_stops_at_length_field() {
        let mut b = [0u8; 20];
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_len(10);
        u.payload_mut().copy_from_slice(b"hi");
        let (s, d) = (Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(4, 3, 2, 1));
        u.fill_checksum(s, d);
        let u = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(u.payload(), b"hi");
        assert!(u.verify_checksum(s, d));
        assert!(UdpPacket::new_checked(&b[..9]).is_err());
    }

    #[test]
    fn validation_errors() {
        let mut b = [0u8; 12];
        b[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadUdpLen)
        );
        b[5] = 13;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadUdpLen)
        );
        b[5] = 12;
        assert!(UdpPacket::new_checked(&b[..]).is_ok());
        assert_eq!(
            UdpPacket::new_checked(&b[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    fn touch_all<T: AsRef<[u8]>>(u: &UdpPacket<T>) {
        let _ = (
            u.src_port(),
            u.dst_port(),
            u.len(),
            u.is_empty(),
            u.checksum(),
        );
        let _ = (
            u.payload().len(),
            u.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED),
        );
    }

    #[test]
    fn every_truncation() {
        for n in 0..=DNS_FRAME.len() {
            let f = &DNS_FRAME[..n];
            let r = parse_l2(f)
                .and_then(|l2| Ipv4Packet::new_checked(&f[l2.l3_offset..]))
                .and_then(|ip| UdpPacket::new_checked(ip.payload()).map(|u| touch_all(&u)));
            assert_eq!(r.is_ok(), n == DNS_FRAME.len(), "{n}");
            if n >= 34 {
                if let Ok(u) = UdpPacket::new_checked(&f[34..]) {
                    touch_all(&u);
                }
            }
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift::new(61);
        for i in 0..100_000 {
            let len = rng.below(40);
            let mut b = rng.bytes(len);
            if len >= 8 && i % 2 == 0 {
                let l = rng.below(len + 2) as u16;
                b[4..6].copy_from_slice(&l.to_be_bytes());
            }
            if let Ok(mut u) = UdpPacket::new_checked(&mut b[..]) {
                touch_all(&u);
                u.fill_checksum(Ipv4Addr::new(3, 3, 3, 3), Ipv4Addr::new(4, 4, 4, 4));
                assert!(u.verify_checksum(Ipv4Addr::new(3, 3, 3, 3), Ipv4Addr::new(4, 4, 4, 4)));
                u.set_len(rng.next_u64() as u16);
                touch_all(&u);
                let _ = u.payload_mut().len();
            }
        }
    }
}
