//! Fuzz targets of the director, as plain functions of one input (`fn(&[u8])`) that panic on
//! any broken invariant, so that one body serves every driver:
//! - `fuzz/afl`: coverage-guided fuzzing with AFL++ (`cargo afl`, stable toolchain), one
//!   binary per target; `make fuzz` runs them all for `FUZZ_SECONDS` each
//!   (`scripts/fuzz.sh`), the smoke in `make test` for a few seconds each;
//! - `fuzz-replay TARGET FILE…`: runs inputs (a crash AFL saved, a corpus) without AFL;
//! - the unit tests below replay every committed seed (`fuzz/corpus/TARGET/`).
//!
//! | target | input | invariants |
//! | --- | --- | --- |
//! | `engine` | a byte program of frames (structured or raw) in bursts, with time steps | see [`engine`] |
//! | `proto` | a socket byte stream: frames of the control protocol | framing and decoding never panic; a decoded request re-encodes to itself; the controller answers it with a response that encodes and decodes |
//! | `ipvsadm` | an ipvsadm command line | parsing never panics; an accepted command is valid |
//! | `iptables` | an `lbadm iptables` / `mark` command line | parsing never panics |
//! | `config_file` | a configuration file | parsing never panics, errors name a line inside the file, accepted commands apply to a configuration without panicking |
//! | `keepalived_conf` | a keepalived.conf | see [`parsers::keepalived_conf`] |
//! | `sync` | a syncid byte and an IPVS sync datagram | see [`sync`] |
//!
//! A new target: its function, a line in [`TARGETS`], a binary in `fuzz/afl/src/bin/`, seeds
//! in `fuzz/corpus/NAME/` (`fuzz/make_seeds.py`) and its name in `scripts/fuzz.sh`.

pub mod engine;
pub mod parsers;
pub mod sync;

/// A fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// Name (binary, corpus directory).
    pub name: &'static str,
    /// The body: panics on a broken invariant.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target { name: "engine", run: engine::run },
    Target { name: "proto", run: parsers::proto },
    Target { name: "ipvsadm", run: parsers::ipvsadm },
    Target { name: "iptables", run: parsers::iptables },
    Target { name: "config_file", run: parsers::config_file },
    Target { name: "keepalived_conf", run: parsers::keepalived_conf },
    Target { name: "sync", run: sync::run },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every committed seed runs through its target (the CI smoke without AFL).
    #[test]
    fn every_seed_runs_through_its_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for t in TARGETS {
            let dir = root.join(t.name);
            let mut n = 0;
            for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let data = std::fs::read(e.unwrap().path()).unwrap();
                (t.run)(&data);
                n += 1;
            }
            assert!(n >= 3, "{}: only {n} seeds", t.name);
        }
    }
}
