//! Health state inside the configuration: which services are *managed* by checkers, each
//! managed server's configured settings and checkers, and keepalived's pool rules
//! (keepalived/check/ipwrapper.c: perform_svr_state, update_quorum_state,
//! perform_quorum_state; ipvswrapper.c: inhibit_on_failure turns a removal into weight 0).
//!
//! A service is either unmanaged (its pool is exactly what `-a/-e/-d` made it) or managed:
//! it has a [`ServiceState`] holding *every* one of its real servers as configured
//! ([`ServerState::spec`], the weight the operator gave), their checkers and the quorum
//! state. The pool the dataplane sees (the service's servers in [`Config`]) is then a pure
//! function of that state, kept in step by [`reconcile`]:
//! - quorum held: a server whose checkers all pass is present with its effective weight
//!   (configured, or what a `misc_dynamic` script set); a failing one is deleted, or kept at
//!   weight 0 with `inhibit_on_failure`;
//! - quorum lost with a sorry server: every real server is out (inhibited ones at weight 0)
//!   and the sorry server is in, weight 1; otherwise a `sorry_server_inhibit` sorry server
//!   is listed at weight 0.
//!
//! Invariants: the configured weight of a managed server survives any number of
//! inhibit/restore cycles because it lives in `ServerState`, never in the pool; operator
//! commands on a managed server change `ServerState` and then the pool (`-e` of a down
//! server succeeds and takes effect when it comes back); checker ids are never reused;
//! `defs_generation` changes whenever what the engine must run changes. Every function here
//! leaves the `Config` unchanged when it returns an error. Plain data owned by the control
//! thread (the checker engine only ever sees [`ProbeDef`] copies and sends [`Verdict`]s).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::CtlError;
use crate::model::{
    Config, ConfigCommand, FwdMethod, ServerSpec, ServiceKey, MAX_WEIGHT,
};

use super::spec::{CheckId, CheckKind, CheckSpec, ServerHealthOpts, ServiceHealth, SorryServer};

/// `lbadm check add`: attach a checker to a real server of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddCheck {
    /// The service.
    pub service: ServiceKey,
    /// The real server's address.
    pub addr: Ipv4Addr,
    /// The real server's port (normalised like `-a`: direct routing takes the service port).
    pub port: u16,
    /// The checker.
    pub spec: CheckSpec,
    /// Server-level settings given with it.
    pub server: ServerHealthOpts,
}

/// `lbadm check del`: remove a server's checkers (of one kind, or all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelCheck {
    /// The service.
    pub service: ServiceKey,
    /// The real server's address.
    pub addr: Ipv4Addr,
    /// The real server's port.
    pub port: u16,
    /// `tcp`, `http`, `https`, `misc`, or every kind.
    pub kind: Option<String>,
}

/// One checker of a managed server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// Its id.
    pub id: CheckId,
    /// Its definition.
    pub spec: CheckSpec,
    /// keepalived's `is_up` (starts false under `alpha`).
    pub up: bool,
    /// Weight a `misc_dynamic` script set (exit status - 2), while up.
    pub dynamic_weight: Option<u32>,
}

/// A real server of a managed service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// As configured (normalised; `weight` is the operator's).
    pub spec: ServerSpec,
    /// Weight 0 instead of deletion while down.
    pub inhibit_on_failure: bool,
    /// Run when it comes up.
    pub notify_up: Option<String>,
    /// Run when it goes down.
    pub notify_down: Option<String>,
    /// Its checkers (none: always alive).
    pub checks: Vec<CheckState>,
}

impl ServerState {
    fn new(spec: ServerSpec) -> Self {
        ServerState {
            spec,
            inhibit_on_failure: false,
            notify_up: None,
            notify_down: None,
            checks: Vec::new(),
        }
    }

    /// Alive while every checker passes (keepalived: num_failed_checkers == 0).
    pub fn alive(&self) -> bool {
        self.checks.iter().all(|c| c.up)
    }

    /// The weight it has while alive: the configured weight plus what each `misc_dynamic`
    /// checker adds (its weight minus the configured one), clamped to 0..=65535
    /// (keepalived's cur_weight / real_weight).
    pub fn effective_weight(&self) -> u32 {
        let base = i64::from(self.spec.weight);
        let w = self
            .checks
            .iter()
            .filter_map(|c| c.dynamic_weight)
            .fold(base, |acc, d| acc + i64::from(d) - base);
        w.clamp(0, i64::from(MAX_WEIGHT)) as u32
    }

    fn key(&self) -> (Ipv4Addr, u16) {
        (self.spec.addr, self.spec.port)
    }
}

/// A managed service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// quorum, hysteresis, sorry server, scripts.
    pub settings: ServiceHealth,
    /// keepalived's quorum_state_up.
    pub quorum_up: bool,
    /// The sorry server is in the pool (quorum lost).
    pub sorry_active: bool,
    /// Every real server of the service, newest first.
    pub servers: Vec<ServerState>,
}

impl ServiceState {
    /// Sum of the effective weights of the alive servers (weigh_live_realservers).
    pub fn live_weight(&self) -> u64 {
        self.servers
            .iter()
            .filter(|s| s.alive())
            .map(|s| u64::from(s.effective_weight()))
            .sum()
    }

    /// The server with this address and port.
    pub fn server(&self, addr: Ipv4Addr, port: u16) -> Option<&ServerState> {
        self.servers.iter().find(|s| s.key() == (addr, port))
    }

    fn server_mut(&mut self, addr: Ipv4Addr, port: u16) -> Option<&mut ServerState> {
        self.servers.iter_mut().find(|s| s.key() == (addr, port))
    }

    fn has_checks(&self) -> bool {
        self.servers.iter().any(|s| !s.checks.is_empty())
    }

    /// update_quorum_state(): the quorum transition this state calls for, if any (the
    /// thresholds are quorum + hysteresis to gain it, quorum - hysteresis to lose it).
    fn update_quorum(&mut self, service: ServiceKey, init: bool) -> Option<HealthEvent> {
        let sum = self.live_weight();
        let q = i64::from(self.settings.quorum);
        let h = i64::from(self.settings.hysteresis);
        let threshold = if self.quorum_up { q - h } else { q + h };
        let sorry = self.settings.sorry_server;
        if !self.quorum_up && sum as i64 >= threshold {
            self.quorum_up = true;
            let was = self.sorry_active;
            self.sorry_active = false;
            return Some(HealthEvent::Quorum {
                service,
                up: true,
                quorum: self.settings.quorum,
                hysteresis: self.settings.hysteresis,
                threshold,
                weight_sum: sum,
                sorry: sorry.filter(|_| was),
                script: self.settings.quorum_up.clone(),
            });
        }
        if (self.quorum_up && (sum == 0 || (sum as i64) < threshold))
            || (init && !self.quorum_up && sorry.is_some() && !self.sorry_active)
        {
            self.quorum_up = false;
            let added = sorry.is_some() && !self.sorry_active;
            if sorry.is_some() {
                self.sorry_active = true;
            }
            return Some(HealthEvent::Quorum {
                service,
                up: false,
                quorum: self.settings.quorum,
                hysteresis: self.settings.hysteresis,
                threshold,
                weight_sum: sum,
                sorry: sorry.filter(|_| added),
                script: self.settings.quorum_down.clone(),
            });
        }
        None
    }

    /// The pool this state calls for, newest first.
    fn desired(&self) -> Vec<ServerSpec> {
        let mut out = Vec::with_capacity(self.servers.len() + 1);
        for s in &self.servers {
            let alive = s.alive();
            let present = if self.sorry_active {
                s.inhibit_on_failure
            } else {
                alive || s.inhibit_on_failure
            };
            if present {
                let mut spec = s.spec.clone();
                spec.weight = if alive && !self.sorry_active {
                    s.effective_weight()
                } else {
                    0
                };
                out.push(spec);
            }
        }
        if let Some(sorry) = self.settings.sorry_server {
            if self.sorry_active || sorry.inhibit {
                let mut spec = ServerSpec::new(sorry.addr, sorry.port);
                spec.weight = u32::from(self.sorry_active);
                out.push(spec);
            }
        }
        out
    }

    fn managed(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.server(addr, port).is_some()
            || self
                .settings
                .sorry_server
                .is_some_and(|s| (s.addr, s.port) == (addr, port))
    }
}

/// What the checker engine reports: a checker's new state (and, for `misc_dynamic`, the
/// weight its last exit status asks for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The checker.
    pub id: CheckId,
    /// keepalived's is_up.
    pub up: bool,
    /// `misc_dynamic` weight (exit status - 2); `None`: the configured weight.
    pub dynamic_weight: Option<u32>,
}

/// A pool change caused by checker verdicts: one log line each, and the script to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEvent {
    /// A real server went up or down.
    Server {
        /// Its service.
        service: ServiceKey,
        /// Its address.
        addr: Ipv4Addr,
        /// Its port.
        port: u16,
        /// New state.
        up: bool,
        /// It stays listed at weight 0 while down.
        inhibit: bool,
        /// The quorum is lost and a sorry server serves: the pool did not change.
        held: bool,
        /// notify_up / notify_down.
        script: Option<String>,
    },
    /// A live server's weight changed (misc_dynamic).
    Weight {
        /// Its service.
        service: ServiceKey,
        /// Its address.
        addr: Ipv4Addr,
        /// Its port.
        port: u16,
        /// Old weight.
        from: u32,
        /// New weight.
        to: u32,
        /// It is alive (else the change applies when it comes back).
        alive: bool,
    },
    /// The quorum was gained or lost.
    Quorum {
        /// The service.
        service: ServiceKey,
        /// Gained (true) or lost.
        up: bool,
        /// Configured quorum.
        quorum: u32,
        /// Configured hysteresis.
        hysteresis: u32,
        /// The threshold that was crossed.
        threshold: i64,
        /// Live weight.
        weight_sum: u64,
        /// The sorry server that was added (lost) or removed (gained).
        sorry: Option<SorryServer>,
        /// quorum_up / quorum_down.
        script: Option<String>,
    },
}

/// `TCP 10.0.0.1:80`, `UDP ...`, `FWM 7` (ipvsadm's words).
pub fn service_name(k: &ServiceKey) -> String {
    match k {
        ServiceKey::Addr { proto, addr, port } => {
            format!("{} {addr}:{port}", proto.name())
        }
        ServiceKey::Fwmark(m) => format!("FWM {m}"),
    }
}

impl HealthEvent {
    /// The script this event runs, if any.
    pub fn script(&self) -> Option<&str> {
        match self {
            HealthEvent::Server { script, .. } | HealthEvent::Quorum { script, .. } => {
                script.as_deref()
            }
            HealthEvent::Weight { .. } => None,
        }
    }
}

impl fmt::Display for HealthEvent {
    /// keepalived's wording (ipwrapper.c), one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthEvent::Server { service, addr, port, up, inhibit, held, .. } => {
                let verb = match (up, inhibit) {
                    (true, false) => "Adding",
                    (true, true) => "Enabling",
                    (false, false) => "Removing",
                    (false, true) => "Disabling",
                };
                let prep = if *inhibit { "of" } else if *up { "to" } else { "from" };
                write!(f, "{verb} service {addr}:{port} {prep} VS {}", service_name(service))?;
                if *held {
                    write!(f, " (quorum lost: the sorry server keeps serving)")?;
                }
                Ok(())
            }
            HealthEvent::Weight { service, addr, port, from, to, alive } => write!(
                f,
                "Changing weight from {from} to {to} for {}active service {addr}:{port} of VS {}",
                if *alive { "" } else { "in" },
                service_name(service)
            ),
            HealthEvent::Quorum { service, up, quorum, hysteresis, threshold, weight_sum, sorry, .. } => {
                if *up {
                    write!(
                        f,
                        "Gained quorum {quorum}+{hysteresis}={threshold} <= {weight_sum} for VS {}",
                        service_name(service)
                    )?;
                    if let Some(s) = sorry {
                        write!(f, "; removing sorry server {}:{}", s.addr, s.port)?;
                    }
                } else {
                    write!(
                        f,
                        "Lost quorum {quorum}-{hysteresis}={threshold} > {weight_sum} for VS {}",
                        service_name(service)
                    )?;
                    if let Some(s) = sorry {
                        write!(f, "; adding sorry server {}:{}", s.addr, s.port)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// What the engine must run for one checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeDef {
    /// The checker.
    pub id: CheckId,
    /// Its service.
    pub service: ServiceKey,
    /// Its real server (address, port).
    pub server: (Ipv4Addr, u16),
    /// The definition.
    pub spec: CheckSpec,
    /// Where connecting checkers connect (connect_ip/connect_port or the server's).
    pub dst: SocketAddrV4,
    /// Source address: `bindto`, else the director's address on the destination's subnet
    /// (longest prefix, /32 addresses excluded), else none (the host's routing decides).
    pub source: Option<Ipv4Addr>,
    /// True if `source` was configured (`bindto`): failing to bind it fails the check.
    pub source_explicit: bool,
    /// keepalived's is_up at the time the definitions were taken.
    pub up: bool,
    /// For MISC_CHECK: the current weight the server has (used in logs).
    pub misc_dynamic: bool,
}

/// Health state of the whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthConfig {
    services: BTreeMap<ServiceKey, ServiceState>,
    index: HashMap<CheckId, (ServiceKey, Ipv4Addr, u16)>,
    next_id: u64,
    defs_generation: u64,
}

impl HealthConfig {
    /// Managed services in key order.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceKey, &ServiceState)> + '_ {
        self.services.iter()
    }

    /// One managed service.
    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceState> {
        self.services.get(key)
    }

    /// True if no service is managed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Number of checkers.
    pub fn check_count(&self) -> usize {
        self.index.len()
    }

    /// Changes whenever the set of checkers or their definitions change.
    pub fn defs_generation(&self) -> u64 {
        self.defs_generation
    }

    /// Where a checker lives.
    pub fn locate(&self, id: CheckId) -> Option<(ServiceKey, Ipv4Addr, u16)> {
        self.index.get(&id).copied()
    }

    fn bump(&mut self) {
        self.defs_generation += 1;
    }
}

/// Service port a checker of `service` connects to by default for a server on `port`.
fn default_dst_port(service: &ServiceKey, port: u16) -> u16 {
    if port != 0 {
        port
    } else {
        service.port()
    }
}

/// The definitions the engine runs, with source addresses chosen from `cfg`'s addresses.
pub fn probe_defs(cfg: &Config) -> Vec<ProbeDef> {
    let h = cfg.health();
    let mut out = Vec::with_capacity(h.check_count());
    for (key, st) in &h.services {
        for s in &st.servers {
            for c in &s.checks {
                let t = c.spec.target;
                let ip = t.connect_ip.unwrap_or(s.spec.addr);
                let port = t
                    .connect_port
                    .unwrap_or_else(|| default_dst_port(key, s.spec.port));
                let (source, explicit) = match t.bindto {
                    Some(b) => (Some(b), true),
                    None => (source_for(cfg, ip), false),
                };
                out.push(ProbeDef {
                    id: c.id,
                    service: *key,
                    server: (s.spec.addr, s.spec.port),
                    spec: c.spec.clone(),
                    dst: SocketAddrV4::new(ip, port),
                    source,
                    source_explicit: explicit,
                    up: c.up,
                    misc_dynamic: matches!(&c.spec.kind, CheckKind::Misc(m) if m.dynamic),
                });
            }
        }
    }
    out
}

/// The director's address on `dst`'s subnet (longest prefix; /32 addresses and `dst`
/// itself excluded), if any.
pub fn source_for(cfg: &Config, dst: Ipv4Addr) -> Option<Ipv4Addr> {
    cfg.addrs()
        .iter()
        .filter(|a| a.prefix_len < 32 && a.addr != dst)
        .filter(|a| {
            let mask = if a.prefix_len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(a.prefix_len))
            };
            u32::from(a.addr) & mask == u32::from(dst) & mask
        })
        .max_by_key(|a| a.prefix_len)
        .map(|a| a.addr)
}

fn no_checker() -> CtlError {
    CtlError::refused("No such health checker")
}

fn checker_exists() -> CtlError {
    CtlError::refused("Health checker already exists")
}

fn normalize_port(service: &ServiceKey, addr: Ipv4Addr, port: u16) -> u16 {
    Config::normalize_server(service, &ServerSpec::new(addr, port)).port
}

fn sorry_normalized(service: &ServiceKey, s: SorryServer) -> SorryServer {
    // keepalived: for DR the sorry server takes the virtual port; fwmark: none.
    SorryServer {
        port: match service {
            ServiceKey::Addr { port, .. } => *port,
            ServiceKey::Fwmark(_) => 0,
        },
        ..s
    }
}

/// Turns `key` into a managed service (if it is not yet), adopting its current pool.
fn ensure_managed(cfg: &mut Config, key: &ServiceKey) -> Result<(), CtlError> {
    let svc = cfg.service(key).ok_or_else(CtlError::service_not_defined)?;
    if cfg.health().services.contains_key(key) {
        return Ok(());
    }
    let servers: Vec<ServerState> = svc
        .servers
        .iter()
        .map(|s| {
            ServerState::new(ServerSpec {
                addr: s.addr,
                port: s.port,
                fwd: s.fwd,
                weight: s.weight,
                u_threshold: s.u_threshold,
                l_threshold: s.l_threshold,
            })
        })
        .collect();
    let mut st = ServiceState {
        settings: ServiceHealth::default(),
        quorum_up: true,
        sorry_active: false,
        servers,
    };
    // set_quorum_states().
    st.quorum_up = st.live_weight() >= u64::from(st.settings.quorum + st.settings.hysteresis);
    cfg.health_mut().services.insert(*key, st);
    Ok(())
}

/// Brings the pool of `key` in line with its health state (deletions first, then additions
/// oldest first so the pool keeps the state's order, then edits).
pub fn reconcile(cfg: &mut Config, key: &ServiceKey, now: Instant) -> Result<(), CtlError> {
    let Some(st) = cfg.health().services.get(key) else {
        return Ok(());
    };
    let desired = st.desired();
    let Some(svc) = cfg.service(key) else {
        return Ok(());
    };
    let mut ops: Vec<ConfigCommand> = Vec::new();
    for s in &svc.servers {
        if st.managed(s.addr, s.port) && !desired.iter().any(|d| (d.addr, d.port) == (s.addr, s.port)) {
            ops.push(ConfigCommand::DeleteServer {
                service: *key,
                addr: s.addr,
                port: s.port,
            });
        }
    }
    for d in desired.iter().rev() {
        match svc.server(d.addr, d.port) {
            None => ops.push(ConfigCommand::AddServer {
                service: *key,
                server: d.clone(),
            }),
            Some(s) => {
                if s.weight != d.weight
                    || s.u_threshold != d.u_threshold
                    || s.l_threshold != d.l_threshold
                    || s.fwd != d.fwd
                {
                    ops.push(ConfigCommand::EditServer {
                        service: *key,
                        server: d.clone(),
                    });
                }
            }
        }
    }
    let adds: Vec<(Ipv4Addr, u16)> = ops
        .iter()
        .filter_map(|o| match o {
            ConfigCommand::AddServer { server, .. } => Some((server.addr, server.port)),
            _ => None,
        })
        .collect();
    if !cfg.slots_available(key, &adds) {
        return Err(CtlError::server_table_full(cfg.max_servers(), cfg.trash().count()));
    }
    // Deletions of present servers, additions with a slot and edits of validated specs
    // cannot fail: the pool changes completely or (above) not at all.
    for op in &ops {
        cfg.apply_raw(op, now)?;
    }
    Ok(())
}

/// Stops managing `key`: every configured server back in the pool as configured, the sorry
/// server out.
fn unmanage(cfg: &mut Config, key: &ServiceKey, now: Instant) -> Result<(), CtlError> {
    let Some(st) = cfg.health_mut().services.get_mut(key) else {
        return Ok(());
    };
    for s in &mut st.servers {
        for c in &mut s.checks {
            c.up = true;
            c.dynamic_weight = None;
        }
        s.inhibit_on_failure = false;
    }
    st.sorry_active = false;
    if let Some(sorry) = &mut st.settings.sorry_server {
        sorry.inhibit = false;
    }
    reconcile(cfg, key, now)?;
    let h = cfg.health_mut();
    if let Some(st) = h.services.remove(key) {
        for s in st.servers {
            for c in s.checks {
                h.index.remove(&c.id);
            }
        }
    }
    h.bump();
    Ok(())
}

/// Applies `cmd` with health semantics; commands that do not concern a managed service go
/// straight to the configuration. On error nothing changed.
pub fn apply(cfg: &mut Config, cmd: &ConfigCommand, now: Instant) -> Result<(), CtlError> {
    match cmd {
        ConfigCommand::AddCheck(a) => guarded(cfg, &a.service, |cfg| add_check(cfg, a, now)),
        ConfigCommand::DelCheck(d) => guarded(cfg, &d.service, |cfg| del_check(cfg, d, now)),
        ConfigCommand::SetServiceHealth { service, health } => {
            guarded(cfg, service, |cfg| set_service_health(cfg, service, health, now))
        }
        ConfigCommand::AddServer { service, server } if cfg.health().services.contains_key(service) => {
            guarded(cfg, service, |cfg| add_server(cfg, service, server, now))
        }
        ConfigCommand::EditServer { service, server } if cfg.health().services.contains_key(service) => {
            guarded(cfg, service, |cfg| edit_server(cfg, service, server, now))
        }
        ConfigCommand::DeleteServer { service, addr, port }
            if cfg.health().services.contains_key(service) =>
        {
            guarded(cfg, service, |cfg| delete_server(cfg, service, *addr, *port, now))
        }
        ConfigCommand::DeleteService(key) if cfg.health().services.contains_key(key) => {
            cfg.apply_raw(cmd, now)?;
            drop_health(cfg, key);
            Ok(())
        }
        ConfigCommand::Clear if !cfg.health().is_empty() => {
            cfg.apply_raw(cmd, now)?;
            let keys: Vec<ServiceKey> = cfg.health().services.keys().copied().collect();
            for k in keys {
                drop_health(cfg, &k);
            }
            Ok(())
        }
        _ => cfg.apply_raw(cmd, now),
    }
}

/// Runs `f`, which changes the health state of `key` (and then its pool, which
/// [`reconcile`] changes completely or not at all); if it fails, the service's health state
/// is put back as it was, so the whole configuration is unchanged. A success counts as one
/// change. Costs a copy of one service's state, not of the configuration.
fn guarded(
    cfg: &mut Config,
    key: &ServiceKey,
    f: impl FnOnce(&mut Config) -> Result<(), CtlError>,
) -> Result<(), CtlError> {
    let h = cfg.health();
    let backup = (h.services.get(key).cloned(), h.next_id, h.defs_generation);
    let r = f(cfg);
    match r {
        Ok(()) => cfg.bump_generation(),
        Err(_) => {
            let h = cfg.health_mut();
            if let Some(st) = h.services.remove(key) {
                for s in st.servers {
                    for c in s.checks {
                        h.index.remove(&c.id);
                    }
                }
            }
            let (st, next_id, generation) = backup;
            if let Some(st) = st {
                for s in &st.servers {
                    for c in &s.checks {
                        h.index.insert(c.id, (*key, s.spec.addr, s.spec.port));
                    }
                }
                h.services.insert(*key, st);
            }
            h.next_id = next_id;
            h.defs_generation = generation;
        }
    }
    r
}

fn drop_health(cfg: &mut Config, key: &ServiceKey) {
    let h = cfg.health_mut();
    if let Some(st) = h.services.remove(key) {
        for s in st.servers {
            for c in s.checks {
                h.index.remove(&c.id);
            }
        }
        h.bump();
    }
}

fn add_check(cfg: &mut Config, a: &AddCheck, now: Instant) -> Result<(), CtlError> {
    if cfg.service(&a.service).is_none() {
        return Err(CtlError::service_not_defined());
    }
    a.spec.validate()?;
    a.server.validate()?;
    let port = normalize_port(&a.service, a.addr, a.port);
    if a.spec.kind.connects()
        && a.spec.target.connect_port.is_none()
        && default_dst_port(&a.service, port) == 0
    {
        return Err(CtlError::input(format!(
            "{} of a server without a port (fwmark or port-0 service) needs connect_port",
            a.spec.kind.keepalived_name()
        )));
    }
    let in_pool = cfg
        .service(&a.service)
        .is_some_and(|s| s.server(a.addr, port).is_some());
    let known = cfg
        .health()
        .services
        .get(&a.service)
        .is_some_and(|st| st.server(a.addr, port).is_some());
    if !in_pool && !known {
        return Err(CtlError::no_such_destination());
    }
    if cfg
        .health()
        .services
        .get(&a.service)
        .and_then(|st| st.settings.sorry_server)
        .is_some_and(|s| (s.addr, s.port) == (a.addr, port))
    {
        return Err(CtlError::refused(
            "The sorry server cannot have health checkers",
        ));
    }
    ensure_managed(cfg, &a.service)?;
    let h = cfg.health_mut();
    let id = CheckId(h.next_id);
    let st = h.services.get_mut(&a.service).ok_or_else(CtlError::service_not_defined)?;
    let srv = st.server_mut(a.addr, port).ok_or_else(CtlError::no_such_destination)?;
    if srv.checks.iter().any(|c| c.spec == a.spec) {
        return Err(checker_exists());
    }
    if let Some(i) = a.server.inhibit_on_failure {
        srv.inhibit_on_failure = i;
    }
    if let Some(c) = &a.server.notify_up {
        srv.notify_up = (!c.is_empty()).then(|| c.clone());
    }
    if let Some(c) = &a.server.notify_down {
        srv.notify_down = (!c.is_empty()).then(|| c.clone());
    }
    srv.checks.push(CheckState {
        id,
        spec: a.spec.clone(),
        up: !a.spec.timing.alpha,
        dynamic_weight: None,
    });
    st.update_quorum(a.service, false);
    h.next_id += 1;
    h.index.insert(id, (a.service, a.addr, port));
    h.bump();
    reconcile(cfg, &a.service, now)
}

fn del_check(cfg: &mut Config, d: &DelCheck, now: Instant) -> Result<(), CtlError> {
    if cfg.service(&d.service).is_none() {
        return Err(CtlError::service_not_defined());
    }
    let port = normalize_port(&d.service, d.addr, d.port);
    let h = cfg.health_mut();
    let st = h.services.get_mut(&d.service).ok_or_else(no_checker)?;
    let srv = st.server_mut(d.addr, port).ok_or_else(no_checker)?;
    let before = srv.checks.len();
    let mut removed = Vec::new();
    srv.checks.retain(|c| {
        let hit = d.kind.as_deref().map_or(true, |k| k == c.spec.kind.word());
        if hit {
            removed.push(c.id);
        }
        !hit
    });
    if srv.checks.len() == before {
        return Err(no_checker());
    }
    let unmanage_now = !st.has_checks() && st.settings == ServiceHealth::default();
    if !unmanage_now {
        st.update_quorum(d.service, false);
    }
    for id in removed {
        h.index.remove(&id);
    }
    h.bump();
    if unmanage_now {
        unmanage(cfg, &d.service, now)
    } else {
        reconcile(cfg, &d.service, now)
    }
}

fn set_service_health(
    cfg: &mut Config,
    key: &ServiceKey,
    health: &ServiceHealth,
    now: Instant,
) -> Result<(), CtlError> {
    if cfg.service(key).is_none() {
        return Err(CtlError::service_not_defined());
    }
    health.validate()?;
    let mut health = health.clone();
    health.sorry_server = health.sorry_server.map(|s| sorry_normalized(key, s));
    if let Some(s) = health.sorry_server {
        let clash_pool = cfg.service(key).is_some_and(|svc| {
            svc.server(s.addr, s.port).is_some()
                && !cfg
                    .health()
                    .services
                    .get(key)
                    .and_then(|st| st.settings.sorry_server)
                    .is_some_and(|o| (o.addr, o.port) == (s.addr, s.port))
        });
        let clash_health = cfg
            .health()
            .services
            .get(key)
            .is_some_and(|st| st.server(s.addr, s.port).is_some());
        if clash_pool || clash_health {
            return Err(CtlError::refused(format!(
                "The sorry server {}:{} is a real server of the service",
                s.addr, s.port
            )));
        }
    }
    let managed = cfg.health().services.contains_key(key);
    if !managed && health == ServiceHealth::default() {
        return Ok(());
    }
    ensure_managed(cfg, key)?;
    let st = cfg
        .health_mut()
        .services
        .get_mut(key)
        .ok_or_else(CtlError::service_not_defined)?;
    if health.sorry_server.is_none() {
        st.sorry_active = false;
    }
    st.settings = health;
    // keepalived re-evaluates the quorum as at start when its settings change.
    let sum = st.live_weight();
    let was_up = st.quorum_up;
    st.quorum_up = sum >= u64::from(st.settings.quorum) + u64::from(st.settings.hysteresis);
    if st.quorum_up {
        st.sorry_active = false;
    } else if !was_up && st.settings.sorry_server.is_some() {
        st.sorry_active = true;
    }
    st.update_quorum(*key, true);
    let unmanage_now = !st.has_checks() && st.settings == ServiceHealth::default();
    cfg.health_mut().bump();
    if unmanage_now {
        unmanage(cfg, key, now)
    } else {
        reconcile(cfg, key, now)
    }
}

fn add_server(cfg: &mut Config, key: &ServiceKey, spec: &ServerSpec, now: Instant) -> Result<(), CtlError> {
    let spec = Config::normalize_server(key, spec);
    let st = cfg.health().services.get(key).ok_or_else(CtlError::service_not_defined)?;
    if st.server(spec.addr, spec.port).is_some() {
        return Err(CtlError::destination_exists());
    }
    if st
        .settings
        .sorry_server
        .is_some_and(|s| (s.addr, s.port) == (spec.addr, spec.port))
    {
        return Err(CtlError::refused(format!(
            "{}:{} is the service's sorry server",
            spec.addr, spec.port
        )));
    }
    // The plain command first: it validates the spec with ipvsadm's errors and places the
    // server; the health state then records it (no checker yet: alive).
    cfg.apply_raw(
        &ConfigCommand::AddServer {
            service: *key,
            server: spec.clone(),
        },
        now,
    )?;
    let st = cfg
        .health_mut()
        .services
        .get_mut(key)
        .ok_or_else(CtlError::service_not_defined)?;
    st.servers.insert(0, ServerState::new(spec.clone()));
    st.update_quorum(*key, false);
    if let Err(e) = reconcile(cfg, key, now) {
        // Take the plain addition back (the server waits in the trash like any deleted one).
        let _ = cfg.apply_raw(
            &ConfigCommand::DeleteServer {
                service: *key,
                addr: spec.addr,
                port: spec.port,
            },
            now,
        );
        return Err(e);
    }
    Ok(())
}

fn edit_server(cfg: &mut Config, key: &ServiceKey, spec: &ServerSpec, now: Instant) -> Result<(), CtlError> {
    let spec = Config::normalize_server(key, spec);
    let is_sorry = cfg
        .health()
        .services
        .get(key)
        .and_then(|st| st.settings.sorry_server)
        .is_some_and(|s| (s.addr, s.port) == (spec.addr, spec.port));
    if is_sorry {
        return Err(CtlError::refused(format!(
            "{}:{} is the service's sorry server (change it with lbadm check service)",
            spec.addr, spec.port
        )));
    }
    Config::validate_server(&spec)?;
    let st = cfg
        .health_mut()
        .services
        .get_mut(key)
        .ok_or_else(CtlError::service_not_defined)?;
    let srv = st
        .server_mut(spec.addr, spec.port)
        .ok_or_else(CtlError::no_such_destination)?;
    srv.spec = spec;
    st.update_quorum(*key, false);
    reconcile(cfg, key, now)
}

fn delete_server(
    cfg: &mut Config,
    key: &ServiceKey,
    addr: Ipv4Addr,
    port: u16,
    now: Instant,
) -> Result<(), CtlError> {
    let st = cfg.health().services.get(key).ok_or_else(CtlError::service_not_defined)?;
    let configured = st.server(addr, port).is_some();
    let is_sorry = st.settings.sorry_server.is_some_and(|s| (s.addr, s.port) == (addr, port));
    let in_pool = cfg.service(key).is_some_and(|s| s.server(addr, port).is_some());
    if !configured && !(is_sorry && in_pool) {
        return cfg.apply_raw(
            &ConfigCommand::DeleteServer {
                service: *key,
                addr,
                port,
            },
            now,
        );
    }
    let h = cfg.health_mut();
    let st = h.services.get_mut(key).ok_or_else(CtlError::service_not_defined)?;
    if is_sorry {
        // Deleting the sorry server by hand drops it from the settings.
        st.settings.sorry_server = None;
        st.sorry_active = false;
    }
    let mut removed = Vec::new();
    if let Some(pos) = st.servers.iter().position(|s| s.key() == (addr, port)) {
        let s = st.servers.remove(pos);
        removed.extend(s.checks.iter().map(|c| c.id));
    }
    st.update_quorum(*key, false);
    for id in removed {
        h.index.remove(&id);
    }
    h.bump();
    if in_pool {
        cfg.apply_raw(
            &ConfigCommand::DeleteServer {
                service: *key,
                addr,
                port,
            },
            now,
        )?;
    }
    reconcile(cfg, key, now)
}

/// Applies checker verdicts (stale ids are ignored) and returns the pool events they cause,
/// in order. On error (the pool could not be changed) the configuration is unchanged.
pub fn apply_verdicts(cfg: &mut Config, verdicts: &[Verdict], now: Instant) -> Result<Vec<HealthEvent>, CtlError> {
    let mut events = Vec::new();
    let mut touched: Vec<ServiceKey> = Vec::new();
    for v in verdicts {
        let Some((key, addr, port)) = cfg.health().locate(v.id) else {
            continue;
        };
        let h = cfg.health_mut();
        let Some(st) = h.services.get_mut(&key) else {
            continue;
        };
        let sorry_serving = !st.quorum_up && st.sorry_active;
        let Some(srv) = st.server_mut(addr, port) else {
            continue;
        };
        let was_alive = srv.alive();
        let old_weight = srv.effective_weight();
        let Some(c) = srv.checks.iter_mut().find(|c| c.id == v.id) else {
            continue;
        };
        let dynamic = matches!(&c.spec.kind, CheckKind::Misc(m) if m.dynamic);
        if c.up == v.up && (!dynamic || c.dynamic_weight == v.dynamic_weight) {
            continue;
        }
        c.up = v.up;
        if dynamic {
            c.dynamic_weight = if v.up { v.dynamic_weight } else { None };
        }
        let alive = srv.alive();
        let weight = srv.effective_weight();
        let (inhibit, up_script, down_script) =
            (srv.inhibit_on_failure, srv.notify_up.clone(), srv.notify_down.clone());
        if was_alive != alive {
            events.push(HealthEvent::Server {
                service: key,
                addr,
                port,
                up: alive,
                inhibit,
                held: sorry_serving,
                script: if alive { up_script } else { down_script },
            });
        } else if old_weight != weight {
            events.push(HealthEvent::Weight {
                service: key,
                addr,
                port,
                from: old_weight,
                to: weight,
                alive,
            });
        } else {
            if !touched.contains(&key) {
                touched.push(key);
            }
            continue;
        }
        events.extend(st.update_quorum(key, false));
        if !touched.contains(&key) {
            touched.push(key);
        }
    }
    for key in &touched {
        reconcile(cfg, key, now)?;
    }
    if !touched.is_empty() {
        cfg.bump_generation();
    }
    Ok(events)
}

/// The state of a checker as the configuration knows it (for listings).
pub fn check_up(cfg: &Config, id: CheckId) -> Option<bool> {
    let (key, addr, port) = cfg.health().locate(id)?;
    cfg.health()
        .services
        .get(&key)?
        .server(addr, port)?
        .checks
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.up)
}

/// Everything `lbadm save` writes about health, per managed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealthDump {
    /// The service.
    pub service: ServiceKey,
    /// Its settings.
    pub settings: ServiceHealth,
    /// Its servers as configured, newest first, with their checkers.
    pub servers: Vec<ServerHealthDump>,
}

/// One configured server of a managed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealthDump {
    /// As configured.
    pub spec: ServerSpec,
    /// Weight 0 instead of deletion while down.
    pub inhibit_on_failure: bool,
    /// notify_up.
    pub notify_up: Option<String>,
    /// notify_down.
    pub notify_down: Option<String>,
    /// Checkers.
    pub checks: Vec<CheckSpec>,
}

/// The health part of a configuration dump.
pub fn dump(cfg: &Config) -> Vec<ServiceHealthDump> {
    cfg.health()
        .services
        .iter()
        .map(|(k, st)| ServiceHealthDump {
            service: *k,
            settings: st.settings.clone(),
            servers: st
                .servers
                .iter()
                .map(|s| ServerHealthDump {
                    spec: s.spec.clone(),
                    inhibit_on_failure: s.inhibit_on_failure,
                    notify_up: s.notify_up.clone(),
                    notify_down: s.notify_down.clone(),
                    checks: s.checks.iter().map(|c| c.spec.clone()).collect(),
                })
                .collect(),
        })
        .collect()
}

/// Forwarding method check shared by the parsers: the director only forwards by direct
/// routing.
pub fn is_direct_routing(f: FwdMethod) -> bool {
    f == FwdMethod::Route
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::spec::{MiscCheck, SEC};
    use crate::model::{Protocol, ServiceSpec};

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn key() -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: VIP,
            port: 80,
        }
    }

    fn rs(h: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, h)
    }

    fn cfg(servers: &[(u8, u32)]) -> Config {
        let mut c = Config::new(vec!["dpdk0".into()], 64);
        c.apply(&ConfigCommand::AddService(ServiceSpec::new(key()))).unwrap();
        for &(h, w) in servers {
            let mut s = ServerSpec::new(rs(h), 80);
            s.weight = w;
            c.apply(&ConfigCommand::AddServer { service: key(), server: s }).unwrap();
        }
        c
    }

    fn tcp_check(h: u8) -> ConfigCommand {
        ConfigCommand::AddCheck(AddCheck {
            service: key(),
            addr: rs(h),
            port: 80,
            spec: CheckSpec::new(CheckKind::Tcp),
            server: ServerHealthOpts::default(),
        })
    }

    fn pool(c: &Config) -> Vec<(u8, u32)> {
        let mut v: Vec<(u8, u32)> = c
            .service(&key())
            .unwrap()
            .servers
            .iter()
            .map(|s| (s.addr.octets()[3], s.weight))
            .collect();
        v.sort_unstable();
        v
    }

    fn id_of(c: &Config, h: u8) -> CheckId {
        c.health().service(&key()).unwrap().server(rs(h), 80).unwrap().checks[0].id
    }

    fn verdict(c: &mut Config, h: u8, up: bool) -> Vec<HealthEvent> {
        let id = id_of(c, h);
        apply_verdicts(c, &[Verdict { id, up, dynamic_weight: None }], Instant::now()).unwrap()
    }

    #[test]
    fn a_failing_server_leaves_the_pool_and_comes_back_with_its_slot_and_weight() {
        let mut c = cfg(&[(11, 3), (12, 1)]);
        c.apply(&tcp_check(11)).unwrap();
        c.apply(&tcp_check(12)).unwrap();
        assert_eq!(pool(&c), vec![(11, 3), (12, 1)], "checkers start up (no alpha)");
        let slot = c.service(&key()).unwrap().server(rs(11), 80).unwrap().id;
        let ev = verdict(&mut c, 11, false);
        assert_eq!(pool(&c), vec![(12, 1)]);
        assert!(matches!(ev[..], [HealthEvent::Server { up: false, inhibit: false, .. }]), "{ev:?}");
        assert_eq!(ev[0].to_string(), "Removing service 10.0.0.11:80 from VS TCP 10.0.0.1:80");
        assert!(c.trash().any(|(_, s)| s.id == slot), "deleted like -d: into the trash");
        let ev = verdict(&mut c, 11, true);
        assert_eq!(ev[0].to_string(), "Adding service 10.0.0.11:80 to VS TCP 10.0.0.1:80");
        assert_eq!(pool(&c), vec![(11, 3), (12, 1)]);
        assert_eq!(c.service(&key()).unwrap().server(rs(11), 80).unwrap().id, slot, "same slot back");
        // A repeated verdict changes nothing.
        let g = c.generation();
        assert!(verdict(&mut c, 11, true).is_empty());
        assert_eq!(c.generation(), g);
    }

    #[test]
    fn inhibit_on_failure_keeps_weight_zero_and_the_configured_weight_survives() {
        let mut c = cfg(&[(11, 4)]);
        let mut cmd = tcp_check(11);
        if let ConfigCommand::AddCheck(a) = &mut cmd {
            a.server.inhibit_on_failure = Some(true);
        }
        c.apply(&cmd).unwrap();
        for _ in 0..3 {
            let ev = verdict(&mut c, 11, false);
            assert_eq!(ev[0].to_string(), "Disabling service 10.0.0.11:80 of VS TCP 10.0.0.1:80");
            assert_eq!(pool(&c), vec![(11, 0)]);
            verdict(&mut c, 11, true);
            assert_eq!(pool(&c), vec![(11, 4)]);
        }
        // -e while down: accepted, takes effect when it comes back; save shows it.
        verdict(&mut c, 11, false);
        let mut s = ServerSpec::new(rs(11), 80);
        s.weight = 7;
        c.apply(&ConfigCommand::EditServer { service: key(), server: s }).unwrap();
        assert_eq!(pool(&c), vec![(11, 0)]);
        assert_eq!(dump(&c)[0].servers[0].spec.weight, 7);
        verdict(&mut c, 11, true);
        assert_eq!(pool(&c), vec![(11, 7)]);
    }

    #[test]
    fn quorum_loss_puts_the_sorry_server_alone_in_the_pool_and_back() {
        let mut c = cfg(&[(11, 1), (12, 1)]);
        c.apply(&tcp_check(11)).unwrap();
        c.apply(&tcp_check(12)).unwrap();
        let health = ServiceHealth {
            quorum: 2,
            sorry_server: Some(SorryServer { addr: Ipv4Addr::LOCALHOST, port: 8080, inhibit: false }),
            quorum_down: Some("/bin/echo down".into()),
            ..Default::default()
        };
        c.apply(&ConfigCommand::SetServiceHealth { service: key(), health }).unwrap();
        assert_eq!(pool(&c), vec![(11, 1), (12, 1)]);
        let ev = verdict(&mut c, 11, false);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(
            ev[1].to_string(),
            "Lost quorum 2-0=2 > 1 for VS TCP 10.0.0.1:80; adding sorry server 127.0.0.1:80"
        );
        assert_eq!(ev[1].script(), Some("/bin/echo down"));
        assert_eq!(pool(&c), vec![(1, 1)], "only the sorry server (port reset to the service port)");
        // While the sorry server serves, transitions change no pool entry.
        let ev = verdict(&mut c, 12, false);
        assert!(matches!(ev[0], HealthEvent::Server { held: true, .. }));
        assert_eq!(pool(&c), vec![(1, 1)]);
        verdict(&mut c, 12, true);
        let ev = verdict(&mut c, 11, true);
        assert_eq!(
            ev[1].to_string(),
            "Gained quorum 2+0=2 <= 2 for VS TCP 10.0.0.1:80; removing sorry server 127.0.0.1:80"
        );
        assert_eq!(pool(&c), vec![(11, 1), (12, 1)]);
    }

    #[test]
    fn hysteresis_damps_quorum_changes() {
        let mut c = cfg(&[(11, 1), (12, 1), (13, 1), (14, 1)]);
        for h in 11..=14 {
            c.apply(&tcp_check(h)).unwrap();
        }
        let health = ServiceHealth { quorum: 3, hysteresis: 1, ..Default::default() };
        c.apply(&ConfigCommand::SetServiceHealth { service: key(), health }).unwrap();
        let st = |c: &Config| c.health().service(&key()).unwrap().quorum_up;
        assert!(st(&c));
        verdict(&mut c, 11, false);
        verdict(&mut c, 12, false);
        assert!(st(&c), "2 >= quorum - hysteresis");
        verdict(&mut c, 13, false);
        assert!(!st(&c), "1 < 2: lost");
        verdict(&mut c, 13, true);
        verdict(&mut c, 12, true);
        assert!(!st(&c), "3 < quorum + hysteresis");
        verdict(&mut c, 11, true);
        assert!(st(&c), "4: gained");
    }

    #[test]
    fn misc_dynamic_weights_and_alpha() {
        let mut c = cfg(&[(11, 5)]);
        let mut spec = CheckSpec::new(CheckKind::Misc(MiscCheck { path: "/bin/true".into(), timeout_us: SEC, dynamic: true }));
        spec.timing.alpha = true;
        c.apply(&ConfigCommand::AddCheck(AddCheck {
            service: key(),
            addr: rs(11),
            port: 80,
            spec,
            server: ServerHealthOpts::default(),
        }))
        .unwrap();
        assert_eq!(pool(&c), vec![], "alpha: down until a check passes");
        let id = id_of(&c, 11);
        let ev = apply_verdicts(&mut c, &[Verdict { id, up: true, dynamic_weight: Some(3) }], Instant::now()).unwrap();
        assert!(matches!(ev[0], HealthEvent::Server { up: true, .. }));
        assert_eq!(pool(&c), vec![(11, 3)]);
        let ev = apply_verdicts(&mut c, &[Verdict { id, up: true, dynamic_weight: Some(10) }], Instant::now()).unwrap();
        assert_eq!(ev[0].to_string(), "Changing weight from 3 to 10 for active service 10.0.0.11:80 of VS TCP 10.0.0.1:80");
        assert_eq!(pool(&c), vec![(11, 10)]);
        apply_verdicts(&mut c, &[Verdict { id, up: true, dynamic_weight: None }], Instant::now()).unwrap();
        assert_eq!(pool(&c), vec![(11, 5)], "exit 0: the configured weight");
    }

    #[test]
    fn deleting_the_last_checker_restores_the_configured_pool() {
        let mut c = cfg(&[(11, 2), (12, 1)]);
        c.apply(&tcp_check(11)).unwrap();
        verdict(&mut c, 11, false);
        assert_eq!(pool(&c), vec![(12, 1)]);
        c.apply(&ConfigCommand::DelCheck(DelCheck { service: key(), addr: rs(11), port: 80, kind: Some("tcp".into()) }))
            .unwrap();
        assert_eq!(pool(&c), vec![(11, 2), (12, 1)]);
        assert!(c.health().is_empty(), "no checker, default settings: unmanaged again");
        assert_eq!(
            c.apply(&ConfigCommand::DelCheck(DelCheck { service: key(), addr: rs(11), port: 80, kind: None })),
            Err(no_checker())
        );
    }

    #[test]
    fn operator_commands_on_a_managed_service() {
        let mut c = cfg(&[(11, 1)]);
        c.apply(&tcp_check(11)).unwrap();
        // -a joins the managed set (no checker: always alive).
        c.apply(&ConfigCommand::AddServer { service: key(), server: ServerSpec::new(rs(12), 80) }).unwrap();
        assert_eq!(pool(&c), vec![(11, 1), (12, 1)]);
        assert!(c.health().service(&key()).unwrap().server(rs(12), 80).is_some());
        // -d of a down server: it and its checker go.
        verdict(&mut c, 11, false);
        assert_eq!(c.health().check_count(), 1);
        c.apply(&ConfigCommand::DeleteServer { service: key(), addr: rs(11), port: 80 }).unwrap();
        assert_eq!(c.health().check_count(), 0);
        assert_eq!(
            c.apply(&ConfigCommand::DeleteServer { service: key(), addr: rs(11), port: 80 }),
            Err(CtlError::no_such_destination())
        );
        // -D forgets the health state.
        c.apply(&tcp_check(12)).unwrap();
        c.apply(&ConfigCommand::DeleteService(key())).unwrap();
        assert!(c.health().is_empty());
    }

    #[test]
    fn refused_commands_change_nothing() {
        let mut c = cfg(&[(11, 1)]);
        c.apply(&tcp_check(11)).unwrap();
        let before = c.clone();
        assert_eq!(c.apply(&tcp_check(11)), Err(checker_exists()));
        assert_eq!(c.apply(&tcp_check(99)), Err(CtlError::no_such_destination()));
        let bad = ServiceHealth { quorum: 1, hysteresis: 1, ..Default::default() };
        assert!(c.apply(&ConfigCommand::SetServiceHealth { service: key(), health: bad }).is_err());
        let clash = ServiceHealth {
            sorry_server: Some(SorryServer { addr: rs(11), port: 80, inhibit: false }),
            ..Default::default()
        };
        assert!(c.apply(&ConfigCommand::SetServiceHealth { service: key(), health: clash }).is_err());
        assert_eq!(c, before);
        // A fwmark service's checker needs a port to connect to.
        c.apply(&ConfigCommand::AddService(ServiceSpec { persistent: Some(60), ..ServiceSpec::new(ServiceKey::Fwmark(7)) }))
            .unwrap();
        c.apply(&ConfigCommand::AddServer { service: ServiceKey::Fwmark(7), server: ServerSpec::new(rs(11), 0) }).unwrap();
        let mut a = AddCheck {
            service: ServiceKey::Fwmark(7),
            addr: rs(11),
            port: 0,
            spec: CheckSpec::new(CheckKind::Tcp),
            server: ServerHealthOpts::default(),
        };
        assert_eq!(c.apply(&ConfigCommand::AddCheck(a.clone())).unwrap_err().exit_code, 2);
        a.spec.target.connect_port = Some(443);
        c.apply(&ConfigCommand::AddCheck(a)).unwrap();
        let d = probe_defs(&c);
        assert!(d.iter().any(|d| d.dst == SocketAddrV4::new(rs(11), 443)));
    }

    #[test]
    fn probe_sources_come_from_the_servers_subnet() {
        let mut c = cfg(&[(11, 1)]);
        for (a, l) in [(Ipv4Addr::new(10, 0, 0, 2), 24), (VIP, 32), (Ipv4Addr::new(192, 0, 2, 1), 24)] {
            c.apply(&ConfigCommand::AddAddr(crate::model::AddrConfig { addr: a, prefix_len: l, dev: "dpdk0".into() }))
                .unwrap();
        }
        c.apply(&tcp_check(11)).unwrap();
        let d = &probe_defs(&c)[0];
        assert_eq!((d.source, d.source_explicit), (Some(Ipv4Addr::new(10, 0, 0, 2)), false));
        assert_eq!(d.dst, SocketAddrV4::new(rs(11), 80));
        assert_eq!(source_for(&c, Ipv4Addr::new(198, 51, 100, 1)), None);
    }
}
