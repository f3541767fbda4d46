//! Profiling hooks for benchmarks: callgrind client requests (so a benchmark can leave start-up
//! uninstrumented and dump each measured phase) and per-thread CPU-time clocks. Outside
//! valgrind, or when valgrind's headers were missing at build time, the requests do nothing.

use std::ffi::CString;

/// True when running under valgrind.
pub fn running_on_valgrind() -> bool {
    // SAFETY: a client request with no arguments; natively a no-op returning 0.
    unsafe { ffi::shim_running_on_valgrind() != 0 }
}

/// Turns callgrind instrumentation on (the tool was started with `--instr-atstart=no`).
pub fn callgrind_start() {
    // SAFETY: client request without arguments.
    unsafe { ffi::shim_callgrind_start() }
}

/// Turns callgrind instrumentation off.
pub fn callgrind_stop() {
    // SAFETY: client request without arguments.
    unsafe { ffi::shim_callgrind_stop() }
}

/// Zeroes callgrind's counters.
pub fn callgrind_zero() {
    // SAFETY: client request without arguments.
    unsafe { ffi::shim_callgrind_zero() }
}

/// Dumps callgrind's counters to a new numbered file, recording `reason` in its header.
pub fn callgrind_dump_at(reason: &str) {
    let c = CString::new(reason).unwrap_or_default();
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    unsafe { ffi::shim_callgrind_dump_at(c.as_ptr()) }
}

/// A thread's CPU-time clock (`pthread_getcpuclockid`, or the calling thread's).
#[derive(Debug, Clone, Copy)]
pub struct CpuClock(i32);

impl CpuClock {
    /// The calling thread's clock (`CLOCK_THREAD_CPUTIME_ID`).
    pub fn this_thread() -> CpuClock {
        CpuClock(3)
    }

    /// The clock of another live thread of this process (`pthread_t` as from
    /// `JoinHandleExt::as_pthread_t`).
    pub fn of(thread: u64) -> Option<CpuClock> {
        let mut id = 0i32;
        // SAFETY: the caller holds the thread's JoinHandle, so the pthread_t is live; id is a
        // valid out-pointer.
        let r = unsafe { ffi::shim_thread_cpu_clock(thread as std::ffi::c_ulong, &mut id) };
        (r == 0).then_some(CpuClock(id))
    }

    /// Nanoseconds of CPU time so far (0 on error).
    pub fn ns(&self) -> u64 {
        // SAFETY: clock_gettime on a clock id obtained above; no pointers cross the boundary.
        unsafe { ffi::shim_clock_ns(self.0) }
    }
}
