//! Shared harness for the director's integration tests.
//!
//! Network-namespace testbeds with real clients and servers, and the `director` / `lbadm`
//! binaries under test. Everything a test creates has a unique name (`lbt-<pid>-<n>-…`) and is
//! removed when its owning value is dropped, also when the test panics; every wait is bounded
//! in time and every loop in count.
//!
//! | item | what |
//! | --- | --- |
//! | [`require_root_and_tools`] | first line of a namespace test: SKIP (locally) / FAIL (with `CI` set) without root, netns, tools; serialises testbeds |
//! | [`Netns`] | a namespace: `exec`, `exec_ok`, `spawn` → [`ChildGuard`], `sysctl`; deleted on drop |
//! | [`Switch`], [`topo`] | bridges in a switch namespace, `plug` veths into them; offloads off, addresses, routes, DR real-server sysctls |
//! | [`DirectorProcess`] | `director` in a namespace on net_af_packet ports; `lbadm`, `lbadm_ok`, `wait_neigh_reachable`, `list`, `stop`; logs printed on failure |
//! | [`eal_memory_args`] | the one EAL memory scheme (hugepages `--in-memory -m 256`, else `--no-huge -m 512 --no-shconf`) |
//! | [`HttpServer`], [`curl_get`], [`curl_post_file`] | scripts/testbed-httpd.py: GET → server name, POST → sha256 of the body |
//! | [`OneArmed`], [`TwoArmed`] | complete DR testbeds (layouts in [`testbed`]) |
//! | [`wait_until`], [`util`] | bounded polling and commands, temp dirs, random files, sha256 |
//! | [`ipvsadm`] | parsers for `-L -n` and `neigh show` |
//! | [`probe`] | scripts/testbed-probe.py: TCP/UDP name responders and clients from chosen source addresses; `-L -n -c` parser |
//! | [`EalLayout`], [`DirectorProcess::start_layout`] | several workers (`-l 0-1`) on af_packet ports with `qpairs=N`; `pid`, `vm_rss_kib` |
//! | [`nginx`] | real nginx servers per namespace, a test CA (openssl), the one-armed segment with nginx real servers ([`nginx::NginxBed`]) |
//! | [`many`] | many connections: multi-port name servers, servers that hold connections, `tcp-many` and `hold` clients, a control-socket client for fast edits, hand-off counters |
//!
//! Binaries: `$DIRECTOR_BIN` / `$LBADM_BIN`, else `target/release/` of the workspace (or of
//! `$CARGO_TARGET_DIR`); `make test` builds them and exports the variables.
//! Environment knobs: `LBTEST_KEEP=1` keeps temp dirs and logs, `LBTEST_HUGEPAGES=0|1` forces
//! the EAL memory scheme, `PYTHON` picks the interpreter for the HTTP servers.

pub mod director;
pub mod hapair;
pub mod http;
pub mod ipvsadm;
pub mod many;
pub mod netns;
pub mod nginx;
pub mod pcapfile;
pub mod probe;
pub mod require;
pub mod ring;
pub mod testbed;
pub mod topo;
pub mod util;

pub use director::{
    director_bin, eal_args, eal_args_layout, eal_memory_args, eal_memory_args_shared, hugepages_available, lbadm_bin,
    DirectorOptions, DirectorProcess, EalLayout,
};
pub use http::{curl_get, curl_post_file, HttpServer, UploadReply};
pub use netns::{ChildGuard, Netns};
pub use require::{require_root_and_tools, serial};
pub use testbed::{OneArmed, RealServerHost, TwoArmed, VIP, VPORT};
pub use topo::Switch;
pub use util::{wait_until, TempDir};
