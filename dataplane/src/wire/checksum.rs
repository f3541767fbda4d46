//! Internet checksum (RFC 1071) helpers and incremental updates (RFC 1624).
//!
//! A checksum is computed in two steps: accumulate a partial one's-complement sum with
//! [`sum16`] (and [`pseudo_header_v4`] for TCP/UDP), then [`fold`] it into the final 16-bit
//! value to store in the header. A received header verifies when `fold(sum16(header, ..))`
//! is 0. Partial sums are plain `u32` values that can be added together as long as they do not
//! overflow (each `sum16` result and pseudo-header sum is below 2^20).

use std::net::Ipv4Addr;

/// One's-complement sum of `data` taken as big-endian 16-bit words (an odd trailing byte is
/// padded with a zero low byte), added to `initial`. Returns an unfolded partial sum; pass it
/// to [`fold`] (possibly after adding further partial sums) to get the checksum.
///
/// Processes 8 bytes per step with a 64-bit accumulator; never overflows for any slice length
/// that fits in memory. A zero return means `initial` and all data words were zero.
#[inline]
pub fn sum16(data: &[u8], initial: u32) -> u32 {
    let mut acc: u64 = initial as u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Two 32-bit halves: each add is < 2^32, so 2^31 chunks fit before overflow.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        acc += u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u16::from_be_bytes([rest[0], rest[1]]) as u64;
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        acc += (b as u64) << 8;
    }
    // Fold 64 -> 32 bits with end-around carry (2^32 == 1 mod 0xffff, so this preserves the
    // one's-complement value; and the result is 0 only if acc was 0).
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    // Keep the result small (< 2^17) so callers can add several partial sums safely.
    let mut s = acc as u32;
    s = (s & 0xffff) + (s >> 16);
    s
}

/// Folds a partial sum to 16 bits with end-around carry and complements it: the value to
/// store in a checksum field (or 0 when verifying a correct header).
#[inline]
pub fn fold(sum: u32) -> u16 {
    let mut s = (sum & 0xffff) + (sum >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Partial sum of the IPv4 pseudo header (source, destination, zero, protocol, L4 length)
/// used by TCP and UDP checksums.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + proto as u32 + len as u32
}

/// Folded checksum of a TCP or UDP `segment` (its checksum field as it stands) under the IPv4
/// pseudo header: 0 when a stored checksum verifies, the value to store when the field is 0.
#[inline]
pub fn l4_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let ph = pseudo_header_v4(src, dst, proto, segment.len() as u16);
    fold(sum16(segment, ph))
}

/// Incrementally updates checksum `csum` after a 16-bit header word changed from `old` to
/// `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`). For a header whose checksum was
/// correct the result equals a full recomputation.
#[inline]
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let s = (!csum) as u32 + (!old) as u32 + new as u32;
    fold(s)
}

/// Incrementally updates checksum `csum` after a 32-bit field (e.g. an IPv4 address)
/// changed from `old` to `new` (RFC 1624 eqn. 3 applied to both 16-bit halves).
#[inline]
pub fn update32(csum: u16, old: u32, new: u32) -> u16 {
    let s =
        (!csum) as u32 + (!(old >> 16) & 0xffff) + (!old & 0xffff) + (new >> 16) + (new & 0xffff);
    fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testrng::XorShift;

    /// Textbook RFC 1071 reference: 16-bit words, u64 accumulator, fold at the end.
    fn naive_sum(data: &[u8], initial: u32) -> u16 {
        let mut s: u64 = initial as u64;
        let mut i = 0;
        while i + 1 < data.len() {
            s += ((data[i] as u64) << 8) | data[i + 1] as u64;
            i += 2;
        }
        if i < data.len() {
            s += (data[i] as u64) << 8;
        }
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    fn naive_checksum(data: &[u8], initial: u32) -> u16 {
        !naive_sum(data, initial)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(&d, 0)), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // Classic example header with checksum 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(fold(sum16(&h, 0)), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(fold(sum16(&h, 0)), 0);
    }

    #[test]
    fn sum16_matches_naive_random() {
        let mut rng = XorShift::new(1);
        for len in 0..200 {
            for _ in 0..20 {
                let d = rng.bytes(len);
                let init = (rng.next_u64() as u32) & 0x000f_ffff;
                assert_eq!(fold(sum16(&d, init)), naive_checksum(&d, init), "len {len}");
            }
        }
        // A few large buffers, including all-0xff (maximum carries).
        for len in [1500usize, 9000, 65535, 65536] {
            let d = rng.bytes(len);
            assert_eq!(fold(sum16(&d, 0)), naive_checksum(&d, 0));
            let f = vec![0xffu8; len];
            assert_eq!(fold(sum16(&f, 0xfffff)), naive_checksum(&f, 0xfffff));
        }
    }

    #[test]
    fn sum16_zero_and_ones_corners() {
        assert_eq!(sum16(&[], 0), 0);
        assert_eq!(fold(0), 0xffff);
        assert_eq!(fold(sum16(&[0, 0, 0, 0], 0)), 0xffff);
        assert_eq!(fold(sum16(&[0xff, 0xff], 0)), 0x0000);
        assert_eq!(fold(sum16(&[0xff], 0)), naive_checksum(&[0xff], 0));
        // Partial sums can be chained.
        let mut rng = XorShift::new(7);
        let a = rng.bytes(40);
        let b = rng.bytes(33);
        let whole: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(fold(sum16(&b, sum16(&a, 0))), fold(sum16(&whole, 0)));
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let mut rng = XorShift::new(3);
        for _ in 0..1000 {
            let s = Ipv4Addr::from(rng.next_u64() as u32);
            let d = Ipv4Addr::from(rng.next_u64() as u32);
            let p = rng.byte();
            let l = rng.next_u64() as u16;
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
            bytes.push(0);
            bytes.push(p);
            bytes.extend_from_slice(&l.to_be_bytes());
            assert_eq!(
                fold(pseudo_header_v4(s, d, p, l)),
                naive_checksum(&bytes, 0)
            );
        }
    }

    /// Random data with one 16-bit word replaced: incremental == full recompute.
    #[test]
    fn update16_matches_recompute() {
        let mut rng = XorShift::new(11);
        for i in 0..20_000 {
            let words = 2 + rng.below(20);
            let mut d = rng.bytes(words * 2);
            // Make sure data is never all-zero (no valid header is).
            d[0] |= 0x40;
            if i % 7 == 0 {
                // Bias towards sums near 0xffff by setting everything to 0xff.
                for b in d.iter_mut().skip(2) {
                    *b = 0xff;
                }
            }
            let csum = naive_checksum(&d, 0);
            let k = 1 + rng.below(words - 1);
            let old = u16::from_be_bytes([d[2 * k], d[2 * k + 1]]);
            let new = match i % 5 {
                0 => 0,
                1 => 0xffff,
                _ => rng.next_u64() as u16,
            };
            d[2 * k..2 * k + 2].copy_from_slice(&new.to_be_bytes());
            assert_eq!(update16(csum, old, new), naive_checksum(&d, 0), "iter {i}");
        }
    }

    #[test]
    fn update32_matches_recompute() {
        let mut rng = XorShift::new(12);
        for i in 0..20_000 {
            let mut d = rng.bytes(20);
            d[0] = 0x45;
            let csum = naive_checksum(&d, 0);
            let old = u32::from_be_bytes([d[12], d[13], d[14], d[15]]);
            let new = match i % 4 {
                0 => 0,
                1 => 0xffff_ffff,
                _ => rng.next_u64() as u32,
            };
            d[12..16].copy_from_slice(&new.to_be_bytes());
            assert_eq!(update32(csum, old, new), naive_checksum(&d, 0), "iter {i}");
        }
    }
}
