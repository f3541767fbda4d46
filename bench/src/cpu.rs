//! On-CPU time of one thread, so that a measured window can be reduced to the time the
//! measured thread actually ran: on a shared 2-core VM other processes preempt the worker, and
//! wall time would count that against it. The clock calls live in `dataplane::dpdk::prof`.

pub use dataplane::dpdk::prof::CpuClock;
