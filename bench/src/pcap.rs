//! A minimal writer (and reader, for checks) of classic libpcap files: the 24-byte global
//! header (magic `0xa1b2c3d4` in host order, version 2.4, snaplen 65535, link type 1 =
//! Ethernet) followed by one 16-byte record header (seconds, microseconds, captured length,
//! original length) and the frame bytes per packet. This is the format `net_pcap`'s
//! `rx_pcap=FILE` reads through libpcap; no new dependency is needed to produce it.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Classic pcap magic (microsecond timestamps).
const MAGIC: u32 = 0xa1b2_c3d4;
/// Snapshot length announced in the header.
const SNAPLEN: u32 = 65535;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;

/// Writes `frames` (Ethernet frames without FCS) as a pcap file at `path` (replaced
/// atomically: written beside it, then renamed). Record `i` gets the timestamp `i` µs.
/// Returns the number of records.
pub fn write<'a>(path: &Path, frames: impl IntoIterator<Item = &'a [u8]>) -> Result<u64> {
    let tmp = path.with_extension("pcap.tmp");
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&MAGIC.to_ne_bytes());
    hdr.extend_from_slice(&2u16.to_ne_bytes());
    hdr.extend_from_slice(&4u16.to_ne_bytes());
    hdr.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
    hdr.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
    hdr.extend_from_slice(&SNAPLEN.to_ne_bytes());
    hdr.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    w.write_all(&hdr)?;
    let mut n = 0u64;
    for frame in frames {
        anyhow::ensure!(frame.len() as u32 <= SNAPLEN, "frame of {} bytes exceeds the snap length", frame.len());
        let len = frame.len() as u32;
        w.write_all(&((n / 1_000_000) as u32).to_ne_bytes())?;
        w.write_all(&((n % 1_000_000) as u32).to_ne_bytes())?;
        w.write_all(&len.to_ne_bytes())?;
        w.write_all(&len.to_ne_bytes())?;
        w.write_all(frame)?;
        n += 1;
    }
    w.flush()?;
    drop(w);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(n)
}

/// Reads the frames of a pcap file written by [`write`] (host byte order, Ethernet).
pub fn read(path: &Path) -> Result<Vec<Vec<u8>>> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(b.len() >= 24, "{}: shorter than a pcap header", path.display());
    let u32_at = |o: usize| -> Result<u32> {
        let s = b.get(o..o + 4).context("truncated pcap file")?;
        Ok(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    };
    anyhow::ensure!(u32_at(0)? == MAGIC, "{}: not a host-order microsecond pcap file", path.display());
    anyhow::ensure!(u32_at(20)? == LINKTYPE_ETHERNET, "{}: not an Ethernet capture", path.display());
    let mut out = Vec::new();
    let mut o = 24;
    while o < b.len() {
        let incl = u32_at(o + 8)? as usize;
        let frame = b.get(o + 16..o + 16 + incl).context("truncated pcap record")?;
        out.push(frame.to_vec());
        o += 16 + incl;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let dir = std::env::temp_dir().join(format!("bench-pcap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pcap");
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 60 + i as usize]).collect();
        assert_eq!(write(&path, frames.iter().map(|f| f.as_slice())).unwrap(), 5);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 24 + frames.iter().map(|f| 16 + f.len()).sum::<usize>());
        assert_eq!(&bytes[0..4], &MAGIC.to_ne_bytes());
        assert_eq!(&bytes[4..8], &[2u16.to_ne_bytes(), 4u16.to_ne_bytes()].concat()[..]);
        // First record: ts 0.000000, 60 captured of 60.
        assert_eq!(&bytes[24 + 8..24 + 16], &[60u32.to_ne_bytes(), 60u32.to_ne_bytes()].concat()[..]);
        assert_eq!(read(&path).unwrap(), frames);
        assert!(!path.with_extension("pcap.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
