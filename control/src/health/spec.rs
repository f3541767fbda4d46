//! What a health checker is: the definitions shared by `lbadm check`, keepalived.conf and the
//! checker engine, with keepalived's defaults (keepalived/check/check_api.c, check_data.c).
//!
//! Invariants: a [`CheckSpec`] is complete (every timing resolved, no "inherit" markers), so
//! the engine never looks anything up; [`CheckSpec::validate`] is the one place its values
//! are checked, whichever path it came by. Durations are microseconds, keepalived's timer
//! resolution. Plain data, no concurrency.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::CtlError;

/// One second in microseconds.
pub const SEC: u64 = 1_000_000;
/// keepalived's default `delay_loop` (KEEPALIVED_DEFAULT_DELAY).
pub const DEFAULT_DELAY_LOOP: u64 = 60 * SEC;
/// keepalived's default `connect_timeout` (alloc_vs).
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 5 * SEC;
/// Longest timer accepted anywhere (one year); keepalived's own limits are higher but any
/// longer period is a typo.
pub const MAX_TIMER: u64 = 365 * 86_400 * SEC;
/// Longest script or notify command line.
pub const MAX_COMMAND: usize = 4096;
/// Most URLs one HTTP_GET/SSL_GET checker may have.
pub const MAX_URLS: usize = 64;

/// Stable checker id, allocated by the configuration and never reused while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckId(pub u64);

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// HTTP request version (`http_protocol`): 1.0 (default), 1.0 with `Connection: close`, 1.1
/// (which also sends `Connection: close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HttpProtocol {
    /// `GET ... HTTP/1.0`.
    #[default]
    V10,
    /// `GET ... HTTP/1.0` + `Connection: close`.
    V10C,
    /// `GET ... HTTP/1.1` + `Connection: close`.
    V11,
}

impl HttpProtocol {
    /// The keepalived spelling (`1.0`, `1.0C`, `1.1`).
    pub fn name(self) -> &'static str {
        match self {
            HttpProtocol::V10 => "1.0",
            HttpProtocol::V10C => "1.0C",
            HttpProtocol::V11 => "1.1",
        }
    }

    /// Parses keepalived's spelling (`1.0C` also as `1.0c`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1.0" => Some(HttpProtocol::V10),
            "1.0C" | "1.0c" => Some(HttpProtocol::V10C),
            "1.1" => Some(HttpProtocol::V11),
            _ => None,
        }
    }
}

/// Accepted HTTP status codes: inclusive ranges within 100..=599 (keepalived's
/// HTTP_STATUS_CODE_MIN/MAX); empty means the default 200-299.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl StatusSet {
    /// True if `code` is accepted.
    pub fn accepts(&self, code: u16) -> bool {
        if self.0.is_empty() {
            return (200..=299).contains(&code);
        }
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }

    /// Parses one `status_code` word: `N` or `A-B`, each 100..=599, A <= B.
    pub fn parse_word(s: &str) -> Option<(u16, u16)> {
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a, b),
            None => (s, s),
        };
        let a: u16 = a.parse().ok()?;
        let b: u16 = b.parse().ok()?;
        if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
            return None;
        }
        Some((a, b))
    }

    /// `200-299,404` style (as `lbadm save` writes it); "" for the default set.
    pub fn to_list(&self) -> String {
        self.0
            .iter()
            .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One `url { }` block of HTTP_GET/SSL_GET.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlSpec {
    /// Request path (sent as written).
    pub path: String,
    /// Expected MD5 of the body, lower-case hex (32 digits), if any.
    pub digest: Option<String>,
    /// Accepted status codes.
    pub status: StatusSet,
    /// Host header (and SNI candidate) for this URL only.
    pub virtualhost: Option<String>,
}

impl UrlSpec {
    /// A URL with the default status set and no digest.
    pub fn new(path: impl Into<String>) -> Self {
        UrlSpec {
            path: path.into(),
            digest: None,
            status: StatusSet::default(),
            virtualhost: None,
        }
    }

    /// The digest as 16 bytes.
    pub fn digest_bytes(&self) -> Option<[u8; 16]> {
        self.digest.as_deref().and_then(parse_digest)
    }
}

/// Parses a 32-digit hex MD5 digest.
pub fn parse_digest(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// HTTP_GET / SSL_GET settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpCheck {
    /// URLs, checked one per round in order (keepalived's url iterator).
    pub urls: Vec<UrlSpec>,
    /// Host header when the URL has none (keepalived: checker, else real server, else
    /// virtual server `virtualhost`); none: `IP:PORT` of the target.
    pub virtualhost: Option<String>,
    /// Request version.
    pub http_protocol: HttpProtocol,
    /// Check the next URL at once instead of after `delay_loop` while recovering.
    pub fast_recovery: bool,
    /// SSL_GET: send SNI (name: `sni_name`, else the URL's or checker's virtualhost).
    pub enable_sni: bool,
    /// SSL_GET: explicit SNI name.
    pub sni_name: Option<String>,
    /// SSL_GET: PEM file of the CA(s) the server's chain must lead to; none: the server's
    /// certificate is not verified (keepalived's behaviour).
    pub ca: Option<String>,
    /// SSL_GET: client certificate chain (PEM).
    pub certificate: Option<String>,
    /// SSL_GET: client private key (PEM, unencrypted).
    pub key: Option<String>,
}

/// MISC_CHECK settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MiscCheck {
    /// The command line (`misc_path`), split like a shell word list when run.
    pub path: String,
    /// Kill the script (SIGTERM, then SIGKILL 2 s later) after this long; counts as a failure.
    pub timeout_us: u64,
    /// Exit status 2..255 sets the server's weight to status - 2.
    pub dynamic: bool,
}

/// The checker kinds the director runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckKind {
    /// TCP_CHECK: a non-blocking connect completes.
    Tcp,
    /// HTTP_GET.
    Http(HttpCheck),
    /// SSL_GET.
    Https(HttpCheck),
    /// MISC_CHECK.
    Misc(MiscCheck),
}

impl CheckKind {
    /// `tcp`, `http`, `https`, `misc` (the `lbadm check` words).
    pub fn word(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Http(_) => "http",
            CheckKind::Https(_) => "https",
            CheckKind::Misc(_) => "misc",
        }
    }

    /// keepalived's block name.
    pub fn keepalived_name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "TCP_CHECK",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Https(_) => "SSL_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
        }
    }

    /// True for the kinds that open a connection (connect_ip/port, bindto apply).
    pub fn connects(&self) -> bool {
        !matches!(self, CheckKind::Misc(_))
    }

    /// The HTTP settings of HTTP_GET/SSL_GET.
    pub fn http(&self) -> Option<&HttpCheck> {
        match self {
            CheckKind::Http(h) | CheckKind::Https(h) => Some(h),
            _ => None,
        }
    }
}

/// Where a connecting checker connects from and to (unset: the real server's address and
/// port; the source is chosen by the director, see `health::engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Target {
    /// `connect_ip`.
    pub connect_ip: Option<Ipv4Addr>,
    /// `connect_port`.
    pub connect_port: Option<u16>,
    /// `bindto`.
    pub bindto: Option<Ipv4Addr>,
    /// `bind_port`.
    pub bind_port: Option<u16>,
}

/// keepalived's per-checker timing, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Period between checks.
    pub delay_loop_us: u64,
    /// Per attempt (connect, and each read).
    pub connect_timeout_us: u64,
    /// Extra attempts before an up checker is declared down.
    pub retry: u32,
    /// Pause between those attempts.
    pub delay_before_retry_us: u64,
    /// The first check starts at a random point of `[0, warmup]`.
    pub warmup_us: u64,
    /// Start down: the server joins only after a check passes.
    pub alpha: bool,
    /// Log every failed attempt while up, not only transitions.
    pub log_all_failures: bool,
}

impl Timing {
    /// keepalived's defaults for a checker of this kind: delay_loop 60 s, connect_timeout
    /// 5 s, retry 1 (MISC_CHECK 0), delay_before_retry 3 s for HTTP_GET/SSL_GET and 1 s
    /// otherwise, warmup = delay_loop, no alpha.
    pub fn defaults(kind: &CheckKind) -> Self {
        Timing {
            delay_loop_us: DEFAULT_DELAY_LOOP,
            connect_timeout_us: DEFAULT_CONNECT_TIMEOUT,
            retry: default_retry(kind),
            delay_before_retry_us: default_delay_before_retry(kind),
            warmup_us: DEFAULT_DELAY_LOOP,
            alpha: false,
            log_all_failures: false,
        }
    }
}

/// keepalived's default `retry` for a checker kind (check_api.c queue_checker, check_misc.c).
pub fn default_retry(kind: &CheckKind) -> u32 {
    match kind {
        CheckKind::Misc(_) => 0,
        _ => 1,
    }
}

/// keepalived's default `delay_before_retry` (check_http.c sets 3 s; others 1 s).
pub fn default_delay_before_retry(kind: &CheckKind) -> u64 {
    match kind {
        CheckKind::Http(_) | CheckKind::Https(_) => 3 * SEC,
        _ => SEC,
    }
}

/// A complete checker definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// What to check.
    pub kind: CheckKind,
    /// Where to connect (connecting kinds only).
    pub target: Target,
    /// When.
    pub timing: Timing,
}

fn bad(msg: impl Into<String>) -> CtlError {
    CtlError::input(msg.into())
}

fn check_command(what: &str, cmd: &str) -> Result<(), CtlError> {
    if cmd.trim().is_empty() {
        return Err(bad(format!("{what}: empty command")));
    }
    if cmd.len() > MAX_COMMAND {
        return Err(bad(format!("{what}: command longer than {MAX_COMMAND} bytes")));
    }
    if cmd.contains(['\0', '\n', '\r']) {
        return Err(bad(format!("{what}: command contains a control character")));
    }
    match shlex::split(cmd) {
        Some(w) if !w.is_empty() => Ok(()),
        _ => Err(bad(format!("{what}: unbalanced quotes in \"{cmd}\""))),
    }
}

/// Checks a script or notify command line (non-empty, balanced quotes, bounded length).
pub fn validate_command(what: &str, cmd: &str) -> Result<(), CtlError> {
    check_command(what, cmd)
}

fn check_name(what: &str, s: &str) -> Result<(), CtlError> {
    if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!("{what}: invalid value \"{s}\"")));
    }
    Ok(())
}

impl CheckSpec {
    /// A checker of `kind` with keepalived's default timing and no target override.
    pub fn new(kind: CheckKind) -> Self {
        let timing = Timing::defaults(&kind);
        CheckSpec {
            kind,
            target: Target::default(),
            timing,
        }
    }

    /// Checks every value; errors are input errors (exit status 2) naming the setting.
    pub fn validate(&self) -> Result<(), CtlError> {
        let t = &self.timing;
        if t.delay_loop_us == 0 || t.delay_loop_us > MAX_TIMER {
            return Err(bad("delay_loop must be above 0 and at most one year"));
        }
        if t.connect_timeout_us == 0 || t.connect_timeout_us > MAX_TIMER {
            return Err(bad("connect_timeout must be above 0 and at most one year"));
        }
        if t.delay_before_retry_us > MAX_TIMER || t.warmup_us > MAX_TIMER {
            return Err(bad("delay_before_retry and warmup must be at most one year"));
        }
        if t.retry > 1_000_000 {
            return Err(bad("retry must be at most 1000000"));
        }
        if !self.kind.connects() && self.target != Target::default() {
            return Err(bad(
                "MISC_CHECK takes no connect_ip, connect_port, bindto or bind_port",
            ));
        }
        if self.target.connect_port == Some(0) || self.target.bind_port == Some(0) {
            return Err(bad("connect_port and bind_port must be 1..65535"));
        }
        match &self.kind {
            CheckKind::Tcp => {}
            CheckKind::Http(h) | CheckKind::Https(h) => {
                if h.urls.is_empty() {
                    return Err(bad(format!(
                        "{} needs at least one url",
                        self.kind.keepalived_name()
                    )));
                }
                if h.urls.len() > MAX_URLS {
                    return Err(bad(format!("at most {MAX_URLS} urls per checker")));
                }
                for u in &h.urls {
                    if u.path.is_empty()
                        || u.path.len() > 2048
                        || u.path.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(bad(format!("invalid url path \"{}\"", u.path)));
                    }
                    if let Some(d) = &u.digest {
                        if parse_digest(d).is_none() {
                            return Err(bad(format!(
                                "digest \"{d}\" is not 32 hexadecimal digits"
                            )));
                        }
                    }
                    for &(a, b) in &u.status.0 {
                        if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
                            return Err(bad(format!("invalid status_code range {a}-{b}")));
                        }
                    }
                    if let Some(v) = &u.virtualhost {
                        check_name("virtualhost", v)?;
                    }
                }
                if let Some(v) = &h.virtualhost {
                    check_name("virtualhost", v)?;
                }
                if let Some(v) = &h.sni_name {
                    check_name("sni_name", v)?;
                }
                let tls_only = h.enable_sni
                    || h.sni_name.is_some()
                    || h.ca.is_some()
                    || h.certificate.is_some()
                    || h.key.is_some();
                if tls_only && matches!(self.kind, CheckKind::Http(_)) {
                    return Err(bad(
                        "enable_sni, sni_name, ca, certificate and key apply to SSL_GET (https) only",
                    ));
                }
                if h.certificate.is_some() != h.key.is_some() {
                    return Err(bad("a client certificate needs its key, and a key its certificate"));
                }
                for f in [&h.ca, &h.certificate, &h.key].into_iter().flatten() {
                    if f.is_empty() || f.contains(['\0', '\n']) {
                        return Err(bad(format!("invalid file name \"{f}\"")));
                    }
                }
            }
            CheckKind::Misc(m) => {
                check_command("misc_path", &m.path)?;
                if m.timeout_us == 0 || m.timeout_us > MAX_TIMER {
                    return Err(bad("misc_timeout must be above 0 and at most one year"));
                }
            }
        }
        Ok(())
    }
}

/// Formats microseconds as keepalived writes a timer: decimal seconds, no trailing zeros.
pub fn format_secs(us: u64) -> String {
    let s = us / SEC;
    let frac = us % SEC;
    if frac == 0 {
        return s.to_string();
    }
    let f = format!("{frac:06}");
    format!("{s}.{}", f.trim_end_matches('0'))
}

/// Parses keepalived's `<TIMER>`: decimal seconds with up to 6 fractional digits.
pub fn parse_secs(s: &str) -> Option<u64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 6
        || int.len() > 12
    {
        return None;
    }
    let i: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut f: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    for _ in frac.len()..6 {
        f *= 10;
    }
    i.checked_mul(SEC)?.checked_add(f)
}

/// keepalived's `<BOOL>` words.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Settings of one virtual service's pool as a whole (keepalived's virtual_server level).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    /// Minimum total weight of live servers (default 1).
    pub quorum: u32,
    /// Flap damper around `quorum` (default 0).
    pub hysteresis: u32,
    /// Server put in the pool (alone) while the quorum is lost.
    pub sorry_server: Option<SorryServer>,
    /// Command run when the quorum is gained.
    pub quorum_up: Option<String>,
    /// Command run when the quorum is lost.
    pub quorum_down: Option<String>,
}

impl Default for ServiceHealth {
    fn default() -> Self {
        ServiceHealth {
            quorum: 1,
            hysteresis: 0,
            sorry_server: None,
            quorum_up: None,
            quorum_down: None,
        }
    }
}

impl ServiceHealth {
    /// Checks the values (quorum >= 1, hysteresis < quorum, commands well formed).
    pub fn validate(&self) -> Result<(), CtlError> {
        if self.quorum == 0 {
            return Err(bad("quorum must be at least 1"));
        }
        if self.hysteresis >= self.quorum {
            return Err(bad(format!(
                "hysteresis {} must be below quorum {}",
                self.hysteresis, self.quorum
            )));
        }
        for (w, c) in [("quorum_up", &self.quorum_up), ("quorum_down", &self.quorum_down)] {
            if let Some(c) = c {
                check_command(w, c)?;
            }
        }
        if let Some(s) = &self.sorry_server {
            if s.addr.is_unspecified() || s.addr.is_broadcast() || s.addr.is_multicast() {
                return Err(bad(format!("invalid sorry server address {}", s.addr)));
            }
        }
        Ok(())
    }
}

/// keepalived's `sorry_server IP [PORT]` (+ `sorry_server_inhibit`). Its weight is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SorryServer {
    /// Address (127.0.0.1 or a director address makes it a local node).
    pub addr: Ipv4Addr,
    /// Port (direct routing: the service port; fwmark services: 0).
    pub port: u16,
    /// Keep it listed at weight 0 while the quorum holds instead of deleting it.
    pub inhibit: bool,
}

/// Per real-server health settings given with `check add` (`None`: leave as it is).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerHealthOpts {
    /// Weight 0 instead of deletion while down.
    pub inhibit_on_failure: Option<bool>,
    /// Command run when the server goes up (`Some("")` clears it).
    pub notify_up: Option<String>,
    /// Command run when the server goes down (`Some("")` clears it).
    pub notify_down: Option<String>,
}

impl ServerHealthOpts {
    /// Checks the commands.
    pub fn validate(&self) -> Result<(), CtlError> {
        for (w, c) in [("notify_up", &self.notify_up), ("notify_down", &self.notify_down)] {
            if let Some(c) = c.as_deref().filter(|c| !c.is_empty()) {
                check_command(w, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_round_trip_with_microsecond_resolution() {
        for (s, us) in [("6", 6 * SEC), ("2.5", 2_500_000), ("0.001", 1000), (".5", 500_000), ("3.000001", 3_000_001)] {
            assert_eq!(parse_secs(s), Some(us), "{s}");
        }
        for s in ["", ".", "-1", "1e3", "1.0000001", "abc", "1.2.3", "9999999999999"] {
            assert_eq!(parse_secs(s), None, "{s}");
        }
        assert_eq!(format_secs(6 * SEC), "6");
        assert_eq!(format_secs(2_500_000), "2.5");
        assert_eq!(format_secs(1), "0.000001");
    }

    #[test]
    fn status_sets_and_digests() {
        let d = StatusSet::default();
        assert!(d.accepts(200) && d.accepts(299) && !d.accepts(300) && !d.accepts(500));
        let s = StatusSet(vec![(200, 200), (300, 399)]);
        assert!(s.accepts(200) && s.accepts(302) && !s.accepts(201));
        assert_eq!(s.to_list(), "200,300-399");
        assert_eq!(StatusSet::parse_word("200-299"), Some((200, 299)));
        for w in ["99", "600", "300-200", "2x0", "-", "200-"] {
            assert_eq!(StatusSet::parse_word(w), None, "{w}");
        }
        assert_eq!(parse_digest("640205b7b0fc66c1ea91c463fac6334d").unwrap()[0], 0x64);
        assert!(parse_digest("640205b7b0fc66c1ea91c463fac6334").is_none());
        assert!(parse_digest("g40205b7b0fc66c1ea91c463fac6334d").is_none());
    }

    #[test]
    fn keepalived_defaults_per_kind() {
        let tcp = CheckSpec::new(CheckKind::Tcp);
        assert_eq!((tcp.timing.retry, tcp.timing.delay_before_retry_us), (1, SEC));
        assert_eq!(tcp.timing.delay_loop_us, 60 * SEC);
        assert_eq!(tcp.timing.connect_timeout_us, 5 * SEC);
        let http = CheckSpec::new(CheckKind::Http(HttpCheck::default()));
        assert_eq!(http.timing.delay_before_retry_us, 3 * SEC);
        assert!(http.validate().is_err(), "an HTTP_GET without url is refused");
        let misc = CheckSpec::new(CheckKind::Misc(MiscCheck { path: "/bin/true".into(), timeout_us: SEC, dynamic: false }));
        assert_eq!(misc.timing.retry, 0);
        misc.validate().unwrap();
        let mut bad = misc.clone();
        bad.target.connect_port = Some(80);
        assert!(bad.validate().is_err());
        let mut quotes = misc;
        quotes.kind = CheckKind::Misc(MiscCheck { path: "/bin/x 'unbalanced".into(), timeout_us: SEC, dynamic: false });
        assert!(quotes.validate().is_err());
    }

    #[test]
    fn service_health_limits() {
        ServiceHealth::default().validate().unwrap();
        let h = ServiceHealth { quorum: 2, hysteresis: 2, ..Default::default() };
        assert!(h.validate().is_err());
        let h = ServiceHealth { quorum: 0, ..Default::default() };
        assert!(h.validate().is_err());
    }
}
