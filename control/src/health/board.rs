//! What the checker engine tells `lbadm check show` about each checker (last result and
//! reason, when it last changed, consecutive failures) and the engine's counters.
//!
//! Concurrency: written by the engine thread, read by the control thread. Per-checker rows
//! sit behind one mutex held only to copy a row in or out (no I/O, no allocation beyond the
//! reason string); counters are relaxed atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::spec::CheckId;

/// One checker's runtime status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRuntime {
    /// Probes run.
    pub probes: u64,
    /// Probes that failed.
    pub failures: u64,
    /// Failed probes since the last success.
    pub consecutive_failures: u32,
    /// Result of the last probe (`None` before the first).
    pub last_ok: Option<bool>,
    /// Why: "connected", "HTTP status 500", "connection refused", ...
    pub reason: String,
    /// When the last probe ended (milliseconds since the Unix epoch).
    pub last_probe_ms: Option<u64>,
    /// When the checker last changed state, or started (milliseconds since the Unix epoch).
    pub last_change_ms: u64,
    /// State changes so far.
    pub transitions: u64,
}

/// Engine counters (totals since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCounters {
    /// Checkers running.
    pub checkers: u64,
    /// Probes run (connections, requests, script runs).
    pub probes: u64,
    /// Probes that failed.
    pub probe_failures: u64,
    /// Time spent in probes, summed (microseconds): divided by `probes`, the mean probe
    /// duration (connect, request, script run).
    pub probe_us: u64,
    /// Checkers that went up.
    pub checks_up: u64,
    /// Checkers that went down.
    pub checks_down: u64,
    /// Real servers that went up.
    pub servers_up: u64,
    /// Real servers that went down.
    pub servers_down: u64,
    /// Weight changes by misc_dynamic scripts.
    pub weight_changes: u64,
    /// Quorum gained.
    pub quorum_gained: u64,
    /// Quorum lost.
    pub quorum_lost: u64,
    /// notify/quorum scripts started.
    pub scripts: u64,
    /// notify/quorum scripts that could not start, failed or were killed.
    pub script_failures: u64,
    /// Verdict batches applied to the configuration.
    pub batches: u64,
    /// Verdict batches the configuration refused (retried).
    pub batch_errors: u64,
}

/// Counters as atomics.
#[derive(Debug, Default)]
pub struct Counters {
    /// See [`HealthCounters`].
    pub checkers: AtomicU64,
    /// See [`HealthCounters`].
    pub probes: AtomicU64,
    /// See [`HealthCounters`].
    pub probe_failures: AtomicU64,
    /// See [`HealthCounters`].
    pub probe_us: AtomicU64,
    /// See [`HealthCounters`].
    pub checks_up: AtomicU64,
    /// See [`HealthCounters`].
    pub checks_down: AtomicU64,
    /// See [`HealthCounters`].
    pub servers_up: AtomicU64,
    /// See [`HealthCounters`].
    pub servers_down: AtomicU64,
    /// See [`HealthCounters`].
    pub weight_changes: AtomicU64,
    /// See [`HealthCounters`].
    pub quorum_gained: AtomicU64,
    /// See [`HealthCounters`].
    pub quorum_lost: AtomicU64,
    /// See [`HealthCounters`].
    pub scripts: AtomicU64,
    /// See [`HealthCounters`].
    pub script_failures: AtomicU64,
    /// See [`HealthCounters`].
    pub batches: AtomicU64,
    /// See [`HealthCounters`].
    pub batch_errors: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The board.
#[derive(Debug, Default)]
pub struct Board {
    rows: Mutex<HashMap<CheckId, CheckRuntime>>,
    /// Engine counters.
    pub counters: Counters,
}

impl Board {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<CheckId, CheckRuntime>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A checker started.
    pub fn start(&self, id: CheckId) {
        self.rows().entry(id).or_insert_with(|| CheckRuntime {
            probes: 0,
            failures: 0,
            consecutive_failures: 0,
            last_ok: None,
            reason: "not checked yet".into(),
            last_probe_ms: None,
            last_change_ms: unix_now_ms(),
            transitions: 0,
        });
        self.counters.checkers.store(self.rows().len() as u64, Ordering::Relaxed);
    }

    /// A checker stopped.
    pub fn stop(&self, id: CheckId) {
        let mut rows = self.rows();
        rows.remove(&id);
        self.counters.checkers.store(rows.len() as u64, Ordering::Relaxed);
    }

    /// A probe ended; `changed` if the checker's state changed with it.
    pub fn record(&self, id: CheckId, ok: bool, reason: String, changed: bool) {
        bump(&self.counters.probes);
        if !ok {
            bump(&self.counters.probe_failures);
        }
        let now = unix_now_ms();
        let mut rows = self.rows();
        if let Some(r) = rows.get_mut(&id) {
            r.probes += 1;
            if ok {
                r.consecutive_failures = 0;
            } else {
                r.failures += 1;
                r.consecutive_failures = r.consecutive_failures.saturating_add(1);
            }
            r.last_ok = Some(ok);
            r.reason = reason;
            r.last_probe_ms = Some(now);
            if changed {
                r.last_change_ms = now;
                r.transitions += 1;
            }
        }
    }

    /// One checker's row.
    pub fn get(&self, id: CheckId) -> Option<CheckRuntime> {
        self.rows().get(&id).cloned()
    }

    /// The counters.
    pub fn snapshot(&self) -> HealthCounters {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HealthCounters {
            checkers: l(&c.checkers),
            probes: l(&c.probes),
            probe_failures: l(&c.probe_failures),
            probe_us: l(&c.probe_us),
            checks_up: l(&c.checks_up),
            checks_down: l(&c.checks_down),
            servers_up: l(&c.servers_up),
            servers_down: l(&c.servers_down),
            weight_changes: l(&c.weight_changes),
            quorum_gained: l(&c.quorum_gained),
            quorum_lost: l(&c.quorum_lost),
            scripts: l(&c.scripts),
            script_failures: l(&c.script_failures),
            batches: l(&c.batches),
            batch_errors: l(&c.batch_errors),
        }
    }
}
