//! The control server: [`Controller`] answers requests against the authoritative [`Config`]
//! and a dataplane [`Backend`]; [`serve`] runs it on a Unix socket. DPDK-free, so the whole
//! request path is testable with a fake backend.
//!
//! Invariants:
//! - A configuration change is validated fully, applied to a clone of the config, and
//!   published through [`Backend::publish`]; only if publishing succeeds does the clone replace
//!   the config. A refused or failed change therefore changes nothing, here or in the
//!   dataplane. `-R` applies all its rules to one clone and publishes once.
//! - A transaction (`Stage` … `Commit`, [`Controller::apply_transaction`], `director
//!   --config`, `lbadm restore --atomic`) is checked command by command against one clone and
//!   published once; atomically it changes everything or nothing. Pending (staged) commands
//!   belong to one connection ([`Session`]) and are dropped with it; at most [`MAX_STAGED`].
//! - Listings merge the config (the truth about services and servers) with the backend's
//!   per-server counters, adjusted by `-Z` bases and the rate estimator ([`StatsBook`]). Mark
//!   rule listings come from the config with the backend's optional per-rule counters
//!   ([`Backend::mark_counters`]); sysctl changes are config changes like any other (applied to
//!   a clone, published, then kept).
//! - Concurrency: `serve` accepts any number of clients up to [`MAX_CLIENTS`], one thread each
//!   (one more is told it is busy and closed; clients retry for a bounded time);
//!   every request is handled under one `Mutex<Controller>`, so requests are serialised (the
//!   control path is slow path). The accept loop also calls [`Controller::tick`] about once a
//!   second (rate estimator, trash reclaim). Every blocking wait polls `stop` at least every
//!   100 ms; `serve` returns after all client threads ended and removes its socket file.
//! - A malformed, oversized, truncated or idle request never stops the server: it gets an
//!   error response where one can be sent, and its connection is closed when framing is lost.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::CtlError;
use crate::events;
use crate::ipvsadm::{DaemonRole, DaemonSpec, IpvsCommand};
use crate::model::{AddrConfig, Config, ConfigCommand, FwdMethod, ServerId, ServiceKey};
use crate::proto::{
    decode_request, encode_response, write_frame, ConfigDump, ConnCursor, ConnInfo, LinkInfo, MarkCounters,
    MarkStatus, NeighInfo, Op, Reply, Request, Response, ServerStats, ServerStatus, ServiceDump,
    ServiceStatus, SyncStatus, MAX_REQUEST, PROTOCOL_VERSION,
};
use crate::stats::StatsBook;
use crate::sysctl::Sysctls;

/// What the control server needs from the dataplane.
pub trait Backend: Send {
    /// Port names in port-id order (`dpdk0`, `dpdk1`, ...).
    fn port_names(&self) -> Vec<String>;
    /// Compiles `cfg` into a snapshot and publishes it to the workers atomically. On error the
    /// workers must keep the previous snapshot (the controller then keeps the previous config).
    fn publish(&mut self, cfg: &Config) -> Result<(), CtlError>;
    /// Current counters of every server slot that has non-zero counters or connections,
    /// including trashed servers (used to decide when a trash slot may be reclaimed).
    fn server_stats(&mut self) -> Vec<(ServerId, ServerStats)>;
    /// Connection entries and templates, for `-L -c`.
    fn connections(&mut self) -> Vec<ConnInfo>;
    /// The neighbour (ARP) table.
    fn neighbours(&mut self) -> Vec<NeighInfo>;
    /// Ports and their counters.
    fn links(&mut self) -> Vec<LinkInfo>;
    /// Connection table size shown by `-L` as `(size=N)`.
    fn table_size(&self) -> u32;
    /// Counters of the mark rules of the most recently published config, in rule order
    /// (index i ↔ `cfg.marks()[i]`), for `iptables -L -v` and `mark show`. Missing entries
    /// show as 0; the default implementation counts nothing. A backend may restart the
    /// counters from 0 whenever the mark rules change.
    fn mark_counters(&mut self) -> Vec<MarkCounters> {
        Vec::new()
    }
    /// `--start-daemon`: starts the master or backup connection-sync daemon. Errors as the
    /// kernel's: "Daemon has already run" for a role already running ([`CtlError::daemon_running`]),
    /// "No such device" for an unknown `--mcast-interface`. The default refuses.
    fn start_daemon(&mut self, spec: &DaemonSpec) -> Result<(), CtlError> {
        let _ = spec;
        Err(CtlError::refused("this backend has no connection sync daemon"))
    }
    /// `--stop-daemon`: stops a running daemon; "No daemon is running" when it is not.
    fn stop_daemon(&mut self, role: DaemonRole) -> Result<(), CtlError> {
        let _ = role;
        Err(CtlError::no_daemon())
    }
    /// The running daemons (master first) and the synchronisation counters. The default: no
    /// daemon, nothing counted.
    fn sync_status(&mut self) -> SyncStatus {
        SyncStatus::default()
    }
    /// True while the automatic defense strategies (`drop_entry`, `drop_packet`, `secure_tcp`
    /// in mode 1/2) are on because some worker's connection table is short of free memory
    /// (below `amemthresh`). The default implementation reports false.
    fn defense_on(&mut self) -> bool {
        false
    }
    /// At most `max` connection rows from `from` on, and the cursor of the rest (`None` at
    /// the end). The default pages over [`Backend::connections`] (cursor = row offset); a
    /// backend with large tables answers from its tables directly, holding one page.
    fn connections_page(&mut self, from: ConnCursor, max: usize) -> (Vec<ConnInfo>, Option<ConnCursor>) {
        let all = self.connections();
        let start = from.index as usize;
        let rows: Vec<ConnInfo> = all.iter().skip(start).take(max).cloned().collect();
        let end = start + rows.len();
        let next = (end < all.len()).then(|| ConnCursor { worker: 0, index: end as u32 });
        (rows, next)
    }
}

/// Most commands one connection may have pending in its transaction.
pub const MAX_STAGED: usize = 1 << 20;

/// Per-connection state: the transaction being staged (`Stage`), applied by `Commit`.
#[derive(Debug, Default)]
pub struct Session {
    staged: Vec<ConfigCommand>,
}

impl Session {
    /// Commands pending.
    pub fn staged(&self) -> usize {
        self.staged.len()
    }
}

/// Why a transaction was not applied: the failing command (its index in the input) and its
/// error, or no index when every command was valid but publishing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionError {
    /// Index of the first failing command, `None` for a publish failure.
    pub index: Option<usize>,
    /// The error.
    pub error: CtlError,
}

/// What the director refuses whatever path a change comes by (masquerading and tunnelling
/// servers, persistence engines, one-packet scheduling): [`IpvsCommand::validate`]'s
/// refusals, for configuration commands that did not come as an `IpvsCommand`.
fn supported(c: &ConfigCommand) -> Result<(), CtlError> {
    match c {
        ConfigCommand::AddService(spec) | ConfigCommand::EditService(spec) => {
            IpvsCommand::AddService(spec.clone()).validate()
        }
        ConfigCommand::AddServer { service, server }
        | ConfigCommand::EditServer { service, server } => IpvsCommand::AddServer {
            service: *service,
            server: server.clone(),
        }
        .validate(),
        _ => Ok(()),
    }
}

/// The request handler: the authoritative configuration plus the dataplane backend.
pub struct Controller<B: Backend> {
    config: Config,
    backend: B,
    stats: StatsBook,
    health: Option<crate::health::engine::Link>,
}

impl<B: Backend> Controller<B> {
    /// A controller with an empty configuration over `backend`'s ports and room for
    /// `max_servers` real servers. Nothing is published until the first change (or
    /// [`Controller::publish_current`]).
    pub fn new(backend: B, max_servers: u32) -> Self {
        let config = Config::new(backend.port_names(), max_servers);
        Controller {
            config,
            backend,
            stats: StatsBook::new(),
            health: None,
        }
    }

    /// Connects the health checker engine: from now on it gets the checker definitions
    /// whenever they change (and now).
    pub fn attach_health(&mut self, mut link: crate::health::engine::Link) {
        link.update(&self.config);
        self.health = Some(link);
    }

    /// The health checker engine's board (per-checker status and counters), once attached.
    pub fn health_board(&self) -> Option<std::sync::Arc<crate::health::board::Board>> {
        self.health.as_ref().map(|l| std::sync::Arc::clone(l.board()))
    }

    /// Makes `next` (already published) the configuration of record and tells the health
    /// checker engine if its checkers changed.
    fn adopt(&mut self, next: Config) {
        self.config = next;
        if let Some(link) = &mut self.health {
            link.update(&self.config);
        }
    }

    /// Applies checker verdicts (see [`crate::health::model::apply_verdicts`]) to a copy of
    /// the configuration, publishes it if the pool changed, and returns the events. On error
    /// nothing changed.
    pub fn health_report(
        &mut self,
        verdicts: &[crate::health::Verdict],
    ) -> Result<Vec<crate::health::HealthEvent>, CtlError> {
        let mut next = self.config.clone();
        let events = crate::health::model::apply_verdicts(&mut next, verdicts, Instant::now())?;
        if next != self.config {
            self.backend.publish(&next)?;
            self.adopt(next);
        }
        Ok(events)
    }

    /// `lbadm check show`.
    pub fn checks(
        &self,
        only: Option<&ServiceKey>,
    ) -> Result<crate::health::report::ChecksReport, CtlError> {
        crate::health::report::build(
            &self.config,
            self.health.as_ref().map(|l| l.board().as_ref()),
            only,
        )
    }

    /// The current configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Publishes the current configuration again (e.g. at start-up).
    pub fn publish_current(&mut self) -> Result<(), CtlError> {
        self.backend.publish(&self.config)
    }

    /// Applies configuration changes atomically: all succeed and are published together, or
    /// nothing changes.
    pub fn apply(&mut self, cmds: &[ConfigCommand]) -> Result<(), CtlError> {
        self.apply_transaction(cmds).map_err(|e| e.error)
    }

    /// [`Controller::apply`] that also tells which command failed (the first one; the
    /// commands after it are not looked at).
    pub fn apply_transaction(&mut self, cmds: &[ConfigCommand]) -> Result<(), TransactionError> {
        let mut next = self.config.clone();
        for (i, c) in cmds.iter().enumerate() {
            supported(c)
                .and_then(|()| next.apply(c))
                .map_err(|error| {
                    events::refused(c, &error);
                    TransactionError {
                        index: Some(i),
                        error,
                    }
                })?;
        }
        self.backend.publish(&next).map_err(|error| {
            events::publish_failed(&error);
            TransactionError { index: None, error }
        })?;
        self.adopt(next);
        events::applied_all(cmds);
        Ok(())
    }

    /// Applies `cmds` to one clone of the configuration, each in order, recording every
    /// command's result (a failed command is skipped and the next one checked against the
    /// state so far). `atomic`: if any failed, nothing changes. Otherwise (or if none failed)
    /// the clone is published once and kept; a publish failure turns every successful result
    /// into that error (non-atomic) or is returned (atomic).
    pub fn commit(&mut self, cmds: &[ConfigCommand], atomic: bool) -> Result<Reply, CtlError> {
        let mut next = self.config.clone();
        let mut results: Vec<Result<(), CtlError>> = Vec::with_capacity(cmds.len());
        for c in cmds {
            results.push(supported(c).and_then(|()| next.apply(c)));
        }
        let failed = results.iter().any(Result::is_err);
        let changed = results.iter().any(Result::is_ok);
        for (c, r) in cmds.iter().zip(&results) {
            if let Err(e) = r {
                events::refused(c, e);
            }
        }
        if (atomic && failed) || !changed {
            return Ok(Reply::Batch(results));
        }
        match self.backend.publish(&next) {
            Ok(()) => {
                self.adopt(next);
                for (c, _) in cmds.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
                    events::applied(c);
                }
            }
            Err(e) if atomic => {
                events::publish_failed(&e);
                return Err(e);
            }
            Err(e) => {
                events::publish_failed(&e);
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(e.clone());
                }
            }
        }
        Ok(Reply::Batch(results))
    }

    /// The sysctls as `lbadm sysctl` shows them: automatic defense modes read 2 while the
    /// defense is on, 1 while it is off (the kernel rewrites the value the same way); the
    /// configuration keeps what the operator set.
    fn shown_sysctls(&mut self) -> Sysctls {
        let s = *self.config.sysctls();
        let auto = [s.drop_entry, s.drop_packet, s.secure_tcp].iter().any(|m| *m == 1 || *m == 2);
        if auto {
            s.with_defense_state(self.backend.defense_on())
        } else {
            s
        }
    }

    /// The whole configuration (`ConfigShow`, `lbadm save`).
    pub fn dump(&self) -> ConfigDump {
        ConfigDump {
            addrs: self.config.addrs().to_vec(),
            marks: self.config.marks().to_vec(),
            sysctls: *self.config.sysctls(),
            timeouts: *self.config.timeouts(),
            services: self
                .config
                .services_in_creation_order()
                .into_iter()
                .map(|s| ServiceDump {
                    config: s.config.clone(),
                    servers: match self.config.health().service(&s.config.key) {
                        // Managed: the servers as configured, whatever their health.
                        Some(st) => st
                            .servers
                            .iter()
                            .map(|h| crate::model::ServerConfig {
                                id: s
                                    .server(h.spec.addr, h.spec.port)
                                    .map_or(ServerId(u32::MAX), |p| p.id),
                                addr: h.spec.addr,
                                port: h.spec.port,
                                fwd: h.spec.fwd,
                                weight: h.spec.weight,
                                u_threshold: h.spec.u_threshold,
                                l_threshold: h.spec.l_threshold,
                            })
                            .collect(),
                        None => s.servers.clone(),
                    },
                })
                .collect(),
            health: crate::health::model::dump(&self.config),
        }
    }

    /// Periodic work: samples counters for `--rate` every 2 s and reclaims trash slots no
    /// longer in use. Call about once a second (`serve` does).
    pub fn tick(&mut self, now: Instant) {
        if !self.stats.due(now) {
            return;
        }
        let raw: HashMap<ServerId, ServerStats> = self.backend.server_stats().into_iter().collect();
        self.stats.sample(now, &self.config, &raw);
        self.config
            .reclaim_trash(now, |id| raw.get(&id).is_some_and(ServerStats::in_use));
    }

    /// Answers one request outside any connection (a `Stage` is lost: its session ends
    /// with the request; use [`Controller::handle_in`] to keep one).
    pub fn handle(&mut self, req: Request) -> Response {
        self.handle_in(&mut Session::default(), req)
    }

    /// Answers one request of the connection whose state is `session`.
    pub fn handle_in(&mut self, session: &mut Session, req: Request) -> Response {
        if req.v != PROTOCOL_VERSION {
            return Response::err(CtlError::protocol(format!(
                "unsupported protocol version {} (this director speaks version {PROTOCOL_VERSION})",
                req.v
            )));
        }
        let result = match req.op {
            Op::Ipvs(cmd) => self.ipvs(&cmd),
            Op::Restore(cmds) => Ok(self.restore(&cmds)),
            Op::AddrAdd {
                addr,
                prefix_len,
                dev,
            } => self
                .apply(&[ConfigCommand::AddAddr(AddrConfig {
                    addr,
                    prefix_len,
                    dev,
                })])
                .map(|_| Reply::Ok),
            Op::AddrDel {
                addr,
                prefix_len,
                dev,
            } => self
                .apply(&[ConfigCommand::DelAddr {
                    addr,
                    prefix_len,
                    dev,
                }])
                .map(|_| Reply::Ok),
            Op::AddrShow => Ok(Reply::Addrs(self.config.addrs().to_vec())),
            Op::MarkAdd(rule) => self
                .apply(&[ConfigCommand::AddMark(rule)])
                .map(|_| Reply::Ok),
            Op::MarkInsert { pos, rule } => self
                .apply(&[ConfigCommand::InsertMark { pos, rule }])
                .map(|_| Reply::Ok),
            Op::MarkDel(rule) => self
                .apply(&[ConfigCommand::DelMark(rule)])
                .map(|_| Reply::Ok),
            Op::MarkDelAt(pos) => self
                .apply(&[ConfigCommand::DelMarkAt(pos)])
                .map(|_| Reply::Ok),
            Op::MarkFlush => self.apply(&[ConfigCommand::FlushMarks]).map(|_| Reply::Ok),
            Op::MarkShow => Ok(self.marks_reply()),
            Op::SysctlShow => Ok(Reply::Sysctls(self.shown_sysctls())),
            Op::SysctlSetValues { name, values } => self
                .apply(&[ConfigCommand::SetSysctlValues { name, values }])
                .map(|_| Reply::Sysctls(self.shown_sysctls())),
            Op::SysctlSet { name, value } => self
                .apply(&[ConfigCommand::SetSysctl { name, value }])
                .map(|_| Reply::Sysctls(self.shown_sysctls())),
            Op::NeighShow => Ok(Reply::Neighs(self.backend.neighbours())),
            Op::LinkShow => Ok(Reply::Links(self.backend.links())),
            Op::SyncShow => Ok(Reply::Sync(self.backend.sync_status())),
            Op::Stage(cmds) => {
                if session.staged.len().saturating_add(cmds.len()) > MAX_STAGED {
                    session.staged = Vec::new();
                    Err(CtlError::protocol(format!(
                        "transaction too large: more than {MAX_STAGED} commands (discarded)"
                    )))
                } else {
                    session.staged.extend(cmds);
                    Ok(Reply::Staged(session.staged.len() as u64))
                }
            }
            Op::Commit { atomic } => {
                let cmds = std::mem::take(&mut session.staged);
                self.commit(&cmds, atomic)
            }
            Op::Discard => {
                session.staged = Vec::new();
                Ok(Reply::Ok)
            }
            Op::ConfigShow => Ok(Reply::Config(self.dump())),
            Op::Apply(cmds) => self.apply(&cmds).map(|_| Reply::Ok),
            Op::CheckShow { service } => self.checks(service.as_ref()).map(Reply::Checks),
            Op::ConnPage { cursor, max } => {
                let max = max.clamp(1, crate::proto::MAX_CONN_PAGE) as usize;
                let (rows, next) = self.backend.connections_page(cursor, max);
                Ok(Reply::ConnPage { rows, next })
            }
        };
        match result {
            Ok(r) => Response::ok(r),
            Err(e) => Response::err(e),
        }
    }

    fn ipvs(&mut self, cmd: &IpvsCommand) -> Result<Reply, CtlError> {
        if let Err(e) = cmd.validate() {
            if let Some(cc) = cmd.config_command() {
                events::refused(&cc, &e);
            }
            return Err(e);
        }
        if let Some(cc) = cmd.config_command() {
            self.apply(std::slice::from_ref(&cc))?;
            return Ok(match self.vip_warning(&cc) {
                Some(w) => Reply::Warning(w),
                None => Reply::Ok,
            });
        }
        match cmd {
            IpvsCommand::List(opts) => {
                if opts.connections {
                    Ok(Reply::Connections(self.backend.connections()))
                } else if opts.timeout {
                    Ok(Reply::Timeouts(*self.config.timeouts()))
                } else if opts.daemon {
                    Ok(Reply::Daemons(self.backend.sync_status().daemons))
                } else {
                    self.services_reply(opts.service.as_ref())
                }
            }
            IpvsCommand::Save { .. } => self.services_reply(None),
            IpvsCommand::Zero(svc) => {
                let cfg = self.config.clone();
                self.zero(&cfg, svc.as_ref())?;
                Ok(Reply::Ok)
            }
            IpvsCommand::StartDaemon(spec) => self.backend.start_daemon(spec).map(|()| Reply::Ok),
            IpvsCommand::StopDaemon(role) => self.backend.stop_daemon(*role).map(|()| Reply::Ok),
            IpvsCommand::Restore => Err(CtlError::protocol(
                "-R rules must be sent as a Restore request (lbadm reads them from stdin)",
            )),
            IpvsCommand::Help | IpvsCommand::Version => Err(CtlError::protocol(
                "-h and -v are answered by the client, not the director",
            )),
            // Config changes were handled above.
            _ => Err(CtlError::protocol("unexpected command")),
        }
    }

    fn marks_reply(&mut self) -> Reply {
        let counters = self.backend.mark_counters();
        Reply::Marks(
            self.config
                .marks()
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    let c = counters.get(i).copied().unwrap_or_default();
                    MarkStatus {
                        rule: rule.clone(),
                        packets: c.packets,
                        bytes: c.bytes,
                    }
                })
                .collect(),
        )
    }

    fn zero(&mut self, cfg: &Config, svc: Option<&ServiceKey>) -> Result<(), CtlError> {
        let services: Vec<_> = match svc {
            Some(k) => vec![cfg.service(k).ok_or_else(CtlError::no_such_service)?],
            None => cfg.services().collect(),
        };
        let raw: HashMap<ServerId, ServerStats> = self.backend.server_stats().into_iter().collect();
        for s in services {
            for srv in &s.servers {
                let r = raw.get(&srv.id).copied().unwrap_or_default();
                self.stats.zero(cfg, srv.id, &r);
            }
        }
        Ok(())
    }

    fn restore(&mut self, cmds: &[IpvsCommand]) -> Reply {
        let mut next = self.config.clone();
        let mut results: Vec<Result<(), CtlError>> = Vec::with_capacity(cmds.len());
        let mut changes: Vec<usize> = Vec::new();
        let mut applied: Vec<ConfigCommand> = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let r = cmd.validate().and_then(|()| match cmd.config_command() {
                Some(cc) => {
                    if let Err(e) = next.apply(&cc) {
                        events::refused(&cc, &e);
                        return Err(e);
                    }
                    changes.push(i);
                    applied.push(cc);
                    Ok(())
                }
                None => match cmd {
                    IpvsCommand::Zero(svc) => {
                        let snapshot = next.clone();
                        self.zero(&snapshot, svc.as_ref())
                    }
                    IpvsCommand::StartDaemon(spec) => self.backend.start_daemon(spec),
                    IpvsCommand::StopDaemon(role) => self.backend.stop_daemon(*role),
                    _ => Err(CtlError::refused(
                        "only configuration commands are allowed in -R input",
                    )),
                },
            });
            results.push(r);
        }
        if !changes.is_empty() {
            match self.backend.publish(&next) {
                Ok(()) => {
                    self.adopt(next);
                    events::applied_all(&applied);
                }
                Err(e) => {
                    events::publish_failed(&e);
                    for i in changes {
                        results[i] = Err(e.clone());
                    }
                }
            }
        }
        Reply::Batch(results)
    }

    /// For `-A`/`-E` of a service whose VIP is not an address of the director: the warning
    /// that its packets are dropped until the address exists (the change itself succeeds,
    /// as in ipvsadm, where the VIP is an alias configured separately).
    fn vip_warning(&self, cc: &ConfigCommand) -> Option<String> {
        let (ConfigCommand::AddService(spec) | ConfigCommand::EditService(spec)) = cc else {
            return None;
        };
        let ServiceKey::Addr { addr, port, .. } = spec.key else {
            return None;
        };
        if self.config.addrs().iter().any(|a| a.addr == addr) {
            return None;
        }
        Some(format!(
            "{addr} is not an address of this director: packets to {addr}:{port} are dropped until it is added (lbadm addr add {addr}/32 dev dpdk0, or ip addr add on the kernel interface)"
        ))
    }

    fn services_reply(&mut self, only: Option<&ServiceKey>) -> Result<Reply, CtlError> {
        let raw: HashMap<ServerId, ServerStats> = self.backend.server_stats().into_iter().collect();
        let list: Vec<_> = match only {
            Some(k) => vec![self
                .config
                .service(k)
                .ok_or_else(CtlError::no_such_service_listing)?],
            None => self.config.services_in_creation_order(),
        };
        let mut services = Vec::with_capacity(list.len());
        for s in list {
            let mut st = ServiceStatus {
                config: s.config.clone(),
                servers: Vec::with_capacity(s.servers.len()),
                conns: 0,
                inpkts: 0,
                inbytes: 0,
                outpkts: 0,
                outbytes: 0,
                rates: Default::default(),
            };
            for srv in &s.servers {
                let mut server = srv.clone();
                if server.fwd == FwdMethod::Route && self.config.is_local_addr(server.addr) {
                    server.fwd = FwdMethod::Local;
                }
                let r = raw.get(&srv.id).copied().unwrap_or_default();
                let (c, rates) = self.stats.view(&self.config, srv.id, &r);
                st.conns = st.conns.saturating_add(c.conns);
                st.inpkts = st.inpkts.saturating_add(c.inpkts);
                st.inbytes = st.inbytes.saturating_add(c.inbytes);
                st.outpkts = st.outpkts.saturating_add(c.outpkts);
                st.outbytes = st.outbytes.saturating_add(c.outbytes);
                st.rates.cps += rates.cps;
                st.rates.inpps += rates.inpps;
                st.rates.outpps += rates.outpps;
                st.rates.inbps += rates.inbps;
                st.rates.outbps += rates.outbps;
                st.servers.push(ServerStatus {
                    server,
                    active: c.active,
                    inactive: c.inactive,
                    persist: c.persist,
                    conns: c.conns,
                    inpkts: c.inpkts,
                    inbytes: c.inbytes,
                    outpkts: c.outpkts,
                    outbytes: c.outbytes,
                    rates,
                });
            }
            services.push(st);
        }
        Ok(Reply::Services {
            table_size: self.backend.table_size(),
            services,
        })
    }
}

/// Most clients served at once (one thread each); more get the
/// [`client::BUSY`](crate::proto::client::BUSY) response and are disconnected, which lbadm
/// and [`crate::proto::client::open`] answer by retrying for a bounded time. Well above the
/// 100 concurrent lbadm clients the control plane is specified for.
pub const MAX_CLIENTS: usize = 256;
/// A connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request frame must be complete this long after its first byte.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(100);
const ACCEPT_POLL: Duration = Duration::from_millis(10);
const TICK_EVERY: Duration = Duration::from_secs(1);

/// A controller shared by the socket server and other slow-path threads.
pub type SharedController<B> = Arc<Mutex<Controller<B>>>;

/// Locks a shared controller (a poisoned lock is taken over: every change is applied to a
/// clone and swapped in whole, so the controller is never left half-changed).
pub fn lock<B: Backend>(m: &Mutex<Controller<B>>) -> MutexGuard<'_, Controller<B>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum ReadErr {
    /// Clean close, stop requested, timeout or I/O error: just close.
    Close,
    /// Length header above the limit.
    TooLarge(u64),
}

/// Reads into `buf` completely, polling `stop`; `started` tells whether the frame has begun.
fn read_deadline(
    s: &mut UnixStream,
    buf: &mut [u8],
    stop: &AtomicBool,
    idle_deadline: Instant,
    frame_deadline: &mut Option<Instant>,
) -> Result<(), ReadErr> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(ReadErr::Close),
            Ok(n) => {
                got += n;
                if frame_deadline.is_none() {
                    *frame_deadline = Some(Instant::now() + FRAME_TIMEOUT);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Err(ReadErr::Close);
                }
                if Instant::now() >= frame_deadline.unwrap_or(idle_deadline) {
                    return Err(ReadErr::Close);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadErr::Close),
        }
    }
    Ok(())
}

fn read_request(s: &mut UnixStream, stop: &AtomicBool) -> Result<Vec<u8>, ReadErr> {
    let idle_deadline = Instant::now() + IDLE_TIMEOUT;
    let mut frame_deadline = None;
    let mut hdr = [0u8; 4];
    read_deadline(s, &mut hdr, stop, idle_deadline, &mut frame_deadline)?;
    let len = u64::from(u32::from_be_bytes(hdr));
    if len > MAX_REQUEST as u64 {
        return Err(ReadErr::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    read_deadline(s, &mut body, stop, idle_deadline, &mut frame_deadline)?;
    Ok(body)
}

fn send(s: &mut UnixStream, resp: &Response) -> io::Result<()> {
    write_frame(s, &encode_response(resp))
}

fn client_loop<B: Backend>(mut s: UnixStream, ctl: &Mutex<Controller<B>>, stop: &AtomicBool) {
    if s.set_read_timeout(Some(POLL)).is_err() || s.set_write_timeout(Some(FRAME_TIMEOUT)).is_err()
    {
        return;
    }
    let mut session = Session::default();
    loop {
        match read_request(&mut s, stop) {
            Ok(body) => {
                let resp = match decode_request(&body) {
                    Ok(req) => lock(ctl).handle_in(&mut session, req),
                    Err(e) => Response::err(e),
                };
                if send(&mut s, &resp).is_err() {
                    return;
                }
            }
            Err(ReadErr::TooLarge(len)) => {
                let _ = send(
                    &mut s,
                    &Response::err(CtlError::protocol(format!(
                        "request too large: {len} bytes (limit {MAX_REQUEST} bytes)"
                    ))),
                );
                return;
            }
            Err(ReadErr::Close) => return,
        }
    }
}

/// Binds the socket: refuses if a live director answers there or a non-socket file is in the
/// way, removes a stale socket, and binds under a temporary name so the socket appears at
/// `path` only once it is mode 0600.
fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("a director is already serving {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "director.sock".into());
    let tmp: PathBuf = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let prepared = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = prepared {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// Serves `controller` on a Unix stream socket at `path` until `stop` becomes true. Removes a
/// stale socket file first, creates the socket with mode 0600, handles several clients at once,
/// and removes the socket file on return.
pub fn serve<B: Backend + 'static>(
    path: &Path,
    controller: Controller<B>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    serve_shared(path, Arc::new(Mutex::new(controller)), stop)
}

/// [`serve`] over a controller that other slow-path threads share (the kernel leg's address
/// sync, health checkers): they lock it for one change at a time, exactly as a client
/// request does, so their changes and the socket's requests are serialised.
pub fn serve_shared<B: Backend + 'static>(
    path: &Path,
    ctl: SharedController<B>,
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    let listener = bind(path)?;
    let ino = std::fs::symlink_metadata(path).map(|m| m.ino()).ok();
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    let mut last_tick = Instant::now();
    lock(&ctl).tick(last_tick);

    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                if active.load(Ordering::Relaxed) >= MAX_CLIENTS {
                    let _ = stream.set_write_timeout(Some(POLL));
                    let _ = send(
                        &mut stream,
                        &Response::err(CtlError::protocol(crate::proto::client::BUSY)),
                    );
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (c_ctl, c_stop, c_active) =
                    (Arc::clone(&ctl), Arc::clone(&stop), Arc::clone(&active));
                let spawned = thread::Builder::new()
                    .name("ctl-client".into())
                    .spawn(move || {
                        client_loop(stream, &c_ctl, &c_stop);
                        c_active.fetch_sub(1, Ordering::Relaxed);
                    });
                match spawned {
                    Ok(h) => clients.push(h),
                    Err(_) => {
                        active.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
        if last_tick.elapsed() >= TICK_EVERY {
            last_tick = Instant::now();
            lock(&ctl).tick(last_tick);
        }
        clients.retain(|h| !h.is_finished());
    }
    for h in clients {
        let _ = h.join();
    }
    if std::fs::symlink_metadata(path).map(|m| m.ino()).ok() == ino {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Starts the health checker engine ([`crate::health::engine`]) for the shared controller:
/// it gets the checker definitions from the controller and applies its verdicts through
/// [`Controller::health_report`] under the controller's lock. Stops when `stop` is set.
pub fn start_health<B: Backend + 'static>(
    ctl: &Arc<Mutex<Controller<B>>>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    start_health_on(ctl, stop, None)
}

/// [`start_health`] with the engine's threads restricted to `cpus` (see
/// [`crate::health::engine::spawn_on`]).
pub fn start_health_on<B: Backend + 'static>(
    ctl: &Arc<Mutex<Controller<B>>>,
    stop: Arc<AtomicBool>,
    cpus: Option<Vec<usize>>,
) -> io::Result<JoinHandle<()>> {
    let (link, input) = crate::health::engine::link();
    lock(ctl).attach_health(link);
    let c = Arc::clone(ctl);
    crate::health::engine::spawn_on(
        input,
        Box::new(move |verdicts| lock(&c).health_report(verdicts)),
        stop,
        cpus,
    )
}
