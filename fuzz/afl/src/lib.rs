//! Shared by the AFL++ binaries: the target lookup and the frame-count report.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Inputs run by this process, and engine frames already reported.
static INPUTS: AtomicU64 = AtomicU64::new(0);
static REPORTED: AtomicU64 = AtomicU64::new(0);

/// Runs `data` through the target `name`; every 1,000 inputs reports the engine frames.
pub fn run(name: &str, data: &[u8]) {
    match fuzz::target(name) {
        Some(t) => (t.run)(data),
        None => panic!("no fuzz target {name}"),
    }
    if INPUTS.fetch_add(1, Ordering::Relaxed) % 1000 == 999 {
        report();
    }
}

/// When `FUZZ_FRAMES_FILE` is set, appends the engine frames run since the last report (one
/// line each; the sum of the lines is the number of frames, short of those of the last
/// < 1,000 inputs of a child killed when the run ends).
pub fn report() {
    let n = fuzz::engine::frames();
    let delta = n - REPORTED.swap(n, Ordering::Relaxed);
    if delta == 0 {
        return;
    }
    if let Some(path) = std::env::var_os("FUZZ_FRAMES_FILE") {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{delta}");
        }
    }
}
