//! IPv4 header view (RFC 791), options allowed.
//!
//! `new_checked` guarantees: buffer >= 20 bytes, version 4, IHL >= 5, header (IHL * 4) within
//! the buffer, and header length <= total length <= buffer length. The buffer may be longer
//! than the total length (Ethernet padding of short frames): [`Ipv4Packet::payload`] stops at
//! the total length, so the L4 view built on it never sees padding.

use std::net::Ipv4Addr;

use super::checksum::{fold, sum16};
use super::{be16, ip_at, put16, put_ip, WireError};

/// IP protocol numbers used by the director.
pub mod protocol {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_MASK: u16 = 0x1fff;

/// Zero-copy view of an IPv4 packet (header, options and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checks; fixed-header accessors panic if it is shorter than 20
    /// bytes (variable parts are always clamped to the buffer).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after validating it. Errors, in order of checking: `Truncated`
    /// (buffer < 20), `BadVersion` (not 4), `BadHeaderLen` (IHL < 5), `Truncated` (IHL * 4 >
    /// buffer), `BadTotalLen` (total length < IHL * 4 or > buffer). The checksum is not
    /// verified (see [`Self::verify_checksum`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let vi = b[field::VER_IHL];
        if vi >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = ((vi & 0x0f) as usize) * 4;
        if hl < HEADER_LEN {
            return Err(WireError::BadHeaderLen);
        }
        if hl > b.len() {
            return Err(WireError::Truncated);
        }
        let tl = be16(b, field::TOTAL_LEN) as usize;
        if tl < hl || tl > b.len() {
            return Err(WireError::BadTotalLen);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// Gives the buffer back (including any padding after the total length).
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), 20..=60.
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    /// The type-of-service byte (DSCP << 2 | ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Total length (header + payload) in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_frag(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the 13-bit field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_MASK) << 3
    }

    /// True for any fragment: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_MASK) != 0
    }

    /// True for the first fragment of a fragmented datagram (MF set, offset 0); it carries the
    /// L4 header. False for unfragmented packets. Non-first fragments are
    /// `is_fragment() && !is_first_fragment()` and carry no L4 header.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_MASK) == FLAG_MF
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol number (see [`protocol`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::DST)
    }

    /// Header length clamped to the buffer (never below 20 once the fixed header exists).
    #[inline]
    fn hl_clamped(&self) -> usize {
        let len = self.buffer.as_ref().len();
        self.header_len().max(HEADER_LEN).min(len)
    }

    /// End of the packet: total length clamped to the buffer.
    #[inline]
    fn end_clamped(&self) -> usize {
        let len = self.buffer.as_ref().len();
        (self.total_len() as usize).min(len)
    }

    /// Options bytes (between byte 20 and the header length; empty without options).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let hl = self.hl_clamped();
        &b[HEADER_LEN.min(hl)..hl]
    }

    /// Whole header including options (what the checksum covers).
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.hl_clamped()]
    }

    /// Payload: from the header length up to the total length (Ethernet padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.end_clamped();
        let start = self.hl_clamped().min(end);
        &self.buffer.as_ref()[start..end]
    }

    /// True if the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        fold(sum16(self.header(), 0)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (rounded down to a multiple of 4;
    /// 20..=60 expected).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ihl;
    }

    /// Sets the type-of-service byte.
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        put16(self.buffer.as_mut(), field::TOTAL_LEN, len);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        put16(self.buffer.as_mut(), field::IDENT, ident);
    }

    #[inline]
    fn set_flags_frag(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::FLAGS_FRAG, v);
    }

    /// Sets or clears DF.
    #[inline]
    pub fn set_dont_frag(&mut self, on: bool) {
        let v = self.flags_frag() & !FLAG_DF;
        self.set_flags_frag(if on { v | FLAG_DF } else { v });
    }

    /// Sets or clears MF.
    #[inline]
    pub fn set_more_frags(&mut self, on: bool) {
        let v = self.flags_frag() & !FLAG_MF;
        self.set_flags_frag(if on { v | FLAG_MF } else { v });
    }

    /// Sets the fragment offset in bytes (must be a multiple of 8; low bits are dropped).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = (self.flags_frag() & !FRAG_MASK) | ((offset >> 3) & FRAG_MASK);
        self.set_flags_frag(v);
    }

    /// Sets the TTL (checksum not updated).
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol (checksum not updated).
    #[inline]
    pub fn set_protocol(&mut self, proto: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = proto;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, csum: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, csum);
    }

    /// Sets the source address (checksum not updated).
    #[inline]
    pub fn set_src(&mut self, ip: Ipv4Addr) {
        put_ip(self.buffer.as_mut(), field::SRC, ip);
    }

    /// Sets the destination address (checksum not updated).
    #[inline]
    pub fn set_dst(&mut self, ip: Ipv4Addr) {
        put_ip(self.buffer.as_mut(), field::DST, ip);
    }

    /// Mutable options bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.hl_clamped();
        &mut self.buffer.as_mut()[HEADER_LEN.min(hl)..hl]
    }

    /// Mutable payload (up to the total length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end_clamped();
        let start = self.hl_clamped().min(end);
        &mut self.buffer.as_mut()[start..end]
    }

    /// Recomputes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = fold(sum16(self.header(), 0));
        self.set_checksum(c);
    }

    /// Decrements the TTL by one and patches the checksum incrementally (RFC 1624), which
    /// equals a full recomputation for a header whose checksum was correct (and keeps an
    /// incorrect one incorrect). Returns the new TTL. A TTL of 0 is left untouched (returns
    /// 0); callers drop TTL <= 1 before forwarding.
    #[inline]
    pub fn decrement_ttl_incremental(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        // RFC 1624 eqn. 3 with m = ttl << 8 | proto and m' = m - 0x0100: since ttl >= 1,
        // ~m + m' = 0xffff - 0x0100 = 0xfeff whatever the protocol, so
        // HC' = ~(~HC + 0xfeff) (same as `update16(hc, m, m')`, checked in tests).
        let c = fold((!self.checksum()) as u32 + 0xfeff);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
        ttl - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testrng::XorShift;

    /// The well-known example IPv4 header (Wikipedia "IPv4 header checksum"): UDP
    /// 192.168.0.1 -> 192.168.0.199, total length 0x73,
    /// DF, TTL 64, checksum 0xb861, followed by its 95 payload bytes (zeros here) and 4 bytes
    /// of trailing Ethernet padding.
    fn fixture() -> Vec<u8> {
        let mut v = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        v.resize(0x73, 0);
        v.extend_from_slice(&[0xee; 4]);
        v
    }

    /// Real IPv4 header with a Router Alert option (IHL 6), IGMPv2 report to 224.0.0.251,
    /// checksum 0x4110 (verified with tcpdump -vv).
    #[rustfmt::skip]
    const WITH_OPTIONS: [u8; 32] = [
        0x46, 0xc0, 0x00, 0x20, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x41, 0x10,
        0xc0, 0xa8, 0x01, 0x64, 0xe0, 0x00, 0x00, 0xfb,
        0x94, 0x04, 0x00, 0x00, // router alert
        0x16, 0x00, 0x09, 0x04, 0xe0, 0x00, 0x00, 0xfb, // igmp v2 report
    ];

    #[test]
    fn parse_fixture() {
        let b = fixture();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.tos(), 0);
        assert_eq!(p.total_len(), 0x73);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert!(!p.is_first_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::UDP);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 0x73 - 20); // padding excluded
        assert!(p.verify_checksum());
    }

    #[test]
    fn parse_options() {
        let p = Ipv4Packet::new_checked(&WITH_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.tos(), 0xc0);
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.protocol(), 2);
        assert_eq!(p.payload(), &WITH_OPTIONS[24..]);
        assert!(p.verify_checksum());
        let mut b = WITH_OPTIONS;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_checksum(0x1234);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert_eq!(p.checksum(), 0x4110);
    }

    #[test]
    fn validation_errors() {
        let good = fixture();
        let mut b = good.clone();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadVersion)
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadHeaderLen)
        );
        b[0] = 0x4f; // 60-byte header > total length 0x73? no: 60 <= 115, fine
        assert!(Ipv4Packet::new_checked(&b[..]).is_ok());
        assert_eq!(
            Ipv4Packet::new_checked(&b[..40]).err(),
            Some(WireError::Truncated)
        );
        let mut b = good.clone();
        b[2] = 0;
        b[3] = 19;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
        b[3] = 20;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.payload().is_empty());
        let mut b = good.clone();
        b[2] = 0x01; // 0x173 > buffer
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
        let mut b = WITH_OPTIONS;
        b[3] = 22; // total length inside the options
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).err(),
            Some(WireError::BadTotalLen)
        );
    }

    #[test]
    fn fragments() {
        let mut b = fixture();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_dont_frag(false);
        p.set_more_frags(true);
        assert!(p.is_fragment() && p.is_first_fragment());
        p.set_frag_offset(1480);
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.is_fragment() && !p.is_first_fragment());
        p.set_more_frags(false);
        assert!(p.is_fragment() && !p.is_first_fragment() && !p.more_frags());
        p.set_frag_offset(0);
        assert!(!p.is_fragment());
        p.set_dont_frag(true);
        assert!(p.dont_frag() && !p.is_fragment());
        assert_eq!(&b[6..8], &[0x40, 0x00]);
    }

    #[test]
    fn setters_roundtrip() {
        let mut b = [0u8; 40];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(24);
        p.set_tos(0x10);
        p.set_total_len(40);
        p.set_ident(0xbeef);
        p.set_ttl(3);
        p.set_protocol(protocol::TCP);
        p.set_src(Ipv4Addr::new(10, 1, 2, 3));
        p.set_dst(Ipv4Addr::new(10, 3, 2, 1));
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().fill(0xab);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.ident(), 0xbeef);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xab; 16]);
        assert_eq!(p.src(), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 3, 2, 1));
    }

    /// Full recomputation reference for the TTL test.
    fn full(b: &mut [u8]) -> u16 {
        let mut p = Ipv4Packet::new_unchecked(b);
        p.fill_checksum();
        p.checksum()
    }

    #[test]
    fn decrement_ttl_matches_full_recompute_random() {
        let mut rng = XorShift::new(41);
        for i in 0..100_000 {
            let opt_words = rng.below(11);
            let hl = 20 + opt_words * 4;
            let mut b = rng.bytes(hl);
            b[0] = 0x40 | (hl / 4) as u8;
            b[8] = 1 + rng.byte() % 255; // ttl >= 1
            if i % 3 == 0 {
                b[8] = 1 + (i % 255) as u8;
            }
            full(&mut b);
            let mut inc = b.clone();
            let t = Ipv4Packet::new_unchecked(&mut inc[..]).decrement_ttl_incremental();
            assert_eq!(t, b[8] - 1);
            b[8] -= 1;
            let want = full(&mut b);
            assert_eq!(inc, b, "iter {i}: want csum {want:04x}");
            assert!(Ipv4Packet::new_unchecked(&inc[..]).verify_checksum());
        }
    }

    /// Headers whose checksum is 0x0000 before or after the decrement (data sum 0xffff), the
    /// corner where a naive incremental update would produce 0xffff instead of 0x0000.
    #[test]
    fn decrement_ttl_checksum_corners() {
        let mut rng = XorShift::new(42);
        let mut hit_zero_before = 0;
        let mut hit_zero_after = 0;
        for _ in 0..200_000 {
            let mut b = rng.bytes(20);
            b[0] = 0x45;
            b[8] = 2 + rng.byte() % 254;
            b[10] = 0;
            b[11] = 0;
            // Tweak the ident word so the data sum becomes exactly 0xffff (csum 0) either
            // before or after the decrement.
            let target_after = rng.below(2) == 1;
            let s = {
                let mut c = b.clone();
                c[4] = 0;
                c[5] = 0;
                if target_after {
                    c[8] -= 1;
                }
                !fold(sum16(&c, 0)) // one's-complement data sum without ident (1..=0xffff)
            };
            // ident = 0xffff - s (one's complement) makes the total 0xffff.
            let ident = !s;
            b[4..6].copy_from_slice(&ident.to_be_bytes());
            let before = full(&mut b);
            let mut inc = b.clone();
            Ipv4Packet::new_unchecked(&mut inc[..]).decrement_ttl_incremental();
            b[8] -= 1;
            let after = full(&mut b);
            if before == 0 {
                hit_zero_before += 1;
            }
            if after == 0 {
                hit_zero_after += 1;
            }
            assert_eq!(inc, b);
            assert_ne!(Ipv4Packet::new_unchecked(&inc[..]).checksum(), 0xffff);
        }
        assert!(hit_zero_before > 1000 && hit_zero_after > 1000);
    }

    #[test]
    fn decrement_ttl_equals_update16_for_all_checksums() {
        use crate::wire::checksum::update16;
        for ttl in 1..=255u8 {
            for proto in [0u8, 1, 6, 17, 255] {
                let m = (ttl as u16) << 8 | proto as u16;
                for hc in (0..=0xffffu32).step_by(7).chain([0xfeff, 0xff00, 0xffff]) {
                    let mut b = [0x45u8; 20];
                    b[8] = ttl;
                    b[9] = proto;
                    b[10..12].copy_from_slice(&(hc as u16).to_be_bytes());
                    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
                    p.decrement_ttl_incremental();
                    assert_eq!(p.checksum(), update16(hc as u16, m, m - 0x100));
                }
            }
        }
    }

    #[test]
    fn decrement_ttl_zero_untouched() {
        let mut b = fixture();
        b[8] = 0;
        full(&mut b);
        let before = b.clone();
        assert_eq!(
            Ipv4Packet::new_unchecked(&mut b[..]).decrement_ttl_incremental(),
            0
        );
        assert_eq!(b, before);
    }

    fn touch_all<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
        let _ = (
            p.version(),
            p.header_len(),
            p.tos(),
            p.total_len(),
            p.ident(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
        );
        let _ = (p.is_first_fragment(), p.ttl(), p.protocol(), p.checksum());
        let _ = (p.src(), p.dst(), p.options().len(), p.payload().len());
        let _ = (p.header().len(), p.verify_checksum());
    }

    #[test]
    fn every_truncation() {
        let mut full_pkt = WITH_OPTIONS.to_vec();
        full_pkt.extend_from_slice(&[0; 6]);
        for n in 0..=full_pkt.len() {
            let r = Ipv4Packet::new_checked(&full_pkt[..n]);
            assert_eq!(r.is_ok(), n >= 32, "{n}");
            if let Ok(p) = r {
                touch_all(&p);
                assert_eq!(p.payload().len(), 8);
            }
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift::new(43);
        for i in 0..100_000 {
            let len = rng.below(100);
            let mut b = rng.bytes(len);
            if len > 0 && i % 2 == 0 {
                b[0] = 0x40 | (b[0] & 0x0f);
            }
            if len > 3 && i % 4 == 0 {
                let tl = rng.below(len + 1) as u16;
                b[2..4].copy_from_slice(&tl.to_be_bytes());
            }
            if let Ok(mut p) = Ipv4Packet::new_checked(&mut b[..]) {
                touch_all(&p);
                assert!(p.header().len() + p.payload().len() == p.total_len() as usize);
                let _ = p.decrement_ttl_incremental();
                p.fill_checksum();
                assert!(p.verify_checksum());
                // Setters that break length invariants must not make accessors panic.
                p.set_total_len(rng.next_u64() as u16);
                p.set_version_and_header_len(rng.below(64));
                touch_all(&p);
                let _ = p.payload_mut().len() + p.options_mut().len();
            }
        }
    }
}
