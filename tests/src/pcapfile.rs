//! Writing classic pcap files of UDP datagrams, for feeding independent dissectors (tshark)
//! with exactly the bytes our encoders produce.
//!
//! Invariants: little-endian pcap 2.4 with LINKTYPE_ETHERNET; every frame is a complete
//! Ethernet II / IPv4 (correct header checksum, TTL 1, DF clear) / UDP (checksum 0 = none)
//! frame, so a dissector has nothing to complain about below the payload.

use std::net::Ipv4Addr;
use std::path::Path;

/// One UDP datagram to write.
#[derive(Debug, Clone)]
pub struct UdpDatagram {
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port (a multicast group is fine).
    pub dst: (Ipv4Addr, u16),
    /// The UDP payload.
    pub payload: Vec<u8>,
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in h.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The Ethernet frame carrying `d` (multicast destinations get the matching group MAC).
pub fn frame(d: &UdpDatagram) -> Vec<u8> {
    let o = d.dst.0.octets();
    let dst_mac = if d.dst.0.is_multicast() {
        [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
    } else {
        [0x02, 0, 0, 0, 0, 2]
    };
    let mut f = Vec::with_capacity(42 + d.payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + d.payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0, 0, 1, 17, 0, 0]);
    ip.extend_from_slice(&d.src.0.octets());
    ip.extend_from_slice(&d.dst.0.octets());
    let c = ip_checksum(&ip).to_be_bytes();
    ip[10] = c[0];
    ip[11] = c[1];
    f.extend_from_slice(&ip);
    f.extend_from_slice(&d.src.1.to_be_bytes());
    f.extend_from_slice(&d.dst.1.to_be_bytes());
    f.extend_from_slice(&((8 + d.payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&d.payload);
    f
}

/// Writes `datagrams` as a pcap file at `path` (one frame each, 1 ms apart).
pub fn write(path: &Path, datagrams: &[UdpDatagram]) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, d) in datagrams.iter().enumerate() {
        let f = frame(d);
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    std::fs::write(path, out)
}
