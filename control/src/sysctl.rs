//! The IPVS sysctls (`net.ipv4.vs.*`) that change the director's behaviour in direct routing,
//! with the kernel's defaults (ipvs-semantics.md §5.4-5.7), set by `lbadm sysctl NAME=VALUE`.
//!
//! The director keeps exactly these seven; every other IPVS sysctl is not applicable to a
//! DR-only DPDK director and does not exist (asking for one gives sysctl's "cannot stat"
//! error): `sloppy_sctp` (no SCTP), `secure_tcp`, `drop_entry`, `drop_packet`, `amemthresh`,
//! `am_droprate` (defense against kernel memory pressure; the director's tables are fixed-size
//! and refuse new entries when full), `conntrack`, `snat_reroute`, `nat_icmp_send` (NAT and
//! netfilter only), `backup_only`, `sync_*` (no sync daemon), `ignore_tunneled`, `run_estimation`
//! (rates are always estimated), the `timeout_*` files (absent in current kernels; `--set`
//! sets the timeouts).
//!
//! Values: the kernel accepts any integer for these files (and treats non-zero as "on"); the
//! director is stricter and accepts 0/1 for the switches and 0..=3 for `conn_reuse_mode`,
//! answering anything else with sysctl's "Invalid argument".

use serde::{Deserialize, Serialize};

use crate::error::CtlError;

/// The sysctl key prefix.
pub const SYSCTL_PREFIX: &str = "net.ipv4.vs.";

/// The director's IPVS sysctls. Field docs say what each changes in DR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

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
        }
    }
}

impl Sysctls {
    /// The short names, sorted (the order `lbadm sysctl` lists them in).
    pub const NAMES: [&'static str; 7] = [
        "cache_bypass",
        "conn_reuse_mode",
        "expire_nodest_conn",
        "expire_quiescent_template",
        "pmtu_disc",
        "schedule_icmp",
        "sloppy_tcp",
    ];

    /// The value of `name` (a short name from [`Sysctls::NAMES`]).
    pub fn get(&self, name: &str) -> Option<i64> {
        let b = |v: bool| Some(i64::from(v));
        match name {
            "cache_bypass" => b(self.cache_bypass),
            "conn_reuse_mode" => Some(i64::from(self.conn_reuse_mode)),
            "expire_nodest_conn" => b(self.expire_nodest_conn),
            "expire_quiescent_template" => b(self.expire_quiescent_template),
            "pmtu_disc" => b(self.pmtu_disc),
            "schedule_icmp" => b(self.schedule_icmp),
            "sloppy_tcp" => b(self.sloppy_tcp),
            _ => None,
        }
    }

    /// Sets `name` (short, `net.ipv4.vs.` or `net/ipv4/vs/` form) to `value`. Errors (exit
    /// status 255): unknown name → [`CtlError::sysctl_unknown`]; value out of range (not 0/1,
    /// `conn_reuse_mode` not 0..=3) → [`CtlError::sysctl_invalid`]. On error nothing changes.
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), CtlError> {
        let name = Self::resolve(name)?;
        let invalid = || CtlError::sysctl_invalid(name);
        let flag = |v: i64| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(invalid()),
        };
        match name {
            "cache_bypass" => self.cache_bypass = flag(value)?,
            "conn_reuse_mode" => {
                self.conn_reuse_mode = match value {
                    0..=3 => value as u8,
                    _ => return Err(invalid()),
                }
            }
            "expire_nodest_conn" => self.expire_nodest_conn = flag(value)?,
            "expire_quiescent_template" => self.expire_quiescent_template = flag(value)?,
            "pmtu_disc" => self.pmtu_disc = flag(value)?,
            "schedule_icmp" => self.schedule_icmp = flag(value)?,
            "sloppy_tcp" => self.sloppy_tcp = flag(value)?,
            _ => return Err(CtlError::sysctl_unknown(name)),
        }
        Ok(())
    }

    /// Every sysctl with its value, sorted by name.
    pub fn entries(&self) -> Vec<(&'static str, i64)> {
        Self::NAMES
            .iter()
            .map(|n| (*n, self.get(n).unwrap_or_default()))
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
        assert_eq!(
            s.entries(),
            vec![
                ("cache_bypass", 0),
                ("conn_reuse_mode", 1),
                ("expire_nodest_conn", 0),
                ("expire_quiescent_template", 0),
                ("pmtu_disc", 1),
                ("schedule_icmp", 0),
                ("sloppy_tcp", 0),
            ]
        );
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
        let e = s.set("net.ipv4.vs.amemthresh", 1).unwrap_err();
        assert_eq!(
            e.message,
            "sysctl: cannot stat /proc/sys/net/ipv4/vs/amemthresh: No such file or directory"
        );
        let e = Sysctls::resolve("net.core.somaxconn").unwrap_err();
        assert_eq!(
            e.message,
            "sysctl: cannot stat /proc/sys/net/core/somaxconn: No such file or directory"
        );
        assert_eq!(s, before, "failed sets change nothing");
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
