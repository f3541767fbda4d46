//! Generates DPDK bindings at build time and compiles the C shim.
//!
//! DPDK is found with pkg-config (`libdpdk`, 22.11). Bindings come from bindgen over the
//! installed headers with a strict allowlist: only the `rte_*` functions, types and constants
//! the dataplane uses, plus the shim's `shim_*` functions. Nothing is hand-transcribed.
//! Shared linking is the default; the `static` feature links DPDK statically with a curated
//! list of PMDs pulled in whole-archive (their constructors register the drivers).

use std::env;
use std::path::PathBuf;

/// PMDs and libraries a static build keeps whole (driver registration runs from constructors).
const STATIC_WHOLE_ARCHIVE: &[&str] = &[
    "rte_net_ring",
    "rte_net_af_packet",
    "rte_net_af_xdp",
    "rte_net_memif",
    "rte_net_pcap",
    "rte_net_null",
    "rte_net_tap",
    "rte_net_virtio",
    "rte_net_ixgbe",
    "rte_net_i40e",
    "rte_net_ice",
    "rte_net_mlx5",
    "rte_mempool_ring",
    "rte_bus_vdev",
    "rte_bus_pci",
];

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let statik = env::var_os("CARGO_FEATURE_STATIC").is_some();
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .statik(statik)
        .cargo_metadata(!statik)
        .probe("libdpdk")
        .expect("libdpdk (DPDK 22.11) not found by pkg-config: install libdpdk-dev");

    if statik {
        emit_static_links();
    } else {
        // rte_eth_from_ring lives in the ring PMD, which pkg-config's shared --libs omits.
        println!("cargo:rustc-link-lib=dylib=rte_net_ring");
        // rte_vdev_init (hot-plugging the kernel leg's net_tap ports) lives in the vdev bus
        // driver, which pkg-config's shared --libs omits as well.
        println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
    }

    let mut build = cc::Build::new();
    build.file("shim/shim.c").include("shim").warnings(true).opt_level(2);
    // Callgrind client requests for benchmarks, when valgrind's headers are installed.
    if std::path::Path::new("/usr/include/valgrind/callgrind.h").exists() {
        build.define("HAVE_CALLGRIND", None);
    }
    for p in &lib.include_paths {
        build.include(p);
    }
    // DPDK's headers need rte_config.h first and SSE4.2 for their inline helpers.
    build.flag("-include").flag("rte_config.h").flag("-march=corei7");
    build.compile("director_shim");

    let mut builder = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_arg("-include")
        .clang_arg("rte_config.h")
        .clang_arg("-march=corei7")
        .allowlist_function("shim_.*")
        .allowlist_function(
            "rte_(eal_init|eal_cleanup|eal_process_type|socket_id|lcore_count|get_main_lcore|\
             get_next_lcore|eal_remote_launch|eal_wait_lcore|eal_mp_wait_lcore|lcore_to_socket_id|\
             get_tsc_hz|strerror|version|delay_us_block|\
             eth_dev_count_avail|eth_dev_info_get|eth_dev_configure|eth_rx_queue_setup|\
             eth_tx_queue_setup|eth_dev_start|eth_dev_stop|eth_dev_close|eth_macaddr_get|\
             eth_link_get_nowait|eth_stats_get|eth_stats_reset|eth_promiscuous_enable|\
             eth_allmulticast_enable|eth_dev_get_mtu|eth_dev_set_mtu|eth_dev_get_name_by_port|\
             eth_dev_socket_id|eth_dev_rss_hash_update|eth_dev_rss_reta_update|eth_dev_rss_hash_conf_get|\
             eth_dev_is_valid_port|eth_find_next_owned_by|eth_from_ring|eth_from_rings|\
             mempool_free|ring_create|ring_free|log_set_global_level|\
             pdump_init|pdump_uninit|set_application_usage_hook|\
             telemetry_register_cmd|tel_data_start_dict|tel_data_start_array|tel_data_string|\
             tel_data_add_dict_string|tel_data_add_dict_u64|tel_data_add_dict_int|tel_data_add_dict_container|\
             tel_data_add_array_string|tel_data_add_array_u64|tel_data_add_array_int|tel_data_alloc|tel_data_free|\
             vdev_init|vdev_uninit|eth_dev_get_port_by_name|eth_dev_default_mac_addr_set)",
        )
        .allowlist_type(
            "rte_(eth_conf|eth_dev_info|eth_stats|ether_addr|eth_link|eth_rxconf|eth_txconf|\
             eth_rss_conf|eth_rss_reta_entry64|mbuf|mempool|ring|lcore_state_t|proc_type_t|eth_rx_mq_mode|eth_tx_mq_mode|\
             tel_data|tel_value_type)",
        )
        .allowlist_var(
            "RTE_(MAX_ETHPORTS|MAX_LCORE|ETHER_ADDR_LEN|ETH_LINK_UP|ETH_LINK_DOWN|ETH_SPEED_NUM_NONE|\
             RING_F_SP_ENQ|RING_F_SC_DEQ|MEMPOOL_CACHE_MAX_SIZE|LCORE_ID_ANY|SOCKET_ID_ANY|\
             LOG_(EMERG|ALERT|CRIT|ERR|WARNING|NOTICE|INFO|DEBUG)|PKTMBUF_HEADROOM|\
             ETH_MQ_RX_RSS|ETH_MQ_RX_NONE|TEL_MAX_STRING_LEN|TEL_MAX_DICT_ENTRIES|TEL_MAX_ARRAY_ENTRIES)",
        )
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("RING_F_(SP_ENQ|SC_DEQ)")
        // Packed/aligned DPDK structs: read fields by value; never derive Copy on mbufs.
        .no_copy("rte_mbuf")
        .no_copy("rte_mempool")
        .no_copy("rte_ring")
        .opaque_type("rte_mempool")
        .opaque_type("rte_ring")
        .opaque_type("rte_mbuf")
        .opaque_type("rte_tel_data")
        .derive_default(true)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .layout_tests(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for p in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", p.display()));
    }
    let bindings = builder.generate().expect("bindgen failed on DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("writing bindings");
}

/// Static linking: the curated PMDs whole-archive, every other DPDK archive pkg-config lists
/// as a plain static library (the linker keeps only what is referenced, so unlisted drivers
/// drop out), and the system libraries as shared libraries where a linkable copy exists.
///
/// pkg-config's `--static --libs libdpdk` names the driver archives as `-l:librte_X.a` inside
/// `-Wl,--whole-archive … --no-whole-archive` and the rest as `-lrte_X`; `-Wl,…` flags are
/// dropped (rustc cannot pass them through `rustc-link-lib`), and system libraries that have
/// no `libX.so`/`libX.a` on the search path (rdma-core provider plugins such as
/// `-lbnxt_re-rdmav34`, which only exist as versioned plugin objects) are skipped.
fn emit_static_links() {
    let out = std::process::Command::new("pkg-config")
        .args(["--static", "--libs", "libdpdk"])
        .output()
        .expect("pkg-config --static --libs libdpdk");
    let libs = String::from_utf8_lossy(&out.stdout);
    let mut search: Vec<PathBuf> = Vec::new();
    for tok in libs.split_whitespace() {
        if let Some(dir) = tok.strip_prefix("-L") {
            search.push(PathBuf::from(dir));
        }
    }
    for d in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/local/lib"] {
        search.push(PathBuf::from(d));
    }
    for dir in &search {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    let linkable = |name: &str, ext: &str| search.iter().any(|d| d.join(format!("lib{name}.{ext}")).exists());
    let mut seen = std::collections::HashSet::new();
    for w in STATIC_WHOLE_ARCHIVE {
        if linkable(w, "a") {
            println!("cargo:rustc-link-lib=static:+whole-archive,-bundle={w}");
        } else {
            println!("cargo:warning=static DPDK: lib{w}.a not found, PMD left out");
        }
        seen.insert(w.to_string());
    }
    for tok in libs.split_whitespace() {
        let name = if let Some(file) = tok.strip_prefix("-l:") {
            // -l:librte_net_ring.a
            match file.strip_prefix("lib").and_then(|f| f.strip_suffix(".a")) {
                Some(n) => n.to_string(),
                None => continue,
            }
        } else if let Some(n) = tok.strip_prefix("-l") {
            n.to_string()
        } else if tok == "-pthread" {
            "pthread".to_string()
        } else {
            continue;
        };
        if name.is_empty() || !seen.insert(name.clone()) {
            continue;
        }
        if name.starts_with("rte_") {
            if linkable(&name, "a") {
                println!("cargo:rustc-link-lib=static:-bundle={name}");
            }
        } else if linkable(&name, "so") {
            println!("cargo:rustc-link-lib=dylib={name}");
        } else if linkable(&name, "a") {
            println!("cargo:rustc-link-lib=static:-bundle={name}");
        }
    }
}
