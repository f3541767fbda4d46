//! Persistence-consistent steering of packets to worker cores.
//!
//! Every packet of one persistence key (client address & netmask) must be handled by one
//! owner worker, because each worker keeps its own connection and template tables. The owner
//! is a function of the client address masked with the widest persistence netmask in use:
//! `reta[toeplitz(key, src & mask) mod |reta|]`. The NIC is programmed with the same key, the
//! same redirection table and IPv4-source-only hashing where the PMD supports it, so with the
//! default /32 mask nearly every packet arrives at its owner; packets that arrive elsewhere
//! (PMDs without RSS, such as af_packet which fans out by 4-tuple, or wider netmasks) are
//! handed to the owner through a single-producer/single-consumer ring.
//!
//! ICMP errors are steered by the address they quote as destination (the client of the
//! connection they are about); ARP and non-IPv4 frames are handled where they arrive.

use std::net::Ipv4Addr;

/// The RSS key (the widely used default Toeplitz key of Microsoft's RSS specification).
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// Toeplitz hash of `input` with `key` (the RSS hash function), bit by bit.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut hash = 0u32;
    // The 32-bit window of the key starting at bit i.
    let window = |i: usize| -> u32 {
        let mut w = 0u32;
        for b in 0..32 {
            let bit = i + b;
            let byte = key.get(bit / 8).copied().unwrap_or(0);
            w = (w << 1) | u32::from((byte >> (7 - bit % 8)) & 1);
        }
        w
    };
    for (n, byte) in input.iter().enumerate() {
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                hash ^= window(n * 8 + b);
            }
        }
    }
    hash
}

/// Owner computation for one snapshot of the configuration.
#[derive(Debug, Clone)]
pub struct Steering {
    workers: u16,
    mask: u32,
    /// Redirection table (power-of-two length): hash bucket → worker.
    reta: Vec<u16>,
    /// Toeplitz contribution of each byte value at each of the 4 address byte positions.
    table: Box<[[u32; 256]; 4]>,
}

impl Steering {
    /// Steering over `workers` workers with a redirection table of `reta_size` entries (the
    /// NIC's, or 128 when the PMD has none), filled round robin as DPDK's default.
    pub fn new(workers: u16, reta_size: u16) -> Steering {
        let size = if reta_size == 0 { 128 } else { reta_size.next_power_of_two() } as usize;
        let workers = workers.max(1);
        let reta = (0..size).map(|i| (i % workers as usize) as u16).collect();
        let mut table = Box::new([[0u32; 256]; 4]);
        for (pos, t) in table.iter_mut().enumerate() {
            for (v, e) in t.iter_mut().enumerate() {
                let mut input = [0u8; 4];
                input[pos] = v as u8;
                *e = toeplitz(&RSS_KEY, &input);
            }
        }
        Steering { workers, mask: u32::MAX, reta, table }
    }

    /// Number of workers.
    pub fn workers(&self) -> u16 {
        self.workers
    }

    /// The redirection table (to program the NIC with).
    pub fn reta(&self) -> &[u16] {
        &self.reta
    }

    /// Sets the client mask (the widest persistence netmask of the configuration).
    pub fn set_mask(&mut self, mask: u32) {
        self.mask = mask;
    }

    /// The client mask in use.
    pub fn mask(&self) -> u32 {
        self.mask
    }

    /// RSS hash of an IPv4 source address, as the NIC computes it with IPv4-source-only
    /// hashing and [`RSS_KEY`].
    #[inline]
    pub fn hash(&self, addr: u32) -> u32 {
        let b = addr.to_be_bytes();
        self.table[0][b[0] as usize] ^ self.table[1][b[1] as usize] ^ self.table[2][b[2] as usize] ^ self.table[3][b[3] as usize]
    }

    /// The worker owning client `src`.
    #[inline]
    pub fn owner(&self, src: Ipv4Addr) -> u16 {
        if self.workers == 1 {
            return 0;
        }
        let h = self.hash(u32::from(src) & self.mask);
        self.reta.get(h as usize & (self.reta.len() - 1)).copied().unwrap_or(0)
    }
}

/// The address a frame is steered by: the IPv4 source, or for ICMP errors the quoted
/// destination (the client). `None` for frames handled wherever they arrive (ARP, non-IPv4,
/// malformed: the engine drops and counts those).
#[inline]
pub fn steer_addr(frame: &[u8]) -> Option<Ipv4Addr> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..34)?;
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[9] == 1 {
        // ICMP error: type at l4, quoted IPv4 header at l4 + 8 (its destination at +16).
        let l4 = 14 + ihl;
        let ty = *frame.get(l4)?;
        if matches!(ty, 3 | 4 | 11) {
            let q = frame.get(l4 + 8 + 16..l4 + 8 + 20)?;
            return Some(Ipv4Addr::new(q[0], q[1], q[2], q[3]));
        }
    }
    Some(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's RSS verification suite, IPv4 without ports (input = src ‖ dst).
    #[test]
    fn toeplitz_matches_the_rss_verification_suite() {
        let cases = [
            ([66, 9, 149, 187], [161, 142, 100, 80], 0x323e8fc2u32),
            ([199, 92, 111, 2], [65, 69, 140, 83], 0xd718262a),
            ([24, 19, 198, 95], [12, 22, 207, 184], 0xd2d0a5de),
            ([38, 27, 205, 30], [209, 142, 163, 6], 0x82989176),
            ([153, 39, 163, 191], [202, 188, 127, 2], 0x5d1809c5),
        ];
        for (src, dst, want) in cases {
            let mut input = [0u8; 8];
            input[..4].copy_from_slice(&src);
            input[4..].copy_from_slice(&dst);
            assert_eq!(toeplitz(&RSS_KEY, &input), want, "{src:?} -> {dst:?}");
        }
    }

    #[test]
    fn table_hash_equals_the_bitwise_hash_and_owners_spread() {
        let s = Steering::new(2, 512);
        let mut per = [0u32; 2];
        for i in 0..10_000u32 {
            let a = i.wrapping_mul(2_654_435_761);
            assert_eq!(s.hash(a), toeplitz(&RSS_KEY, &a.to_be_bytes()));
            per[s.owner(Ipv4Addr::from(a)) as usize] += 1;
        }
        assert!(per.iter().all(|&n| n > 4000), "{per:?}");
    }

    #[test]
    fn a_masked_subnet_has_one_owner() {
        let mut s = Steering::new(4, 128);
        s.set_mask(0xffff_ff00);
        let o = s.owner(Ipv4Addr::new(203, 0, 113, 1));
        assert!((0..=255).all(|h| s.owner(Ipv4Addr::new(203, 0, 113, h)) == o));
        assert_eq!(Steering::new(1, 0).owner(Ipv4Addr::new(1, 2, 3, 4)), 0);
    }

    #[test]
    fn icmp_errors_are_steered_by_the_quoted_client() {
        use crate::wire::Frame;
        let client = Ipv4Addr::new(203, 0, 113, 7);
        let vip = Ipv4Addr::new(198, 51, 100, 100);
        let tcp = Frame::tcp().src(client, 1).dst(vip, 80).build();
        assert_eq!(steer_addr(&tcp), Some(client));
        let reply = Frame::tcp().src(vip, 80).dst(client, 1).build_ipv4();
        let err = Frame::icmp_error(3, 4, &reply).src_ip(Ipv4Addr::new(192, 0, 2, 1)).dst_ip(vip).build();
        assert_eq!(steer_addr(&err), Some(client));
        let echo = Frame::icmp_echo(1, 1).src_ip(client).dst_ip(vip).build();
        assert_eq!(steer_addr(&echo), Some(client));
        assert_eq!(steer_addr(&Frame::arp_request(crate::wire::MacAddr::ZERO, client, vip).build()), None);
        assert_eq!(steer_addr(&[0u8; 20]), None);
    }
}
