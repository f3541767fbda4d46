//! Commands of DPDK's telemetry socket (`dpdk-telemetry.py`) answered by Rust handlers.
//!
//! [`register`] hands a command (`/director/...`) and a handler to
//! `rte_telemetry_register_cmd`. DPDK calls one C callback ([`callback`]) on its telemetry
//! thread, one request at a time per client connection and possibly several connections at
//! once; the callback finds the handler by command name in a process-wide table behind a
//! mutex, clones its `Arc` out of the lock and calls it without the lock held, so handlers run
//! concurrently and must be thread safe (`Send + Sync`). The reply ([`Tel`]) is plain data,
//! converted to `rte_tel_data` here within DPDK 22.11's limits: one level of nesting (a dict
//! or array whose containers are arrays of numbers or strings), 256 dict entries, 512 array
//! entries, 127-byte strings (longer ones are cut).
//!
//! DPDK cannot unregister a command: [`clear`] empties the table (before EAL cleanup), after
//! which the commands answer with an error.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock};

use super::DpdkError;

/// An array of one element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TelArray {
    /// Unsigned numbers.
    U64(Vec<u64>),
    /// Strings.
    Str(Vec<String>),
}

/// A value in a dict.
#[derive(Debug, Clone, PartialEq)]
pub enum TelValue {
    /// An unsigned number.
    U64(u64),
    /// A string.
    Str(String),
    /// An array (one nesting level).
    Array(TelArray),
}

/// A command's reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Tel {
    /// `{"name": value, ...}` (names: letters, digits, `_` and `/`).
    Dict(Vec<(String, TelValue)>),
    /// `[...]`.
    Array(TelArray),
}

/// A command handler: parameters (the text after the first comma, empty if none) → reply,
/// or `None` for "invalid parameters".
pub type Handler = Arc<dyn Fn(&str) -> Option<Tel> + Send + Sync>;

fn table() -> &'static Mutex<HashMap<String, Handler>> {
    static T: OnceLock<Mutex<HashMap<String, Handler>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Most bytes of a telemetry string (`RTE_TEL_MAX_STRING_LEN` includes the NUL).
const MAX_STR: usize = ffi::RTE_TEL_MAX_STRING_LEN as usize - 1;

/// A C string of at most [`MAX_STR`] bytes, cut at a character boundary, NULs removed.
fn cstring(s: &str) -> CString {
    let mut end = s.len().min(MAX_STR);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    CString::new(s[..end].replace('\0', "")).unwrap_or_default()
}

/// Registers `cmd` (≤ 55 chars of `[A-Za-z0-9_/]`) with its help text. Registering a command
/// again replaces its handler.
pub fn register(cmd: &str, help: &str, handler: Handler) -> Result<(), DpdkError> {
    let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
    let known = t.contains_key(cmd);
    t.insert(cmd.to_string(), handler);
    if known {
        return Ok(());
    }
    let (c, h) = (cstring(cmd), cstring(help));
    // SAFETY: both strings are NUL-terminated; DPDK copies them; `callback` has the
    // telemetry_cb signature and lives for the whole process.
    let r = unsafe { ffi::rte_telemetry_register_cmd(c.as_ptr(), Some(callback), h.as_ptr()) };
    if r != 0 {
        t.remove(cmd);
        return Err(DpdkError::from_errno(format!("rte_telemetry_register_cmd {cmd}"), r));
    }
    Ok(())
}

/// Drops every handler (the commands stay registered with DPDK and answer with an error).
pub fn clear() {
    table().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Fills an array container already started with the matching type.
///
/// # Safety
/// `d` must be a valid `rte_tel_data` pointer owned by the telemetry library.
unsafe fn fill_array(d: *mut ffi::rte_tel_data, a: &TelArray) -> c_int {
    const MAX: usize = ffi::RTE_TEL_MAX_ARRAY_ENTRIES as usize;
    match a {
        TelArray::U64(v) => {
            // SAFETY: d is valid (caller).
            let r = unsafe { ffi::rte_tel_data_start_array(d, ffi::rte_tel_value_type_RTE_TEL_U64_VAL) };
            if r != 0 {
                return r;
            }
            for x in v.iter().take(MAX) {
                // SAFETY: d is a started u64 array.
                unsafe { ffi::rte_tel_data_add_array_u64(d, *x) };
            }
        }
        TelArray::Str(v) => {
            // SAFETY: d is valid (caller).
            let r = unsafe { ffi::rte_tel_data_start_array(d, ffi::rte_tel_value_type_RTE_TEL_STRING_VAL) };
            if r != 0 {
                return r;
            }
            for x in v.iter().take(MAX) {
                let c = cstring(x);
                // SAFETY: d is a started string array; DPDK copies the string.
                unsafe { ffi::rte_tel_data_add_array_string(d, c.as_ptr()) };
            }
        }
    }
    0
}

/// Writes `reply` into `d`.
///
/// # Safety
/// `d` must be the valid `rte_tel_data` pointer DPDK passed to the callback.
unsafe fn fill(d: *mut ffi::rte_tel_data, reply: &Tel) -> c_int {
    match reply {
        // SAFETY: forwarded from the caller.
        Tel::Array(a) => unsafe { fill_array(d, a) },
        Tel::Dict(entries) => {
            // SAFETY: d is valid.
            let r = unsafe { ffi::rte_tel_data_start_dict(d) };
            if r != 0 {
                return r;
            }
            for (name, v) in entries.iter().take(ffi::RTE_TEL_MAX_DICT_ENTRIES as usize) {
                let n = cstring(name);
                match v {
                    // SAFETY: d is a started dict; DPDK copies name and value.
                    TelValue::U64(x) => unsafe {
                        ffi::rte_tel_data_add_dict_u64(d, n.as_ptr(), *x);
                    },
                    TelValue::Str(s) => {
                        let c = cstring(s);
                        // SAFETY: as above.
                        unsafe { ffi::rte_tel_data_add_dict_string(d, n.as_ptr(), c.as_ptr()) };
                    }
                    TelValue::Array(a) => {
                        // SAFETY: a fresh container, owned by `d` once added (keep = 0 lets
                        // the library free it); freed here if it cannot be added.
                        unsafe {
                            let c = ffi::rte_tel_data_alloc();
                            if c.is_null() {
                                continue;
                            }
                            if fill_array(c, a) != 0 || ffi::rte_tel_data_add_dict_container(d, n.as_ptr(), c, 0) != 0 {
                                ffi::rte_tel_data_free(c);
                            }
                        }
                    }
                }
            }
            0
        }
    }
}

/// The `telemetry_cb` of every director command.
extern "C" fn callback(cmd: *const c_char, params: *const c_char, d: *mut ffi::rte_tel_data) -> c_int {
    if cmd.is_null() || d.is_null() {
        return -1;
    }
    // SAFETY: DPDK passes NUL-terminated strings valid for the call (params may be NULL).
    let cmd = unsafe { CStr::from_ptr(cmd) }.to_string_lossy();
    let params = if params.is_null() {
        String::new()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(params) }.to_string_lossy().into_owned()
    };
    let handler = table().lock().unwrap_or_else(|e| e.into_inner()).get(cmd.as_ref()).cloned();
    let Some(reply) = handler.and_then(|h| h(params.trim())) else {
        return -1;
    };
    // SAFETY: d is the data structure DPDK passed for this request.
    unsafe { fill(d, &reply) }
}

#[cfg(test)]
mod tests {
    use super::cstring;

    #[test]
    fn strings_are_cut_to_the_telemetry_limit_on_a_char_boundary() {
        assert_eq!(cstring("abc").as_bytes(), b"abc");
        let long = "é".repeat(100); // 200 bytes
        let c = cstring(&long);
        assert!(c.as_bytes().len() <= 127 && std::str::from_utf8(c.as_bytes()).is_ok());
        assert_eq!(cstring("a\0b").as_bytes(), b"ab");
    }
}
