//! The checker engine: a tokio runtime on at most two threads (all named "health", plus
//! the "health" thread that drives it), one task per checker, all I/O non-blocking, so ten
//! thousand checkers cost ten thousand timers and a handful of sockets in flight, not
//! threads.
//!
//! Data flow:
//! - definitions: the controller keeps a [`Link`]; after every change it sends the current
//!   [`ProbeDef`]s through a watch channel when the checker set, their definitions or the
//!   director's addresses (probe sources) changed. The engine starts a task per new checker,
//!   aborts those that disappeared and hands changed targets to running tasks (their state
//!   machine is kept).
//! - verdicts: a task whose checker changes state (or whose `misc_dynamic` weight changes)
//!   sends a [`Verdict`]. The applier task coalesces verdicts for [`BATCH_WINDOW`] and
//!   hands the batch to the `apply` callback on tokio's blocking pool (it takes the
//!   controller's lock, applies the verdicts to a copy of the configuration and publishes
//!   it, exactly like a control request). A refused batch is kept (newest verdict per
//!   checker) and retried a second later.
//! - events from applied batches become one log line each, counters, and notify/quorum
//!   scripts run as children (reaped, killed after [`SCRIPT_LIMIT`]).
//!
//! Invariants: no worker lcore and no control request ever waits for a probe; a probe's
//! every step has a timeout; the engine stops within ~100 ms of the stop flag.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::error::CtlError;
use crate::model::{AddrConfig, Config};

use super::board::{bump, Board};
use super::machine::Machine;
use super::model::{probe_defs, service_name, HealthEvent, ProbeDef, Verdict};
use super::probe::{self, Conn, Outcome};
use super::spec::{CheckId, CheckKind};

/// Log target of checker and pool state changes (one line each, like [`crate::events`]).
pub const TARGET: &str = "health";
/// Verdicts arriving within this window after the first one are applied together.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);
/// A refused batch is retried after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// notify_up/notify_down/quorum_up/quorum_down scripts are killed after this long.
pub const SCRIPT_LIMIT: Duration = Duration::from_secs(60);
const STOP_POLL: Duration = Duration::from_millis(100);
/// Most runtime threads the engine uses.
const MAX_WORKERS: usize = 2;

/// Applies a batch of verdicts to the configuration and publishes it; returns the events.
pub type Apply = Box<dyn FnMut(&[Verdict]) -> Result<Vec<HealthEvent>, CtlError> + Send>;

/// The controller's end: sends definitions when they change, reads the board.
#[derive(Debug)]
pub struct Link {
    defs: watch::Sender<Arc<Vec<ProbeDef>>>,
    board: Arc<Board>,
    sent: Option<(u64, Vec<AddrConfig>)>,
}

impl Link {
    /// The engine's status board.
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Sends the definitions of `cfg` if the checkers or the addresses changed since the
    /// last call.
    pub fn update(&mut self, cfg: &Config) {
        let key = (cfg.health().defs_generation(), cfg.addrs().to_vec());
        if self.sent.as_ref() == Some(&key) {
            return;
        }
        self.sent = Some(key);
        let _ = self.defs.send(Arc::new(probe_defs(cfg)));
    }
}

/// The engine's end of a [`Link`].
#[derive(Debug)]
pub struct EngineInput {
    defs: watch::Receiver<Arc<Vec<ProbeDef>>>,
    board: Arc<Board>,
}

/// A connected pair.
pub fn link() -> (Link, EngineInput) {
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let board = Arc::new(Board::new());
    (
        Link {
            defs: tx,
            board: Arc::clone(&board),
            sent: None,
        },
        EngineInput { defs: rx, board },
    )
}

/// Raises the soft open-files limit to the hard one (each checker in flight holds a
/// socket; ten thousand of them exceed the usual 1024).
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Starts the engine thread. It runs until `stop` is set.
pub fn spawn(input: EngineInput, apply: Apply, stop: Arc<AtomicBool>) -> io::Result<JoinHandle<()>> {
    spawn_on(input, apply, stop, None)
}

/// The online CPUs (/sys/devices/system/cpu/online) except `excluded`; `None` if that
/// leaves none or the list cannot be read.
pub fn cpus_except(excluded: &[usize]) -> Option<Vec<usize>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    cpu_list_except(&text, excluded)
}

/// Parses a kernel CPU list ("0-3,6,8-9") and drops `excluded`; `None` if malformed or empty.
pub fn cpu_list_except(text: &str, excluded: &[usize]) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let a = part.parse::<usize>().ok()?;
                (a, a)
            }
        };
        cpus.extend((a..=b.min(a + 4096)).filter(|c| !excluded.contains(c)));
    }
    (!cpus.is_empty()).then_some(cpus)
}

/// Restricts the calling thread to `cpus` (best effort).
fn pin(cpus: &[usize]) {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for &c in cpus {
        let _ = set.set(c);
    }
    let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

/// [`spawn`] with every engine thread (and so every script it starts) restricted to `cpus`.
/// The director passes the CPUs that are not worker lcores: threads it spawns inherit the
/// main lcore's affinity otherwise and would compete with worker 0.
pub fn spawn_on(
    input: EngineInput,
    apply: Apply,
    stop: Arc<AtomicBool>,
    cpus: Option<Vec<usize>>,
) -> io::Result<JoinHandle<()>> {
    raise_nofile();
    // Two runtime threads where two CPUs are available: probing is mostly kernel work
    // (connect, close) and spreads over both.
    let n = cpus.as_ref().map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        Vec::len,
    );
    let workers = n.clamp(1, MAX_WORKERS);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(workers)
        .enable_all()
        .max_blocking_threads(2)
        .thread_name("health");
    if let Some(c) = cpus.clone() {
        builder.on_thread_start(move || pin(&c));
    }
    let rt = builder.build()?;
    std::thread::Builder::new().name("health".into()).spawn(move || {
        if let Some(c) = &cpus {
            pin(c);
        }
        rt.block_on(run(input, apply, stop));
        // Dropping the runtime aborts every task; script children die with kill_on_drop.
        rt.shutdown_timeout(Duration::from_millis(200));
    })
}

struct Running {
    abort: AbortHandle,
    def: watch::Sender<Arc<ProbeDef>>,
}

async fn run(mut input: EngineInput, apply: Apply, stop: Arc<AtomicBool>) {
    let (vtx, vrx) = mpsc::unbounded_channel::<Verdict>();
    let board = Arc::clone(&input.board);
    let applier = tokio::spawn(applier(vrx, Arc::new(Mutex::new(apply)), Arc::clone(&board)));
    let mut running: HashMap<CheckId, Running> = HashMap::new();
    let mut seed = seed();
    sync(&mut running, &input.defs.borrow_and_update(), &board, &vtx, &mut seed);
    let mut poll = tokio::time::interval(STOP_POLL);
    loop {
        tokio::select! {
            changed = input.defs.changed() => {
                if changed.is_err() {
                    break;
                }
                let defs = Arc::clone(&input.defs.borrow_and_update());
                sync(&mut running, &defs, &board, &vtx, &mut seed);
            }
            _ = poll.tick() => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
    }
    for (id, r) in running.drain() {
        r.abort.abort();
        board.stop(id);
    }
    applier.abort();
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32) | 1
}

/// xorshift64*: the warmup jitter needs spread, not secrecy.
fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn sync(
    running: &mut HashMap<CheckId, Running>,
    defs: &[ProbeDef],
    board: &Arc<Board>,
    vtx: &mpsc::UnboundedSender<Verdict>,
    seed: &mut u64,
) {
    let mut seen: HashMap<CheckId, ()> = HashMap::with_capacity(defs.len());
    for d in defs {
        seen.insert(d.id, ());
        match running.get(&d.id) {
            Some(r) => {
                if **r.def.borrow() != *d {
                    let _ = r.def.send(Arc::new(d.clone()));
                }
            }
            None => {
                let warmup = d.spec.timing.warmup_us;
                let jitter = if warmup == 0 {
                    0
                } else {
                    next_rand(seed) % (warmup + 1)
                };
                let (tx, rx) = watch::channel(Arc::new(d.clone()));
                board.start(d.id);
                let task = tokio::spawn(checker(rx, Duration::from_micros(jitter), Arc::clone(board), vtx.clone()));
                running.insert(
                    d.id,
                    Running {
                        abort: task.abort_handle(),
                        def: tx,
                    },
                );
            }
        }
    }
    running.retain(|id, r| {
        let keep = seen.contains_key(id);
        if !keep {
            r.abort.abort();
            board.stop(*id);
        }
        keep
    });
}

/// `TCP_CHECK 10.0.0.11:80 of VS TCP 10.0.0.1:80`.
fn check_name(d: &ProbeDef) -> String {
    let target = if d.spec.kind.connects() {
        format!(" {}", d.dst)
    } else {
        String::new()
    };
    format!(
        "{}{} for {}:{} of VS {}",
        d.spec.kind.keepalived_name(),
        target,
        d.server.0,
        d.server.1,
        service_name(&d.service)
    )
}

async fn checker(
    mut def_rx: watch::Receiver<Arc<ProbeDef>>,
    warmup: Duration,
    board: Arc<Board>,
    vtx: mpsc::UnboundedSender<Verdict>,
) {
    let mut def = Arc::clone(&def_rx.borrow_and_update());
    let mut m = Machine::new(&def.spec.kind, &def.spec.timing, def.up);
    let mut tls: Option<Result<Arc<rustls::ClientConfig>, String>> = None;
    tokio::time::sleep(warmup).await;
    loop {
        if def_rx.has_changed().unwrap_or(false) {
            def = Arc::clone(&def_rx.borrow_and_update());
            tls = None;
        }
        let t = def.spec.timing;
        let conn = Conn {
            dst: def.dst,
            source: def.source,
            source_explicit: def.source_explicit,
            bind_port: def.spec.target.bind_port,
            timeout: Duration::from_micros(t.connect_timeout_us),
        };
        let started = Instant::now();
        let (outcome, step) = match &def.spec.kind {
            CheckKind::Tcp => {
                let o = probe::tcp(&conn).await;
                let s = m.probe_done(o.ok, &t);
                (o, s)
            }
            CheckKind::Http(h) => {
                let url = &h.urls[m.url().min(h.urls.len() - 1)];
                let o = probe::http(&conn, h, url).await;
                let o = Outcome {
                    reason: format!("{}: {}", url.path, o.reason),
                    ..o
                };
                let s = m.probe_done(o.ok, &t);
                (o, s)
            }
            CheckKind::Https(h) => {
                let url = &h.urls[m.url().min(h.urls.len() - 1)];
                if !matches!(tls, Some(Ok(_))) {
                    tls = Some(probe::tls_config(h));
                }
                let o = match &tls {
                    Some(Ok(cfg)) => probe::https(&conn, h, url, cfg).await,
                    Some(Err(e)) => Outcome { ok: false, reason: e.clone() },
                    None => Outcome { ok: false, reason: "no TLS configuration".into() },
                };
                let o = Outcome {
                    reason: format!("{}: {}", url.path, o.reason),
                    ..o
                };
                let s = m.probe_done(o.ok, &t);
                (o, s)
            }
            CheckKind::Misc(mc) => {
                let (end, reason) = probe::run_command(&mc.path, Duration::from_micros(mc.timeout_us)).await;
                let s = m.script_done(end, &t);
                let ok = match end {
                    super::machine::ScriptEnd::Exited(c) => c == 0 || (mc.dynamic && (2..=255).contains(&c)),
                    super::machine::ScriptEnd::Killed => false,
                };
                (Outcome { ok, reason }, s)
            }
        };
        board
            .counters
            .probe_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        board.record(def.id, outcome.ok, outcome.reason.clone(), step.transition.is_some());
        match step.transition {
            Some(true) => {
                bump(&board.counters.checks_up);
                info!(target: TARGET, "{} succeeded: {}", check_name(&def), outcome.reason);
            }
            Some(false) => {
                bump(&board.counters.checks_down);
                let retries = if t.retry > 0 && def.spec.kind.connects() {
                    format!(" after {} retries", t.retry)
                } else {
                    String::new()
                };
                info!(target: TARGET, "{} failed{retries}: {}", check_name(&def), outcome.reason);
            }
            None if !outcome.ok && t.log_all_failures && m.is_up() => {
                info!(target: TARGET, "{} attempt failed (retrying): {}", check_name(&def), outcome.reason);
            }
            None => {}
        }
        if step.transition.is_some() || step.weight.is_some() {
            let _ = vtx.send(Verdict {
                id: def.id,
                up: m.is_up(),
                dynamic_weight: m.dynamic_weight(),
            });
        }
        let delay = Duration::from_micros(step.delay_us);
        let next = if step.from_start { started + delay } else { Instant::now() + delay };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            // A changed target takes effect at once only if the checker was waiting long.
            _ = def_rx.changed() => {}
        }
    }
}

async fn applier(
    mut vrx: mpsc::UnboundedReceiver<Verdict>,
    apply: Arc<Mutex<Apply>>,
    board: Arc<Board>,
) {
    let mut pending: HashMap<CheckId, (u64, Verdict)> = HashMap::new();
    let mut seq = 0u64;
    loop {
        if pending.is_empty() {
            match vrx.recv().await {
                Some(v) => {
                    seq += 1;
                    pending.insert(v.id, (seq, v));
                }
                None => return,
            }
        }
        tokio::time::sleep(BATCH_WINDOW).await;
        while let Ok(v) = vrx.try_recv() {
            seq += 1;
            pending.insert(v.id, (seq, v));
        }
        let mut batch: Vec<(u64, Verdict)> = pending.values().copied().collect();
        batch.sort_unstable_by_key(|(s, _)| *s);
        let batch: Vec<Verdict> = batch.into_iter().map(|(_, v)| v).collect();
        let ap = Arc::clone(&apply);
        let result = tokio::task::spawn_blocking(move || {
            let mut f = ap.lock().unwrap_or_else(|e| e.into_inner());
            f(&batch)
        })
        .await;
        match result {
            Ok(Ok(events)) => {
                pending.clear();
                bump(&board.counters.batches);
                for e in events {
                    event(&e, &board);
                }
            }
            Ok(Err(e)) => {
                bump(&board.counters.batch_errors);
                warn!(target: TARGET, "health: applying {} verdict(s) failed, retrying: {}", pending.len(), e.message);
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(e) => {
                bump(&board.counters.batch_errors);
                warn!(target: TARGET, "health: applying verdicts failed, retrying: {e}");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

fn event(e: &HealthEvent, board: &Arc<Board>) {
    let c = &board.counters;
    match e {
        HealthEvent::Server { up: true, .. } => bump(&c.servers_up),
        HealthEvent::Server { up: false, .. } => bump(&c.servers_down),
        HealthEvent::Weight { .. } => bump(&c.weight_changes),
        HealthEvent::Quorum { up: true, .. } => bump(&c.quorum_gained),
        HealthEvent::Quorum { up: false, .. } => bump(&c.quorum_lost),
    }
    info!(target: TARGET, "{e}");
    if let Some(cmd) = e.script() {
        bump(&c.scripts);
        let cmd = cmd.to_string();
        let board = Arc::clone(board);
        tokio::spawn(async move {
            let (end, reason) = probe::run_command(&cmd, SCRIPT_LIMIT).await;
            if end != super::machine::ScriptEnd::Exited(0) {
                bump(&board.counters.script_failures);
                warn!(target: TARGET, "script \"{cmd}\": {reason}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_list_except;

    #[test]
    fn cpu_lists_parse_and_exclude_worker_cpus() {
        assert_eq!(cpu_list_except("0-3,6,8-9\n", &[1, 8]), Some(vec![0, 2, 3, 6, 9]));
        assert_eq!(cpu_list_except("0-1", &[0]), Some(vec![1]));
        // Every CPU a worker: nothing left to pin to.
        assert_eq!(cpu_list_except("0-1", &[0, 1]), None);
        assert_eq!(cpu_list_except("0-x", &[]), None);
    }
}
