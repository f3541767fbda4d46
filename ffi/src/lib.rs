//! Raw DPDK 22.11 bindings, generated at build time by bindgen over the installed headers
//! (see `build.rs`), plus the `shim_*` functions of `shim/shim.c` for DPDK's static-inline
//! fast-path helpers and thread-local values.
//!
//! Everything here is `unsafe` to call. The only safe wrapper is `dataplane::dpdk`; no other
//! module may use this crate.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
