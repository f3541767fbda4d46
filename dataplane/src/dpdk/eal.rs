//! EAL initialisation, lcores and time.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use super::DpdkError;

/// Error from EAL initialisation.
#[derive(Debug, thiserror::Error)]
pub enum EalError {
    /// `Eal::init` was called a second time in this process.
    #[error("EAL is already initialised in this process")]
    AlreadyInitialised,
    /// An argument contained a NUL byte.
    #[error("EAL argument contains a NUL byte: {0:?}")]
    BadArgument(String),
    /// `rte_eal_init` failed.
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
}

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Proof that EAL is initialised; the handle to lcores and process-wide DPDK state.
#[derive(Debug)]
pub struct Eal {
    args_consumed: usize,
}

impl Eal {
    /// Initialises EAL with `args` (`args[0]` is the program name, as in `argv`). Returns the
    /// handle and how many arguments EAL consumed (the rest follow `--`).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, EalError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(EalError::AlreadyInitialised);
        }
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_ref()).map_err(|_| EalError::BadArgument(a.as_ref().into())))
            .collect::<Result<_, _>>()?;
        // EAL may permute and keep pointers into argv for the life of the process: leak it.
        let owned: &'static mut [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] = Box::leak(
            owned
                .iter_mut()
                .map(|c| c.as_ptr() as *mut c_char)
                .chain(std::iter::once(std::ptr::null_mut()))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = (argv.len() - 1) as c_int;
        // SAFETY: argv is a NUL-terminated array of argc valid C strings that lives for the
        // rest of the process; rte_eal_init is called once per process (guarded above).
        let ret = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            INITIALISED.store(false, Ordering::SeqCst);
            return Err(DpdkError::last("rte_eal_init").into());
        }
        Ok(Eal { args_consumed: ret as usize })
    }

    /// Number of arguments consumed by EAL (including the program name).
    pub fn args_consumed(&self) -> usize {
        self.args_consumed
    }

    /// The main lcore (the one `init` ran on).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: EAL is initialised (proved by &self).
        unsafe { ffi::rte_get_main_lcore() }
    }

    /// All enabled lcores, main first, in id order.
    pub fn lcores(&self) -> Vec<u32> {
        let main = self.main_lcore();
        let mut v = vec![main];
        let mut i: u32 = u32::MAX; // -1: start of iteration
        loop {
            // SAFETY: EAL is initialised; rte_get_next_lcore only reads the lcore config.
            i = unsafe { ffi::rte_get_next_lcore(i, 1, 0) };
            if i >= ffi::RTE_MAX_LCORE {
                break;
            }
            v.push(i);
        }
        v
    }

    /// NUMA socket of an lcore.
    pub fn lcore_socket(&self, lcore: u32) -> u32 {
        // SAFETY: EAL is initialised; lcore ids beyond RTE_MAX_LCORE return an error value.
        unsafe { ffi::rte_lcore_to_socket_id(lcore) }
    }

    /// Number of usable ports.
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised.
        unsafe { ffi::rte_eth_dev_count_avail() }
    }

    /// Runs `f` on worker lcore `lcore` (not the main lcore). Returns at once; use
    /// [`Eal::wait_all`] to join.
    pub fn launch<F>(&self, lcore: u32, f: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        extern "C" fn trampoline(arg: *mut c_void) -> c_int {
            // SAFETY: arg was produced by Box::into_raw of the same type in `launch` and is
            // consumed exactly once here.
            let f: Box<Box<dyn FnOnce() -> i32 + Send>> = unsafe { Box::from_raw(arg.cast()) };
            f()
        }
        let boxed: Box<Box<dyn FnOnce() -> i32 + Send>> = Box::new(Box::new(f));
        let arg = Box::into_raw(boxed).cast::<c_void>();
        // SAFETY: trampoline has the lcore_function_t signature and takes ownership of arg.
        let ret = unsafe { ffi::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if ret != 0 {
            // SAFETY: the launch failed, so the trampoline never ran: reclaim the closure.
            drop(unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() -> i32 + Send>>()) });
            return Err(DpdkError::from_errno(format!("launch on lcore {lcore}"), ret));
        }
        Ok(())
    }

    /// Waits for every worker lcore launched with [`Eal::launch`] to return.
    pub fn wait_all(&self) {
        // SAFETY: EAL is initialised; called from the main lcore.
        unsafe { ffi::rte_eal_mp_wait_lcore() };
    }

    /// Sets DPDK's global log level (`RTE_LOG_*`, 1..=8).
    pub fn set_log_level(&self, level: u32) {
        // SAFETY: plain setter.
        unsafe { ffi::rte_log_set_global_level(level) };
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all DPDK objects borrow &Eal or were stopped by their owners before the
        // handle is dropped (the director drops Eal last).
        unsafe { ffi::rte_eal_cleanup() };
    }
}

/// Current lcore id of the calling thread (`LCORE_ID_ANY` for non-EAL threads).
#[inline]
pub fn lcore_id() -> u32 {
    // SAFETY: reads a thread-local through the shim.
    unsafe { ffi::shim_rte_lcore_id() }
}

/// Time-stamp counter.
#[inline]
pub fn tsc() -> u64 {
    // SAFETY: rdtsc has no preconditions.
    unsafe { ffi::shim_rdtsc() }
}

/// TSC frequency in Hz (valid after EAL init).
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value computed during EAL init; returns 0 before it.
    unsafe { ffi::rte_get_tsc_hz() }
}

/// DPDK's version string, e.g. `DPDK 22.11.11`.
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(ffi::rte_version()) }.to_string_lossy().into_owned()
}

/// Text printed after EAL's own usage when EAL is given `-h`/`--help` (the application's
/// options), through `rte_set_application_usage_hook`. Call before [`Eal::init`]; the first
/// text set stays.
pub fn set_usage_text(text: String) {
    static TEXT: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
    extern "C" fn hook(_prgname: *const c_char) {
        if let Some(t) = TEXT.get() {
            use std::io::Write;
            // SAFETY: fflush(NULL) flushes every C stdio stream; EAL printed its usage with
            // printf, which must come out before this text.
            unsafe { libc::fflush(std::ptr::null_mut()) };
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(t.as_bytes());
            let _ = out.flush();
        }
    }
    let _ = TEXT.set(CString::new(text.replace('\0', "")).unwrap_or_default());
    // SAFETY: `hook` has the rte_usage_hook_t signature and lives for the whole process;
    // setting the hook before EAL init is what the API is for.
    unsafe { ffi::rte_set_application_usage_hook(Some(hook)) };
}
