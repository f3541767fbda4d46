//! The Linux IPVS connection-synchronisation protocol, version 1 (`net/netfilter/ipvs/
//! ip_vs_sync.c`): message encoder and a decoder that never panics.
//!
//! Wire format (network byte order). A message is one UDP datagram:
//!
//! ```text
//! header (8): u8 reserved = 0 | u8 syncid | be16 size (whole datagram)
//!             u8 nr_conns     | s8 version = 1 | u16 spare = 0
//! nr_conns entries, each starting on a 4-byte boundary (padding counted in `size`):
//!   IPv4 (36): u8 type = 0 | u8 protocol | be16 ver_size (version << 12 | length incl. options)
//!              be32 flags | be16 state | be16 cport | be16 vport | be16 dport
//!              be32 fwmark | be32 timeout (s) | be32 caddr | be32 vaddr | be32 daddr
//!   IPv6 (72): the same with type bit 0 set and 16-byte addresses
//!   then options {u8 type, u8 len, data}: 1 SEQ_DATA (24 bytes), 2 PE_DATA (≤ 255),
//!   3 PE_NAME (≤ 16); type bit 0x40 marks an option a receiver may skip.
//! ```
//!
//! Invariants and choices:
//! - [`decode`] is total: any byte string gives `Ok` or a typed [`DecodeError`], never a panic,
//!   and reads nothing outside the slice (it is fuzzed on branch `robust`).
//! - The checks are the kernel's (`ip_vs_process_message`, `ip_vs_proc_sync_conn`), with one
//!   deliberate difference: where the kernel drops "the rest of the buffer" after a malformed
//!   entry (keeping the entries before it), [`decode`] rejects the whole message. A message
//!   from a correct sender is never malformed; a malformed one is garbage or hostile and is
//!   counted, not half applied. What the kernel skips entry by entry (unknown mandatory
//!   option, unsupported protocol, invalid state, persistence-engine data without a name) is
//!   skipped entry by entry here too ([`Entry::Skipped`]), the others still decoded.
//! - A header that fails the version-1 test is a version-0 message to the kernel; this
//!   director speaks version 1 only and rejects it ([`DecodeError::Version`]).
//! - [`MessageBuilder`] lays entries out exactly as `ip_vs_sync_conn` does: padding before an
//!   entry (never after the last one), `ver_size` without the padding, options in the order
//!   SEQ_DATA, PE_DATA, PE_NAME, PE_NAME only after PE_DATA. At most 255 entries per message
//!   (`nr_conns` is one byte).
//!
//! Concurrency: plain functions and values; no I/O, no global state.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Default multicast group (`IP_VS_SYNC_GROUP`).
pub const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Default UDP port (`IP_VS_SYNC_PORT`); sync thread `i` uses `port + i`.
pub const SYNC_PORT: u16 = 8848;
/// Default multicast TTL.
pub const SYNC_TTL: u8 = 1;
/// IPv4 + UDP header bytes subtracted from the MTU for the default maximum message length.
pub const IPV4_UDP_HEADERS: u16 = 28;
/// Default maximum message length of a master: 1500 − 28 (the kernel ignores the
/// interface's MTU on the master side).
pub const DEFAULT_MAXLEN: u16 = 1500 - IPV4_UDP_HEADERS;
/// The protocol version this module speaks.
pub const VERSION: u8 = 1;
/// Message header length.
pub const HEADER_LEN: usize = 8;
/// Length of an IPv4 entry without options.
pub const V4_ENTRY_LEN: usize = 36;
/// Length of an IPv6 entry without options.
pub const V6_ENTRY_LEN: usize = 72;
/// Length of the SEQ_DATA option's data (two `struct ip_vs_seq`).
pub const SEQ_DATA_LEN: usize = 24;
/// Longest persistence-engine data (`IP_VS_PEDATA_MAXLEN`).
pub const PE_DATA_MAXLEN: usize = 255;
/// Longest persistence-engine name (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAXLEN: usize = 16;
/// Most entries one message can count.
pub const MAX_ENTRIES: usize = 255;

/// Entry `type` bit: the entry carries IPv6 addresses.
pub const TYPE_INET6: u8 = 1;

/// Option types.
pub mod opt {
    /// Sequence-number adjustments (NAT with helpers; never produced in DR).
    pub const SEQ_DATA: u8 = 1;
    /// Persistence-engine data (e.g. a SIP Call-ID).
    pub const PE_DATA: u8 = 2;
    /// Persistence-engine name.
    pub const PE_NAME: u8 = 3;
    /// Type bit: a receiver that does not know the option skips it (else the entry is dropped).
    pub const OPTIONAL: u8 = 0x40;
}

/// Connection flags (`IP_VS_CONN_F_*`, include/uapi/linux/ip_vs.h).
pub mod flags {
    /// Forwarding-method mask.
    pub const FWD_MASK: u32 = 0x0007;
    /// Masquerading (NAT).
    pub const MASQ: u32 = 0x0000;
    /// Local node.
    pub const LOCALNODE: u32 = 0x0001;
    /// Tunnelling.
    pub const TUNNEL: u32 = 0x0002;
    /// Direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// Cache bypass.
    pub const BYPASS: u32 = 0x0004;
    /// Entry created by synchronisation (set by the receiver).
    pub const SYNC: u32 = 0x0020;
    /// Hashed entry (never sent).
    pub const HASHED: u32 = 0x0040;
    /// No output packets (every method but NAT).
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not established (counted in InActConn).
    pub const INACTIVE: u32 = 0x0100;
    /// Output sequence adjustment.
    pub const OUT_SEQ: u32 = 0x0200;
    /// Input sequence adjustment.
    pub const IN_SEQ: u32 = 0x0400;
    /// Both sequence flags.
    pub const SEQ_MASK: u32 = 0x0600;
    /// Client port not yet known.
    pub const NO_CPORT: u32 = 0x0800;
    /// Persistence template.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling.
    pub const ONE_PACKET: u32 = 0x2000;
    /// Flags a backup accepts from a message (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
    /// Flags a backup updates on an existing entry (`IP_VS_CONN_F_BACKUP_UPD_MASK`).
    pub const BACKUP_UPD_MASK: u32 = INACTIVE | SEQ_MASK;
}

/// IP protocol numbers the kernel registers IPVS protocols for.
pub mod proto {
    /// Fwmark templates.
    pub const IP: u8 = 0;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ESP.
    pub const ESP: u8 = 50;
    /// AH.
    pub const AH: u8 = 51;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// Number of connection states of an IPVS protocol (`pp->num_states`), `None` for a protocol
/// the kernel has no IPVS support for.
pub fn protocol_states(protocol: u8) -> Option<u16> {
    match protocol {
        proto::TCP => Some(11),
        proto::UDP => Some(1),
        proto::SCTP => Some(13),
        proto::ESP | proto::AH => Some(1),
        _ => None,
    }
}

/// One `struct ip_vs_seq` (host order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seq {
    /// Initial sequence number.
    pub init_seq: u32,
    /// Delta in sequence numbers after init_seq.
    pub delta: u32,
    /// Delta in sequence numbers before init_seq.
    pub previous_delta: u32,
}

/// The SEQ_DATA option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqData {
    /// Incoming direction.
    pub in_seq: Seq,
    /// Outgoing direction.
    pub out_seq: Seq,
}

/// The three addresses of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addrs {
    /// An IPv4 entry.
    V4 {
        /// Client (templates: client & netmask).
        caddr: Ipv4Addr,
        /// Virtual address (fwmark templates: the mark).
        vaddr: Ipv4Addr,
        /// Real server.
        daddr: Ipv4Addr,
    },
    /// An IPv6 entry.
    V6 {
        /// Client.
        caddr: Ipv6Addr,
        /// Virtual address.
        vaddr: Ipv6Addr,
        /// Real server.
        daddr: Ipv6Addr,
    },
}

/// One synchronised connection or template, fields in host order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConn {
    /// IP protocol (0 for fwmark templates).
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` flags (the sender clears HASHED).
    pub flags: u32,
    /// Protocol state (templates: 0 NONE, 1 ASSURED).
    pub state: u16,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual port.
    pub vport: u16,
    /// Real-server port.
    pub dport: u16,
    /// Firewall mark of the connection's packets.
    pub fwmark: u32,
    /// The entry's timeout in seconds (0: the receiver's default for the state).
    pub timeout: u32,
    /// Addresses.
    pub addrs: Addrs,
    /// SEQ_DATA option.
    pub seq: Option<SeqData>,
    /// PE_DATA option (empty: absent).
    pub pe_data: Vec<u8>,
    /// PE_NAME option (empty: absent; only sent together with PE_DATA).
    pub pe_name: Vec<u8>,
}

impl SyncConn {
    /// An IPv4 entry without options.
    #[allow(clippy::too_many_arguments)]
    pub fn v4(
        protocol: u8,
        flags: u32,
        state: u16,
        (caddr, cport): (Ipv4Addr, u16),
        (vaddr, vport): (Ipv4Addr, u16),
        (daddr, dport): (Ipv4Addr, u16),
        fwmark: u32,
        timeout: u32,
    ) -> SyncConn {
        SyncConn {
            protocol,
            flags,
            state,
            cport,
            vport,
            dport,
            fwmark,
            timeout,
            addrs: Addrs::V4 {
                caddr,
                vaddr,
                daddr,
            },
            seq: None,
            pe_data: Vec::new(),
            pe_name: Vec::new(),
        }
    }

    /// True for a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }

    /// Bytes this entry takes on the wire, options included, padding excluded (its
    /// `ver_size` length).
    pub fn wire_len(&self) -> usize {
        let mut len = match self.addrs {
            Addrs::V4 { .. } => V4_ENTRY_LEN,
            Addrs::V6 { .. } => V6_ENTRY_LEN,
        };
        if self.seq.is_some() {
            len += 2 + SEQ_DATA_LEN;
        }
        if !self.pe_data.is_empty() {
            len += 2 + self.pe_data.len().min(PE_DATA_MAXLEN);
            if !self.pe_name.is_empty() {
                len += 2 + self.pe_name.len().min(PE_NAME_MAXLEN);
            }
        }
        len
    }

    /// Appends the entry (without padding) to `out`.
    fn write(&self, out: &mut Vec<u8>) {
        let len = self.wire_len();
        let ty = match self.addrs {
            Addrs::V4 { .. } => 0,
            Addrs::V6 { .. } => TYPE_INET6,
        };
        out.push(ty);
        out.push(self.protocol);
        // Version 0 in the top 4 bits; the length in the low 12.
        out.extend_from_slice(&((len as u16) & 0x0fff).to_be_bytes());
        out.extend_from_slice(&(self.flags & !flags::HASHED).to_be_bytes());
        out.extend_from_slice(&self.state.to_be_bytes());
        out.extend_from_slice(&self.cport.to_be_bytes());
        out.extend_from_slice(&self.vport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&self.fwmark.to_be_bytes());
        out.extend_from_slice(&self.timeout.to_be_bytes());
        match self.addrs {
            Addrs::V4 {
                caddr,
                vaddr,
                daddr,
            } => {
                out.extend_from_slice(&caddr.octets());
                out.extend_from_slice(&vaddr.octets());
                out.extend_from_slice(&daddr.octets());
            }
            Addrs::V6 {
                caddr,
                vaddr,
                daddr,
            } => {
                out.extend_from_slice(&caddr.octets());
                out.extend_from_slice(&vaddr.octets());
                out.extend_from_slice(&daddr.octets());
            }
        }
        if let Some(s) = &self.seq {
            out.push(opt::SEQ_DATA);
            out.push(SEQ_DATA_LEN as u8);
            for v in [
                s.in_seq.init_seq,
                s.in_seq.delta,
                s.in_seq.previous_delta,
                s.out_seq.init_seq,
                s.out_seq.delta,
                s.out_seq.previous_delta,
            ] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        if !self.pe_data.is_empty() {
            let data = &self.pe_data[..self.pe_data.len().min(PE_DATA_MAXLEN)];
            out.push(opt::PE_DATA);
            out.push(data.len() as u8);
            out.extend_from_slice(data);
            if !self.pe_name.is_empty() {
                let name = &self.pe_name[..self.pe_name.len().min(PE_NAME_MAXLEN)];
                out.push(opt::PE_NAME);
                out.push(name.len() as u8);
                out.extend_from_slice(name);
            }
        }
    }
}

/// Builds one message the way the kernel's master fills its sync buffer.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    maxlen: usize,
    syncid: u8,
}

impl MessageBuilder {
    /// An empty message for `syncid` that entries are added to while it stays within
    /// `maxlen` bytes (an entry larger than that on its own still gets a message of its own,
    /// as in the kernel).
    pub fn new(syncid: u8, maxlen: u16) -> MessageBuilder {
        let mut b = MessageBuilder {
            buf: Vec::with_capacity(usize::from(maxlen).max(HEADER_LEN + V6_ENTRY_LEN)),
            maxlen: usize::from(maxlen),
            syncid,
        };
        b.reset();
        b
    }

    /// Empties the message (header only).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&[
            0,
            self.syncid,
            0,
            HEADER_LEN as u8,
            0,
            VERSION,
            0,
            0,
        ]);
    }

    /// Entries in the message.
    pub fn count(&self) -> usize {
        usize::from(self.buf[4])
    }

    /// True when the message holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Adds `conn` if it fits (padding to a 4-byte boundary first). Returns false, changing
    /// nothing, when it does not: send [`Self::bytes`], [`Self::reset`], and add it again.
    /// An empty message always accepts.
    pub fn push(&mut self, conn: &SyncConn) -> bool {
        let len = conn.wire_len();
        let pad = (4 - self.buf.len() % 4) % 4;
        let fits = self.buf.len() + pad + len <= self.maxlen && self.count() < MAX_ENTRIES;
        if !fits && !self.is_empty() {
            return false;
        }
        if self.buf.len() + pad + len > usize::from(u16::MAX) {
            return false;
        }
        self.buf.resize(self.buf.len() + pad, 0);
        conn.write(&mut self.buf);
        self.buf[4] += 1;
        let size = (self.buf.len() as u16).to_be_bytes();
        self.buf[2] = size[0];
        self.buf[3] = size[1];
        true
    }

    /// The message as sent.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Encodes `conns` into as many messages as needed (each at most `maxlen` bytes unless a
/// single entry is larger).
pub fn encode_all(syncid: u8, maxlen: u16, conns: &[SyncConn]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = MessageBuilder::new(syncid, maxlen);
    for c in conns {
        if !b.push(c) {
            out.push(b.bytes().to_vec());
            b.reset();
            // An empty builder always accepts unless the entry alone exceeds 64 KiB, which
            // no entry can (at most 72 + 26 + 257 + 18 bytes).
            b.push(c);
        }
    }
    if !b.is_empty() {
        out.push(b.bytes().to_vec());
    }
    out
}

/// Why a whole message was rejected. [`DecodeError::name`] is the stable counter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the (version 0) header: the kernel's "message header too short".
    TooShort,
    /// The header's `size` is not the datagram's length ("bogus message size").
    Size {
        /// The header's size field.
        size: u16,
        /// The datagram's length.
        len: usize,
    },
    /// A backup with a syncid other than 0 got a message of another syncid.
    ForeignSyncid {
        /// The message's syncid.
        syncid: u8,
    },
    /// Not a version-1 header (reserved ≠ 0, version ≠ 1 or spare ≠ 0): a version-0
    /// message, which this director does not speak.
    Version {
        /// The version byte.
        version: u8,
    },
    /// `nr_conns` announces more entries than the message holds ("Dropping buffer, too
    /// small").
    Truncated {
        /// Index of the entry that did not fit.
        entry: usize,
    },
    /// An entry's length runs past the end of the message ("msg > buffer").
    EntrySize {
        /// Index of the entry.
        entry: usize,
    },
    /// An entry's version (top 4 bits of `ver_size`) is not 0.
    EntryVersion {
        /// Index of the entry.
        entry: usize,
    },
    /// An entry type other than IPv4 (0) or IPv6 (bit 0).
    EntryType {
        /// Index of the entry.
        entry: usize,
    },
    /// An entry's length is shorter than its fixed part.
    EntryTooShort {
        /// Index of the entry.
        entry: usize,
    },
    /// An option header runs past the entry.
    OptionTruncated {
        /// Index of the entry.
        entry: usize,
    },
    /// An option of length 0.
    OptionZeroLength {
        /// Index of the entry.
        entry: usize,
    },
    /// An option's data runs past the entry.
    OptionOverrun {
        /// Index of the entry.
        entry: usize,
    },
    /// SEQ_DATA of the wrong length or given twice.
    BadSeqData {
        /// Index of the entry.
        entry: usize,
    },
    /// PE_DATA or PE_NAME too long or given twice.
    BadPeOption {
        /// Index of the entry.
        entry: usize,
    },
}

impl DecodeError {
    /// Every counter name, in a stable order.
    pub const NAMES: [&'static str; 14] = [
        "too_short",
        "size",
        "foreign_syncid",
        "version",
        "truncated",
        "entry_size",
        "entry_version",
        "entry_type",
        "entry_too_short",
        "option_truncated",
        "option_zero_length",
        "option_overrun",
        "bad_seq_data",
        "bad_pe_option",
    ];

    /// Stable snake_case name (a counter).
    pub fn name(&self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// Index into [`Self::NAMES`].
    pub fn index(&self) -> usize {
        match self {
            DecodeError::TooShort => 0,
            DecodeError::Size { .. } => 1,
            DecodeError::ForeignSyncid { .. } => 2,
            DecodeError::Version { .. } => 3,
            DecodeError::Truncated { .. } => 4,
            DecodeError::EntrySize { .. } => 5,
            DecodeError::EntryVersion { .. } => 6,
            DecodeError::EntryType { .. } => 7,
            DecodeError::EntryTooShort { .. } => 8,
            DecodeError::OptionTruncated { .. } => 9,
            DecodeError::OptionZeroLength { .. } => 10,
            DecodeError::OptionOverrun { .. } => 11,
            DecodeError::BadSeqData { .. } => 12,
            DecodeError::BadPeOption { .. } => 13,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort => write!(f, "message shorter than its header"),
            DecodeError::Size { size, len } => {
                write!(f, "message size field {size} but datagram of {len} bytes")
            }
            DecodeError::ForeignSyncid { syncid } => write!(f, "message of syncid {syncid}"),
            DecodeError::Version { version } => {
                write!(f, "not a version 1 message (version byte {version})")
            }
            DecodeError::Truncated { entry } => write!(f, "entry {entry} missing"),
            DecodeError::EntrySize { entry } => {
                write!(f, "entry {entry} runs past the message")
            }
            DecodeError::EntryVersion { entry } => write!(f, "entry {entry}: unknown version"),
            DecodeError::EntryType { entry } => write!(f, "entry {entry}: unknown type"),
            DecodeError::EntryTooShort { entry } => {
                write!(f, "entry {entry}: shorter than its fixed part")
            }
            DecodeError::OptionTruncated { entry } => {
                write!(f, "entry {entry}: option header truncated")
            }
            DecodeError::OptionZeroLength { entry } => {
                write!(f, "entry {entry}: option of length 0")
            }
            DecodeError::OptionOverrun { entry } => {
                write!(f, "entry {entry}: option runs past the entry")
            }
            DecodeError::BadSeqData { entry } => write!(f, "entry {entry}: bad SEQ_DATA option"),
            DecodeError::BadPeOption { entry } => {
                write!(f, "entry {entry}: bad PE_DATA/PE_NAME option")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why one entry of an otherwise valid message was skipped (the kernel's per-entry drops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A mandatory option of unknown type.
    UnknownOption {
        /// The option type (without the optional bit).
        ty: u8,
    },
    /// A connection of a protocol without IPVS support.
    Protocol {
        /// The protocol number.
        protocol: u8,
    },
    /// A connection state beyond the protocol's states.
    State {
        /// The state.
        state: u16,
    },
    /// PE_DATA without PE_NAME ("Invalid PE parameters").
    PeWithoutName,
}

impl SkipReason {
    /// Stable snake_case name (a counter).
    pub fn name(&self) -> &'static str {
        match self {
            SkipReason::UnknownOption { .. } => "unknown_option",
            SkipReason::Protocol { .. } => "protocol",
            SkipReason::State { .. } => "state",
            SkipReason::PeWithoutName => "pe_without_name",
        }
    }
}

/// One entry of a decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A valid entry (the receiver adds [`flags::SYNC`] and masks with
    /// [`flags::BACKUP_MASK`]: [`SyncConn::flags`] is as sent).
    Conn(SyncConn),
    /// Skipped, the other entries still count.
    Skipped(SkipReason),
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sender's syncid.
    pub syncid: u8,
    /// Entries in message order (`nr_conns` of them).
    pub entries: Vec<Entry>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn v6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    if let Some(s) = b.get(at..at + 16) {
        o.copy_from_slice(s);
    }
    Ipv6Addr::from(o)
}

/// Decodes one datagram (no syncid filter). Never panics.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    decode_filtered(buf, 0)
}

/// Decodes one datagram as a backup with `syncid` does: with `syncid` ≠ 0, a message of
/// another syncid is [`DecodeError::ForeignSyncid`]. Never panics.
pub fn decode_filtered(buf: &[u8], syncid: u8) -> Result<Message, DecodeError> {
    // The version-0 header (4 bytes) is the shortest the kernel looks at.
    if buf.len() < 4 {
        return Err(DecodeError::TooShort);
    }
    let size = be16(buf, 2);
    if usize::from(size) != buf.len() {
        return Err(DecodeError::Size {
            size,
            len: buf.len(),
        });
    }
    let msg_syncid = buf[1];
    if syncid != 0 && msg_syncid != syncid {
        return Err(DecodeError::ForeignSyncid { syncid: msg_syncid });
    }
    if buf.len() < HEADER_LEN {
        // Four to seven bytes: a version-0 header at best.
        return Err(DecodeError::Version { version: 0 });
    }
    let (reserved, nr_conns, version, spare) = (buf[0], buf[4], buf[5], be16(buf, 6));
    if version != VERSION || reserved != 0 || spare != 0 {
        return Err(DecodeError::Version { version });
    }
    let mut entries = Vec::with_capacity(usize::from(nr_conns));
    let mut at = HEADER_LEN;
    for entry in 0..usize::from(nr_conns) {
        // Every entry is at least as long as an IPv4 one.
        if at.checked_add(V4_ENTRY_LEN).map_or(true, |end| end > buf.len()) {
            return Err(DecodeError::Truncated { entry });
        }
        let ver_size = be16(buf, at + 2);
        let size = usize::from(ver_size & 0x0fff);
        let end = at + size;
        if end > buf.len() {
            return Err(DecodeError::EntrySize { entry });
        }
        if ver_size >> 12 != 0 {
            return Err(DecodeError::EntryVersion { entry });
        }
        let e = buf.get(at..end).unwrap_or(&[]);
        entries.push(decode_entry(e, entry)?);
        // The next entry starts at the next 4-byte boundary.
        at += (size + 3) & !3;
    }
    Ok(Message {
        syncid: msg_syncid,
        entries,
    })
}

/// Decodes one entry (`e` is exactly its `ver_size` length; the first 36 bytes are known to
/// exist in the message, not necessarily in `e`).
fn decode_entry(e: &[u8], entry: usize) -> Result<Entry, DecodeError> {
    let ty = e.first().copied().unwrap_or(0);
    let fixed = if ty & TYPE_INET6 != 0 {
        V6_ENTRY_LEN
    } else if ty == 0 {
        V4_ENTRY_LEN
    } else {
        return Err(DecodeError::EntryType { entry });
    };
    if e.len() < fixed {
        return Err(DecodeError::EntryTooShort { entry });
    }
    let protocol = e[1];
    let flags_field = be32(e, 4);
    let state = be16(e, 8);
    let addrs = if fixed == V6_ENTRY_LEN {
        Addrs::V6 {
            caddr: v6(e, 24),
            vaddr: v6(e, 40),
            daddr: v6(e, 56),
        }
    } else {
        Addrs::V4 {
            caddr: Ipv4Addr::from(be32(e, 24)),
            vaddr: Ipv4Addr::from(be32(e, 28)),
            daddr: Ipv4Addr::from(be32(e, 32)),
        }
    };
    let mut conn = SyncConn {
        protocol,
        flags: flags_field,
        state,
        cport: be16(e, 10),
        vport: be16(e, 12),
        dport: be16(e, 14),
        fwmark: be32(e, 16),
        timeout: be32(e, 20),
        addrs,
        seq: None,
        pe_data: Vec::new(),
        pe_name: Vec::new(),
    };
    // Options: the kernel stops at the first unknown mandatory one and skips the entry.
    let mut p = fixed;
    let (mut has_pe_data, mut has_pe_name) = (false, false);
    while p < e.len() {
        let (Some(&ptype), Some(&plen)) = (e.get(p), e.get(p + 1)) else {
            return Err(DecodeError::OptionTruncated { entry });
        };
        p += 2;
        let plen = usize::from(plen);
        if plen == 0 {
            return Err(DecodeError::OptionZeroLength { entry });
        }
        let Some(data) = e.get(p..p + plen) else {
            return Err(DecodeError::OptionOverrun { entry });
        };
        match ptype & !opt::OPTIONAL {
            opt::SEQ_DATA => {
                if plen != SEQ_DATA_LEN || conn.seq.is_some() {
                    return Err(DecodeError::BadSeqData { entry });
                }
                let w = |i: usize| be32(data, i * 4);
                conn.seq = Some(SeqData {
                    in_seq: Seq {
                        init_seq: w(0),
                        delta: w(1),
                        previous_delta: w(2),
                    },
                    out_seq: Seq {
                        init_seq: w(3),
                        delta: w(4),
                        previous_delta: w(5),
                    },
                });
            }
            opt::PE_DATA => {
                if plen > PE_DATA_MAXLEN || has_pe_data {
                    return Err(DecodeError::BadPeOption { entry });
                }
                has_pe_data = true;
                conn.pe_data = data.to_vec();
            }
            opt::PE_NAME => {
                if plen > PE_NAME_MAXLEN || has_pe_name {
                    return Err(DecodeError::BadPeOption { entry });
                }
                has_pe_name = true;
                conn.pe_name = data.to_vec();
            }
            other => {
                if ptype & opt::OPTIONAL == 0 {
                    return Ok(Entry::Skipped(SkipReason::UnknownOption { ty: other }));
                }
            }
        }
        p += plen;
    }
    if !conn.is_template() {
        match protocol_states(protocol) {
            None => return Ok(Entry::Skipped(SkipReason::Protocol { protocol })),
            Some(n) if state >= n => return Ok(Entry::Skipped(SkipReason::State { state })),
            Some(_) => {}
        }
    }
    if has_pe_data && !has_pe_name {
        return Ok(Entry::Skipped(SkipReason::PeWithoutName));
    }
    Ok(Entry::Conn(conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds bytes the way `struct ip_vs_sync_v4` lays them out in memory (the kernel's
    /// structure, field by field, network order), independently of the encoder.
    #[allow(clippy::too_many_arguments)]
    fn kernel_v4(
        protocol: u8,
        size: u16,
        flags: u32,
        state: u16,
        ports: [u16; 3],
        fwmark: u32,
        timeout: u32,
        addrs: [[u8; 4]; 3],
    ) -> Vec<u8> {
        let mut v = vec![0u8, protocol];
        v.extend(size.to_be_bytes());
        v.extend(flags.to_be_bytes());
        v.extend(state.to_be_bytes());
        for p in ports {
            v.extend(p.to_be_bytes());
        }
        v.extend(fwmark.to_be_bytes());
        v.extend(timeout.to_be_bytes());
        for a in addrs {
            v.extend(a);
        }
        assert_eq!(v.len(), 36);
        v
    }

    fn header(syncid: u8, size: u16, n: u8) -> Vec<u8> {
        let mut v = vec![0, syncid];
        v.extend(size.to_be_bytes());
        v.extend([n, 1, 0, 0]);
        v
    }

    fn set_size(m: &mut [u8]) {
        let n = (m.len() as u16).to_be_bytes();
        m[2] = n[0];
        m[3] = n[1];
    }

    /// A fixture laid out as a kernel master sends it: an established TCP connection, a
    /// fwmark persistence template, and a UDP connection with a PE_DATA/PE_NAME pair
    /// followed by an optional unknown option, which forces padding before the next entry.
    fn fixture() -> Vec<u8> {
        let mut m = header(7, 0, 4);
        // 1. TCP 10.9.8.7:51234 -> 198.51.100.100:80 via 198.51.100.11:80, ESTABLISHED, DR.
        m.extend(kernel_v4(
            6,
            36,
            0x0083,
            1,
            [51234, 80, 80],
            0,
            900,
            [[10, 9, 8, 7], [198, 51, 100, 100], [198, 51, 100, 11]],
        ));
        // 2. fwmark 10 template: protocol IP, client 10.9.8.0, vaddr = the mark, ports 0.
        m.extend(kernel_v4(
            0,
            36,
            0x1183,
            1,
            [0, 0, 0],
            10,
            360,
            [[10, 9, 8, 0], [0, 0, 0, 10], [198, 51, 100, 12]],
        ));
        // 3. UDP with options: PE_DATA "call-1" (2 + 6), PE_NAME "sip" (2 + 3), and two
        //    optional options of unknown types (2 + 1 each): 36 + 8 + 5 + 3 + 3 = 55 bytes,
        //    so one byte of padding precedes the next entry.
        let mut e3 = kernel_v4(
            17,
            0,
            0x0183,
            0,
            [5353, 53, 53],
            0,
            300,
            [[10, 1, 1, 5], [198, 51, 100, 100], [198, 51, 100, 13]],
        );
        e3.extend([2, 6]);
        e3.extend(b"call-1");
        e3.extend([3, 3]);
        e3.extend(b"sip");
        e3.extend([0x47, 1, 0xaa]);
        e3.extend([0x48, 1, 0xbb]);
        let n = (e3.len() as u16).to_be_bytes();
        e3[2] = n[0];
        e3[3] = n[1];
        assert_eq!(e3.len(), 55);
        m.extend(&e3);
        m.push(0); // padding to the 4-byte boundary
        // 4. TCP entry with an unknown mandatory option (type 9): skipped, not fatal.
        let mut e4 = kernel_v4(
            6,
            40,
            0x0083,
            1,
            [1000, 80, 80],
            0,
            900,
            [[10, 2, 2, 2], [198, 51, 100, 100], [198, 51, 100, 11]],
        );
        e4.extend([9, 2, 0, 0]);
        m.extend(&e4);
        set_size(&mut m);
        m
    }

    #[test]
    fn kernel_layout_fixture_decodes_to_the_expected_entries() {
        let m = decode(&fixture()).expect("fixture decodes");
        assert_eq!(m.syncid, 7);
        assert_eq!(m.entries.len(), 4);
        let Entry::Conn(c) = &m.entries[0] else { panic!("{:?}", m.entries[0]) };
        assert_eq!(
            c,
            &SyncConn::v4(
                6,
                0x83,
                1,
                (Ipv4Addr::new(10, 9, 8, 7), 51234),
                (Ipv4Addr::new(198, 51, 100, 100), 80),
                (Ipv4Addr::new(198, 51, 100, 11), 80),
                0,
                900
            )
        );
        let Entry::Conn(t) = &m.entries[1] else { panic!() };
        assert!(t.is_template());
        assert_eq!((t.protocol, t.fwmark, t.timeout, t.state), (0, 10, 360, 1));
        assert_eq!(
            t.addrs,
            Addrs::V4 {
                caddr: Ipv4Addr::new(10, 9, 8, 0),
                vaddr: Ipv4Addr::new(0, 0, 0, 10),
                daddr: Ipv4Addr::new(198, 51, 100, 12)
            }
        );
        let Entry::Conn(u) = &m.entries[2] else { panic!() };
        assert_eq!((u.protocol, u.cport, u.vport, u.timeout), (17, 5353, 53, 300));
        assert_eq!((&u.pe_data[..], &u.pe_name[..]), (&b"call-1"[..], &b"sip"[..]));
        assert_eq!(m.entries[3], Entry::Skipped(SkipReason::UnknownOption { ty: 9 }));
    }

    #[test]
    fn encoder_reproduces_the_kernel_layout() {
        // Entries 1 and 2 of the fixture, re-encoded: byte-identical to the kernel layout.
        let fx = fixture();
        let m = decode(&fx).unwrap();
        let conns: Vec<SyncConn> = m.entries[..2]
            .iter()
            .map(|e| match e {
                Entry::Conn(c) => c.clone(),
                Entry::Skipped(_) => unreachable!(),
            })
            .collect();
        let out = encode_all(7, DEFAULT_MAXLEN, &conns);
        assert_eq!(out.len(), 1);
        let mut want = header(7, 8 + 72, 2);
        want.extend_from_slice(&fx[8..8 + 72]);
        assert_eq!(out[0], want);
    }

    #[test]
    fn options_pad_the_next_entry_and_round_trip() {
        let mut a = SyncConn::v4(
            17,
            0x183,
            0,
            (Ipv4Addr::new(10, 1, 1, 5), 5353),
            (Ipv4Addr::new(198, 51, 100, 100), 53),
            (Ipv4Addr::new(198, 51, 100, 13), 53),
            0,
            300,
        );
        a.pe_data = b"abcde".to_vec();
        a.pe_name = b"sip".to_vec();
        a.seq = Some(SeqData {
            in_seq: Seq {
                init_seq: 1,
                delta: 2,
                previous_delta: 3,
            },
            out_seq: Seq {
                init_seq: 4,
                delta: 5,
                previous_delta: 6,
            },
        });
        let mut b = a.clone();
        b.addrs = Addrs::V6 {
            caddr: "2001:db8::5".parse().unwrap(),
            vaddr: "2001:db8::100".parse().unwrap(),
            daddr: "2001:db8::13".parse().unwrap(),
        };
        b.pe_data.clear();
        b.pe_name.clear();
        let msgs = encode_all(0, DEFAULT_MAXLEN, &[a.clone(), b.clone(), a.clone()]);
        assert_eq!(msgs.len(), 1);
        let bytes = &msgs[0];
        // a: 36 + 26 + 7 + 5 = 74 bytes, then 2 bytes of padding before b.
        assert_eq!(a.wire_len(), 74);
        assert_eq!(&bytes[8 + 74..8 + 76], &[0, 0]);
        assert_eq!(bytes[8 + 76], TYPE_INET6);
        assert_eq!(bytes.len(), 8 + 76 + 98 + 2 + 74, "no padding after the last entry");
        let m = decode(bytes).unwrap();
        assert_eq!(
            m.entries,
            vec![Entry::Conn(a.clone()), Entry::Conn(b), Entry::Conn(a)]
        );
    }

    #[test]
    fn messages_respect_maxlen_and_the_entry_count() {
        let c = |i: u16| {
            SyncConn::v4(
                6,
                0x83,
                1,
                (Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), 1000 + i),
                (Ipv4Addr::new(198, 51, 100, 100), 80),
                (Ipv4Addr::new(198, 51, 100, 11), 80),
                0,
                900,
            )
        };
        let conns: Vec<SyncConn> = (0..100).map(c).collect();
        let msgs = encode_all(1, DEFAULT_MAXLEN, &conns);
        // (1472 - 8) / 36 = 40 entries per message.
        assert_eq!(
            msgs.iter().map(|m| decode(m).unwrap().entries.len()).collect::<Vec<_>>(),
            vec![40, 40, 20]
        );
        assert!(msgs.iter().all(|m| m.len() <= 1472));
        let big: Vec<SyncConn> = (0..600).map(c).collect();
        let msgs = encode_all(1, 65000, &big);
        assert_eq!(decode(&msgs[0]).unwrap().entries.len(), MAX_ENTRIES);
        // A maxlen below one entry still sends every entry, one per message.
        let msgs = encode_all(1, 20, &conns[..3]);
        assert_eq!(msgs.len(), 3);
    }

    #[test]
    fn malformed_messages_are_rejected_with_their_reason() {
        let good = fixture();
        let reason = |b: &[u8]| decode(b).unwrap_err().name();
        // Truncated datagram: the size field no longer matches.
        assert_eq!(reason(&good[..good.len() - 1]), "size");
        assert_eq!(reason(&good[..3]), "too_short");
        // Wrong size field.
        let mut m = good.clone();
        m[3] ^= 1;
        assert_eq!(reason(&m), "size");
        // Wrong version, non-zero reserved or spare: not a version-1 header.
        for (at, v) in [(5usize, 2u8), (0, 1), (7, 1)] {
            let mut m = good.clone();
            m[at] = v;
            assert_eq!(reason(&m), "version", "byte {at} = {v}");
        }
        // More entries announced than present.
        let mut m = good.clone();
        m[4] = 5;
        assert_eq!(reason(&m), "truncated");
        // Zero-length option (in entry 3, whose options start at 8+36+36+36).
        let mut m = good.clone();
        m[8 + 108 + 1] = 0;
        assert_eq!(reason(&m), "option_zero_length");
        // Option running past its entry.
        let mut m = good.clone();
        m[8 + 108 + 1] = 200;
        assert_eq!(reason(&m), "option_overrun");
        // An entry claiming more bytes than the message has.
        let mut m = good.clone();
        m[8 + 2] = 0x0f;
        assert_eq!(reason(&m), "entry_size");
        // Entry version bits.
        let mut m = good.clone();
        m[8 + 2] = 0x10;
        assert_eq!(reason(&m), "entry_version");
        // Unknown entry type.
        let mut m = good.clone();
        m[8] = 2;
        assert_eq!(reason(&m), "entry_type");
        // An entry shorter than its fixed part.
        let mut m = good.clone();
        m[8 + 3] = 20;
        assert_eq!(reason(&m), "entry_too_short");
        // SEQ_DATA of the wrong length.
        let mut c = SyncConn::v4(6, 0x683, 1, (Ipv4Addr::LOCALHOST, 1), (Ipv4Addr::LOCALHOST, 2), (Ipv4Addr::LOCALHOST, 3), 0, 9);
        c.seq = Some(SeqData::default());
        let mut m = encode_all(0, DEFAULT_MAXLEN, &[c])[0].clone();
        m[8 + 37] = 23;
        assert_eq!(reason(&m), "bad_seq_data");
        // Foreign syncid: only with a backup syncid ≠ 0.
        assert_eq!(decode_filtered(&good, 8).unwrap_err().name(), "foreign_syncid");
        assert!(decode_filtered(&good, 7).is_ok());
        assert!(decode_filtered(&good, 0).is_ok());
    }

    #[test]
    fn entries_the_kernel_skips_are_skipped_and_the_rest_decoded() {
        let ok = SyncConn::v4(6, 0x83, 1, (Ipv4Addr::new(10, 0, 0, 1), 1), (Ipv4Addr::new(10, 0, 0, 2), 80), (Ipv4Addr::new(10, 0, 0, 3), 80), 0, 900);
        let mut bad_state = ok.clone();
        bad_state.state = 11;
        let mut bad_proto = ok.clone();
        bad_proto.protocol = 47;
        let mut pe = ok.clone();
        pe.pe_data = b"x".to_vec();
        let mut tmpl_state = ok.clone();
        tmpl_state.flags |= flags::TEMPLATE;
        tmpl_state.protocol = 0;
        tmpl_state.state = 7; // templates: out of range is tolerated, as in the kernel
        let m = decode(&encode_all(0, DEFAULT_MAXLEN, &[bad_state, bad_proto, pe, tmpl_state.clone(), ok.clone()])[0]).unwrap();
        assert_eq!(
            m.entries,
            vec![
                Entry::Skipped(SkipReason::State { state: 11 }),
                Entry::Skipped(SkipReason::Protocol { protocol: 47 }),
                Entry::Skipped(SkipReason::PeWithoutName),
                Entry::Conn(tmpl_state),
                Entry::Conn(ok)
            ]
        );
    }

    #[test]
    fn reason_names_are_unique_and_indexed() {
        let mut n = DecodeError::NAMES.to_vec();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), DecodeError::NAMES.len());
        assert_eq!(DecodeError::Size { size: 1, len: 2 }.name(), "size");
        assert_eq!(DecodeError::BadPeOption { entry: 0 }.name(), "bad_pe_option");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

        /// Any bytes: a result, never a panic; anything accepted re-encodes to a message that
        /// decodes to the same entries.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
        }

        /// Mutations of a valid message: never a panic.
        #[test]
        fn mutated_fixture_never_panics(flips in proptest::collection::vec((0usize..200, proptest::prelude::any::<u8>()), 1..8), cut in 0usize..220) {
            let mut m = fixture();
            for (i, v) in flips {
                let n = m.len();
                m[i % n] = v;
            }
            let keep = cut.min(m.len());
            let _ = decode(&m);
            let mut t = m[..keep].to_vec();
            if t.len() >= 4 { set_size(&mut t); }
            if let Ok(msg) = decode(&t) {
                let conns: Vec<SyncConn> = msg.entries.iter().filter_map(|e| match e { Entry::Conn(c) => Some(c.clone()), _ => None }).collect();
                let mut back = 0;
                for enc in encode_all(msg.syncid, 65000, &conns) {
                    let again = decode(&enc).unwrap();
                    back += again.entries.iter().filter(|e| matches!(e, Entry::Conn(_))).count();
                }
                proptest::prop_assert_eq!(back, conns.len());
            }
        }
    }
}
