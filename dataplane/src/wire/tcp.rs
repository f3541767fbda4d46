//! TCP segment view (RFC 9293).
//!
//! The buffer must be exactly the segment (the IPv4 payload, which [`super::Ipv4Packet`]
//! already trims to the total length): the checksum covers all of it. `new_checked`
//! guarantees buffer >= 20 bytes, data offset >= 5 and header (data offset * 4) within the
//! buffer.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::{BitAnd, BitOr, BitOrAssign};

use super::checksum::l4_checksum_v4;
use super::ipv4::protocol;
use super::{be16, be32, put16, put32, WireError};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// The eight TCP flag bits of byte 13 (CWR ECE URG ACK PSH RST SYN FIN).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);
    /// No flag set.
    pub const NONE: TcpFlags = TcpFlags(0);

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every bit of `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any bit of `other` is set in `self`.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// True if no bit is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.0 & 0x01 != 0
    }
    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.0 & 0x02 != 0
    }
    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.0 & 0x04 != 0
    }
    /// PSH set.
    #[inline]
    pub const fn psh(self) -> bool {
        self.0 & 0x08 != 0
    }
    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.0 & 0x10 != 0
    }
    /// URG set.
    #[inline]
    pub const fn urg(self) -> bool {
        self.0 & 0x20 != 0
    }
    /// ECE set.
    #[inline]
    pub const fn ece(self) -> bool {
        self.0 & 0x40 != 0
    }
    /// CWR set.
    #[inline]
    pub const fn cwr(self) -> bool {
        self.0 & 0x80 != 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    /// Prints like tcpdump's letters joined by `|`, e.g. `SYN|ACK`, or `-` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        for (i, n) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(n)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Zero-copy view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checks; fixed-header accessors panic if it is shorter than 20
    /// bytes (options and payload are always clamped to the buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after validating it: `Truncated` if shorter than 20 bytes or than the
    /// header length, `BadTcpHeaderLen` if the data offset is below 5.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = ((b[field::DATA_OFF] >> 4) as usize) * 4;
        if hl < HEADER_LEN {
            return Err(WireError::BadTcpHeaderLen);
        }
        if hl > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(TcpPacket { buffer })
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset * 4), 20..=60.
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFF] >> 4) as usize) * 4
    }

    /// The eight flag bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// FIN flag.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags().fin()
    }
    /// SYN flag.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags().syn()
    }
    /// RST flag.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags().rst()
    }
    /// PSH flag.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags().psh()
    }
    /// ACK flag.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags().ack()
    }
    /// URG flag.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags().urg()
    }
    /// ECE flag.
    #[inline]
    pub fn ece(&self) -> bool {
        self.flags().ece()
    }
    /// CWR flag.
    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags().cwr()
    }

    /// Window size (unscaled).
    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    #[inline]
    fn hl_clamped(&self) -> usize {
        let len = self.buffer.as_ref().len();
        self.header_len().max(HEADER_LEN).min(len)
    }

    /// Options bytes (between byte 20 and the header length).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.hl_clamped();
        &self.buffer.as_ref()[HEADER_LEN.min(hl)..hl]
    }

    /// Segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let hl = self.hl_clamped();
        &self.buffer.as_ref()[hl..]
    }

    /// True if the checksum over the IPv4 pseudo header and the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        l4_checksum_v4(src, dst, protocol::TCP, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        put32(self.buffer.as_mut(), field::SEQ, seq);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        put32(self.buffer.as_mut(), field::ACK, ack);
    }

    /// Sets the header length in bytes (rounded down to a multiple of 4; 20..=60 expected).
    /// Keeps the reserved/NS bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        b[field::DATA_OFF] = (b[field::DATA_OFF] & 0x0f) | ((((len / 4) & 0x0f) as u8) << 4);
    }

    /// Sets all eight flag bits.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window.
    #[inline]
    pub fn set_window(&mut self, window: u16) {
        put16(self.buffer.as_mut(), field::WINDOW, window);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, csum);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent(&mut self, urgent: u16) {
        put16(self.buffer.as_mut(), field::URGENT, urgent);
    }

    /// Mutable options bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.hl_clamped();
        &mut self.buffer.as_mut()[HEADER_LEN.min(hl)..hl]
    }

    /// Mutable segment data.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.hl_clamped();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes and stores the checksum over the IPv4 pseudo header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = l4_checksum_v4(src, dst, protocol::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::ethernet::parse_l2;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::testrng::XorShift;

    /// A Linux TCP SYN 10.0.0.1:40000 -> 10.0.0.2:80 with MSS, SACK-permitted, timestamps,
    /// NOP and window scale options (74-byte frame), IP checksum 0x0a74, TCP checksum
    /// 0xc3c9 (both verified with tcpdump -vv).
    #[rustfmt::skip]
    pub(crate) const SYN_FRAME: [u8; 74] = [
        // ethernet
        0x52, 0x54, 0x00, 0x00, 0x00, 0x02, 0x52, 0x54, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        // ipv4
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x0a, 0x74,
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
        // tcp
        0x9c, 0x40, 0x00, 0x50, 0x6b, 0x8b, 0x45, 0x67, 0x00, 0x00, 0x00, 0x00,
        0xa0, 0x02, 0xfa, 0xf0, 0xc3, 0xc9, 0x00, 0x00,
        // options: mss 1460, sackOK, TS val 10233636 ecr 0, nop, wscale 7
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x9c, 0x27, 0x24,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn syn_tcp() -> &'static [u8] {
        &SYN_FRAME[34..]
    }

    #[test]
    fn parse_real_syn() {
        let l2 = parse_l2(&SYN_FRAME).unwrap();
        let ip = Ipv4Packet::new_checked(&SYN_FRAME[l2.l3_offset..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), protocol::TCP);
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(t.src_port(), 40000);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq_number(), 0x6b8b4567);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), TcpFlags::SYN);
        assert!(t.syn() && !t.ack() && !t.fin() && !t.rst() && !t.psh());
        assert!(!t.urg() && !t.ece() && !t.cwr());
        assert_eq!(t.window(), 64240);
        assert_eq!(t.urgent(), 0);
        assert_eq!(t.options().len(), 20);
        assert_eq!(&t.options()[..4], &[0x02, 0x04, 0x05, 0xb4]); // MSS 1460
        assert!(t.payload().is_empty());
        assert!(t.verify_checksum(ip.src(), ip.dst()));
        assert!(!t.verify_checksum(ip.dst(), Ipv4Addr::new(10, 0, 0, 3)));
    }

    #[test]
    fn fill_checksum_reproduces_capture() {
        let mut b = syn_tcp().to_vec();
        let orig = TcpPacket::new_checked(&b[..]).unwrap().checksum();
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.set_checksum(0xdead);
        assert!(!t.verify_checksum(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)));
        t.fill_checksum(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(t.checksum(), orig);
    }

    #[test]
    fn flags_ops() {
        let f = TcpFlags::SYN | TcpFlags::ACK;
        assert!(f.contains(TcpFlags::SYN) && f.contains(TcpFlags::ACK));
        assert!(!f.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(f.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert_eq!(f & TcpFlags::ACK, TcpFlags::ACK);
        assert_eq!(format!("{f:?}"), "SYN|ACK");
        assert_eq!(format!("{:?}", TcpFlags::NONE), "-");
        let mut g = TcpFlags::NONE;
        assert!(g.is_empty());
        g |= TcpFlags::RST;
        assert!(g.rst() && g.bits() == 4);
        let all = [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::PSH,
            TcpFlags::ACK,
            TcpFlags::URG,
            TcpFlags::ECE,
            TcpFlags::CWR,
        ];
        let mut acc = TcpFlags::NONE;
        for x in all {
            acc |= x;
        }
        assert_eq!(acc.bits(), 0xff);
        assert_eq!(format!("{acc:?}"), "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR");
    }

    #[test]
    fn setters_roundtrip() {
        let mut b = [0u8; 28];
        let mut t = TcpPacket::new_unchecked(&mut b[..]);
        t.set_header_len(24);
        t.set_src_port(1234);
        t.set_dst_port(443);
        t.set_seq_number(0xdeadbeef);
        t.set_ack_number(0x01020304);
        t.set_flags(TcpFlags::PSH | TcpFlags::ACK);
        t.set_window(512);
        t.set_urgent(7);
        t.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        t.payload_mut().copy_from_slice(b"abcd");
        let (s, d) = (Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8));
        t.fill_checksum(s, d);
        let t = TcpPacket::new_checked(&b[..]).unwrap();
        assert!(t.verify_checksum(s, d));
        assert_eq!((t.src_port(), t.dst_port()), (1234, 443));
        assert_eq!((t.seq_number(), t.ack_number()), (0xdeadbeef, 0x01020304));
        assert!(t.psh() && t.ack());
        assert_eq!((t.window(), t.urgent(), t.header_len()), (512, 7, 24));
        assert_eq!(t.payload(), b"abcd");
    }

    #[test]
    fn validation_errors() {
        let mut b = syn_tcp().to_vec();
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(WireError::BadTcpHeaderLen)
        );
        b[12] = 0xf0; // 60 > 40
        assert_eq!(
            TcpPacket::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
        b[12] = 0x50;
        let t = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(t.payload().len(), 20);
    }

    fn touch_all<T: AsRef<[u8]>>(t: &TcpPacket<T>) {
        let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
        let _ = (
            t.header_len(),
            t.flags(),
            t.fin(),
            t.syn(),
            t.rst(),
            t.psh(),
        );
        let _ = (t.ack(), t.urg(), t.ece(), t.cwr(), t.window(), t.checksum());
        let _ = (t.urgent(), t.options().len(), t.payload().len());
        let _ = t.verify_checksum(Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
    }

    #[test]
    fn every_truncation() {
        let tcp = syn_tcp();
        for n in 0..=tcp.len() {
            let r = TcpPacket::new_checked(&tcp[..n]);
            assert_eq!(r.is_ok(), n == tcp.len(), "{n}");
            if let Ok(t) = r {
                touch_all(&t);
            }
        }
        // Whole-frame truncations through the full parse chain.
        for n in 0..=SYN_FRAME.len() {
            let f = &SYN_FRAME[..n];
            let ok = parse_l2(f)
                .and_then(|l2| Ipv4Packet::new_checked(&f[l2.l3_offset..]))
                .and_then(|ip| TcpPacket::new_checked(ip.payload()).map(|t| touch_all(&t)));
            assert_eq!(ok.is_ok(), n == SYN_FRAME.len(), "{n}");
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift::new(51);
        for _ in 0..100_000 {
            let len = rng.below(90);
            let mut b = rng.bytes(len);
            if let Ok(mut t) = TcpPacket::new_checked(&mut b[..]) {
                touch_all(&t);
                assert_eq!(t.header_len() + t.payload().len(), len);
                t.fill_checksum(Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(8, 8, 8, 8));
                assert!(t.verify_checksum(Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(8, 8, 8, 8)));
                t.set_header_len(rng.below(64));
                touch_all(&t);
                let _ = t.payload_mut().len() + t.options_mut().len();
            }
        }
    }
}
