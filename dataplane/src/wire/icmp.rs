//! ICMPv4 message view (RFC 792, RFC 1191) and parser for the quoted packet of error
//! messages.
//!
//! The buffer must be exactly the ICMP message (the IPv4 payload): the checksum covers all of
//! it. `new_checked` guarantees buffer >= 8 bytes (type, code, checksum and the 4-byte
//! rest-of-header); [`IcmpPacket::quoted`] validates the quoted IPv4 header separately.

use std::net::Ipv4Addr;

use super::checksum::{fold, sum16};
use super::ipv4::{self, Ipv4Packet};
use super::{be16, ip_at, put16, WireError};

/// ICMP message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable (error).
    pub const DEST_UNREACH: u8 = 3;
    /// Source quench (error, deprecated).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect (error).
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem (error).
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Codes of [`msg_type::DEST_UNREACH`].
pub mod unreach_code {
    /// Network unreachable.
    pub const NET_UNREACH: u8 = 0;
    /// Host unreachable.
    pub const HOST_UNREACH: u8 = 1;
    /// Protocol unreachable.
    pub const PROTO_UNREACH: u8 = 2;
    /// Port unreachable.
    pub const PORT_UNREACH: u8 = 3;
    /// Fragmentation needed and DF set (carries the next-hop MTU).
    pub const FRAG_NEEDED: u8 = 4;
}

/// Codes of [`msg_type::TIME_EXCEEDED`].
pub mod time_exceeded_code {
    /// TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const FRAG_REASSEMBLY: u8 = 1;
}

/// Length of the ICMP header (type, code, checksum, rest-of-header).
pub const HEADER_LEN: usize = 8;
/// Bytes of the offending datagram's L4 header that an error message must quote.
pub const QUOTED_L4_LEN: usize = 8;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
}

/// What an ICMP error message says about the packet that caused it: the quoted IPv4 header's
/// addresses and protocol, and the first four L4 bytes as ports.
///
/// `src`/`dst` are those of the *original* packet (so for traffic we forwarded, `src` is our
/// side). The ports are the first two 16-bit words of the quoted L4 header whatever the
/// protocol (for quoted ICMP they are type/code and checksum and mean nothing). If
/// `frag_offset` is non-zero the quoted bytes are not an L4 header at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quoted {
    /// Source address of the quoted packet.
    pub src: Ipv4Addr,
    /// Destination address of the quoted packet.
    pub dst: Ipv4Addr,
    /// IP protocol of the quoted packet.
    pub protocol: u8,
    /// First 16-bit word of the quoted L4 header (TCP/UDP source port).
    pub src_port: u16,
    /// Second 16-bit word of the quoted L4 header (TCP/UDP destination port).
    pub dst_port: u16,
    /// Fragment offset (bytes) of the quoted packet; non-zero means no L4 header was quoted.
    pub frag_offset: u16,
}

/// Zero-copy view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps `buffer` without checks; header accessors panic if it is shorter than 8 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header (`Truncated` otherwise).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(IcmpPacket { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (see [`msg_type`]).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (meaningful for echo request/reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for echo request/reply).
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191; 0 from old routers).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// The four rest-of-header bytes (bytes 4..8).
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[4], b[5], b[6], b[7]]
    }

    /// True for error messages (destination unreachable, source quench, redirect, time
    /// exceeded, parameter problem), which quote the offending packet.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::DEST_UNREACH
                | msg_type::SOURCE_QUENCH
                | msg_type::REDIRECT
                | msg_type::TIME_EXCEEDED
                | msg_type::PARAM_PROBLEM
        )
    }

    /// Everything after the 8-byte header (echo data, or the quoted packet of an error).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN.min(b.len())..]
    }

    /// Parses the quoted IPv4 header + first 8 L4 bytes of an error message. The quoted
    /// total length is not checked (the quote is normally shorter than the original).
    /// Errors: `Truncated` if fewer than 20 bytes, or than IHL * 4 + 8 bytes, are quoted;
    /// `BadVersion` / `BadHeaderLen` for a bad quoted version / IHL. Does not check
    /// [`Self::is_error`]; callers do.
    #[inline]
    pub fn quoted(&self) -> Result<Quoted, WireError> {
        let q = self.payload();
        if q.len() < ipv4::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let vi = q[0];
        if vi >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = ((vi & 0x0f) as usize) * 4;
        if hl < ipv4::HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if q.len() < hl + QUOTED_L4_LEN {
            return Err(WireError::Truncated);
        }
        let ip = Ipv4Packet::new_unchecked(q);
        Ok(Quoted {
            src: ip_at(q, 12),
            dst: ip_at(q, 16),
            protocol: ip.protocol(),
            src_port: be16(q, hl),
            dst_port: be16(q, hl + 2),
            frag_offset: ip.frag_offset(),
        })
    }

    /// True if the checksum over the whole message is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        fold(sum16(self.buffer.as_ref(), 0)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    /// Sets the code.
    #[inline]
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, csum);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, id: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, id);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq(&mut self, seq: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQ, seq);
    }

    /// Sets the next-hop MTU (and zeroes the unused word before it).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        let b = self.buffer.as_mut();
        put16(b, field::REST, 0);
        put16(b, field::NEXT_HOP_MTU, mtu);
    }

    /// Sets the four rest-of-header bytes.
    #[inline]
    pub fn set_rest_of_header(&mut self, rest: [u8; 4]) {
        self.buffer.as_mut()[field::REST..field::REST + 4].copy_from_slice(&rest);
    }

    /// Mutable access to everything after the 8-byte header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let s = HEADER_LEN.min(b.len());
        &mut b[s..]
    }

    /// Computes and stores the checksum over the whole message.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = fold(sum16(self.buffer.as_ref(), 0));
        self.set_checksum(c);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::ethernet::parse_l2;
    use crate::wire::ipv4::protocol;
    use crate::wire::testrng::XorShift;

    /// `ping -c1 10.0.0.2` from Linux: echo request id 0x1f2e seq 1 with the usual 56 data
    /// bytes (16-byte timeval then 0x10..0x37). IP checksum 0x9c6a, ICMP checksum 0xefc1
    /// (verified with tcpdump -vv). 98-byte frame.
    pub(crate) fn echo_frame() -> Vec<u8> {
        #[rustfmt::skip]
        let mut f = vec![
            // ethernet
            0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
            // ipv4
            0x45, 0x00, 0x00, 0x54, 0x8a, 0x3c, 0x40, 0x00, 0x40, 0x01, 0x9c, 0x6a,
            0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
            // icmp
            0x08, 0x00, 0xef, 0xc1, 0x1f, 0x2e, 0x00, 0x01,
            // timeval
            0x5f, 0x9a, 0x1b, 0x65, 0x00, 0x00, 0x00, 0x00,
            0xa1, 0x3c, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        f.extend(0x10u8..0x38);
        f
    }

    /// Port unreachable from 10.0.0.2 for a UDP packet 10.0.0.1:33434 -> 10.0.0.2:33435
    /// (traceroute style); quotes the IP header + 8 bytes. ICMP checksum 0xf79e, quoted IP
    /// checksum 0x937b (verified with tcpdump -vv).
    #[rustfmt::skip]
    const PORT_UNREACH: [u8; 36] = [
        // icmp header
        0x03, 0x03, 0xf7, 0x9e, 0x00, 0x00, 0x00, 0x00,
        // quoted ipv4
        0x45, 0x00, 0x00, 0x3c, 0x12, 0x34, 0x00, 0x00, 0x01, 0x11, 0x93, 0x7b,
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        // quoted udp
        0x82, 0x9a, 0x82, 0x9b, 0x00, 0x28, 0x00, 0x00,
    ];

    #[test]
    fn parse_real_echo() {
        let f = echo_frame();
        let l2 = parse_l2(&f).unwrap();
        let ip = Ipv4Packet::new_checked(&f[l2.l3_offset..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), protocol::ICMP);
        let i = IcmpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(i.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(i.code(), 0);
        assert_eq!(i.echo_ident(), 0x1f2e);
        assert_eq!(i.echo_seq(), 1);
        assert_eq!(i.payload().len(), 56);
        assert!(!i.is_error());
        assert!(i.verify_checksum());
        // Turn it into the reply: type 0, recompute; incremental equivalent is +0x0800.
        let mut b = ip.payload().to_vec();
        let mut i = IcmpPacket::new_checked(&mut b[..]).unwrap();
        let old = i.checksum();
        i.set_msg_type(msg_type::ECHO_REPLY);
        i.fill_checksum();
        assert!(i.verify_checksum());
        assert_eq!(
            i.checksum(),
            crate::wire::checksum::update16(old, 0x0800, 0x0000)
        );
    }

    #[test]
    fn parse_port_unreach_quote() {
        let i = IcmpPacket::new_checked(&PORT_UNREACH[..]).unwrap();
        assert_eq!(i.msg_type(), msg_type::DEST_UNREACH);
        assert_eq!(i.code(), unreach_code::PORT_UNREACH);
        assert!(i.is_error());
        assert!(i.verify_checksum());
        assert_eq!(i.rest_of_header(), [0; 4]);
        let q = i.quoted().unwrap();
        assert_eq!(
            q,
            Quoted {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
                protocol: protocol::UDP,
                src_port: 33434,
                dst_port: 33435,
                frag_offset: 0,
            }
        );
    }

    #[test]
    fn frag_needed_mtu() {
        let mut b = PORT_UNREACH;
        let mut i = IcmpPacket::new_checked(&mut b[..]).unwrap();
        i.set_code(unreach_code::FRAG_NEEDED);
        i.set_next_hop_mtu(1400);
        i.fill_checksum();
        assert!(i.verify_checksum());
        assert_eq!(i.next_hop_mtu(), 1400);
        assert_eq!(i.rest_of_header(), [0, 0, 0x05, 0x78]);
        assert_eq!(i.quoted().unwrap().dst_port, 33435);
    }

    #[test]
    fn quoted_errors() {
        let i = IcmpPacket::new_checked(&PORT_UNREACH[..35]).unwrap();
        assert_eq!(i.quoted(), Err(WireError::Truncated));
        let i = IcmpPacket::new_checked(&PORT_UNREACH[..27]).unwrap();
        assert_eq!(i.quoted(), Err(WireError::Truncated));
        let mut b = PORT_UNREACH;
        b[8] = 0x65;
        assert_eq!(
            IcmpPacket::new_checked(&b[..]).unwrap().quoted(),
            Err(WireError::BadVersion)
        );
        b[8] = 0x43;
        assert_eq!(
            IcmpPacket::new_checked(&b[..]).unwrap().quoted(),
            Err(WireError::BadHeaderLen)
        );
        b[8] = 0x46; // options claimed but not quoted with 8 L4 bytes after them
        assert_eq!(
            IcmpPacket::new_checked(&b[..]).unwrap().quoted(),
            Err(WireError::Truncated)
        );
        let mut b = PORT_UNREACH;
        b[14] = 0x20; // MF + offset 0x10 * 8
        b[15] = 0x10;
        assert_eq!(
            IcmpPacket::new_checked(&b[..])
                .unwrap()
                .quoted()
                .unwrap()
                .frag_offset,
            128
        );
    }

    #[test]
    fn setters_roundtrip() {
        let mut b = [0u8; 12];
        let mut i = IcmpPacket::new_checked(&mut b[..]).unwrap();
        i.set_msg_type(msg_type::ECHO_REQUEST);
        i.set_code(0);
        i.set_echo_ident(7);
        i.set_echo_seq(9);
        i.payload_mut().copy_from_slice(b"ping");
        i.fill_checksum();
        assert!(i.verify_checksum());
        assert_eq!((i.echo_ident(), i.echo_seq()), (7, 9));
        i.set_rest_of_header([1, 2, 3, 4]);
        assert_eq!(i.rest_of_header(), [1, 2, 3, 4]);
        assert_eq!(i.into_inner().len(), 12);
    }

    fn touch_all<T: AsRef<[u8]>>(i: &IcmpPacket<T>) {
        let _ = (
            i.msg_type(),
            i.code(),
            i.checksum(),
            i.echo_ident(),
            i.echo_seq(),
        );
        let _ = (
            i.next_hop_mtu(),
            i.rest_of_header(),
            i.is_error(),
            i.payload().len(),
        );
        let _ = (i.quoted(), i.verify_checksum());
    }

    #[test]
    fn every_truncation() {
        for n in 0..=PORT_UNREACH.len() {
            let r = IcmpPacket::new_checked(&PORT_UNREACH[..n]);
            assert_eq!(r.is_ok(), n >= 8, "{n}");
            if let Ok(i) = r {
                touch_all(&i);
                assert_eq!(i.quoted().is_ok(), n == PORT_UNREACH.len());
            }
        }
        let f = echo_frame();
        for n in 0..=f.len() {
            let p = &f[..n];
            let r = parse_l2(p)
                .and_then(|l2| Ipv4Packet::new_checked(&p[l2.l3_offset..]))
                .and_then(|ip| IcmpPacket::new_checked(ip.payload()).map(|i| touch_all(&i)));
            assert_eq!(r.is_ok(), n == f.len(), "{n}");
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift::new(71);
        for i in 0..100_000 {
            let len = rng.below(80);
            let mut b = rng.bytes(len);
            if len > 8 && i % 2 == 0 {
                b[8] = 0x45 + (b[8] % 3);
            }
            if let Ok(mut p) = IcmpPacket::new_checked(&mut b[..]) {
                touch_all(&p);
                p.fill_checksum();
                assert!(p.verify_checksum());
                p.set_next_hop_mtu(576);
                let _ = p.payload_mut().len();
            }
        }
    }
}
