//! The `sync` target: one IPVS sync datagram as a backup daemon receives it (the first input
//! byte is the backup's syncid filter, the rest the UDP payload).
//!
//! Invariants:
//! - decoding never panics; every error has a name;
//! - an accepted message's valid entries, re-encoded by the director's own builder
//!   (`encode_all`, as the master sends them), decode to the same entries in the same order
//!   (less the HASHED flag, which a sender clears);
//! - the backup path (`dataplane::sync::backup_receive`: size check, decode with the syncid
//!   filter, conversion, steering to the owner worker's queue) counts the datagram exactly
//!   once (received, and accepted or rejected by one reason) and every entry of an accepted
//!   one exactly once (delivered to a queue, skipped by a reason, or dropped on a full queue);
//!   a delivered record went to the worker that owns its client address.

use std::net::Ipv4Addr;
use std::sync::Arc;

use control::sync_proto::{decode, encode_all, Entry, SyncConn};
use dataplane::steer::Steering;
use dataplane::sync::{backup_receive, DaemonStats, Received, SyncPort, SyncShared};

/// Workers the backup path steers to.
const WORKERS: u16 = 2;

/// The target body.
pub fn run(data: &[u8]) {
    let Some((&syncid, buf)) = data.split_first() else { return };
    match decode(buf) {
        Ok(m) => {
            let conns: Vec<SyncConn> = m
                .entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Conn(c) => Some(c.clone()),
                    Entry::Skipped(_) => None,
                })
                .collect();
            let again: Vec<Entry> = encode_all(m.syncid, u16::MAX, &conns)
                .iter()
                .flat_map(|msg| decode(msg).expect("a message of our own builder decodes").entries)
                .collect();
            // The sender clears HASHED, as the kernel's does; everything else goes out as is.
            let want: Vec<Entry> = conns
                .into_iter()
                .map(|mut c| {
                    c.flags &= !control::sync_proto::flags::HASHED;
                    Entry::Conn(c)
                })
                .collect();
            assert_eq!(again, want, "re-encoded entries decode to themselves");
        }
        Err(e) => assert!(!e.name().is_empty(), "an unnamed decode error"),
    }

    let shared = Arc::new(SyncShared::default());
    // Small inbound queues, so that full queues are reached too.
    let ports: Vec<Arc<SyncPort>> = (0..WORKERS).map(|_| Arc::new(SyncPort::with_capacity(shared.clone(), 1, 8))).collect();
    let steering = Steering::new(WORKERS, 128);
    let stats = DaemonStats::default();
    let maxlen = 1500;
    let sum = |c: &[dataplane::sync::Counter]| c.iter().map(|x| x.get()).sum::<u64>();
    match backup_receive(buf, maxlen, syncid, &ports, &steering, &stats) {
        Received::Accepted(n) => {
            assert_eq!(stats.entries_received.get(), n as u64);
            assert_eq!(sum(&stats.msg_drops) + stats.msg_too_long.get(), 0, "accepted and rejected");
            let mut delivered = 0u64;
            for (w, p) in ports.iter().enumerate() {
                while let Some(r) = p.inbound.pop() {
                    assert_eq!(steering.owner(Ipv4Addr::from(r.caddr)) as usize, w, "delivered to a worker that does not own the client");
                    delivered += 1;
                }
            }
            assert_eq!(delivered + sum(&stats.entry_skips) + stats.install_queue_full.get(), n as u64, "every entry counted once");
        }
        Received::Rejected(_, name) => {
            assert!(!name.is_empty());
            assert_eq!(sum(&stats.msg_drops) + stats.msg_too_long.get(), 1, "one reason per rejected datagram");
            assert_eq!(stats.entries_received.get(), 0);
        }
    }
    assert_eq!(stats.messages_received.get(), 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::sync_proto::Addrs;

    #[test]
    fn a_message_of_our_own_passes_and_a_cut_one_is_rejected() {
        let c = SyncConn::v4(
            6,
            0x0100,
            1,
            (Ipv4Addr::new(203, 0, 113, 1), 40000),
            (Ipv4Addr::new(198, 51, 100, 100), 80),
            (Ipv4Addr::new(10, 0, 0, 11), 80),
            0,
            900,
        );
        assert!(matches!(c.addrs, Addrs::V4 { .. }));
        let msg = encode_all(0, 1472, &[c]).remove(0);
        let mut input = vec![0u8];
        input.extend_from_slice(&msg);
        run(&input);
        input.pop();
        run(&input);
    }
}
