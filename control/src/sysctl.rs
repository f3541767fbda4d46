//! The IPVS sysctls (`net.ipv4.vs.*`) that change the director's behaviour in direct routing
//! or its connection synchronisation, with the kernel's defaults (ipvs-semantics.md §5.4-5.7,
//! operations.md §3), set by `lbadm sysctl NAME=VALUE`.
//!
//! The director keeps exactly these eighteen: the seven DR switches above, the defense
//! strategies `drop_entry`, `drop_packet`, `secure_tcp` (modes 0-3) with their thresholds
//! `amemthresh` and `am_droprate` (see `dataplane::defense` for what each does on a fixed-size
//! table), and the connection-sync ones `sync_threshold`, `sync_period` (its second value),
//! `sync_refresh_period`, `sync_retries`, `sync_persist_mode`, `sync_version`, `backup_only`.
//! Every other IPVS sysctl is not applicable to a DR-only DPDK director and does not exist
//! (asking for one gives sysctl's "cannot stat" error): `sloppy_sctp` (no SCTP), `conntrack`,
//! `snat_reroute`, `nat_icmp_send` (NAT and netfilter only), `sync_qlen_max`,
//! `sync_sock_size`, `sync_ports` (one sync thread per role, default socket buffers),
//! `ignore_tunneled`, `run_estimation` (rates are always estimated), the `timeout_*` files
//! (absent in current kernels; `--set` sets the timeouts).
//!
//! Values: the kernel accepts any integer for most of these files (and treats non-zero as
//! "on"); the director is stricter and accepts 0/1 for the switches, 0..=3 for
//! `conn_reuse_mode`, `sync_retries` and the three defense modes (as the kernel's
//! `proc_do_defense_mode`), 0..=2147483647 for `amemthresh` and `am_droprate`, 0..=1 for
//! `sync_version`, and answers anything else with sysctl's "Invalid argument".
//! `sync_threshold` is a vector of two integers (threshold, period) as in the kernel: writing
//! one integer sets the threshold only; the threshold must be below a non-zero period. The
//! director counts packets per connection in one byte, so it accepts a period up to 255 and,
//! with period 0, a threshold up to 254 (the kernel: any).
//!
//! Defense modes, as in the kernel: 0 off, 1 automatic (on while memory is short), 2 the same
//! automatic mode while it is on (the kernel rewrites 1 to 2 and back; here the stored value
//! stays what the operator set and [`Sysctls::with_defense_state`] gives the value to show),
//! 3 always on.

use serde::{Deserialize, Serialize};

use crate::error::CtlError;

/// The sysctl key prefix.
pub const SYSCTL_PREFIX: &str = "net.ipv4.vs.";

/// The director's IPVS sysctls. Field docs say what each changes in DR.
///
/// Fields missing from a serialized value take their defaults (older clients and saved dumps
/// stay readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Sysctls {
    /// `expire_nodest_conn` (default 0): when 1, a packet of a connection whose real server
    /// was deleted expires the entry at once and is then treated as new (instead of being
    /// dropped until the entry times out); a new SYN reusing an entry of a weight-0 server is
    /// rescheduled (§3.6, §5.5).
    pub expire_nodest_conn: bool,
    /// `expire_quiescent_template` (default 0): when 1, a persistence template pointing to a
    /// weight-0 server is invalid, so persistent clients move to another server (§3.4).
    pub expire_quiescent_template: bool,
    /// `sloppy_tcp` (default 0): when 1, any non-RST TCP packet without an entry creates a
    /// connection, not only a SYN (§5.4).
    pub sloppy_tcp: bool,
    /// `conn_reuse_mode` (default 1, 0..=3): how a SYN hitting an existing, not
    /// template-controlled entry is handled; bit 0 reschedules entries in TIME_WAIT/CLOSE,
    /// bit 1 also FIN_WAIT entries (the useful setting for DR, §5.5).
    pub conn_reuse_mode: u8,
    /// `schedule_icmp` (default 0): when 1, ICMP errors without an entry may create one
    /// (§5.4).
    pub schedule_icmp: bool,
    /// `cache_bypass` (default 0): when 1, a packet of a fwmark service with no available
    /// server is forwarded to its original destination instead of being refused (§5.6).
    pub cache_bypass: bool,
    /// `pmtu_disc` (default 1): when 1, DF packets larger than the path MTU are refused with
    /// ICMP "fragmentation needed" (§6.2). In the kernel only tunnelling honours 0; the
    /// director forwards by DR only, so it is kept for fidelity.
    pub pmtu_disc: bool,
    /// `sync_threshold`, first value (default 3): a connection is synchronised when its
    /// packet count modulo `sync_period` equals this (operations.md §3).
    pub sync_threshold: u32,
    /// `sync_threshold`, second value: `sync_period` (default 50; 0 = only once, at the
    /// threshold).
    pub sync_period: u32,
    /// `sync_refresh_period` (seconds, default 0): when non-zero, an unchanged connection is
    /// not synchronised again before this period (or half its timeout) has passed.
    pub sync_refresh_period: u32,
    /// `sync_retries` (default 0, 0..=3): resends of an unchanged entry, every
    /// `sync_refresh_period / 8`.
    pub sync_retries: u8,
    /// `sync_persist_mode` (default 0): when 1, connections of persistent services are not
    /// synchronised, only their templates.
    pub sync_persist_mode: u8,
    /// `sync_version` (default 1): the protocol version the master sends.
    pub sync_version: u8,
    /// `backup_only` (default 0): when 1, the director does not forward while its backup
    /// sync daemon runs.
    pub backup_only: bool,
    /// `drop_entry` (default 0, mode 0..=3): while on, a sweep examines 1/32 of each worker's
    /// connection table per second and drops unconfirmed entries (handshakes in SYN_RECV /
    /// SYNACK, templates never assured that control nothing), as the kernel's
    /// `ip_vs_random_dropentry`.
    pub drop_entry: u8,
    /// `drop_packet` (default 0, mode 0..=3): while on, one in `rate` packets that would open
    /// a connection is dropped before scheduling; `rate` is `amemthresh / (amemthresh -
    /// available)` in the automatic modes and `am_droprate` in mode 3.
    pub drop_packet: u8,
    /// `secure_tcp` (default 0, mode 0..=3): while on, the stricter TCP state table is used (in
    /// DR: a SYN puts an entry in SYNACK instead of SYN_RECV).
    pub secure_tcp: u8,
    /// `amemthresh` (default 1024): the automatic modes are on while a worker's connection
    /// table has less free memory than this many 4 KiB pages (free entries × bytes per entry
    /// / 4096), the director's equivalent of the kernel's free memory.
    pub amemthresh: u32,
    /// `am_droprate` (default 10): the drop rate of `drop_packet` mode 3.
    pub am_droprate: u32,
}

/// A sysctl's value as sysctl(8) shows it: one integer, or a vector (`sync_threshold`),
/// printed tab-separated as `/proc` prints vectors; JSON: a number or an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlValue(pub Vec<i64>);

impl From<i64> for SysctlValue {
    fn from(v: i64) -> Self {
        SysctlValue(vec![v])
    }
}

impl std::fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\t")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl Serialize for SysctlValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_i64(*one),
            many => many.serialize(s),
        }
    }
}

/// Largest `sync_period` (the per-connection packet count is one byte).
pub const MAX_SYNC_PERIOD: i64 = 255;
/// Largest `sync_refresh_period` in seconds (the kernel's INT_MAX / HZ at HZ = 1000).
pub const MAX_SYNC_REFRESH_PERIOD: i64 = 2_147_483;

impl Default for Sysctls {
    /// The kernel's defaults.
    fn default() -> Self {
        Sysctls {
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            sloppy_tcp: false,
            conn_reuse_mode: 1,
            schedule_icmp: false,
            cache_bypass: false,
            pmtu_disc: true,
            sync_threshold: 3,
            sync_period: 50,
            sync_refresh_period: 0,
            sync_retries: 0,
            sync_persist_mode: 0,
            sync_version: 1,
            backup_only: false,
            drop_entry: 0,
            drop_packet: 0,
            secure_tcp: 0,
            amemthresh: 1024,
            am_droprate: 10,
        }
    }
}

impl Sysctls {
    /// The short names, sorted (the order `lbadm sysctl` lists them in).
    pub const NAMES: [&'static str; 18] = [
        "am_droprate",
        "amemthresh",
        "backup_only",
        "cache_bypass",
        "conn_reuse_mode",
        "drop_entry",
        "drop_packet",
        "expire_nodest_conn",
        "expire_quiescent_template",
        "pmtu_disc",
        "schedule_icmp",
        "secure_tcp",
        "sloppy_tcp",
        "sync_persist_mode",
        "sync_refresh_period",
        "sync_retries",
        "sync_threshold",
        "sync_version",
    ];

    /// Sysctls whose value is a vector of integers (sysctl(8) prints them tab-separated).
    pub const VECTORS: [&'static str; 1] = ["sync_threshold"];

    /// True when `name` (short) holds a vector.
    pub fn is_vector(name: &str) -> bool {
        Self::VECTORS.contains(&name)
    }

    /// The value of `name` (a short name from [`Sysctls::NAMES`]) as sysctl(8) shows it.
    pub fn value(&self, name: &str) -> Option<SysctlValue> {
        match name {
            "sync_threshold" => Some(SysctlValue(vec![
                i64::from(self.sync_threshold),
                i64::from(self.sync_period),
            ])),
            _ => self.get(name).map(SysctlValue::from),
        }
    }

    /// The values to show while the dataplane's automatic defenses are `on` (memory short) or
    /// not: a defense mode of 1 or 2 reads 2 while on and 1 while off, as the kernel rewrites
    /// it; every other value is unchanged.
    pub fn with_defense_state(mut self, on: bool) -> Sysctls {
        for m in [&mut self.drop_entry, &mut self.drop_packet, &mut self.secure_tcp] {
            if *m == 1 || *m == 2 {
                *m = if on { 2 } else { 1 };
            }
        }
        self
    }

    /// The value of a scalar sysctl `name` (a short name from [`Sysctls::NAMES`]); for a
    /// vector, its first element.
    pub fn get(&self, name: &str) -> Option<i64> {
        let b = |v: bool| Some(i64::from(v));
        match name {
            "am_droprate" => Some(i64::from(self.am_droprate)),
            "amemthresh" => Some(i64::from(self.amemthresh)),
            "cache_bypass" => b(self.cache_bypass),
            "conn_reuse_mode" => Some(i64::from(self.conn_reuse_mode)),
            "drop_entry" => Some(i64::from(self.drop_entry)),
            "drop_packet" => Some(i64::from(self.drop_packet)),
            "secure_tcp" => Some(i64::from(self.secure_tcp)),
            "expire_nodest_conn" => b(self.expire_nodest_conn),
            "expire_quiescent_template" => b(self.expire_quiescent_template),
            "pmtu_disc" => b(self.pmtu_disc),
            "schedule_icmp" => b(self.schedule_icmp),
            "sloppy_tcp" => b(self.sloppy_tcp),
            "backup_only" => b(self.backup_only),
            "sync_threshold" => Some(i64::from(self.sync_threshold)),
            "sync_refresh_period" => Some(i64::from(self.sync_refresh_period)),
            "sync_retries" => Some(i64::from(self.sync_retries)),
            "sync_persist_mode" => Some(i64::from(self.sync_persist_mode)),
            "sync_version" => Some(i64::from(self.sync_version)),
            _ => None,
        }
    }

    /// Sets `name` (short, `net.ipv4.vs.` or `net/ipv4/vs/` form) to `value`. Errors (exit
    /// status 255): unknown name → [`CtlError::sysctl_unknown`]; value out of range (not 0/1,
    /// `conn_reuse_mode` or a defense mode not 0..=3, a threshold negative or above
    /// 2147483647) → [`CtlError::sysctl_invalid`]. On error nothing changes.
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), CtlError> {
        let name = Self::resolve(name)?;
        let invalid = || CtlError::sysctl_invalid(name);
        let flag = |v: i64| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(invalid()),
        };
        let mode = |v: i64| match v {
            0..=3 => Ok(v as u8),
            _ => Err(invalid()),
        };
        let int = |v: i64| match v {
            0..=0x7fff_ffff => Ok(v as u32),
            _ => Err(invalid()),
        };
        match name {
            "am_droprate" => self.am_droprate = int(value)?,
            "amemthresh" => self.amemthresh = int(value)?,
            "cache_bypass" => self.cache_bypass = flag(value)?,
            "conn_reuse_mode" => self.conn_reuse_mode = mode(value)?,
            "drop_entry" => self.drop_entry = mode(value)?,
            "drop_packet" => self.drop_packet = mode(value)?,
            "secure_tcp" => self.secure_tcp = mode(value)?,
            "expire_nodest_conn" => self.expire_nodest_conn = flag(value)?,
            "expire_quiescent_template" => self.expire_quiescent_template = flag(value)?,
            "pmtu_disc" => self.pmtu_disc = flag(value)?,
            "schedule_icmp" => self.schedule_icmp = flag(value)?,
            "sloppy_tcp" => self.sloppy_tcp = flag(value)?,
            "backup_only" => self.backup_only = flag(value)?,
            // One integer written to a vector sets its first element (proc_dointvec).
            "sync_threshold" => return self.set_values(name, &[value]),
            "sync_refresh_period" => {
                self.sync_refresh_period = match value {
                    0..=MAX_SYNC_REFRESH_PERIOD => value as u32,
                    _ => return Err(invalid()),
                }
            }
            "sync_retries" => {
                self.sync_retries = match value {
                    0..=3 => value as u8,
                    _ => return Err(invalid()),
                }
            }
            "sync_persist_mode" => self.sync_persist_mode = u8::from(flag(value)?),
            "sync_version" => self.sync_version = u8::from(flag(value)?),
            _ => return Err(CtlError::sysctl_unknown(name)),
        }
        Ok(())
    }

    /// Sets `name` from the integers of its value (sysctl(8)'s `NAME="3 50"`). A scalar
    /// needs exactly one; a vector takes one to its length (the rest keep their values).
    /// Errors as [`Sysctls::set`]; on error nothing changes.
    pub fn set_values(&mut self, name: &str, values: &[i64]) -> Result<(), CtlError> {
        let name = Self::resolve(name)?;
        let invalid = || CtlError::sysctl_invalid(name);
        if !Self::is_vector(name) {
            return match values {
                [v] => self.set(name, *v),
                _ => Err(invalid()),
            };
        }
        // sync_threshold: [threshold, period].
        let (threshold, period) = match values {
            [t] => (*t, i64::from(self.sync_period)),
            [t, p] => (*t, *p),
            _ => return Err(invalid()),
        };
        let ok = (0..=MAX_SYNC_PERIOD).contains(&period)
            && threshold >= 0
            && if period == 0 { threshold < MAX_SYNC_PERIOD } else { threshold < period };
        if !ok {
            return Err(invalid());
        }
        self.sync_threshold = threshold as u32;
        self.sync_period = period as u32;
        Ok(())
    }

    /// Every sysctl with its value, sorted by name.
    pub fn entries(&self) -> Vec<(&'static str, SysctlValue)> {
        Self::NAMES
            .iter()
            .map(|n| (*n, self.value(n).unwrap_or(SysctlValue(Vec::new()))))
            .collect()
    }

    /// The full key of a short name (`net.ipv4.vs.NAME`).
    pub fn key(name: &str) -> String {
        format!("{SYSCTL_PREFIX}{name}")
    }

    /// Resolves a key as sysctl(8) accepts it — `NAME`, `net.ipv4.vs.NAME` or
    /// `net/ipv4/vs/NAME` — to its short name, or the "cannot stat /proc/sys/..." error.
    pub fn resolve(key: &str) -> Result<&'static str, CtlError> {
        let dotted = key.trim().trim_start_matches('/').replace('/', ".");
        let short = dotted.strip_prefix(SYSCTL_PREFIX).unwrap_or(&dotted);
        Self::NAMES
            .iter()
            .copied()
            .find(|n| *n == short)
            .ok_or_else(|| CtlError::sysctl_unknown(key))
    }

    /// The `/proc/sys` path sysctl(8) would open for `key` (bare names are taken as IPVS
    /// names): `foo` → `/proc/sys/net/ipv4/vs/foo`, `net.core.x` → `/proc/sys/net/core/x`.
    pub fn proc_path(key: &str) -> String {
        let dotted = key.trim().trim_start_matches('/').replace('/', ".");
        let full = if dotted.contains('.') {
            dotted
        } else {
            Self::key(&dotted)
        };
        format!("/proc/sys/{}", full.replace('.', "/"))
    }

    /// Parses the integers of a value as the kernel's vector handler does (blank-separated,
    /// each as [`Sysctls::parse_value`]); none is sysctl's "Invalid argument" for `key`.
    pub fn parse_values(key: &str, value: &str) -> Result<Vec<i64>, CtlError> {
        let v: Vec<i64> = value
            .split_whitespace()
            .map(|w| Self::parse_value(key, w))
            .collect::<Result<_, _>>()?;
        if v.is_empty() {
            return Err(CtlError::sysctl_invalid(Self::resolve(key)?));
        }
        Ok(v)
    }

    /// Parses a value as the kernel's integer sysctl handler does (surrounding blanks allowed,
    /// optional `-`, decimal digits); anything else is sysctl's "Invalid argument" for `key`.
    pub fn parse_value(key: &str, value: &str) -> Result<i64, CtlError> {
        let v = value.trim();
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            let name = Self::resolve(key)?;
            return Err(CtlError::sysctl_invalid(name));
        }
        match v.parse::<i64>() {
            Ok(n) => Ok(n),
            Err(_) => Err(CtlError::sysctl_invalid(Self::resolve(key)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_kernel() {
        let s = Sysctls::default();
        let shown: Vec<(&str, String)> =
            s.entries().into_iter().map(|(n, v)| (n, v.to_string())).collect();
        let want = [
            ("am_droprate", "10"),
            ("amemthresh", "1024"),
            ("backup_only", "0"),
            ("cache_bypass", "0"),
            ("conn_reuse_mode", "1"),
            ("drop_entry", "0"),
            ("drop_packet", "0"),
            ("expire_nodest_conn", "0"),
            ("expire_quiescent_template", "0"),
            ("pmtu_disc", "1"),
            ("schedule_icmp", "0"),
            ("secure_tcp", "0"),
            ("sloppy_tcp", "0"),
            ("sync_persist_mode", "0"),
            ("sync_refresh_period", "0"),
            ("sync_retries", "0"),
            ("sync_threshold", "3\t50"),
            ("sync_version", "1"),
        ];
        assert_eq!(shown, want.iter().map(|(n, v)| (*n, v.to_string())).collect::<Vec<_>>());
        let mut sorted = Sysctls::NAMES;
        sorted.sort_unstable();
        assert_eq!(sorted, Sysctls::NAMES);
    }

    #[test]
    fn set_validates_and_accepts_every_key_form() {
        let mut s = Sysctls::default();
        s.set("sloppy_tcp", 1).unwrap();
        s.set("net.ipv4.vs.expire_nodest_conn", 1).unwrap();
        s.set("net/ipv4/vs/conn_reuse_mode", 3).unwrap();
        s.set("pmtu_disc", 0).unwrap();
        assert!(s.sloppy_tcp && s.expire_nodest_conn && !s.pmtu_disc);
        assert_eq!(s.conn_reuse_mode, 3);
        let before = s;
        let e = s.set("sloppy_tcp", 2).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            (
                "sysctl: setting key \"net.ipv4.vs.sloppy_tcp\": Invalid argument",
                255
            )
        );
        assert!(s.set("conn_reuse_mode", 4).is_err());
        assert!(s.set("conn_reuse_mode", -1).is_err());
        let e = s.set("foo", 1).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.exit_code),
            (
                "sysctl: cannot stat /proc/sys/net/ipv4/vs/foo: No such file or directory",
                255
            )
        );
        let e = s.set("net.ipv4.vs.sloppy_sctp", 1).unwrap_err();
        assert_eq!(
            e.message,
            "sysctl: cannot stat /proc/sys/net/ipv4/vs/sloppy_sctp: No such file or directory"
        );
        for (name, bad) in [("drop_entry", 4), ("drop_packet", -1), ("secure_tcp", 9), ("amemthresh", -1), ("am_droprate", 1 << 31)] {
            let e = s.set(name, bad).unwrap_err();
            assert!(e.message.ends_with("Invalid argument"), "{name}={bad}: {}", e.message);
        }
        let e = Sysctls::resolve("net.core.somaxconn").unwrap_err();
        assert_eq!(
            e.message,
            "sysctl: cannot stat /proc/sys/net/core/somaxconn: No such file or directory"
        );
        assert_eq!(s, before, "failed sets change nothing");
    }

    #[test]
    fn sync_sysctls_follow_the_kernel_ranges() {
        let mut s = Sysctls::default();
        s.set_values("sync_threshold", &[5, 100]).unwrap();
        assert_eq!((s.sync_threshold, s.sync_period), (5, 100));
        // One integer sets the threshold and keeps the period (proc_dointvec on a vector).
        s.set_values("net.ipv4.vs.sync_threshold", &[7]).unwrap();
        assert_eq!((s.sync_threshold, s.sync_period), (7, 100));
        s.set("sync_threshold", 8).unwrap();
        assert_eq!((s.sync_threshold, s.sync_period), (8, 100));
        // Period 0: "only once at the threshold".
        s.set_values("sync_threshold", &[3, 0]).unwrap();
        assert_eq!(s.value("sync_threshold"), Some(SysctlValue(vec![3, 0])));
        let before = s;
        for bad in [&[50i64, 50][..], &[-1, 50], &[3, -1], &[3, 256], &[3, 50, 1], &[], &[255, 0]] {
            assert!(s.set_values("sync_threshold", bad).is_err(), "{bad:?}");
        }
        assert_eq!(s, before);
        s.set("sync_retries", 3).unwrap();
        assert!(s.set("sync_retries", 4).is_err());
        s.set("sync_refresh_period", 10).unwrap();
        assert!(s.set("sync_refresh_period", -1).is_err());
        s.set("sync_version", 0).unwrap();
        assert!(s.set("sync_version", 2).is_err());
        s.set("sync_persist_mode", 1).unwrap();
        s.set("backup_only", 1).unwrap();
        assert!(s.backup_only && s.sync_persist_mode == 1 && s.sync_version == 0);
        assert!(s.set_values("sloppy_tcp", &[1, 1]).is_err(), "a scalar takes one value");
        assert_eq!(Sysctls::parse_values("sync_threshold", " 3\t 50 "), Ok(vec![3, 50]));
        assert!(Sysctls::parse_values("sync_threshold", "  ").is_err());
        // JSON of a vector is an array; old serialized values without the new fields load.
        assert_eq!(serde_json::to_string(&SysctlValue(vec![3, 50])).unwrap(), "[3,50]");
        assert_eq!(serde_json::to_string(&SysctlValue::from(1)).unwrap(), "1");
        let old: Sysctls = serde_json::from_str(r#"{"sloppy_tcp":true}"#).unwrap();
        assert!(old.sloppy_tcp && old.sync_period == 50 && old.sync_version == 1);
    }

    #[test]
    fn defense_sysctls_take_the_kernel_ranges_and_show_the_automatic_state() {
        let mut s = Sysctls::default();
        s.set("net.ipv4.vs.drop_entry", 1).unwrap();
        s.set("drop_packet", 3).unwrap();
        s.set("secure_tcp", 2).unwrap();
        s.set("amemthresh", 65536).unwrap();
        s.set("am_droprate", 0).unwrap();
        assert_eq!((s.drop_entry, s.drop_packet, s.secure_tcp, s.amemthresh, s.am_droprate), (1, 3, 2, 65536, 0));
        // Automatic modes read 2 while the defense is on and 1 while it is off; 0 and 3 stay.
        let on = s.with_defense_state(true);
        assert_eq!((on.drop_entry, on.drop_packet, on.secure_tcp), (2, 3, 2));
        let off = s.with_defense_state(false);
        assert_eq!((off.drop_entry, off.drop_packet, off.secure_tcp), (1, 3, 1));
        // An old dump without the new fields still reads, with the defaults.
        let old = r#"{"expire_nodest_conn":false,"expire_quiescent_template":false,"sloppy_tcp":true,
            "conn_reuse_mode":1,"schedule_icmp":false,"cache_bypass":false,"pmtu_disc":true}"#;
        let d: Sysctls = serde_json::from_str(old).unwrap();
        assert!(d.sloppy_tcp);
        assert_eq!((d.drop_entry, d.amemthresh, d.am_droprate), (0, 1024, 10));
    }

    #[test]
    fn value_parsing() {
        assert_eq!(Sysctls::parse_value("sloppy_tcp", " 1 "), Ok(1));
        assert_eq!(Sysctls::parse_value("sloppy_tcp", "-1"), Ok(-1));
        assert_eq!(Sysctls::parse_value("sloppy_tcp", "01"), Ok(1));
        for bad in ["", "x", "1x", "+1", "1.0", "99999999999999999999"] {
            let e = Sysctls::parse_value("sloppy_tcp", bad).unwrap_err();
            assert_eq!(
                e.message, "sysctl: setting key \"net.ipv4.vs.sloppy_tcp\": Invalid argument",
                "{bad:?}"
            );
        }
        // The name is checked first.
        assert!(Sysctls::parse_value("nope", "x")
            .unwrap_err()
            .message
            .contains("cannot stat"));
    }
}
