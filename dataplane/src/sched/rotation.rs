//! rr and wrr as one sequence across workers, as IPVS's single table rotates.
//!
//! IPVS keeps one rr/wrr cursor per service; with a cursor per worker, two clients handled
//! by different workers would both get the list's first server. A [`Rotation`] is the
//! service's cursor shared by every worker: one `AtomicU64` that a worker advances with a
//! compare-and-swap when it schedules a **new** connection (or template), never per packet.
//! The next destination is computed from the loaded state with the very algorithms of
//! [`Rr`] and [`Wrr`] (so the order is the kernel's), then published with the CAS; a worker
//! that lost the race recomputes from the winner's state. Successful CASes are totally
//! ordered, so the servers handed out, across all workers, follow the kernel's sequence
//! exactly.
//!
//! State words: rr packs `(server id + 1, position hint)` (0 = list head); wrr packs
//! `(server id + 1, cw)`, where cw never exceeds the largest weight (ipvsadm caps weights at
//! 65535, the model at `u32`, both fit). wrr's `mw` and `di` (max weight − (gcd − 1), gcd)
//! derive from the server list, so they live in the snapshot with it ([`Rotation::wrr`]),
//! while the word survives snapshots: the control side carries it from one compiled snapshot
//! to the next ([`RotationRegistry`]) and applies the kernel's list-change rules to it there
//! (`Rr::update`, `Wrr::update`), before the new snapshot is published. A worker still on
//! the previous snapshot may CAS once with the old list in between; the word stays valid
//! (ids are checked against the list on use).
//!
//! Concurrency: lock-free; no allocation in [`Rotation::schedule`]. The CAS loop is bounded
//! (after [`MAX_RETRIES`] lost races the worker takes its own result without publishing,
//! which can only happen under a storm of new connections on every worker at once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{DestInfo, DestSet, Rr, Wrr};

/// Lost CAS races after which a worker schedules without publishing its step.
pub const MAX_RETRIES: u32 = 64;

/// Which rotation, and wrr's list-derived constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Round robin.
    Rr,
    /// Weighted round robin with `mw` and `di` of the snapshot's list.
    Wrr {
        /// Max weight − (gcd − 1).
        mw: i64,
        /// gcd of the positive weights (1 if none).
        di: i64,
    },
}

/// A service's shared rr/wrr cursor, as a snapshot holds it.
#[derive(Clone, Debug)]
pub struct Rotation {
    word: Arc<AtomicU64>,
    kind: Kind,
}

impl PartialEq for Rotation {
    fn eq(&self, o: &Rotation) -> bool {
        Arc::ptr_eq(&self.word, &o.word) && self.kind == o.kind
    }
}

impl Eq for Rotation {}

fn pack(id: Option<u32>, low: u32) -> u64 {
    (u64::from(id.map_or(0, |i| i.wrapping_add(1))) << 32) | u64::from(low)
}

fn unpack(w: u64) -> (Option<u32>, u32) {
    let id = (w >> 32) as u32;
    (id.checked_sub(1), w as u32)
}

impl Rotation {
    /// A fresh rotation for scheduler `name` over `dests` (the kernel's `init_service`);
    /// `None` for schedulers that keep no cursor.
    pub fn new<D: DestSet + ?Sized>(name: &str, dests: &D) -> Option<Rotation> {
        let kind = kind_of(name, dests)?;
        let w = match kind {
            Kind::Rr => pack(None, 0),
            Kind::Wrr { mw, .. } => pack(None, mw.max(0) as u32),
        };
        Some(Rotation { word: Arc::new(AtomicU64::new(w)), kind })
    }

    /// rr or wrr.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Picks the destination for a new connection and advances the shared cursor.
    pub fn schedule<D: DestSet + ?Sized>(&self, d: &D) -> Option<usize> {
        let mut cur = self.word.load(Ordering::Acquire);
        let mut tries = 0;
        loop {
            let (pick, next) = self.step(cur, d);
            if next == cur {
                return pick;
            }
            match self.word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return pick,
                Err(now) => {
                    tries += 1;
                    if tries >= MAX_RETRIES {
                        return pick;
                    }
                    cur = now;
                }
            }
        }
    }

    /// One scheduling step from state word `w`: the pick and the next word.
    fn step<D: DestSet + ?Sized>(&self, w: u64, d: &D) -> (Option<usize>, u64) {
        let (id, low) = unpack(w);
        match self.kind {
            Kind::Rr => {
                let mut rr = rr_of(id, low);
                let pick = rr.schedule(d);
                (pick, rr_word(&rr))
            }
            Kind::Wrr { mw, di } => {
                let mut wrr = Wrr::from_parts(id.map(|i| (i, usize::MAX)), i64::from(low), mw, di);
                let pick = wrr.schedule(d);
                (pick, wrr_word(&wrr))
            }
        }
    }

    /// The server id under the cursor (`None` = list head), for tests and diagnostics.
    pub fn cursor(&self) -> Option<u32> {
        unpack(self.word.load(Ordering::Acquire)).0
    }
}

/// The rr state a word holds: cursor id and position hint.
fn rr_of(id: Option<u32>, hint: u32) -> Rr {
    Rr { cursor: id.map(|i| (i, hint as usize)) }
}

/// A service's destinations as the rotation sees them (slot ids and weights, kernel order):
/// what `compile` starts a rotation from and what [`RotationRegistry::carry`] compares.
pub fn dest_list(slots: &[u32], servers: &[Option<crate::snapshot::ServerInfo>]) -> Vec<DestInfo> {
    slots
        .iter()
        .map(|&id| DestInfo {
            id,
            weight: servers.get(id as usize).and_then(|s| s.as_ref()).map_or(0, |s| s.weight),
            ..DestInfo::default()
        })
        .collect()
}

fn rr_word(rr: &Rr) -> u64 {
    match rr.cursor {
        Some((id, hint)) => pack(Some(id), u32::try_from(hint).unwrap_or(u32::MAX)),
        None => pack(None, 0),
    }
}

fn wrr_word(w: &Wrr) -> u64 {
    let (cl, cw, _, _) = w.state();
    pack(cl, u32::try_from(cw.max(0)).unwrap_or(u32::MAX))
}

fn kind_of<D: DestSet + ?Sized>(name: &str, d: &D) -> Option<Kind> {
    match name {
        "rr" => Some(Kind::Rr),
        "wrr" => {
            let mut w = Wrr::default();
            w.update(d);
            let (_, _, mw, di) = w.state();
            Some(Kind::Wrr { mw, di })
        }
        _ => None,
    }
}

/// The control side's record of every service's rotation, carried from one compiled
/// snapshot to the next (held under the director's slow-path lock).
#[derive(Debug, Default)]
pub struct RotationRegistry {
    entries: std::collections::HashMap<crate::snapshot::SvcKey, Entry>,
}

#[derive(Debug)]
struct Entry {
    scheduler: String,
    word: Arc<AtomicU64>,
    /// The list the word was last adjusted to (ids and weights, kernel order).
    list: Vec<DestInfo>,
}

impl RotationRegistry {
    /// Gives every rr/wrr service of `snap` the rotation it had in earlier snapshots (same
    /// key and scheduler), with the kernel's list-change rules applied to its cursor; new
    /// services keep the fresh rotation `compile` gave them. Services that are gone are
    /// forgotten.
    pub fn carry(&mut self, snap: &mut crate::snapshot::Snapshot) {
        let mut seen = std::collections::HashSet::new();
        let servers = &snap.servers;
        for svc in snap.services.iter_mut() {
            let Some(rot) = svc.rotation.as_mut() else { continue };
            let list = dest_list(&svc.servers, servers);
            seen.insert(svc.key);
            match self.entries.get_mut(&svc.key) {
                Some(e) if e.scheduler == svc.scheduler => {
                    if e.list != list {
                        let w = e.word.load(Ordering::Acquire);
                        let (id, low) = unpack(w);
                        let next = match rot.kind {
                            Kind::Rr => {
                                let mut rr = rr_of(id, low);
                                rr.update(e.list.as_slice(), list.as_slice());
                                rr_word(&rr)
                            }
                            Kind::Wrr { .. } => {
                                let mut wrr = Wrr::from_parts(None, i64::from(low), 0, 1);
                                wrr.update(list.as_slice());
                                wrr_word(&wrr)
                            }
                        };
                        e.word.store(next, Ordering::Release);
                        e.list = list;
                    }
                    rot.word = e.word.clone();
                }
                _ => {
                    self.entries.insert(svc.key, Entry { scheduler: svc.scheduler.clone(), word: rot.word.clone(), list });
                }
            }
        }
        self.entries.retain(|k, _| seen.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::Scheduler;

    fn dests(w: &[u32]) -> Vec<DestInfo> {
        w.iter().enumerate().map(|(i, &w)| DestInfo { id: 10 + i as u32, weight: w, ..DestInfo::default() }).collect()
    }

    /// The shared rotation, stepped from any number of "workers" in any interleaving, hands
    /// out exactly the sequence one per-service scheduler (the kernel's single table) does.
    #[test]
    fn one_sequence_whatever_the_worker() {
        for (name, w) in [("rr", vec![1, 1, 1]), ("rr", vec![1, 0, 3, 2]), ("wrr", vec![4, 3, 2]), ("wrr", vec![6, 0, 3, 9])] {
            let d = dests(&w);
            let mut reference = Scheduler::with_dests(name, 0, d.as_slice()).unwrap();
            let rot = Rotation::new(name, d.as_slice()).unwrap();
            let workers = [rot.clone(), rot.clone(), rot];
            for k in 0..200 {
                let want = reference.schedule(d.as_slice(), &Default::default());
                let got = workers[(k * 7 + k / 3) % 3].schedule(d.as_slice());
                assert_eq!(got, want, "{name} {w:?} step {k}");
            }
        }
    }

    /// Threads racing on one rotation: every server is handed out the same number of times
    /// as the sequence prescribes (no step lost, none doubled).
    #[test]
    fn racing_threads_keep_the_counts() {
        let d = dests(&[3, 2, 1]);
        let rot = Rotation::new("wrr", d.as_slice()).unwrap();
        let per_thread = 6000;
        let counts: Vec<[u32; 3]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let (rot, d) = (rot.clone(), d.clone());
                    s.spawn(move || {
                        let mut c = [0u32; 3];
                        for _ in 0..per_thread {
                            c[rot.schedule(d.as_slice()).unwrap()] += 1;
                        }
                        c
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total: Vec<u32> = (0..3).map(|i| counts.iter().map(|c| c[i]).sum()).collect();
        // 24000 picks = 4000 full wrr cycles of 3+2+1.
        assert_eq!(total, vec![12000, 8000, 4000]);
    }

    /// The registry keeps the word across snapshots and applies the kernel's rule when the
    /// cursor's server is removed (the cursor moves to its predecessor).
    #[test]
    fn registry_carries_the_cursor_over_list_changes() {
        use crate::snapshot::{ServerInfo, ServiceInfo, Snapshot, SvcKey};
        let key = SvcKey::Fwmark(1);
        let snap_with = |slots: &[u32]| {
            let mut s = Snapshot::default();
            let d: Vec<DestInfo> = slots.iter().map(|&id| DestInfo { id, weight: 1, ..DestInfo::default() }).collect();
            s.services.push(ServiceInfo {
                key,
                scheduler: "rr".into(),
                sched_flags: 0,
                persistent: None,
                netmask: std::net::Ipv4Addr::BROADCAST,
                servers: slots.to_vec(),
                rotation: Rotation::new("rr", d.as_slice()),
            });
            s.servers = (0..4)
                .map(|slot| {
                    Some(ServerInfo {
                        slot,
                        svc: 0,
                        addr: std::net::Ipv4Addr::new(10, 0, 0, slot as u8),
                        port: 80,
                        weight: 1,
                        u_threshold: 0,
                        l_threshold: 0,
                        egress_port: None,
                        mac: None,
                        incarnation: 0,
                        local: false,
                    })
                })
                .collect();
            s
        };
        let mut reg = RotationRegistry::default();
        let mut a = snap_with(&[3, 2, 1]);
        reg.carry(&mut a);
        let ra = a.services[0].rotation.clone().unwrap();
        let da: Vec<DestInfo> = [3, 2, 1].iter().map(|&id| DestInfo { id, weight: 1, ..DestInfo::default() }).collect();
        assert_eq!(ra.schedule(da.as_slice()), Some(0));
        assert_eq!(ra.schedule(da.as_slice()), Some(1));
        assert_eq!(ra.cursor(), Some(2));
        // Server 2 (under the cursor) removed: the cursor moves to its predecessor, 3, so
        // the next pick is 1 (what follows 3 in the new list), as the kernel's del_dest.
        let mut b = snap_with(&[3, 1]);
        reg.carry(&mut b);
        let rb = b.services[0].rotation.clone().unwrap();
        assert_eq!(rb, ra, "the same word is carried");
        assert_eq!(rb.cursor(), Some(3));
        let db: Vec<DestInfo> = [3, 1].iter().map(|&id| DestInfo { id, weight: 1, ..DestInfo::default() }).collect();
        assert_eq!(rb.schedule(db.as_slice()), Some(1));
        // The service goes away and comes back: a fresh rotation.
        let mut empty = Snapshot::default();
        reg.carry(&mut empty);
        let mut c = snap_with(&[3, 1]);
        reg.carry(&mut c);
        assert_ne!(c.services[0].rotation, b.services[0].rotation);
        assert_eq!(c.services[0].rotation.as_ref().unwrap().cursor(), None);
    }
}
