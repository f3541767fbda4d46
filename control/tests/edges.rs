//! Configuration edge cases at the sizes of issue 13: each either works or fails with one
//! clear line and nothing changed (no publication, the configuration untouched). Run over the
//! controller and a fake backend (no EAL): what is tested is the control plane's handling.

mod common;

use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};

use control::cli::{run, CliIo};
use control::config_file;
use control::names::NumericOnly;
use control::Controller;

/// A controller with the director's default real-server slots (65,536).
fn director_sized() -> (Controller<common::FakeBackend>, Arc<Mutex<common::FakeState>>) {
    let state = Arc::new(Mutex::new(common::FakeState::default()));
    (Controller::new(common::FakeBackend(Arc::clone(&state)), 65_536), state)
}

/// VIP number `i` (10.128.0.0 on).
fn vip(i: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(0x0a80_0000 + i)
}

#[test]
fn sixty_five_thousand_services_then_a_hundred_thousand_servers_over_the_slots() {
    let (mut ctl, state) = director_sized();
    let mut text = String::new();
    for i in 0..65_536 {
        let _ = writeln!(text, "-A -t {}:80 -s wlc", vip(i));
    }
    assert_eq!(config_file::apply_text(&mut ctl, &text, &NumericOnly).map_err(|e| e.describe("f")), Ok(65_536));
    assert_eq!(ctl.config().service_count(), 65_536);
    let generation = ctl.config().generation();
    let published = state.lock().unwrap().published.len();

    // 100,000 real servers, spread over the services: the 65,537th has no slot. One line
    // names the file line, the limit and why; nothing is applied.
    let mut text = String::new();
    for i in 0..100_000u32 {
        let _ = writeln!(text, "-a -t {}:80 -r 10.{}.{}.{}:80 -w 1", vip(i % 65_536), 64 + i / 65_536, i / 256 % 256, i % 256);
    }
    let e = config_file::apply_text(&mut ctl, &text, &NumericOnly).unwrap_err();
    assert_eq!(e.line, 65_537);
    assert_eq!(e.error.exit_code, 255);
    assert!(e.error.message.starts_with("Real server table full: all 65536 server slots are in use"), "{}", e.error.message);
    assert_eq!(ctl.config().generation(), generation, "nothing changed");
    assert_eq!(ctl.config().services().map(|s| s.servers.len()).sum::<usize>(), 0);
    assert_eq!(state.lock().unwrap().published.len(), published, "nothing published");

    // Exactly the slots: all of them fit.
    let fit: String = text.lines().take(65_536).map(|l| format!("{l}\n")).collect();
    assert_eq!(config_file::apply_text(&mut ctl, &fit, &NumericOnly).map_err(|e| e.describe("f")), Ok(65_536));
}

#[test]
fn weights_and_thresholds_at_their_limits() {
    let (mut ctl, _) = director_sized();
    let base = "-A -t 10.0.0.100:80 -s wrr\n";
    // The largest accepted values.
    let ok = format!("{base}-a -t 10.0.0.100:80 -r 10.0.0.11 -w 65535 -x 2147483647 -y 2147483647\n-a -t 10.0.0.100:80 -r 10.0.0.12 -w 0\n");
    assert_eq!(config_file::apply_text(&mut ctl, &ok, &NumericOnly).map_err(|e| e.describe("f")), Ok(3));
    let generation = ctl.config().generation();
    // One past them, and below zero: a clear line each, nothing changed.
    for (line, msg) in [
        ("-e -t 10.0.0.100:80 -r 10.0.0.11 -w 65536", "illegal weight specified"),
        ("-e -t 10.0.0.100:80 -r 10.0.0.11 -w -1", "illegal weight specified"),
        ("-e -t 10.0.0.100:80 -r 10.0.0.11 -x 2147483648", "illegal u_threshold specified"),
        ("-e -t 10.0.0.100:80 -r 10.0.0.11 -y 2147483648", "illegal l_threshold specified"),
        ("-e -t 10.0.0.100:80 -r 10.0.0.11 -w 99999999999999999999", "illegal weight specified"),
    ] {
        let e = config_file::apply_text(&mut ctl, &format!("-e -t 10.0.0.100:80 -r 10.0.0.12 -w 7\n{line}\n"), &NumericOnly).unwrap_err();
        assert_eq!((e.line, e.error.message.as_str(), e.error.exit_code), (2, msg, 2), "{line}");
        assert_eq!(ctl.config().generation(), generation, "{line}: nothing changed");
    }
}

#[test]
fn a_file_truncated_mid_line_is_refused_whole() {
    let dir = std::env::temp_dir().join(format!("cfg-edges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("director.conf");
    // The last line cut inside an address: `10.0.0.1` of `10.0.0.12` would parse.
    std::fs::write(&file, "-A -t 10.0.0.100:80\n-a -t 10.0.0.100:80 -r 10.0.0.1").unwrap();
    let (mut ctl, state) = director_sized();
    let e = config_file::load_with(&mut ctl, &file, &NumericOnly).unwrap_err();
    assert_eq!(
        e.message,
        format!("{}:2: line not terminated by a newline, the file looks truncated: \"-a -t 10.0.0.100:80 -r 10.0.0.1\"", file.display())
    );
    assert_eq!(e.exit_code, 2);
    assert_eq!((ctl.config().generation(), ctl.config().service_count()), (0, 0));
    assert!(state.lock().unwrap().published.is_empty());
    // Cut inside a multi-byte character: not text.
    std::fs::write(&file, b"-A -t 10.0.0.100:80 # caf\xc3").unwrap();
    assert!(config_file::load_with(&mut ctl, &file, &NumericOnly).unwrap_err().message.ends_with("not a UTF-8 text file"));
    // The same file whole loads.
    std::fs::write(&file, "-A -t 10.0.0.100:80\n-a -t 10.0.0.100:80 -r 10.0.0.12\n").unwrap();
    assert_eq!(config_file::load_with(&mut ctl, &file, &NumericOnly), Ok(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn lbadm_in(sock: &Path, args: &[&str], stdin: String) -> (i32, String, String) {
    let mut argv = vec!["--socket".to_string(), sock.display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut input = Cursor::new(stdin.into_bytes());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = {
        let mut io = CliIo { stdin: &mut input, stdout: &mut out, stderr: &mut err, socket_env: None, names: &NumericOnly };
        run(&argv, &mut io)
    };
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

/// `lbadm restore --atomic` of a million lines goes through (staged in ~512 KiB requests,
/// applied once); one line more than a transaction holds is refused whole, nothing changed.
#[test]
fn restore_of_a_million_lines() {
    let r = common::Running::start("edges-1m");
    let s = &r.path;
    let mut text = String::from("-A -t 10.0.0.100:80 -s rr\n");
    // Scheduler edits alternate; every line is a real change.
    for i in 1..1_000_000 {
        text.push_str(if i % 2 == 1 { "-E -t 10.0.0.100:80 -s wrr\n" } else { "-E -t 10.0.0.100:80 -s rr\n" });
    }
    let (code, _, err) = lbadm_in(s, &["restore", "--atomic"], text);
    assert_eq!((code, err.as_str()), (0, ""));
    let published = r.state.lock().unwrap().published.len();
    assert_eq!(published, 1, "one publication for the whole file");
    // 1,048,577 commands: over the transaction limit.
    let mut text = String::new();
    for _ in 0..=control::server::MAX_STAGED {
        text.push_str("-E -t 10.0.0.100:80 -s wlc\n");
    }
    let (code, _, err) = lbadm_in(s, &["restore", "--atomic"], text);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("transaction too large: more than 1048576 commands"), "{err}");
    assert_eq!(r.state.lock().unwrap().published.len(), published, "nothing published");
    let (_, saved, _) = lbadm_in(s, &["-S", "-n"], String::new());
    assert!(saved.contains("-A -t 10.0.0.100:80 -s wrr"), "{saved}");
}
