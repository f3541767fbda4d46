//! Configuration files: a director's whole configuration as lbadm command lines, written by
//! `lbadm save` ([`crate::format::config_file`]), loaded at start by `director --config FILE`
//! ([`load`]) and applied to a running director by `lbadm restore [--atomic]`.
//!
//! ```text
//! # comment                                  (blank lines and lines starting with # are skipped)
//! addr add 198.51.100.2/24 dev dpdk0         addr add|del A.B.C.D[/LEN] dev dpdkN
//! iptables -t mangle -A PREROUTING -d 198.51.100.100/32 -p tcp -m tcp --dport 80 -j MARK --set-mark 1
//! mark add -d 198.51.100.100 -p udp --dport 53 --set-mark 2      (also insert, del, flush)
//! sysctl -w net.ipv4.vs.expire_nodest_conn=1 (also `sysctl NAME=V ...`, `net.ipv4.vs.NAME = V`)
//! --set 900 120 300
//! -A -t 198.51.100.100:80 -s rr              every ipvsadm change: -A -E -D -C -a -e -d --set,
//! -a -t 198.51.100.100:80 -r 198.51.100.11:80 -g -w 1     as `-S` writes them; a leading
//! ipvsadm -a -f 1 -r 198.51.100.12:0 -g -w 2             `ipvsadm` or `lbadm` word is dropped
//! check service -t 198.51.100.100:80 --quorum 2 --sorry-server 127.0.0.1   health checkers
//! check add -t 198.51.100.100:80 -r 198.51.100.11:80 http --url /health --delay-loop 6
//! ```
//!
//! Invariants:
//! - Each line is parsed exactly as `lbadm` would parse it on the command line (same parsers,
//!   same messages and exit statuses); a line may only *change* the configuration: listings,
//!   `-Z`, `-R`, `-S`, `-h`, `sysctl NAME` reads and `iptables -L/-S/-C` are refused with
//!   "not a configuration change". A line yields one or more [`ConfigCommand`]s, each
//!   remembered with its 1-based line number.
//! - [`load`] applies the whole file as one transaction ([`Controller::apply_transaction`]):
//!   the configuration is either entirely the file's or unchanged; the error names the file,
//!   the line and the reason (`FILE:LINE: MESSAGE`).
//! - [`write_atomic`] replaces a file by writing a temporary file in the same directory,
//!   syncing it and renaming it over the target: readers see the old or the new file, never a
//!   partial one.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::cli;
use crate::error::CtlError;
use crate::iptables::{self, MarkCommand};
use crate::ipvsadm::{self, IpvsCommand, ParseEnv};
use crate::model::ConfigCommand;
use crate::names::Names;
use crate::proto::Op;
use crate::server::{Backend, Controller};
use crate::sysctl::{Sysctls, SYSCTL_PREFIX};

/// A configuration command and the (1-based) line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Line number (1-based).
    pub line: usize,
    /// The command.
    pub cmd: ConfigCommand,
}

/// A parse or apply error at a line of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// Line number (1-based); 0 when the error is not about one line (publishing failed).
    pub line: usize,
    /// The error, with lbadm's message and exit status.
    pub error: CtlError,
}

impl LineError {
    /// `SOURCE:LINE: MESSAGE` (or `SOURCE: MESSAGE` for line 0).
    pub fn describe(&self, source: &str) -> String {
        if self.line == 0 {
            format!("{source}: {}", self.error.message)
        } else {
            format!("{source}:{}: {}", self.line, self.error.message)
        }
    }
}

fn not_a_change(what: &str) -> CtlError {
    CtlError::input(format!(
        "{}: {what} is not a configuration change (a configuration file holds only \
         -A -E -D -C -a -e -d --set, addr add|del, mark/iptables rule changes and sysctl \
         settings)",
        cli::PROG
    ))
}

/// `sysctl [-w] [-q] [-e] NAME=VALUE...` (words after `sysctl`), or a sysctl.conf line
/// `net.ipv4.vs.NAME = VALUE` (all words).
fn sysctl_settings(words: &[String]) -> Result<Vec<ConfigCommand>, CtlError> {
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if let Some(flags) = w.strip_prefix('-') {
            if cmds.is_empty() && !flags.is_empty() && flags.chars().all(|c| "wqe".contains(c)) {
                i += 1;
                continue;
            }
            return Err(CtlError::failure(format!(
                "sysctl: invalid option -- '{w}'"
            )));
        }
        // `NAME=VALUE`, `NAME= VALUE`, `NAME =VALUE`, `NAME = VALUE`.
        let (key, value) = if let Some((k, v)) = w.split_once('=') {
            if v.is_empty() {
                i += 1;
                let v = words.get(i).ok_or_else(|| CtlError::sysctl_malformed(w))?;
                (k.to_string(), v.clone())
            } else {
                (k.to_string(), v.to_string())
            }
        } else if words.get(i + 1).is_some_and(|n| n.starts_with('=')) {
            i += 1;
            let rest = &words[i][1..];
            if rest.is_empty() {
                i += 1;
                let v = words.get(i).ok_or_else(|| CtlError::sysctl_malformed(w))?;
                (w.clone(), v.clone())
            } else {
                (w.clone(), rest.to_string())
            }
        } else {
            return Err(not_a_change(&format!("reading sysctl \"{w}\"")));
        };
        let name = Sysctls::resolve(&key)?;
        if Sysctls::is_vector(name) {
            // `sync_threshold=3 50`: the following integer words belong to the value too.
            let mut values = Sysctls::parse_values(&key, &value)?;
            while let Some(v) = words.get(i + 1).and_then(|w| Sysctls::parse_value(&key, w).ok()) {
                values.push(v);
                i += 1;
            }
            Sysctls::default().set_values(name, &values)?;
            cmds.push(ConfigCommand::SetSysctlValues {
                name: name.to_string(),
                values,
            });
            i += 1;
            continue;
        }
        let value = Sysctls::parse_value(&key, &value)?;
        // Checked here so that a bad value is a parse error of its line.
        Sysctls::default().set(name, value)?;
        cmds.push(ConfigCommand::SetSysctl {
            name: name.to_string(),
            value,
        });
        i += 1;
    }
    if cmds.is_empty() {
        return Err(CtlError::failure("sysctl: no variables specified"));
    }
    Ok(cmds)
}

/// Parses one line into the configuration changes it makes (none for blank and comment
/// lines). Errors carry lbadm's message and exit status for that command.
pub fn parse_line(line: &str, names: &dyn Names) -> Result<Vec<ConfigCommand>, CtlError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Vec::new());
    }
    let mut words: Vec<String> = trimmed.split_whitespace().map(str::to_string).collect();
    if words.first().is_some_and(|w| w == "lbadm") {
        words.remove(0);
    }
    let Some(verb) = words.first().map(String::as_str) else {
        return Ok(Vec::new());
    };
    match verb {
        "addr" | "address" => match cli::director_verb_op(&words)? {
            Op::AddrAdd {
                addr,
                prefix_len,
                dev,
            } => Ok(vec![ConfigCommand::AddAddr(crate::model::AddrConfig {
                addr,
                prefix_len,
                dev,
            })]),
            Op::AddrDel {
                addr,
                prefix_len,
                dev,
            } => Ok(vec![ConfigCommand::DelAddr {
                addr,
                prefix_len,
                dev,
            }]),
            _ => Err(not_a_change("addr show")),
        },
        "neigh" | "neighbour" | "neighbor" | "link" => Err(not_a_change(verb)),
        "mark" | "iptables" => {
            let cmd = if verb == "mark" {
                iptables::parse_mark(&words[1..], names)?
            } else {
                iptables::parse_iptables(&words[1..], names)?
            };
            Ok(match cmd {
                MarkCommand::Append(r) => vec![ConfigCommand::AddMark(r)],
                MarkCommand::Insert { pos, rule } => vec![ConfigCommand::InsertMark { pos, rule }],
                MarkCommand::Delete(r) => vec![ConfigCommand::DelMark(r)],
                MarkCommand::DeleteAt(n) => vec![ConfigCommand::DelMarkAt(n)],
                MarkCommand::Flush => vec![ConfigCommand::FlushMarks],
                MarkCommand::Nop => Vec::new(),
                MarkCommand::Check(_) => return Err(not_a_change(&format!("{verb} -C"))),
                MarkCommand::List(_) | MarkCommand::ListRules(_) | MarkCommand::Show => {
                    return Err(not_a_change(&format!("{verb} listing")))
                }
            })
        }
        "check" => {
            // Check lines quote commands and paths like a shell (`lbadm save` writes them so).
            let mut words = shlex::split(trimmed).ok_or_else(|| {
                CtlError::input(format!("{}: check: unbalanced quotes", cli::PROG))
            })?;
            if words.first().is_some_and(|w| w == "lbadm") {
                words.remove(0);
            }
            match crate::health::cli::parse(&words[1..], names)? {
                crate::health::cli::CheckCli::Change(c) => Ok(vec![c]),
                crate::health::cli::CheckCli::Show(_) => Err(not_a_change("check show")),
            }
        }
        "sysctl" => sysctl_settings(&words[1..]),
        v if v.starts_with(SYSCTL_PREFIX) => sysctl_settings(&words),
        "save" | "restore" => Err(not_a_change(verb)),
        _ => {
            // ipvsadm, as `-R` reads it: every word `ipvsadm`/`lbadm` is dropped.
            let words = ipvsadm::restore_words(trimmed);
            if words.is_empty() {
                return Ok(Vec::new());
            }
            let env = ParseEnv {
                names,
                prog: cli::PROG,
            };
            let cmd = ipvsadm::parse_with(&words, &env)?;
            cmd.validate()?;
            match cmd.config_command() {
                Some(c) => Ok(vec![c]),
                None => Err(not_a_change(match cmd {
                    IpvsCommand::List(_) => "-L",
                    IpvsCommand::Save { .. } => "-S",
                    IpvsCommand::Zero(_) => "-Z",
                    IpvsCommand::Restore => "-R",
                    IpvsCommand::Help => "-h",
                    IpvsCommand::Version => "-v",
                    IpvsCommand::StopDaemon(_) => "--stop-daemon",
                    _ => "this command",
                })),
            }
        }
    }
}

/// Parses a whole file. Stops at the first line that does not parse and returns the commands
/// of the lines before it together with that error (`-R` semantics need the former, atomic
/// loading only the latter).
///
/// A file whose last line does not end in a newline was cut short (a full disk, an
/// interrupted copy): the rest of that line may still parse — `-r 10.0.0.12` cut to
/// `-r 10.0.0.1`, `:8080` to `:80` — so that line is refused as truncated instead of parsed.
pub fn parse_prefix(text: &str, names: &dyn Names) -> (Vec<Located>, Option<LineError>) {
    let mut out = Vec::new();
    let (body, cut) = match text.rfind('\n') {
        _ if text.is_empty() || text.ends_with('\n') => (text, None),
        Some(i) => (&text[..=i], Some(&text[i + 1..])),
        None => ("", Some(text)),
    };
    let mut lines = 0;
    for (i, line) in body.lines().enumerate() {
        lines = i + 1;
        match parse_line(line, names) {
            Ok(cmds) => out.extend(cmds.into_iter().map(|cmd| Located { line: i + 1, cmd })),
            Err(error) => return (out, Some(LineError { line: i + 1, error })),
        }
    }
    if let Some(cut) = cut {
        let shown: String = cut.chars().take(40).collect();
        let error = CtlError::input(format!(
            "line not terminated by a newline, the file looks truncated: \"{shown}\""
        ));
        return (out, Some(LineError { line: lines + 1, error }));
    }
    (out, None)
}

/// Parses a whole file; any line that does not parse is an error.
pub fn parse(text: &str, names: &dyn Names) -> Result<Vec<Located>, LineError> {
    match parse_prefix(text, names) {
        (cmds, None) => Ok(cmds),
        (_, Some(e)) => Err(e),
    }
}

/// Parses `text` and applies it to `controller` as one transaction. On error nothing changed.
pub fn apply_text<B: Backend>(
    controller: &mut Controller<B>,
    text: &str,
    names: &dyn Names,
) -> Result<usize, LineError> {
    let located = parse(text, names)?;
    let cmds: Vec<ConfigCommand> = located.iter().map(|l| l.cmd.clone()).collect();
    controller.apply_transaction(&cmds).map_err(|e| LineError {
        line: e.index.map_or(0, |i| located[i].line),
        error: e.error,
    })?;
    Ok(cmds.len())
}

/// `director --config FILE`: reads `path` and applies it to `controller` as one transaction
/// (host and service names resolve through `names`). Returns the number of commands applied;
/// on error nothing changed and the message is `FILE:LINE: MESSAGE` (`FILE: MESSAGE` when
/// the file cannot be read or the compiled configuration is refused as a whole).
pub fn load_with<B: Backend>(
    controller: &mut Controller<B>,
    path: &Path,
    names: &dyn Names,
) -> Result<usize, CtlError> {
    let source = path.display().to_string();
    let text = std::fs::read(path)
        .map_err(|e| CtlError::failure(format!("{source}: cannot read: {e}")))
        .and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| CtlError::failure(format!("{source}: not a UTF-8 text file")))
        })
        .inspect_err(|e| crate::events::config_failed(e))?;
    let result = apply_text(controller, &text, names)
        .map_err(|e| CtlError::new(e.describe(&source), e.error.exit_code));
    match &result {
        Ok(n) => crate::events::config_loaded(path, *n),
        Err(e) => crate::events::config_failed(e),
    }
    result
}

/// [`load_with`] resolving names from `/etc/hosts`, `/etc/services` and the system resolver,
/// like `lbadm`.
pub fn load<B: Backend>(controller: &mut Controller<B>, path: &Path) -> Result<usize, CtlError> {
    load_with(controller, path, &crate::names::SystemNames::load())
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory
/// (mode 0644, or the mode of the file being replaced) is written, synced and renamed over
/// `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename durable too (best effort).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::NumericOnly;
    use std::net::Ipv4Addr;

    fn p(line: &str) -> Result<Vec<ConfigCommand>, CtlError> {
        parse_line(line, &NumericOnly)
    }

    #[test]
    fn lines_of_every_kind() {
        assert_eq!(p("").unwrap(), vec![]);
        assert_eq!(p("   # comment -A -t x").unwrap(), vec![]);
        assert_eq!(
            p("addr add 10.0.0.1/24 dev dpdk0").unwrap(),
            vec![ConfigCommand::AddAddr(crate::model::AddrConfig {
                addr: Ipv4Addr::new(10, 0, 0, 1),
                prefix_len: 24,
                dev: "dpdk0".into()
            })]
        );
        assert!(matches!(
            p("lbadm addr del 10.0.0.1 dev dpdk0").unwrap()[..],
            [ConfigCommand::DelAddr {
                prefix_len: None,
                ..
            }]
        ));
        assert!(matches!(
            p("ipvsadm -A -t 10.0.0.1:80 -s rr").unwrap()[..],
            [ConfigCommand::AddService(_)]
        ));
        assert!(matches!(
            p("-a -t 10.0.0.1:80 -r 10.0.0.2 -g -w 3 -x 10 -y 5").unwrap()[..],
            [ConfigCommand::AddServer { .. }]
        ));
        assert!(matches!(
            p("--set 1 2 3").unwrap()[..],
            [ConfigCommand::SetTimeouts(_)]
        ));
        assert_eq!(p("-C").unwrap(), vec![ConfigCommand::Clear]);
        assert!(matches!(
            p("iptables -t mangle -A PREROUTING -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0xa/0xffffffff").unwrap()[..],
            [ConfigCommand::AddMark(ref r)] if r.mark == 10
        ));
        assert!(matches!(
            p("mark add -d 10.0.0.1 -p udp --dport 53 --set-mark 2").unwrap()[..],
            [ConfigCommand::AddMark(_)]
        ));
        assert_eq!(p("mark flush").unwrap(), vec![ConfigCommand::FlushMarks]);
        assert_eq!(
            p("iptables -t mangle -P PREROUTING ACCEPT").unwrap(),
            vec![]
        );
        let set = |n: &str, v| ConfigCommand::SetSysctl {
            name: n.into(),
            value: v,
        };
        assert_eq!(
            p("sysctl -w net.ipv4.vs.sloppy_tcp=1 conn_reuse_mode=2").unwrap(),
            vec![set("sloppy_tcp", 1), set("conn_reuse_mode", 2)]
        );
        assert_eq!(
            p("net.ipv4.vs.expire_nodest_conn = 1").unwrap(),
            vec![set("expire_nodest_conn", 1)]
        );
        assert_eq!(
            p("sysctl -q net.ipv4.vs.pmtu_disc= 0").unwrap(),
            vec![set("pmtu_disc", 0)]
        );
        // A vector takes the following integer words (what `lbadm save` writes).
        let vec_set = |v: Vec<i64>| ConfigCommand::SetSysctlValues {
            name: "sync_threshold".into(),
            values: v,
        };
        assert_eq!(
            p("sysctl -w net.ipv4.vs.sync_threshold=5 100 sloppy_tcp=1").unwrap(),
            vec![vec_set(vec![5, 100]), set("sloppy_tcp", 1)]
        );
        assert_eq!(
            p("net.ipv4.vs.sync_threshold = 2 0").unwrap(),
            vec![vec_set(vec![2, 0])]
        );
        assert!(p("sysctl -w sync_threshold=60 50").is_err());
    }

    #[test]
    fn refused_lines() {
        for (line, code, start) in [
            ("-L -n", 2, "lbadm: -L is not a configuration change"),
            ("-S -n", 2, "lbadm: -S is not a configuration change"),
            ("-Z", 2, "lbadm: -Z is not a configuration change"),
            ("addr show", 2, "lbadm: addr show is not"),
            ("link show", 2, "lbadm: link is not"),
            (
                "iptables -t mangle -L -n",
                2,
                "lbadm: iptables listing is not",
            ),
            ("sysctl net.ipv4.vs.sloppy_tcp", 2, "lbadm: reading sysctl"),
            ("sysctl -w sloppy_tcp=7", 255, "sysctl: setting key"),
            ("sysctl -w nosuch=1", 255, "sysctl: cannot stat"),
            ("-A -t 10.0.0.1:80 -w 1", 2, "Illegal 'weight' option"),
            (
                "-a -t 10.0.0.1:80 -r 10.0.0.2 -m",
                255,
                "director forwards by direct routing only",
            ),
            (
                "addr add 10.0.0.1/33 dev dpdk0",
                2,
                "lbadm: invalid prefix length",
            ),
            ("bogus", 255, "Try `lbadm -h'"),
            ("save", 2, "lbadm: save is not"),
        ] {
            let e = p(line).unwrap_err();
            assert_eq!(e.exit_code, code, "{line}: {}", e.message);
            assert!(e.message.starts_with(start), "{line}: {}", e.message);
        }
    }

    #[test]
    fn parse_stops_at_the_first_bad_line() {
        let text = "-A -t 10.0.0.1:80\n\n# x\n-a -t 10.0.0.1:80 -r 10.0.0.2\n-L\n-C\n";
        let (cmds, err) = parse_prefix(text, &NumericOnly);
        assert_eq!(cmds.iter().map(|l| l.line).collect::<Vec<_>>(), vec![1, 4]);
        let err = err.unwrap();
        assert_eq!(err.line, 5);
        assert!(err
            .describe("f.conf")
            .starts_with("f.conf:5: lbadm: -L is not"));
        assert_eq!(parse(text, &NumericOnly).unwrap_err(), err);
    }

    #[test]
    fn write_atomic_replaces_and_keeps_mode() {
        let dir = std::env::temp_dir().join(format!("cfgfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("director.conf");
        write_atomic(&f, b"one\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"one\n");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&f, b"two\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two\n");
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // A directory that does not exist: error, nothing created.
        assert!(write_atomic(&dir.join("no/such.conf"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
