//! `lbadm check show`: every checker with its state, last result and reason, when it last
//! changed and its consecutive failures, per server and service; the JSON schema is these
//! structs. Built by the control thread from the configuration (states) and the engine's
//! board (runtime), under the controller's lock; the board's lock is taken once per checker.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::CtlError;
use crate::model::{Config, ServiceKey};

use super::board::{Board, CheckRuntime, HealthCounters};
use super::model::{probe_defs, service_name};
use super::spec::{CheckId, CheckKind, SorryServer};

/// One checker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Its id.
    pub id: CheckId,
    /// `tcp`, `http`, `https`, `misc`.
    pub kind: String,
    /// `IP:PORT` it connects to, or the script.
    pub target: String,
    /// `UP` or `DOWN`.
    pub state: String,
    /// Runtime status (absent if the engine has not started it).
    pub runtime: Option<CheckRuntime>,
}

/// One real server of a managed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerReport {
    /// Address.
    pub addr: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// Weight as configured.
    pub configured_weight: u32,
    /// Weight in the pool now (`None`: not in the pool).
    pub weight: Option<u32>,
    /// Every checker passes.
    pub alive: bool,
    /// Weight 0 instead of deletion while down.
    pub inhibit_on_failure: bool,
    /// Its checkers.
    pub checks: Vec<CheckReport>,
}

/// One managed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    /// The service.
    pub service: ServiceKey,
    /// Quorum setting.
    pub quorum: u32,
    /// Hysteresis setting.
    pub hysteresis: u32,
    /// Quorum held.
    pub quorum_up: bool,
    /// Total weight of the live servers.
    pub live_weight: u64,
    /// The sorry server, if any.
    pub sorry_server: Option<SorryServer>,
    /// The sorry server is serving.
    pub sorry_active: bool,
    /// Servers, newest first.
    pub servers: Vec<ServerReport>,
}

/// The whole listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksReport {
    /// Engine counters.
    pub counters: HealthCounters,
    /// Managed services in key order.
    pub services: Vec<ServiceReport>,
}

/// Builds the listing (all managed services, or one service, which must exist).
pub fn build(cfg: &Config, board: Option<&Board>, only: Option<&ServiceKey>) -> Result<ChecksReport, CtlError> {
    if let Some(k) = only {
        if cfg.service(k).is_none() {
            return Err(CtlError::no_such_service_listing());
        }
    }
    let defs = probe_defs(cfg);
    let target_of = |id: CheckId| -> String {
        defs.iter()
            .find(|d| d.id == id)
            .map(|d| match &d.spec.kind {
                CheckKind::Misc(m) => m.path.clone(),
                _ => d.dst.to_string(),
            })
            .unwrap_or_default()
    };
    let mut services = Vec::new();
    for (key, st) in cfg.health().services() {
        if only.is_some_and(|k| k != key) {
            continue;
        }
        let pool = cfg.service(key);
        let servers = st
            .servers
            .iter()
            .map(|s| ServerReport {
                addr: s.spec.addr,
                port: s.spec.port,
                configured_weight: s.spec.weight,
                weight: pool.and_then(|p| p.server(s.spec.addr, s.spec.port)).map(|p| p.weight),
                alive: s.alive(),
                inhibit_on_failure: s.inhibit_on_failure,
                checks: s
                    .checks
                    .iter()
                    .map(|c| CheckReport {
                        id: c.id,
                        kind: c.spec.kind.word().to_string(),
                        target: target_of(c.id),
                        state: if c.up { "UP" } else { "DOWN" }.to_string(),
                        runtime: board.and_then(|b| b.get(c.id)),
                    })
                    .collect(),
            })
            .collect();
        services.push(ServiceReport {
            service: *key,
            quorum: st.settings.quorum,
            hysteresis: st.settings.hysteresis,
            quorum_up: st.quorum_up,
            live_weight: st.live_weight(),
            sorry_server: st.settings.sorry_server,
            sorry_active: st.sorry_active,
            servers,
        });
    }
    Ok(ChecksReport {
        counters: board.map(Board::snapshot).unwrap_or_default(),
        services,
    })
}

fn when(ms: u64) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(st).to_string()
}

/// The text listing.
pub fn format(r: &ChecksReport) -> String {
    let mut out = String::new();
    for s in &r.services {
        let _ = write!(
            out,
            "{}  quorum {}/{} {} (live weight {})",
            service_name(&s.service),
            s.quorum,
            s.hysteresis,
            if s.quorum_up { "up" } else { "down" },
            s.live_weight
        );
        if let Some(ss) = s.sorry_server {
            let _ = write!(
                out,
                "  sorry {}:{} {}",
                ss.addr,
                ss.port,
                if s.sorry_active { "serving" } else { "standby" }
            );
        }
        out.push('\n');
        for srv in &s.servers {
            let weight = match srv.weight {
                Some(w) => format!("weight {w}"),
                None => "removed".to_string(),
            };
            let _ = writeln!(
                out,
                "  -> {}:{}  {}  {} (configured weight {}{})",
                srv.addr,
                srv.port,
                if srv.alive { "UP" } else { "DOWN" },
                weight,
                srv.configured_weight,
                if srv.inhibit_on_failure { ", inhibit_on_failure" } else { "" }
            );
            for c in &srv.checks {
                let (fails, changed, last) = match &c.runtime {
                    Some(rt) => (
                        rt.consecutive_failures.to_string(),
                        when(rt.last_change_ms),
                        match rt.last_ok {
                            None => rt.reason.clone(),
                            Some(true) => format!("ok: {}", rt.reason),
                            Some(false) => format!("failed: {}", rt.reason),
                        },
                    ),
                    None => ("-".into(), "-".into(), "not running".into()),
                };
                let _ = writeln!(
                    out,
                    "     {:<5} {:<21} {:<4}  fails {:<3} since {}  {}",
                    c.kind, c.target, c.state, fails, changed, last
                );
            }
        }
    }
    let c = &r.counters;
    let _ = writeln!(
        out,
        "checkers {}  probes {} (failed {})  servers up/down {}/{}  quorum gained/lost {}/{}  scripts {} (failed {})",
        c.checkers, c.probes, c.probe_failures, c.servers_up, c.servers_down, c.quorum_gained, c.quorum_lost, c.scripts, c.script_failures
    );
    out
}
