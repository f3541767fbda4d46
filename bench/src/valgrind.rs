//! Callgrind client requests (the `CALLGRIND_*` macros of valgrind's `callgrind.h`), so a
//! benchmark can leave EAL start-up and table filling uninstrumented and dump the counts of
//! each measured phase separately. Outside valgrind every request is a no-op that returns 0.
//!
//! This is the only `unsafe` of the bench crate: valgrind recognises the "magic" rotate
//! sequence below (amd64 `VALGRIND_DO_CLIENT_REQUEST_EXPR`); natively it leaves every register
//! as it was (rotations by 3+13+61+51 = 128 bits) and `xchg rbx, rbx` is a no-op.

const fn tool_base(a: u8, b: u8) -> usize {
    ((a as usize) << 24) | ((b as usize) << 16)
}

const DUMP_STATS_AT: usize = tool_base(b'C', b'T') + 3;
const ZERO_STATS: usize = tool_base(b'C', b'T') + 1;
const START_INSTRUMENTATION: usize = tool_base(b'C', b'T') + 4;
const STOP_INSTRUMENTATION: usize = tool_base(b'C', b'T') + 5;
const RUNNING_ON_VALGRIND: usize = 0x1001;

#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn request(default: usize, args: [usize; 6]) -> usize {
    let mut result = default;
    // SAFETY: the sequence only rotates rdi by a multiple of 64 bits (net no change, declared
    // clobbered anyway) and exchanges rbx with itself; rax points at six readable words that
    // valgrind may read; rdx carries the default in and the result out.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") result,
            in("rax") args.as_ptr(),
            inout("rdi") 0usize => _,
            options(nostack, preserves_flags),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn request(default: usize, _args: [usize; 6]) -> usize {
    default
}

/// True when running under valgrind.
pub fn running_on_valgrind() -> bool {
    request(0, [RUNNING_ON_VALGRIND, 0, 0, 0, 0, 0]) != 0
}

/// Turns instrumentation on (the tool was started with `--instr-atstart=no`).
pub fn start_instrumentation() {
    request(0, [START_INSTRUMENTATION, 0, 0, 0, 0, 0]);
}

/// Turns instrumentation off.
pub fn stop_instrumentation() {
    request(0, [STOP_INSTRUMENTATION, 0, 0, 0, 0, 0]);
}

/// Zeroes the counters.
pub fn zero_stats() {
    request(0, [ZERO_STATS, 0, 0, 0, 0, 0]);
}

/// Dumps the counters (to a new numbered output file) and zeroes them; `reason` is recorded
/// in the dump's header.
pub fn dump_stats_at(reason: &str) {
    let c = std::ffi::CString::new(reason).unwrap_or_default();
    request(0, [DUMP_STATS_AT, c.as_ptr() as usize, 0, 0, 0, 0]);
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
