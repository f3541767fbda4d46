//! Network namespaces owned by a test, and processes started inside them.
//!
//! Invariants:
//! * Every namespace is named `lbt-<pid>-<counter>-<role>` (unique on the machine while this
//!   process lives) and is deleted when its [`Netns`] is dropped — also while a test panics,
//!   since drops run during unwinding. Before deleting, any process still inside it (which can
//!   only be one this test process started, the name being unique) is killed by PID, so that
//!   the namespace really goes away and its veth ends with it.
//! * A process started with [`Netns::spawn`] runs as `ip netns exec <ns> <cmd>`: `ip` enters
//!   the namespace and execs the command in place, so the child's PID is the command's PID.
//!   Its [`ChildGuard`] kills it (by PID) and reaps it on drop.
//! * If a test run was killed (SIGKILL, CI timeout) its namespaces remain; the first
//!   [`Netns::new`] of a later run removes `lbt-<pid>-…` namespaces whose pid is dead
//!   ([`sweep_stale`]). Nothing else is ever touched.

use crate::util::{describe, run, run_timeout, unique_name, DEFAULT_CMD_TIMEOUT};
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Prefix of every namespace the harness creates.
pub const NS_PREFIX: &str = "lbt";

/// A network namespace created by (and deleted with) this value.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace `lbt-<pid>-<n>-<role>` with `lo` up and IPv6 disabled (the testbeds
    /// are IPv4; no router solicitations, DAD or MLD reports reach the director's ports).
    /// Panics if `ip netns add` fails.
    pub fn new(role: &str) -> Netns {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        let name = format!("{}-{role}", unique_name(NS_PREFIX));
        let out = run("ip", &["netns", "add", &name]);
        if !out.status.success() {
            panic!("{}", describe(&format!("ip netns add {name}"), &out));
        }
        let ns = Netns { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns.sysctl(&[
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        ]);
        ns
    }

    /// The namespace's name (for `ip netns exec`, `ip -n`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `args` inside the namespace (`ip netns exec`), bounded by
    /// [`DEFAULT_CMD_TIMEOUT`]; returns its output whatever the exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.exec_timeout(args, DEFAULT_CMD_TIMEOUT)
    }

    /// [`Netns::exec`] with an explicit time limit (the command is killed at the limit).
    pub fn exec_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        let mut full: Vec<&str> = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run_timeout("ip", &full, timeout)
    }

    /// Runs `args` inside the namespace and returns stdout; panics with the command's stdout
    /// and stderr if it exits non-zero.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        if !out.status.success() {
            panic!(
                "{}",
                describe(&format!("[{}] {}", self.name, args.join(" ")), &out)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sets sysctls inside the namespace (`sysctl -qw k=v …`); panics on failure.
    pub fn sysctl(&self, kv: &[(&str, &str)]) {
        let pairs: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["sysctl", "-qw"];
        args.extend(pairs.iter().map(String::as_str));
        self.exec_ok(&args);
    }

    /// Starts `args` inside the namespace with stdout and stderr discarded.
    pub fn spawn(&self, args: &[&str]) -> ChildGuard {
        self.spawn_inner(args, None)
    }

    /// Starts `args` inside the namespace with stdout and stderr appended to `log`.
    pub fn spawn_logged(&self, args: &[&str], log: &Path) -> ChildGuard {
        self.spawn_inner(args, Some(log))
    }

    fn spawn_inner(&self, args: &[&str], log: Option<&Path>) -> ChildGuard {
        let (out, err) = match log {
            Some(p) => {
                let f = File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
                let f2 = f.try_clone().expect("dup log fd");
                (Stdio::from(f), Stdio::from(f2))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "spawn `ip netns exec {} {}`: {e}",
                    self.name,
                    args.join(" ")
                )
            });
        ChildGuard {
            child: Some(child),
            what: format!("[{}] {}", self.name, args.join(" ")),
        }
    }

    /// PIDs of the processes currently inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        let out = run("ip", &["netns", "pids", &self.name]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// Kills what is left inside `name` (SIGKILL by PID) and deletes the namespace.
fn delete_namespace(name: &str) {
    let pids_of = || -> Vec<i32> {
        let out = run("ip", &["netns", "pids", name]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    let leftovers = pids_of();
    for pid in &leftovers {
        // The namespace's name is unique to this test process: whatever runs inside was
        // started by it.
        crate::util::send_signal(*pid, "KILL");
    }
    if !leftovers.is_empty() {
        crate::util::wait_until(Duration::from_secs(2), || pids_of().is_empty());
    }
    let out = run("ip", &["netns", "del", name]);
    if !out.status.success() {
        eprintln!(
            "[harness] warning: {}",
            describe(&format!("ip netns del {name}"), &out)
        );
    }
}

/// Deletes namespaces left behind by earlier, killed runs of the harness: names
/// `lbt-<pid>-…` whose `<pid>` no longer exists. Runs once per process, from the first
/// [`Netns::new`]. Also removes matching DPDK runtime directories `/var/run/dpdk/lbt-<pid>-…`.
pub fn sweep_stale() {
    let dead_owner = |name: &str| -> bool {
        let mut parts = name.splitn(3, '-');
        if parts.next() != Some(NS_PREFIX) {
            return false;
        }
        match parts.next().and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) => pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists(),
            None => false,
        }
    };
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead_owner(&name) {
                eprintln!("[harness] removing stale namespace {name}");
                delete_namespace(&name);
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/var/run/dpdk") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead_owner(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A child process killed (SIGKILL, by PID) and reaped when dropped, unless it already exited.
/// [`ChildGuard::stop`] gives it a chance to exit on SIGTERM first.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    /// Wraps an already started child.
    pub fn new(child: Child, what: impl Into<String>) -> ChildGuard {
        ChildGuard {
            child: Some(child),
            what: what.into(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; returns the exit status (None if the process
    /// was already reaped by an earlier stop).
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        // The PID is our own unreaped child, so it cannot have been recycled.
        crate::util::send_signal(child.id() as i32, "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "[harness] {} ignored SIGTERM for {grace:?}: SIGKILL",
            self.what
        );
        let _ = child.kill();
        child.wait().ok()
    }

    /// What was started (for messages).
    pub fn describe(&self) -> &str {
        &self.what
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}
