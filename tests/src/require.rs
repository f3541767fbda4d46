//! Preconditions of the namespace tests, and their serialisation.
//!
//! A namespace test starts with
//! ```ignore
//! let Some(_serial) = tests::require_root_and_tools() else { return };
//! ```
//! On a machine without root, network namespaces or the testbed tools the test prints
//! `SKIP: <reason>` and returns; but when the environment variable `CI` is set (CI runs
//! `.ci/run` with `CI=true`) the same condition fails the test instead: CI has all of these,
//! so a missing one is a broken setup, never a silent skip.
//!
//! The returned guard serialises the namespace tests of one test binary: each starts a
//! director that busy-polls lcore 0, and the machines have two cores, so two at once would
//! compete for CPU 0 and make timing bounds flaky.

use crate::util::{have_program, run};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Programs the testbeds run.
pub const REQUIRED_TOOLS: &[&str] = &[
    "ip",
    "ethtool",
    "curl",
    "sysctl",
    "sha256sum",
    "kill",
    "ping",
    "nginx",
    "openssl",
    "md5sum",
    "tcpdump",
];

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the lock that runs namespace testbeds one at a time (poison-tolerant: a failed test
/// does not fail the next one).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Checks root, network-namespace support and the testbed tools (once per process).
/// `Some(guard)` (see [`serial`]) when the test can run; `None` after printing a SKIP reason
/// when it cannot and `CI` is unset; panics with the reason when `CI` is set.
pub fn require_root_and_tools() -> Option<MutexGuard<'static, ()>> {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    match CHECK.get_or_init(check) {
        Ok(()) => Some(serial()),
        Err(reason) => {
            if std::env::var_os("CI").is_some() {
                panic!("namespace test cannot run on CI: {reason}");
            }
            // Straight to fd 2, past libtest's output capture, so the SKIP shows in a normal
            // `cargo test` run (eprintln! of a passing test would be swallowed).
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIP: {reason}");
            None
        }
    }
}

fn check() -> Result<(), String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2)) // effective uid
                .map(str::to_string)
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err(format!(
            "not root (euid {uid}); namespace testbeds need root"
        ));
    }
    let py = crate::http::python();
    for tool in REQUIRED_TOOLS.iter().copied().chain([py.as_str()]) {
        if !have_program(tool) {
            return Err(format!(
                "missing program `{tool}` (run scripts/setup-host.sh)"
            ));
        }
    }
    // Can we really create a namespace with a veth and a bridge in it?
    let probe = crate::util::unique_name("lbt-probe");
    let add = run("ip", &["netns", "add", &probe]);
    if !add.status.success() {
        return Err(format!(
            "cannot create a network namespace: {}",
            String::from_utf8_lossy(&add.stderr).trim()
        ));
    }
    let veth = run(
        "ip",
        &[
            "-n", &probe, "link", "add", "name", "pa", "type", "veth", "peer", "name", "pb",
        ],
    );
    let br = run(
        "ip",
        &["-n", &probe, "link", "add", "name", "pbr", "type", "bridge"],
    );
    let _ = run("ip", &["netns", "del", &probe]);
    if !veth.status.success() {
        return Err(format!(
            "cannot create veth: {}",
            String::from_utf8_lossy(&veth.stderr).trim()
        ));
    }
    if !br.status.success() {
        return Err(format!(
            "cannot create a bridge: {}",
            String::from_utf8_lossy(&br.stderr).trim()
        ));
    }
    Ok(())
}
