//! On-CPU time of one thread (`CLOCK_THREAD_CPUTIME_ID` / `pthread_getcpuclockid`), so that a
//! measured window can be reduced to the time the measured thread actually ran: on a shared
//! 2-core VM other processes preempt the worker, and wall time would count that against it.

/// A thread's CPU-time clock.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock(libc::clockid_t);

impl CpuClock {
    /// The calling thread's clock.
    pub fn this_thread() -> CpuClock {
        CpuClock(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    /// The clock of another thread of this process.
    pub fn of(thread: libc::pthread_t) -> Option<CpuClock> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: `thread` is a live thread of this process (its JoinHandle is held by the
        // caller); `id` is a valid out-pointer.
        let r = unsafe { libc::pthread_getcpuclockid(thread, &mut id) };
        (r == 0).then_some(CpuClock(id))
    }

    /// Nanoseconds of CPU time so far.
    pub fn ns(&self) -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid clock id and out-pointer.
        let r = unsafe { libc::clock_gettime(self.0, &mut ts) };
        if r != 0 {
            return 0;
        }
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}
