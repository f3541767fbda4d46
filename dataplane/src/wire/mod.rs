//! Zero-copy wire views over packet bytes (smoltcp style): Ethernet (+ one 802.1Q/802.1ad
//! tag), ARP, IPv4, TCP, UDP and ICMP, plus Internet checksum helpers and an allocating
//! packet builder for tests and benchmarks.
//!
//! Invariants:
//! - Every view `XxxPacket<T: AsRef<[u8]>>` wraps a byte buffer without copying it.
//!   `new_checked` validates the lengths (and the few fields that decide lengths or layout)
//!   exactly once; afterwards every accessor of that view is panic-free, whatever the bytes
//!   contain. Accessors that depend on length fields (payloads, options) additionally clamp
//!   to the buffer, so they stay panic-free even if a setter later rewrites a length field.
//!   `new_unchecked` skips validation: then only the fixed-size header must fit the buffer,
//!   otherwise accessors may panic (use it only on bytes you built or already checked).
//! - Checksums are *not* verified by `new_checked`; call `verify_checksum` where wanted.
//! - Multi-byte fields are stored in network byte order; getters return host-order integers,
//!   [`std::net::Ipv4Addr`] and [`MacAddr`]; setters take the same and write network order.
//! - No allocation and no `unsafe` anywhere in this module; only [`builder`] allocates and
//!   it is meant for tests and benchmarks, not for the packet path.
//! - Views hold no state besides the buffer, so they are `Send`/`Sync` as their buffer is;
//!   nothing here is shared between cores.
#![forbid(unsafe_code)]

pub mod arp;
pub mod builder;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use arp::ArpPacket;
pub use builder::Frame;
pub use ethernet::{parse_l2, EthernetFrame, L2Info};
pub use icmp::{IcmpPacket, Quoted};
pub use ipv4::Ipv4Packet;
pub use tcp::{TcpFlags, TcpPacket};
pub use udp::UdpPacket;

use std::fmt;
use std::str::FromStr;

/// Why a buffer was rejected by a `new_checked` constructor or parser.
///
/// Small and `Copy` so the dataplane can map each variant to a drop-reason counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the fixed header, or than the header length it announces
    /// (IPv4 IHL, TCP data offset, a VLAN tag, the quoted header of an ICMP error).
    Truncated,
    /// IPv4 version field is not 4.
    BadVersion,
    /// IPv4 IHL is below 5 (20 bytes).
    BadHeaderLen,
    /// IPv4 total length is below the header length or above the buffer length.
    BadTotalLen,
    /// A checksum did not verify (returned by callers that chose to verify).
    BadChecksum,
    /// TCP data offset is below 5 (20 bytes).
    BadTcpHeaderLen,
    /// UDP length field is below 8 or above the buffer length.
    BadUdpLen,
    /// ARP that is not Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4), or a frame that
    /// cannot be answered (e.g. not a request).
    BadArp,
}

impl WireError {
    /// Short stable name, usable as a counter label.
    #[inline]
    pub const fn as_str(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::BadVersion => "bad_version",
            WireError::BadHeaderLen => "bad_header_len",
            WireError::BadTotalLen => "bad_total_len",
            WireError::BadChecksum => "bad_checksum",
            WireError::BadTcpHeaderLen => "bad_tcp_header_len",
            WireError::BadUdpLen => "bad_udp_len",
            WireError::BadArp => "bad_arp",
        }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for WireError {}

/// An Ethernet (EUI-48) MAC address; displayed and parsed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Wraps six octets.
    #[inline]
    pub const fn new(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }

    /// The six octets, in wire order.
    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The six octets as a slice.
    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// True for `ff:ff:ff:ff:ff:ff`.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// True when the group bit (least significant bit of the first octet) is set; this
    /// includes broadcast.
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for an individual (non-group) address; `ZERO` counts as unicast here.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Reads a MAC from the first six bytes of `b`.
    ///
    /// Panics if `b` is shorter than 6; used by the views only within validated bounds.
    #[inline]
    pub(crate) fn from_slice(b: &[u8]) -> Self {
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }
}

impl From<[u8; 6]> for MacAddr {
    #[inline]
    fn from(o: [u8; 6]) -> Self {
        MacAddr(o)
    }
}

impl From<MacAddr> for [u8; 6] {
    #[inline]
    fn from(m: MacAddr) -> Self {
        m.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error returned when a string is not a MAC address of the form `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseMacAddrError;

impl fmt::Display for ParseMacAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address (expected aa:bb:cc:dd:ee:ff)")
    }
}

impl std::error::Error for ParseMacAddrError {}

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    /// Parses six colon-separated groups of one or two hex digits (`-` is accepted as the
    /// separator too, as printed by some tools). Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(ParseMacAddrError);
            }
            if !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseMacAddrError);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| ParseMacAddrError)?;
            n += 1;
        }
        if n != 6 {
            return Err(ParseMacAddrError);
        }
        Ok(MacAddr(out))
    }
}

// ---- private byte helpers shared by the views (all callers stay within validated bounds) ----

/// Big-endian u16 at `off`.
#[inline(always)]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Big-endian u32 at `off`.
#[inline(always)]
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Writes `v` big-endian at `off`.
#[inline(always)]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` big-endian at `off`.
#[inline(always)]
pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// IPv4 address at `off`.
#[inline(always)]
pub(crate) fn ip_at(b: &[u8], off: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[off], b[off + 1], b[off + 2], b[off + 3])
}

/// Writes an IPv4 address at `off`.
#[inline(always)]
pub(crate) fn put_ip(b: &mut [u8], off: usize, ip: std::net::Ipv4Addr) {
    b[off..off + 4].copy_from_slice(&ip.octets());
}

/// Deterministic xorshift64* generator shared by the unit tests (no external crates).
#[cfg(test)]
pub(crate) mod testrng {
    /// Tiny deterministic PRNG for tests.
    pub struct XorShift(u64);

    impl XorShift {
        /// Seeded generator (seed 0 is remapped).
        pub fn new(seed: u64) -> Self {
            XorShift(if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            })
        }
        /// Next 64 random bits.
        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform-ish value in `0..n` (n > 0).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        /// Random byte.
        pub fn byte(&mut self) -> u8 {
            self.next_u64() as u8
        }
        /// Fills `buf` with random bytes.
        pub fn fill(&mut self, buf: &mut [u8]) {
            for b in buf.iter_mut() {
                *b = self.byte();
            }
        }
        /// A random vector of length `len`.
        pub fn bytes(&mut self, len: usize) -> Vec<u8> {
            let mut v = vec![0u8; len];
            self.fill(&mut v);
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_display_parse_roundtrip() {
        let m = MacAddr([0x02, 0x00, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!(m.to_string(), "02:00:5e:10:ab:ff");
        assert_eq!("02:00:5e:10:ab:ff".parse::<MacAddr>(), Ok(m));
        assert_eq!("02:00:5E:10:AB:FF".parse::<MacAddr>(), Ok(m));
        assert_eq!("02-00-5e-10-ab-ff".parse::<MacAddr>(), Ok(m));
        assert_eq!("2:0:5e:10:ab:ff".parse::<MacAddr>(), Ok(m));
        assert_eq!(format!("{m:?}"), "02:00:5e:10:ab:ff");
    }

    #[test]
    fn mac_parse_rejects_garbage() {
        for s in [
            "",
            "02:00:5e:10:ab",
            "02:00:5e:10:ab:ff:00",
            "02:00:5e:10:ab:",
            "02::5e:10:ab:ff",
            "002:00:5e:10:ab:ff",
            "0g:00:5e:10:ab:ff",
            "+1:00:5e:10:ab:ff",
            "02:00-5e:10:ab:ff",
            " 02:00:5e:10:ab:ff",
        ] {
            assert_eq!(s.parse::<MacAddr>(), Err(ParseMacAddrError), "{s:?}");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        let mc = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
        assert!(mc.is_multicast() && !mc.is_broadcast() && !mc.is_unicast());
        let uc = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert!(uc.is_unicast() && !uc.is_multicast() && !uc.is_broadcast());
        assert!(MacAddr::ZERO.is_unicast());
        assert_eq!(MacAddr::default(), MacAddr::ZERO);
    }

    /// Runs the whole parse chain the dataplane uses and touches every accessor.
    fn parse_chain(frame: &mut [u8]) -> Result<(), WireError> {
        let l2 = parse_l2(frame)?;
        let (l2b, l3) = frame.split_at_mut(l2.l3_offset);
        let mut e = EthernetFrame::new_checked(l2b)?;
        let _ = (e.dst(), e.src(), e.ethertype(), e.payload().len());
        e.set_src(MacAddr::ZERO);
        match l2.ethertype {
            ethernet::ethertype::ARP => {
                let a = ArpPacket::new_checked(&*l3)?;
                let _ = (
                    a.operation(),
                    a.sha(),
                    a.spa(),
                    a.tha(),
                    a.tpa(),
                    a.is_gratuitous(),
                );
                let _ = arp::make_reply_in_place(frame, l2.l3_offset, MacAddr::BROADCAST);
                Ok(())
            }
            ethernet::ethertype::IPV4 => {
                let mut ip = Ipv4Packet::new_checked(l3)?;
                let _ = (
                    ip.version(),
                    ip.header_len(),
                    ip.tos(),
                    ip.total_len(),
                    ip.ident(),
                );
                let _ = (
                    ip.dont_frag(),
                    ip.more_frags(),
                    ip.frag_offset(),
                    ip.is_fragment(),
                );
                let _ = (
                    ip.is_first_fragment(),
                    ip.ttl(),
                    ip.checksum(),
                    ip.options().len(),
                );
                let _ = ip.verify_checksum();
                let (s, d) = (ip.src(), ip.dst());
                match ip.protocol() {
                    ipv4::protocol::TCP => {
                        let t = TcpPacket::new_checked(ip.payload())?;
                        let _ = (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number());
                        let _ = (t.flags(), t.window(), t.urgent(), t.checksum());
                        let _ = (
                            t.options().len(),
                            t.payload().len(),
                            t.verify_checksum(s, d),
                        );
                    }
                    ipv4::protocol::UDP => {
                        let u = UdpPacket::new_checked(ip.payload())?;
                        let _ = (u.src_port(), u.dst_port(), u.len(), u.payload().len());
                        let _ = u.verify_checksum(s, d);
                    }
                    ipv4::protocol::ICMP => {
                        let i = IcmpPacket::new_checked(ip.payload())?;
                        let _ = (i.msg_type(), i.code(), i.echo_ident(), i.echo_seq());
                        let _ = (i.next_hop_mtu(), i.is_error(), i.verify_checksum());
                        if i.is_error() {
                            i.quoted()?;
                        }
                    }
                    _ => {}
                }
                ip.decrement_ttl_incremental();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn sample_frames() -> Vec<Vec<u8>> {
        let a = std::net::Ipv4Addr::new(192, 0, 2, 1);
        let b = std::net::Ipv4Addr::new(198, 51, 100, 7);
        let inner = Frame::udp().src(b, 5000).dst(a, 53).build_ipv4();
        vec![
            Frame::tcp()
                .src(a, 1)
                .dst(b, 2)
                .tcp_options(&[2, 4, 5, 0xb4])
                .build(),
            Frame::tcp()
                .vlan(Some(9))
                .ip_options(&[1, 1, 1, 0])
                .payload(b"GET /")
                .build(),
            Frame::udp().payload(&[7; 30]).build(),
            Frame::icmp_echo(1, 2)
                .vlan(Some(3))
                .payload(b"abcdefgh")
                .build(),
            Frame::icmp_error(3, 4, &inner).mtu(1400).build(),
            Frame::arp_request(MacAddr([2, 0, 0, 0, 0, 1]), a, b).build(),
            Frame::arp_request(MacAddr([2, 0, 0, 0, 0, 1]), a, b)
                .vlan(Some(1))
                .build(),
            Frame::raw_ip(47).payload(&[0; 12]).build(),
        ]
    }

    #[test]
    fn chain_accepts_samples_and_every_truncation_is_safe() {
        for f in sample_frames() {
            let mut full = f.clone();
            assert_eq!(parse_chain(&mut full), Ok(()));
            for n in 0..f.len() {
                let mut p = f[..n].to_vec();
                let _ = parse_chain(&mut p); // must not panic
            }
        }
    }

    #[test]
    fn chain_mutation_fuzz_no_panic() {
        let mut rng = testrng::XorShift::new(99);
        let samples = sample_frames();
        let mut outcomes = std::collections::HashMap::new();
        for i in 0..200_000 {
            let mut f = samples[i % samples.len()].clone();
            for _ in 0..1 + rng.below(4) {
                let k = rng.below(f.len());
                f[k] = rng.byte();
            }
            if rng.below(4) == 0 {
                let n = rng.below(f.len() + 1);
                f.truncate(n);
            }
            *outcomes.entry(parse_chain(&mut f)).or_insert(0u32) += 1;
        }
        // The mutations reach both acceptance and a variety of rejections.
        assert!(outcomes.get(&Ok(())).copied().unwrap_or(0) > 1000);
        assert!(outcomes.len() >= 6, "{outcomes:?}");
    }

    #[test]
    fn error_display() {
        assert_eq!(WireError::Truncated.to_string(), "truncated");
        assert_eq!(WireError::BadArp.to_string(), "bad_arp");
    }
}
