//! A fake dataplane backend and helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::proto::{ConnInfo, ConnProto, LinkInfo, MarkCounters, NeighInfo, ServerStats};
use control::{serve, Backend, Config, Controller, CtlError, ServerId};

/// What the fake dataplane holds; shared with the test through an `Arc<Mutex<_>>`.
#[derive(Default)]
pub struct FakeState {
    /// Generations of every published config.
    pub published: Vec<u64>,
    /// Live server ids of the last published config.
    pub last_servers: Vec<ServerId>,
    /// Make the next publish fail.
    pub fail_next_publish: bool,
    /// Counters per server.
    pub stats: HashMap<ServerId, ServerStats>,
    /// Connections.
    pub conns: Vec<ConnInfo>,
    /// Mark rules of the last published config.
    pub last_marks: Vec<control::MarkRule>,
    /// Sysctls of the last published config.
    pub last_sysctls: control::Sysctls,
    /// Mark rule counters reported.
    pub mark_counters: Vec<MarkCounters>,
}

/// A fake backend.
pub struct FakeBackend(pub Arc<Mutex<FakeState>>);

impl Backend for FakeBackend {
    fn port_names(&self) -> Vec<String> {
        vec!["dpdk0".into(), "dpdk1".into()]
    }

    fn publish(&mut self, cfg: &Config) -> Result<(), CtlError> {
        let mut s = self.0.lock().unwrap();
        if s.fail_next_publish {
            s.fail_next_publish = false;
            return Err(CtlError::refused("fake publish failure"));
        }
        s.published.push(cfg.generation());
        s.last_servers = cfg
            .services()
            .flat_map(|svc| svc.servers.iter().map(|x| x.id))
            .collect();
        s.last_marks = cfg.marks().to_vec();
        s.last_sysctls = *cfg.sysctls();
        Ok(())
    }

    fn server_stats(&mut self) -> Vec<(ServerId, ServerStats)> {
        self.0
            .lock()
            .unwrap()
            .stats
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    fn connections(&mut self) -> Vec<ConnInfo> {
        self.0.lock().unwrap().conns.clone()
    }

    fn neighbours(&mut self) -> Vec<NeighInfo> {
        vec![NeighInfo {
            addr: Ipv4Addr::new(10, 0, 0, 11),
            mac: Some("52:54:00:00:00:11".into()),
            dev: "dpdk0".into(),
            state: "REACHABLE".into(),
            age_secs: 4,
        }]
    }

    fn links(&mut self) -> Vec<LinkInfo> {
        vec![LinkInfo {
            name: "dpdk0".into(),
            mac: "52:54:00:00:00:01".into(),
            link_up: true,
            speed_mbps: 10000,
            mtu: 1500,
            rx_packets: 5,
            rx_bytes: 500,
            tx_packets: 4,
            tx_bytes: 400,
            rx_missed: 0,
            rx_errors: 0,
            tx_errors: 0,
            rx_nombuf: 0,
            drops: vec![("no_service".into(), 1)],
            link_changes: 0,
            link_down_secs: 0,
            mbufs_in_use: 0,
            mbufs_total: 0,
            conn_entries: 0,
            kernel: None,
        }]
    }

    fn table_size(&self) -> u32 {
        4096
    }

    fn mark_counters(&mut self) -> Vec<MarkCounters> {
        self.0.lock().unwrap().mark_counters.clone()
    }
}

/// A controller over a fake backend, and the backend's state.
pub fn controller() -> (Controller<FakeBackend>, Arc<Mutex<FakeState>>) {
    let state = Arc::new(Mutex::new(FakeState::default()));
    (
        Controller::new(FakeBackend(Arc::clone(&state)), 1024),
        state,
    )
}

/// A unique socket path in the temp dir.
pub fn socket_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "ctl-test-{}-{}-{}.sock",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running `serve` on a fresh socket.
pub struct Running {
    pub path: PathBuf,
    pub state: Arc<Mutex<FakeState>>,
    pub stop: Arc<AtomicBool>,
    pub handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn start(tag: &str) -> Running {
        let path = socket_path(tag);
        let (ctl, state) = controller();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (path.clone(), Arc::clone(&stop));
        let handle = std::thread::spawn(move || serve(&p, ctl, s));
        wait_for(&path);
        Running {
            path,
            state,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the server and returns how long `serve` took to return.
    pub fn stop(&mut self) -> Duration {
        let t = Instant::now();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap().unwrap();
        }
        t.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits (bounded) for the socket to appear.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "socket {} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A connection-entry fixture.
pub fn conn(cport: u16) -> ConnInfo {
    ConnInfo {
        proto: ConnProto::Tcp,
        expires_secs: 898,
        state: "ESTABLISHED".into(),
        caddr: Ipv4Addr::new(10, 9, 8, 7),
        cport,
        vaddr: Ipv4Addr::new(192, 168, 1, 100),
        vport: 80,
        daddr: Ipv4Addr::new(10, 0, 0, 11),
        dport: 80,
        pe: None,
    }
}
