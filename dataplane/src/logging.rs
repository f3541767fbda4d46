//! The director's logger: the `log` facade written to stderr by `env_logger`, one line per
//! event, `TIMESTAMP LEVEL TARGET: message` (RFC 3339 UTC, milliseconds), no colours.
//!
//! Under systemd (stderr connected to the journal, `JOURNAL_STREAM` set) each line also starts
//! with the syslog priority in angle brackets (`<6>` for info), which journald turns into the
//! entry's priority and strips, so `journalctl -p warning` works.
//!
//! The level comes from `RUST_LOG` (env_logger's syntax, e.g. `debug` or `control=warn`),
//! default `info`. Only control threads log: workers never call into `log` (nothing on the
//! packet path logs), so the logger's internal lock is never taken by a worker.

use std::io::Write;

/// Syslog priority of a level (RFC 5424 numbers: err 3, warning 4, info 6, debug 7).
pub fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Installs the logger (once; later calls do nothing).
pub fn init() {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    b.write_style(env_logger::WriteStyle::Never)
        .format(move |f, r| {
            if journal {
                write!(f, "<{}>", syslog_priority(r.level()))?;
            }
            writeln!(f, "{} {:<5} {}: {}", f.timestamp_millis(), r.level(), r.target(), r.args())
        });
    let _ = b.try_init();
}
