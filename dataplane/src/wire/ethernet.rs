//! Ethernet II header view and a fast L2 classifier handling one optional VLAN tag.
//!
//! [`EthernetFrame`] covers the plain 14-byte header (dst, src, ethertype); its payload starts
//! right after it, VLAN tag included. [`parse_l2`] is what the packet path uses: it looks
//! through one 802.1Q (or 802.1ad) tag and says where the L3 header starts.

use super::{be16, put16, MacAddr, WireError};

/// EtherType values (host order) as found in the Ethernet type field.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (S-tag, "QinQ").
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Minimum Ethernet frame length without FCS; shorter frames are padded by the sender.
pub const MIN_FRAME_LEN: usize = 60;

mod field {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ETHERTYPE: usize = 12;
}

/// Zero-copy view of an Ethernet II header (14 bytes) and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than 14 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that it holds at least the 14-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// Gives the buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::DST..])
    }

    /// Source MAC address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr::from_slice(&self.buffer.as_ref()[field::SRC..])
    }

    /// The type field at offset 12 (for a tagged frame this is the TPID, e.g. 0x8100).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the 14-byte header (VLAN tag included, padding included).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST..field::DST + 6].copy_from_slice(&mac.0);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 6].copy_from_slice(&mac.0);
    }

    /// Sets the type field at offset 12.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, ethertype);
    }

    /// Mutable access to everything after the 14-byte header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Result of [`parse_l2`]: the L3 protocol and where its header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Info {
    /// EtherType of the L3 payload (after the VLAN tag if there was one).
    pub ethertype: u16,
    /// VLAN ID (low 12 bits of the TCI) when the frame carried an 802.1Q/802.1ad tag.
    pub vlan: Option<u16>,
    /// Offset of the L3 header in the frame: 14, or 18 when tagged.
    pub l3_offset: usize,
}

/// Classifies an Ethernet frame: looks through one 802.1Q or 802.1ad tag and returns the
/// inner EtherType, the VLAN ID and the L3 offset.
///
/// Only one tag is stripped: for a double-tagged frame the returned `ethertype` is the inner
/// TPID (0x8100), which callers treat as an unknown protocol. Errors: `Truncated` if the
/// frame is shorter than its (tagged) header.
#[inline]
pub fn parse_l2(buf: &[u8]) -> Result<L2Info, WireError> {
    if buf.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let et = be16(buf, field::ETHERTYPE);
    if et == ethertype::VLAN || et == ethertype::QINQ {
        if buf.len() < HEADER_LEN + VLAN_TAG_LEN {
            return Err(WireError::Truncated);
        }
        let tci = be16(buf, HEADER_LEN);
        Ok(L2Info {
            ethertype: be16(buf, HEADER_LEN + 2),
            vlan: Some(tci & 0x0fff),
            l3_offset: HEADER_LEN + VLAN_TAG_LEN,
        })
    } else {
        Ok(L2Info {
            ethertype: et,
            vlan: None,
            l3_offset: HEADER_LEN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testrng::XorShift;

    /// Start of a real untagged IPv4 frame (dst 52:54:00:12:34:56, src 02:42:ac:11:00:02).
    const UNTAGGED: [u8; 16] = [
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x08, 0x00, 0x45,
        0x00,
    ];

    /// Tagged ARP frame start: TPID 0x8100, TCI prio 5 VID 100, inner type ARP.
    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x81, 0x00, 0xa0,
        0x64, 0x08, 0x06, 0x00, 0x01,
    ];

    #[test]
    fn untagged_fields() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst(), "52:54:00:12:34:56".parse().unwrap());
        assert_eq!(f.src(), "02:42:ac:11:00:02".parse().unwrap());
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload(), &[0x45, 0x00]);
        let l2 = parse_l2(&UNTAGGED).unwrap();
        assert_eq!(
            l2,
            L2Info {
                ethertype: ethertype::IPV4,
                vlan: None,
                l3_offset: 14
            }
        );
    }

    #[test]
    fn tagged_parse() {
        let l2 = parse_l2(&TAGGED).unwrap();
        assert_eq!(l2.ethertype, ethertype::ARP);
        assert_eq!(l2.vlan, Some(100));
        assert_eq!(l2.l3_offset, 18);
        let mut qinq = TAGGED;
        qinq[12] = 0x88;
        qinq[13] = 0xa8;
        assert_eq!(parse_l2(&qinq).unwrap().vlan, Some(100));
        assert!(EthernetFrame::new_checked(&TAGGED[..])
            .unwrap()
            .dst()
            .is_broadcast());
    }

    #[test]
    fn setters() {
        let mut b = UNTAGGED;
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        let a: MacAddr = "aa:bb:cc:dd:ee:ff".parse().unwrap();
        let c: MacAddr = "11:22:33:44:55:66".parse().unwrap();
        f.set_dst(a);
        f.set_src(c);
        f.set_ethertype(ethertype::IPV6);
        f.payload_mut()[0] = 0x60;
        assert_eq!(f.dst(), a);
        assert_eq!(f.src(), c);
        assert_eq!(f.ethertype(), 0x86dd);
        assert_eq!(b[14], 0x60);
    }

    #[test]
    fn truncations() {
        for n in 0..UNTAGGED.len() {
            let r = parse_l2(&UNTAGGED[..n]);
            assert_eq!(r.is_ok(), n >= 14, "{n}");
            let f = EthernetFrame::new_checked(&UNTAGGED[..n]);
            assert_eq!(f.is_ok(), n >= 14);
            if let Ok(f) = f {
                let _ = (f.dst(), f.src(), f.ethertype(), f.payload().len());
            }
        }
        for n in 0..TAGGED.len() {
            assert_eq!(parse_l2(&TAGGED[..n]).is_ok(), n >= 18, "{n}");
        }
    }

    #[test]
    fn fuzz_no_panic() {
        let mut rng = XorShift::new(21);
        for _ in 0..20_000 {
            let len = rng.below(40);
            let mut b = rng.bytes(len);
            if len > 13 && rng.below(2) == 0 {
                b[12] = 0x81;
                b[13] = 0x00;
            }
            if let Ok(l2) = parse_l2(&b) {
                assert!(l2.l3_offset <= b.len());
            }
            if let Ok(mut f) = EthernetFrame::new_checked(&mut b[..]) {
                let _ = (f.dst(), f.src(), f.ethertype(), f.payload().len());
                f.set_dst(MacAddr::BROADCAST);
                f.set_src(MacAddr::ZERO);
                f.set_ethertype(1);
                let _ = f.payload_mut().len();
                let _ = f.into_inner();
            }
        }
    }
}
