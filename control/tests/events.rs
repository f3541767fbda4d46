//! Control events reach the log one line each: changes that took effect at info, refused
//! changes and failed publications at warn/error, and nothing for listings.
//! (Own test binary: it installs a process-wide logger.)

mod common;

use std::sync::Mutex;

use control::ipvsadm::parse;
use control::proto::{Op, Request};

/// Collects every record (level, target, message).
struct Collect(Mutex<Vec<(log::Level, String, String)>>);

impl log::Log for Collect {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        self.0.lock().unwrap().push((r.level(), r.target().to_string(), r.args().to_string()));
    }
    fn flush(&self) {}
}

static LOG: Collect = Collect(Mutex::new(Vec::new()));

fn ipvs(s: &str) -> Request {
    let args: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    Request::new(Op::Ipvs(parse(&args).unwrap()))
}

fn take() -> Vec<(log::Level, String, String)> {
    std::mem::take(&mut *LOG.0.lock().unwrap())
}

#[test]
fn every_change_is_one_line_and_listings_log_nothing() {
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let (mut ctl, state) = common::controller();

    ctl.handle(ipvs("-A -t 192.168.1.100:80 -s rr -p 600"));
    ctl.handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.11 -w 3"));
    ctl.handle(ipvs("-e -t 192.168.1.100:80 -r 10.0.0.11 -w 0"));
    ctl.handle(ipvs("-L -n"));
    ctl.handle(ipvs("-d -t 192.168.1.100:80 -r 10.0.0.11"));
    ctl.handle(ipvs("-D -t 192.168.1.100:80"));
    let lines = take();
    let texts: Vec<&str> = lines.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(
        texts,
        [
            "service TCP 192.168.1.100:80 added (scheduler rr, persistent 600 s, netmask 255.255.255.255)",
            "server 10.0.0.11:80 added to TCP 192.168.1.100:80 (Route, weight 3)",
            "server 10.0.0.11:80 of TCP 192.168.1.100:80 edited (Route, weight 0)",
            "server 10.0.0.11:80 deleted from TCP 192.168.1.100:80",
            "service TCP 192.168.1.100:80 deleted",
        ]
    );
    assert!(lines.iter().all(|(l, t, _)| *l == log::Level::Info && t == "control"), "{lines:?}");

    // Refused: a duplicate service, a masquerading server; nothing published, one warning each.
    ctl.handle(ipvs("-A -t 10.0.0.1:80"));
    take();
    ctl.handle(ipvs("-A -t 10.0.0.1:80"));
    ctl.handle(ipvs("-a -t 10.0.0.1:80 -r 10.0.0.12 -m"));
    let lines = take();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|(l, _, m)| *l == log::Level::Warn && m.starts_with("refused: ")), "{lines:?}");
    assert!(lines[0].2.contains("service TCP 10.0.0.1:80 added") && lines[0].2.contains("exists"), "{lines:?}");

    // A publication the dataplane refuses is an error line, and the change is not logged.
    state.lock().unwrap().fail_next_publish = true;
    ctl.handle(ipvs("-a -t 10.0.0.1:80 -r 10.0.0.12"));
    let lines = take();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, log::Level::Error);
    assert!(lines[0].2.contains("fake publish failure"), "{lines:?}");

    // Addresses and a configuration file: one line per command plus the load summary.
    let dir = std::env::temp_dir().join(format!("ctl-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("director.conf");
    std::fs::write(&file, "addr add 198.51.100.2/24 dev dpdk0\n-A -t 198.51.100.100:80 -s rr\n").unwrap();
    control::config_file::load(&mut ctl, &file).unwrap();
    let lines = take();
    let texts: Vec<&str> = lines.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(texts[0], "address 198.51.100.2/24 added on dpdk0");
    assert!(texts[1].starts_with("service TCP 198.51.100.100:80 added (scheduler rr"), "{texts:?}");
    assert_eq!(texts[2], format!("configuration {} loaded: 2 command(s)", file.display()));
    std::fs::write(&file, "-A -t 198.51.100.100:80 -s nope\n").unwrap();
    assert!(control::config_file::load(&mut ctl, &file).is_err());
    let lines = take();
    let last = lines.last().unwrap();
    assert_eq!(last.0, log::Level::Error);
    assert!(last.2.starts_with("configuration not loaded: ") && last.2.contains("director.conf:1"), "{lines:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
