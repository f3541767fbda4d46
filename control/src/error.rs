//! `CtlError`: the one error type of the control plane, carrying the exact text `ipvsadm` (or
//! `ip` for address commands, `iptables` for mark rules, `sysctl` for sysctls) prints and the
//! exit status it exits with.
//!
//! Invariants: `message` is one line without the trailing newline (the CLI adds it);
//! `exit_code` is one of [`EXIT_LIST_FAILURE`] (1), [`EXIT_INPUT`] (2) or [`EXIT_REFUSED`]
//! (255), following ipvsadm: 2 for user-input errors found before the kernel is asked, 255 for
//! operations the kernel (here: the director) refuses, 1 for listing failures. The constructors
//! below are the only place the ipvsadm message texts are spelled, so they stay byte-exact.
//! The iptables and sysctl errors keep those tools' texts and statuses (iptables: 1 for a
//! missing rule or a bad index, 2 for parameter problems; sysctl: 255).

use serde::{Deserialize, Serialize};

/// Exit status for listing failures (`-L -t` of a missing service) and transport failures.
pub const EXIT_LIST_FAILURE: i32 = 1;
/// Exit status for user-input errors detected before the director is asked.
pub const EXIT_INPUT: i32 = 2;
/// Exit status for operations refused by the director (ipvsadm's kernel-side errors).
pub const EXIT_REFUSED: i32 = 255;

/// An error with ipvsadm's message text and exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CtlError {
    /// The message printed to stderr (one line, no trailing newline).
    pub message: String,
    /// The process exit status `lbadm` exits with.
    pub exit_code: i32,
}

impl CtlError {
    /// An error with an explicit message and exit status.
    pub fn new(message: impl Into<String>, exit_code: i32) -> Self {
        CtlError {
            message: message.into(),
            exit_code,
        }
    }

    /// A user-input error (exit status 2), e.g. "illegal weight specified".
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(message, EXIT_INPUT)
    }

    /// An operation the director refuses (exit status 255).
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(message, EXIT_REFUSED)
    }

    /// A listing or transport failure (exit status 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(message, EXIT_LIST_FAILURE)
    }

    /// EEXIST on `-A`: "Service already exists" (255).
    pub fn service_exists() -> Self {
        Self::refused("Service already exists")
    }

    /// ENOENT on `-A`/`-E`: "Scheduler or persistence engine not found" (255).
    pub fn scheduler_not_found() -> Self {
        Self::refused("Scheduler or persistence engine not found")
    }

    /// ESRCH on `-E`/`-D`/`-Z`: "No such service" (255).
    pub fn no_such_service() -> Self {
        Self::refused("No such service")
    }

    /// ESRCH on `-L -t|-u|-f` of a missing service: "No such service" (exit status 1).
    pub fn no_such_service_listing() -> Self {
        Self::failure("No such service")
    }

    /// ESRCH on `-a`/`-e`/`-d`: "Service not defined" (255).
    pub fn service_not_defined() -> Self {
        Self::refused("Service not defined")
    }

    /// EEXIST on `-a`: "Destination already exists" (255).
    pub fn destination_exists() -> Self {
        Self::refused("Destination already exists")
    }

    /// ENOENT on `-e`/`-d`: "No such destination" (255).
    pub fn no_such_destination() -> Self {
        Self::refused("No such destination")
    }

    /// ERANGE (l_threshold > u_threshold, weight out of range): strerror text (255).
    pub fn out_of_range() -> Self {
        Self::refused("Numerical result out of range")
    }

    /// EINVAL (e.g. a real server address that is not unicast) (255).
    pub fn invalid_operation() -> Self {
        Self::refused("Invalid operation.  Possibly wrong module version, address not unicast, ...")
    }

    /// ESRCH on `--stop-daemon`: "No daemon is running" (255).
    pub fn no_daemon() -> Self {
        Self::refused("No daemon is running")
    }

    /// EEXIST on `--start-daemon` of a role already running: "Daemon has already run" (255).
    pub fn daemon_running() -> Self {
        Self::refused("Daemon has already run")
    }

    /// `-A`/`-E` of a non-persistent port-0 address service (exit status 2).
    pub fn zero_port() -> Self {
        Self::input("Zero port specified for non-persistent service")
    }

    /// `-o` on a non-UDP address service (exit status 2).
    pub fn ops_udp_only() -> Self {
        Self::input("One-Packet Scheduling is only for UDP virtual services")
    }

    /// "invalid timeout value `X' specified" (exit status 2).
    pub fn invalid_timeout(value: &str) -> Self {
        Self::input(format!("invalid timeout value `{value}' specified"))
    }

    /// "invalid fwmark value `X' specified" (exit status 2).
    pub fn invalid_fwmark(value: &str) -> Self {
        Self::input(format!("invalid fwmark value `{value}' specified"))
    }

    /// ipvsadm's answer when the first option is not a command (exit status 255).
    pub fn try_help(prog: &str) -> Self {
        Self::refused(format!(
            "Try `{prog} -h' or '{prog} --help' for more information."
        ))
    }

    /// popt's "unknown option" error (exit status 255).
    pub fn unknown_option(option: &str) -> Self {
        Self::refused(format!("{option}: unknown option"))
    }

    /// popt's "missing argument" error (exit status 255).
    pub fn missing_argument(option: &str) -> Self {
        Self::refused(format!("{option}: missing argument"))
    }

    /// popt's error for `--flag=value` on an option without argument (exit status 255).
    pub fn unwanted_argument(option: &str) -> Self {
        Self::refused(format!("{option}: option does not take an argument"))
    }

    /// The real-server slot space is exhausted (255).
    pub fn server_table_full(max: u32, in_trash: usize) -> Self {
        Self::refused(format!(
            "Real server table full: all {max} server slots are in use ({in_trash} held by \
             recently deleted servers, freed 120 s after their last connection ends)"
        ))
    }

    /// `addr add` of an address already on that port, as `ip` says it (exit status 2).
    pub fn addr_exists() -> Self {
        Self::input("RTNETLINK answers: File exists")
    }

    /// `addr del` of an address not on that port, as `ip` says it (exit status 2).
    pub fn addr_not_found() -> Self {
        Self::input("RTNETLINK answers: Cannot assign requested address")
    }

    /// `addr add|del ... dev X` with an unknown port name, as `ip` says it (exit status 1).
    pub fn no_such_device(dev: &str) -> Self {
        Self::failure(format!("Cannot find device \"{dev}\""))
    }

    /// `iptables -D` of a rule that does not exist (exit status 1).
    pub fn mark_rule_not_found() -> Self {
        Self::failure("iptables: Bad rule (does a matching rule exist in that chain?).")
    }

    /// `iptables -I CHAIN N` with N beyond the end of the chain + 1 (exit status 1).
    pub fn mark_insert_index_too_big() -> Self {
        Self::failure("iptables: Index of insertion too big.")
    }

    /// `iptables -D CHAIN N` with N beyond the end of the chain (exit status 1).
    pub fn mark_delete_index_too_big() -> Self {
        Self::failure("iptables: Index of deletion too big.")
    }

    /// A rule number that is not a positive integer (exit status 2).
    pub fn invalid_rule_number(value: &str) -> Self {
        Self::input(format!("Invalid rule number `{value}'"))
    }

    /// `--dport` without `-p tcp|udp` (exit status 2). iptables only knows `--dport` once a
    /// protocol match is loaded, so it says "unknown option"; the reason is added.
    pub fn dport_needs_proto() -> Self {
        Self::input("unknown option \"--dport\" (--dport needs -p tcp or -p udp)")
    }

    /// A mark rule's `-i` names no port of the director (exit status 2).
    pub fn unknown_mark_dev(dev: &str, ports: &[String]) -> Self {
        let ports = if ports.is_empty() {
            "none".to_string()
        } else {
            ports.join(", ")
        };
        Self::input(format!(
            "unknown interface \"{dev}\": mark rules match the director's DPDK ports \
             ({ports}); use -i dpdkN or omit -i"
        ))
    }

    /// The mark rule list is full (exit status 255).
    pub fn mark_table_full(max: usize) -> Self {
        Self::refused(format!("Mark rule table full: at most {max} rules"))
    }

    /// sysctl's answer for a key that does not exist (exit status 255).
    pub fn sysctl_unknown(key: &str) -> Self {
        Self::refused(format!(
            "sysctl: cannot stat {}: No such file or directory",
            crate::sysctl::Sysctls::proc_path(key)
        ))
    }

    /// sysctl's answer for a value the key does not accept (exit status 255).
    pub fn sysctl_invalid(name: &str) -> Self {
        Self::refused(format!(
            "sysctl: setting key \"{}\": Invalid argument",
            crate::sysctl::Sysctls::key(name)
        ))
    }

    /// sysctl's answer for `-w` without `=` (exit status 255).
    pub fn sysctl_malformed(setting: &str) -> Self {
        Self::refused(format!(
            "sysctl: \"{setting}\" must be of the form name=value"
        ))
    }

    /// A malformed or unsupported socket request (exit status 1).
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::failure(message)
    }
}
