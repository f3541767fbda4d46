//! The director's commands on DPDK's telemetry socket (`dpdk-telemetry.py -f PREFIX`):
//!
//! | command | reply |
//! |---|---|
//! | `/director/services` | the services in `-L -n` order (`["TCP 198.51.100.100:80", "FWM 10"]`) |
//! | `/director/services,I` or `,NAME` | one service (index in that list, or its name): settings, totals, and per-server arrays in listing order |
//! | `/director/workers` | per-worker arrays (index = worker): lcore, packets, busy %, hand-offs, table occupancy |
//! | `/director/workers,N` | one worker |
//! | `/director/drops` | drops by reason, all ports |
//! | `/director/drops,N` (or `dpdkN`) | drops by reason of one port |
//!
//! Each read takes a [`Sample`] (workers answer through their mailboxes between bursts, as for
//! `lbadm -L`); handlers run on DPDK's telemetry thread and share the [`Sampler`] with the
//! Prometheus exporter (its state is behind a mutex). The reply builders are pure functions of
//! a sample; `dpdk::telemetry` converts them for DPDK.

use std::sync::Arc;

use crate::counters::DropReason;
use crate::dpdk::telemetry::{register, Tel, TelArray, TelValue};
use crate::dpdk::DpdkError;
use crate::sample::{Sample, Sampler, WorkerSample};

/// Command names.
pub const SERVICES: &str = "/director/services";
/// Command names.
pub const WORKERS: &str = "/director/workers";
/// Command names.
pub const DROPS: &str = "/director/drops";

fn u(v: impl Into<u64>) -> TelValue {
    TelValue::U64(v.into())
}

fn s(v: impl Into<String>) -> TelValue {
    TelValue::Str(v.into())
}

/// `/director/services[,I|NAME]`; `None` when the parameter names no service.
pub fn services(sample: &Sample, params: &str) -> Option<Tel> {
    let names: Vec<String> = sample.services.iter().map(|x| x.key.to_string()).collect();
    if params.is_empty() {
        return Some(Tel::Array(TelArray::Str(names)));
    }
    let i = match params.parse::<usize>() {
        Ok(i) => i,
        Err(_) => {
            let want = params.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_uppercase();
            names.iter().position(|n| n.to_ascii_uppercase() == want)?
        }
    };
    let svc = sample.services.get(i)?;
    let c = &svc.counters;
    let col = |f: &dyn Fn(&crate::sample::ServerSample) -> u64| TelArray::U64(svc.servers.iter().map(f).collect());
    Some(Tel::Dict(vec![
        ("service".into(), s(names[i].clone())),
        ("scheduler".into(), s(svc.scheduler.clone())),
        ("persistent".into(), u(svc.persistent.unwrap_or(0))),
        ("netmask".into(), s(svc.netmask.to_string())),
        ("connections".into(), u(c.conns)),
        ("inpkts".into(), u(c.inpkts)),
        ("inbytes".into(), u(c.inbytes)),
        ("active_conns".into(), u(svc.servers.iter().map(|r| u64::from(r.counters.active)).sum::<u64>())),
        ("inactive_conns".into(), u(svc.servers.iter().map(|r| u64::from(r.counters.inactive)).sum::<u64>())),
        ("persist_conns".into(), u(svc.servers.iter().map(|r| u64::from(r.counters.persist)).sum::<u64>())),
        (
            "servers".into(),
            TelValue::Array(TelArray::Str(svc.servers.iter().map(|r| format!("{}:{}", r.addr, r.port)).collect())),
        ),
        ("server_weight".into(), TelValue::Array(col(&|r| u64::from(r.weight)))),
        ("server_active_conns".into(), TelValue::Array(col(&|r| u64::from(r.counters.active)))),
        ("server_inactive_conns".into(), TelValue::Array(col(&|r| u64::from(r.counters.inactive)))),
        ("server_persist_conns".into(), TelValue::Array(col(&|r| u64::from(r.counters.persist)))),
        ("server_connections".into(), TelValue::Array(col(&|r| r.counters.conns))),
        ("server_inpkts".into(), TelValue::Array(col(&|r| r.counters.inpkts))),
        ("server_inbytes".into(), TelValue::Array(col(&|r| r.counters.inbytes))),
    ]))
}

/// Names of a worker's numbers, in [`worker_values`] order.
const WORKER_FIELDS: [&str; 14] = [
    "lcore",
    "responding",
    "packets",
    "busy_percent",
    "busy_cycles",
    "poll_cycles",
    "handoff_out",
    "handoff_in",
    "handoff_dropped",
    "conn_entries",
    "conn_capacity",
    "evicted_unconfirmed",
    "drop_entry_dropped",
    "defense_on",
];

/// A worker's numbers (zeros for a worker that did not answer).
fn worker_values(w: &WorkerSample) -> [u64; 14] {
    let c = w.counters.as_ref();
    let g = |f: &dyn Fn(&crate::counters::WorkerCounters) -> u64| c.map_or(0, f);
    [
        u64::from(w.lcore),
        u64::from(c.is_some()),
        w.packets().unwrap_or(0),
        w.busy_ratio.map_or(0, |r| (r * 100.0).round() as u64),
        g(&|c| c.busy_cycles),
        g(&|c| c.poll_cycles),
        g(&|c| c.handoff_out),
        g(&|c| c.handoff_in),
        g(&|c| c.handoff_dropped),
        g(&|c| c.conn_entries),
        g(&|c| c.conn_capacity),
        g(&|c| c.evicted_unconfirmed),
        g(&|c| c.drop_entry_dropped),
        g(&|c| u64::from(c.defense_on)),
    ]
}

/// `/director/workers[,N]`.
pub fn workers(sample: &Sample, params: &str) -> Option<Tel> {
    if params.is_empty() {
        let rows: Vec<[u64; 14]> = sample.workers.iter().map(worker_values).collect();
        let mut d: Vec<(String, TelValue)> = Vec::new();
        for (k, name) in WORKER_FIELDS.iter().enumerate() {
            d.push((name.to_string(), TelValue::Array(TelArray::U64(rows.iter().map(|r| r[k]).collect()))));
        }
        d.push((
            "templates".into(),
            TelValue::Array(TelArray::U64(sample.workers.iter().map(|w| w.templates().unwrap_or(0)).collect())),
        ));
        return Some(Tel::Dict(d));
    }
    let w = sample.workers.get(params.parse::<usize>().ok()?)?;
    let mut d: Vec<(String, TelValue)> = vec![("worker".into(), u(w.index as u64))];
    d.extend(WORKER_FIELDS.iter().zip(worker_values(w)).map(|(k, v)| (k.to_string(), u(v))));
    d.push(("templates".into(), u(w.templates().unwrap_or(0))));
    Some(Tel::Dict(d))
}

/// `/director/drops[,N|dpdkN]`.
pub fn drops(sample: &Sample, params: &str) -> Option<Tel> {
    let mut sums = [0u64; DropReason::COUNT];
    if params.is_empty() {
        for p in &sample.ports {
            for (a, b) in sums.iter_mut().zip(p.drops.iter()) {
                *a += b;
            }
        }
    } else {
        let id: u16 = params.strip_prefix("dpdk").unwrap_or(params).parse().ok()?;
        sums = sample.ports.iter().find(|p| p.id == id)?.drops;
    }
    let mut d: Vec<(String, TelValue)> = DropReason::ALL.iter().map(|r| (r.name().to_string(), u(sums[*r as usize]))).collect();
    if params.is_empty() {
        d.push(("replies_ratelimited".into(), u(sample.replies_ratelimited)));
        d.push(("neigh_events_lost".into(), u(sample.neigh_events_lost)));
    }
    Some(Tel::Dict(d))
}

/// Registers the three commands, each taking a fresh sample from `sampler` per read.
pub fn register_all(sampler: Arc<Sampler>) -> Result<(), DpdkError> {
    type Build = fn(&Sample, &str) -> Option<Tel>;
    let cmds: [(&str, &str, Build); 3] = [
        (SERVICES, "Virtual services. Parameters: none (list), or an index or name from the list", services),
        (WORKERS, "Per-worker packets, busy share, hand-offs, table occupancy. Parameters: none, or a worker index", workers),
        (DROPS, "Dropped packets by reason. Parameters: none (all ports), or a port id", drops),
    ];
    for (cmd, help, build) in cmds {
        let sampler = sampler.clone();
        register(cmd, help, Arc::new(move |params: &str| build(&sampler.take(), params)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{ServerCounters, WorkerCounters};
    use crate::sample::{PortSample, ServerSample, ServiceSample};
    use control::model::{Protocol, ServiceKey};
    use std::net::Ipv4Addr;

    fn sample() -> Sample {
        let srv = |h: u8, active: u32| ServerSample {
            addr: Ipv4Addr::new(198, 51, 100, h),
            port: 80,
            weight: 1,
            counters: ServerCounters { active, conns: 5, inpkts: 50, inbytes: 5000, ..Default::default() },
        };
        let mut wc = WorkerCounters::new(1, 4);
        wc.ports[0].rx = 77;
        wc.conn_entries = 3;
        wc.conn_capacity = 1024;
        let mut drops = [0; DropReason::COUNT];
        drops[DropReason::NoService as usize] = 4;
        Sample {
            services: vec![ServiceSample {
                key: ServiceKey::Addr { proto: Protocol::Tcp, addr: Ipv4Addr::new(198, 51, 100, 100), port: 80 },
                scheduler: "rr".into(),
                persistent: Some(360),
                netmask: Ipv4Addr::BROADCAST,
                servers: vec![srv(12, 2), srv(11, 1)],
                counters: ServerCounters { conns: 10, inpkts: 100, inbytes: 10000, ..Default::default() },
            }],
            ports: vec![PortSample {
                name: "dpdk0".into(),
                id: 0,
                device: "net_af_packet0".into(),
                stats: Default::default(),
                link: Default::default(),
                mtu: 1500,
                counters: Default::default(),
                drops,
                kernel: None,
            }],
            workers: vec![
                WorkerSample { index: 0, lcore: 0, counters: Some(wc), busy_ratio: Some(0.256) },
                WorkerSample { index: 1, lcore: 3, counters: None, busy_ratio: None },
            ],
            ..Default::default()
        }
    }

    fn get<'a>(t: &'a Tel, k: &str) -> &'a TelValue {
        match t {
            Tel::Dict(d) => &d.iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("no {k}")).1,
            _ => panic!("not a dict"),
        }
    }

    #[test]
    fn services_list_and_one_service_by_index_or_name() {
        let s = sample();
        assert_eq!(services(&s, ""), Some(Tel::Array(TelArray::Str(vec!["TCP 198.51.100.100:80".into()]))));
        let one = services(&s, "0").unwrap();
        assert_eq!(services(&s, "tcp  198.51.100.100:80"), Some(one.clone()));
        assert_eq!(get(&one, "persistent"), &TelValue::U64(360));
        assert_eq!(get(&one, "active_conns"), &TelValue::U64(3));
        assert_eq!(get(&one, "servers"), &TelValue::Array(TelArray::Str(vec!["198.51.100.12:80".into(), "198.51.100.11:80".into()])));
        assert_eq!(get(&one, "server_active_conns"), &TelValue::Array(TelArray::U64(vec![2, 1])));
        assert_eq!(services(&s, "1"), None);
        assert_eq!(services(&s, "UDP 1.2.3.4:53"), None);
    }

    #[test]
    fn workers_as_arrays_and_one_worker() {
        let s = sample();
        let all = workers(&s, "").unwrap();
        assert_eq!(get(&all, "lcore"), &TelValue::Array(TelArray::U64(vec![0, 3])));
        assert_eq!(get(&all, "responding"), &TelValue::Array(TelArray::U64(vec![1, 0])));
        assert_eq!(get(&all, "packets"), &TelValue::Array(TelArray::U64(vec![77, 0])));
        assert_eq!(get(&all, "busy_percent"), &TelValue::Array(TelArray::U64(vec![26, 0])));
        let w0 = workers(&s, "0").unwrap();
        assert_eq!(get(&w0, "conn_capacity"), &TelValue::U64(1024));
        assert_eq!(workers(&s, "2"), None);
        assert_eq!(workers(&s, "x"), None);
    }

    #[test]
    fn drops_by_reason_all_ports_and_one() {
        let s = sample();
        let all = drops(&s, "").unwrap();
        assert_eq!(get(&all, "no_service"), &TelValue::U64(4));
        assert_eq!(get(&all, "table_full"), &TelValue::U64(0));
        assert_eq!(drops(&s, "dpdk0"), drops(&s, "0"));
        assert_eq!(get(&drops(&s, "0").unwrap(), "no_service"), &TelValue::U64(4));
        assert_eq!(drops(&s, "5"), None);
    }
}
