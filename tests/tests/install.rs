//! `make install` (scripts/install.sh, which `make install` runs after `make build`):
//!
//! * `staged_install_layout`: with DESTDIR, everything lands under it at the PREFIX paths:
//!   the binaries, the `ipvsadm` link to lbadm, the unit, the default configuration (mode
//!   0600) and EAL defaults; a second run keeps an edited configuration; an existing
//!   `ipvsadm` that is not our link is left alone.
//! * `unit_verifies_and_its_command_line_runs`: installed with PREFIX/SYSCONFDIR inside a
//!   temporary directory, the unit passes `systemd-analyze verify` (warnings included), and
//!   the director started the way the unit starts it — `--config` on the installed default
//!   configuration — runs and logs the configuration as loaded. The installed `director
//!   --help` prints EAL's options and then the director's own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tests::util::{describe, have_program, run_timeout, TempDir};
use tests::{director_bin, lbadm_bin, require_root_and_tools, DirectorOptions, OneArmed};

fn install(env: &[(&str, &Path)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install.sh");
    let mut c = Command::new("bash");
    c.arg(&script).env("DIRECTOR_BIN", director_bin()).env("LBADM_BIN", lbadm_bin());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run install.sh");
    assert!(out.status.success(), "{}", describe("scripts/install.sh", &out));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

#[test]
fn staged_install_layout() {
    let t = TempDir::new("lbt-install");
    let root = t.path();
    install(&[("DESTDIR", root)]);
    let sbin = root.join("usr/local/sbin");
    assert_eq!(mode(&sbin.join("director")), 0o755);
    assert_eq!(mode(&sbin.join("lbadm")), 0o755);
    assert_eq!(std::fs::read_link(sbin.join("ipvsadm")).unwrap(), Path::new("lbadm"));
    let unit = std::fs::read_to_string(root.join("usr/local/lib/systemd/system/director.service")).unwrap();
    assert!(
        unit.contains("\nExecStart=/usr/local/sbin/director $EAL_ARGS -- --config /etc/director.conf "),
        "{unit}"
    );
    assert!(unit.contains("\nEnvironmentFile=-/etc/default/director\n"), "{unit}");
    assert!(!unit.contains('@'), "unsubstituted template: {unit}");
    let conf = root.join("etc/director.conf");
    assert_eq!(mode(&conf), 0o600);
    // The default configuration is a valid file of lbadm lines (comments only).
    let text = std::fs::read_to_string(&conf).unwrap();
    let cmds = control::config_file::parse(&text, &control::names::NumericOnly).expect("default config parses");
    assert!(cmds.is_empty(), "the default configuration configures nothing: {cmds:?}");
    assert!(std::fs::read_to_string(root.join("etc/default/director")).unwrap().contains("\nEAL_ARGS="));
    assert!(root.join("usr/local/share/doc/director/README.md").is_file());

    // A second run keeps what the operator edited, and a real ipvsadm is not replaced.
    std::fs::write(&conf, "-A -t 198.51.100.100:80 -s rr\n").unwrap();
    std::fs::remove_file(sbin.join("ipvsadm")).unwrap();
    std::fs::write(sbin.join("ipvsadm"), "#!/bin/sh\n").unwrap();
    let out = install(&[("DESTDIR", root)]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "-A -t 198.51.100.100:80 -s rr\n");
    assert!(out.contains("/etc/director.conf (exists, kept)"), "{out}");
    assert!(out.contains("left alone"), "{out}");
    assert_eq!(std::fs::read_to_string(sbin.join("ipvsadm")).unwrap(), "#!/bin/sh\n");
}

#[test]
fn unit_verifies_and_its_command_line_runs() {
    let t = TempDir::new("lbt-install");
    let prefix = t.path();
    let etc = prefix.join("etc");
    install(&[("PREFIX", prefix), ("SYSCONFDIR", &etc)]);
    let unit = prefix.join("lib/systemd/system/director.service");

    if have_program("systemd-analyze") {
        let out = run_timeout("systemd-analyze", &["verify", unit.to_str().unwrap()], Duration::from_secs(60));
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "{}", describe("systemd-analyze verify", &out));
    } else if std::env::var_os("CI").is_some() {
        panic!("systemd-analyze missing (scripts/setup-host.sh installs systemd)");
    } else {
        eprintln!("SKIP (verify): no systemd-analyze");
    }

    // `director --help` (everything goes to EAL): EAL's usage, then the director's options.
    let installed = prefix.join("sbin/director");
    let out = run_timeout(installed.to_str().unwrap(), &["--help"], Duration::from_secs(30));
    let help = String::from_utf8_lossy(&out.stdout);
    let eal = help.find("EAL common options:").unwrap_or_else(|| panic!("no EAL usage:\n{help}"));
    let ours = help.find("--metrics <ADDR:PORT>").unwrap_or_else(|| panic!("no director options:\n{help}"));
    assert!(eal < ours && help.contains("--config <FILE>"), "{help}");

    // The unit's command line on the installed default configuration.
    let Some(_serial) = require_root_and_tools() else { return };
    let tb = OneArmed::new(1);
    let conf = etc.join("director.conf");
    let d = tb.start_director_with(&DirectorOptions {
        extra_args: vec!["--config".into(), conf.display().to_string()],
        ..Default::default()
    });
    let log = d.log_text();
    assert!(log.contains(&format!("configuration {} loaded: 0 command(s)", conf.display())), "{log}");
    assert_eq!(d.lbadm_ok(&["-L", "-n"]).lines().count(), 3, "no services");
}
