//! Callgrind client requests, so a benchmark can leave EAL start-up and table filling
//! uninstrumented and dump the counts of each measured phase separately. The requests
//! themselves live in `dataplane::dpdk::prof` (the C shim includes valgrind's `callgrind.h`);
//! outside valgrind they are no-ops.

use dataplane::dpdk::prof;

/// True when running under valgrind.
pub fn running_on_valgrind() -> bool {
    prof::running_on_valgrind()
}

/// Turns instrumentation on (the tool was started with `--instr-atstart=no`).
pub fn start_instrumentation() {
    prof::callgrind_start();
}

/// Turns instrumentation off.
pub fn stop_instrumentation() {
    prof::callgrind_stop();
}

/// Zeroes the counters.
pub fn zero_stats() {
    prof::callgrind_zero();
}

/// Dumps the counters (to a new numbered output file) and zeroes them; `reason` is recorded
/// in the dump's header.
pub fn dump_stats_at(reason: &str) {
    prof::callgrind_dump_at(reason);
}

/// Total instruction count (`summary:`/`totals:` line) of one callgrind output file.
pub fn instructions_in(path: &std::path::Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    // Dumps made by client requests carry the counts in `totals:` (`summary:` may be 0).
    let mut events: Vec<&str> = Vec::new();
    let mut best: Option<u64> = None;
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("events:") {
            events = e.split_whitespace().collect();
        }
        if let Some(v) = line.strip_prefix("summary:").or_else(|| line.strip_prefix("totals:")) {
            let i = events.iter().position(|e| *e == "Ir").unwrap_or(0);
            let n: u64 = v.split_whitespace().nth(i).ok_or_else(|| anyhow::anyhow!("empty totals in {}", path.display()))?.parse()?;
            best = Some(best.map_or(n, |b| b.max(n)));
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no totals line in {}", path.display()))
}
