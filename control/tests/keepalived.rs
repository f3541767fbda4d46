//! keepalived.conf parser: golden inputs (DR adaptations of keepalived's own samples) to the
//! `lbadm save` text they produce, keepalived's defaults and corrections, refusals with
//! `FILE:LINE: reason`, includes, and the `check` lines' save/restore round trip.

mod common;

use std::path::PathBuf;

use control::config_file;
use control::keepalived::{self, parse};
use control::model::{ConfigCommand, Protocol, ServiceKey};
use control::names::NumericOnly;
use proptest::prelude::*;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keepalived")
        .join(name)
}

/// The configuration lines (no comments) `lbadm save` writes after loading `text`.
fn saved_after(text: &str) -> (String, Vec<String>) {
    let parsed = parse(text).unwrap_or_else(|e| panic!("{e}"));
    let (mut c, _) = common::controller();
    let cmds: Vec<ConfigCommand> = parsed.commands.iter().map(|l| l.cmd.clone()).collect();
    c.apply_transaction(&cmds).unwrap_or_else(|e| panic!("{e:?}"));
    let text = control::format::config_file(&c.dump());
    let lines: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    (lines, parsed.warnings)
}

#[test]
fn keepalived_samples_in_dr_load_to_the_golden_configuration() {
    for (name, want_warnings) in [
        ("keepalived.conf.sample.dr", vec![]),
        // keepalived itself says so for this sample.
        ("keepalived.conf.fwmark.dr", vec!["keepalived.conf:8: protocol specified for fwmark - protocol will be ignored"]),
    ] {
        let text = std::fs::read_to_string(data(name)).unwrap();
        let golden = std::fs::read_to_string(data(&format!("{name}.save"))).unwrap();
        let (saved, warnings) = saved_after(&text);
        assert_eq!(saved, golden, "{name}");
        assert_eq!(warnings, want_warnings, "{name}");
        // And the saved text loads back to the same configuration.
        let (mut c, _) = common::controller();
        config_file::apply_text(&mut c, &saved, &NumericOnly).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let again: String = control::format::config_file(&c.dump())
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(again, golden, "{name}: save/restore round trip");
    }
}

#[test]
fn keepalived_defaults_and_corrections() {
    let (saved, warnings) = saved_after(
        "virtual_server 192.0.2.10 80 {\n\
           lb_kind DR\n\
           persistence_timeout\n\
           quorum 5\n\
           real_server 192.0.2.21 8080 {\n\
             TCP_CHECK {\n\
             }\n\
           }\n\
           real_server 192.0.2.21 8080 {\n\
           }\n\
         }\n\
         virtual_server 192.0.2.11 0 {\n\
           lb_kind DR\n\
           protocol TCP\n\
           real_server 192.0.2.22 {\n\
           }\n\
         }\n\
         virtual_server 192.0.2.12 80 {\n\
           lb_kind DR\n\
           real_server 192.0.2.23 80 {\n\
           }\n\
         }\n",
    );
    assert_eq!(
        saved,
        "-A -u 192.0.2.10:80 -s wlc -p 360\n\
         -a -u 192.0.2.10:80 -r 192.0.2.21:80 -g -w 1\n\
         -A -t 192.0.2.11:0 -s wlc -p 360\n\
         -a -t 192.0.2.11:0 -r 192.0.2.22:0 -g -w 1\n\
         -A -u 192.0.2.12:80 -s wlc\n\
         -a -u 192.0.2.12:80 -r 192.0.2.23:80 -g -w 1\n\
         check add -u 192.0.2.10:80 -r 192.0.2.21:80 tcp --connect-port 8080\n",
        "UDP when no protocol, 360 s for a bare persistence_timeout or a port-0 service, the \
         real server's port reset to the virtual port (its checker keeps probing 8080)"
    );
    let w = warnings.join("\n");
    for want in [
        "keepalived.conf:1: no protocol set - defaulting to UDP",
        "keepalived.conf:9: real server 192.0.2.21:8080 is duplicated - removing second rs",
        "keepalived.conf:1: quorum 5 exceeds total weight of real servers 1, reducing quorum to 1",
        "keepalived.conf:5: virtual server and real server 192.0.2.21:8080 ports don't match - resetting",
        "keepalived.conf:12: zero port only valid for persistent services - setting",
    ] {
        assert!(w.contains(want), "missing warning {want:?} in:\n{w}");
    }
}

#[test]
fn checker_timing_inherits_virtual_then_real_server_values() {
    let p = parse(
        "virtual_server 192.0.2.10 80 {\n lb_kind DR\n protocol TCP\n delay_loop 2\n retry 4\n connect_timeout 1.5\n inhibit_on_failure\n alpha\n\
         real_server 192.0.2.21 80 {\n delay_before_retry 0.5\n notify_down \"/bin/logger -t lb down\"\n\
         MISC_CHECK {\n misc_path \"/bin/check 'a b'\"\n misc_dynamic\n }\n\
         SSL_GET {\n url {\n path /\n status_code 200 300-399\n }\n warmup 0\n retry 0\n enable_sni\n virtualhost www.example\n }\n\
         }\n}\nSSL {\n ca /etc/ssl/ca.pem\n}\n",
    )
    .unwrap();
    let checks: Vec<_> = p
        .commands
        .iter()
        .filter_map(|l| match &l.cmd {
            ConfigCommand::AddCheck(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(checks.len(), 2);
    let misc = &checks[0];
    let t = misc.spec.timing;
    assert_eq!((t.delay_loop_us, t.retry, t.delay_before_retry_us, t.warmup_us, t.alpha), (2_000_000, 4, 500_000, 2_000_000, true));
    match &misc.spec.kind {
        control::health::CheckKind::Misc(m) => {
            assert_eq!((m.path.as_str(), m.timeout_us, m.dynamic), ("/bin/check 'a b'", 2_000_000, true));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(misc.server.inhibit_on_failure, Some(true));
    assert_eq!(misc.server.notify_down.as_deref(), Some("/bin/logger -t lb down"));
    let ssl = &checks[1];
    assert_eq!((ssl.spec.timing.retry, ssl.spec.timing.warmup_us, ssl.spec.timing.connect_timeout_us), (0, 0, 1_500_000));
    match &ssl.spec.kind {
        control::health::CheckKind::Https(h) => {
            assert_eq!(h.ca.as_deref(), Some("/etc/ssl/ca.pem"), "the global SSL block, given after");
            assert!(h.enable_sni);
            assert_eq!(h.virtualhost.as_deref(), Some("www.example"));
            assert!(h.urls[0].status.accepts(302) && !h.urls[0].status.accepts(201));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn groups_expand_to_one_service_per_entry() {
    let p = parse(
        "virtual_server_group web {\n 192.0.2.1-3 80\n 198.51.100.0/31 443\n fwmark 7\n}\n\
         virtual_server group web {\n lb_kind DR\n protocol TCP\n persistence_timeout 60\n real_server 192.0.2.50 {\n TCP_CHECK {\n connect_port 80\n }\n }\n}\n",
    )
    .unwrap();
    let keys: Vec<ServiceKey> = p
        .commands
        .iter()
        .filter_map(|l| match &l.cmd {
            ConfigCommand::AddService(s) => Some(s.key),
            _ => None,
        })
        .collect();
    let tcp = |a: [u8; 4], port| ServiceKey::Addr { proto: Protocol::Tcp, addr: a.into(), port };
    assert_eq!(
        keys,
        vec![
            tcp([192, 0, 2, 1], 80),
            tcp([192, 0, 2, 2], 80),
            tcp([192, 0, 2, 3], 80),
            tcp([198, 51, 100, 0], 443),
            tcp([198, 51, 100, 1], 443),
            ServiceKey::Fwmark(7),
        ]
    );
    let checks = p.commands.iter().filter(|l| matches!(l.cmd, ConfigCommand::AddCheck(_))).count();
    assert_eq!(checks, 6, "the real server and its checker in every service of the group");
}

#[test]
fn refusals_name_the_file_and_line() {
    for (text, want) in [
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n real_server 192.0.2.21 80 {\n  wieght 1\n }\n}\n",
         "keepalived.conf:4: unknown keyword 'wieght' in real_server"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind NAT\n real_server 192.0.2.21 80 {\n }\n}\n",
         "keepalived.conf:2: lb_kind NAT is not supported: the director forwards by direct routing only (lb_kind DR)"),
        ("virtual_server 192.0.2.10 80 {\n lvs_method TUN\n real_server 192.0.2.21 80 {\n }\n}\n",
         "keepalived.conf:2: lb_kind TUN is not supported"),
        ("virtual_server 192.0.2.10 80 {\n real_server 192.0.2.21 80 {\n }\n}\n",
         "keepalived.conf:1: no lb_kind: keepalived's default is NAT"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n delay_loop fast\n}\n",
         "keepalived.conf:3: invalid delay_loop 'fast'"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n real_server 192.0.2.21 80 {\n  HTTP_GET {\n   url {\n    path /\n    digest 1234\n   }\n  }\n }\n}\n",
         "keepalived.conf:7: digest '1234' is not 32 hexadecimal digits"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n real_server 192.0.2.21 80 {\n  DNS_CHECK {\n  }\n }\n}\n",
         "keepalived.conf:4: DNS_CHECK is not supported by this director"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n", "keepalived.conf:1: missing '}' for the virtual_server block"),
        ("}\n", "keepalived.conf:1: unexpected '}'"),
        ("frobnicate 1\n", "keepalived.conf:1: unknown keyword 'frobnicate'"),
        ("include /etc/keepalived/lvs.conf\n", "keepalived.conf:1: include /etc/keepalived/lvs.conf: includes need a file"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n lb_algo lblc\n real_server 192.0.2.21 80 {\n }\n}\n",
         "keepalived.conf:3: scheduler lblc is not available in this director"),
        ("virtual_server 2001:db8::1 80 {\n}\n", "keepalived.conf:1: '2001:db8::1': IPv6 is not supported by this director"),
        ("virtual_server fwmark 3 {\n lb_kind DR\n real_server 192.0.2.21 {\n  TCP_CHECK {\n  }\n }\n}\n",
         "keepalived.conf:4: TCP_CHECK of a server without a port needs connect_port"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n real_server 192.0.2.21 80 {\n  notify_up /bin/up root\n }\n}\n",
         "keepalived.conf:4: notify_up: running scripts as another user is not supported"),
        ("virtual_server 192.0.2.10 80 {\n lb_kind DR\n quorum_up \"/bin/x\n}\n", "keepalived.conf:3: unterminated quoted string"),
    ] {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.starts_with(want), "{text}\n  got:  {e}\n  want: {want}");
    }
}

#[test]
fn global_defs_vrrp_and_comments_are_skipped() {
    let (saved, _) = saved_after(
        "# comment\n! comment too\nglobal_defs { router_id X\n lvs_sync_daemon eth0 VI_1 }\n\
         vrrp_script chk { script \"/bin/true\" }\nvrrp_sync_group G {\n group {\n  VI_1\n }\n}\n\
         vrrp_instance VI_1 { state MASTER\n virtual_ipaddress {\n 192.0.2.10\n }\n}\n\
         virtual_server 192.0.2.10 80 { lb_kind DR ! inline comment\n protocol TCP\n real_server 192.0.2.21 80 { weight 3 }\n}\n",
    );
    assert_eq!(saved, "-A -t 192.0.2.10:80 -s wlc\n-a -t 192.0.2.10:80 -r 192.0.2.21:80 -g -w 3\n");
}

#[test]
fn includes_resolve_relative_to_the_including_file() {
    let dir = std::env::temp_dir().join(format!("ka-include-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(dir.join("keepalived.conf"), "global_defs {\n}\ninclude conf.d/*.conf\n").unwrap();
    std::fs::write(
        dir.join("conf.d/a.conf"),
        "virtual_server 192.0.2.10 80 {\n lb_kind DR\n protocol TCP\n real_server 192.0.2.21 80 {\n }\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("conf.d/b.conf"), "\n\nvirtual_server 192.0.2.11 80 {\n bogus\n}\n").unwrap();
    let e = keepalived::load(&dir.join("keepalived.conf")).unwrap_err();
    assert_eq!(e.file, dir.join("conf.d/b.conf").display().to_string());
    assert_eq!(e.line, 4);
    std::fs::remove_file(dir.join("conf.d/b.conf")).unwrap();
    let p = keepalived::load(&dir.join("keepalived.conf")).unwrap();
    assert_eq!(p.commands.len(), 2);
    assert_eq!(p.commands[1].file, dir.join("conf.d/a.conf").display().to_string());
    assert_eq!(p.commands[1].line, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_refused_at_apply_time_changes_nothing_and_names_the_line() {
    let dir = std::env::temp_dir().join(format!("ka-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("keepalived.conf");
    std::fs::write(
        &f,
        "virtual_server 192.0.2.10 80 {\n lb_kind DR\n protocol TCP\n real_server 192.0.2.21 80 {\n }\n}\n\
         virtual_server 192.0.2.10 80 {\n lb_kind DR\n protocol TCP\n real_server 192.0.2.22 80 {\n }\n}\n",
    )
    .unwrap();
    let (mut c, state) = common::controller();
    let before = c.dump();
    let e = keepalived::apply_file(&mut c, &f).unwrap_err();
    assert_eq!(e.message, format!("{}:7: Service already exists", f.display()));
    assert_eq!(c.dump(), before);
    assert!(state.lock().unwrap().published.is_empty(), "nothing published");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_lines_round_trip_through_save() {
    let (mut c, _) = common::controller();
    let text = "-A -t 10.0.0.1:80 -s rr\n\
                -a -t 10.0.0.1:80 -r 10.0.0.11:80 -g -w 2\n\
                -a -t 10.0.0.1:80 -r 10.0.0.12:80 -g -w 1\n\
                check service -t 10.0.0.1:80 --quorum 2 --hysteresis 1 --sorry-server 127.0.0.1:80 --quorum-down '/bin/logger \"quorum lost\"'\n\
                check add -t 10.0.0.1:80 -r 10.0.0.11:80 https --delay-loop 1.5 --retry 2 --url /health --status-code 200,204 --url /x --digest 640205b7b0fc66c1ea91c463fac6334d --sni-name www.example --ca /etc/ca.pem --alpha --inhibit-on-failure --notify-up '/bin/up 10.0.0.11'\n\
                check add -t 10.0.0.1:80 -r 10.0.0.12:80 misc --misc-path '/usr/local/bin/check --port 80' --misc-timeout 3 --misc-dynamic --delay-loop 5\n\
                check add -t 10.0.0.1:80 -r 10.0.0.12:80 tcp --connect-port 8080 --bindto 10.0.0.2 --warmup 0\n";
    config_file::apply_text(&mut c, text, &NumericOnly).unwrap_or_else(|e| panic!("{e:?}"));
    let saved = control::format::config_file(&c.dump());
    let (mut d, _) = common::controller();
    config_file::apply_text(&mut d, &saved, &NumericOnly).unwrap_or_else(|e| panic!("{e:?}\n{saved}"));
    assert_eq!(d.dump(), c.dump(), "{saved}");
    assert!(saved.contains("check add -t 10.0.0.1:80 -r 10.0.0.11:80 https --delay-loop 1.5 --retry 2 --alpha"), "{saved}");
    // The alpha checker starts down: 10.0.0.11 is inhibited (weight 0) but saved with weight 2.
    assert!(saved.contains("-a -t 10.0.0.1:80 -r 10.0.0.11:80 -g -w 2\n"), "{saved}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..Default::default() })]

    /// Garbage never panics; it parses or gives one FILE:LINE error.
    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\n{}\"'!#]{0,400}") {
        if let Err(e) = parse(&text) {
            prop_assert!(e.to_string().starts_with("keepalived.conf:"));
        }
    }

    /// Fragments of valid configuration shuffled together either parse or name a line that
    /// exists.
    #[test]
    fn shuffled_keywords_fail_cleanly(words in proptest::collection::vec(prop_oneof![
        Just("virtual_server 192.0.2.1 80"), Just("{"), Just("}"), Just("lb_kind DR"), Just("real_server 192.0.2.2 80"),
        Just("TCP_CHECK"), Just("HTTP_GET"), Just("url"), Just("path /"), Just("retry 2"), Just("protocol TCP"),
        Just("sorry_server 192.0.2.9 80"), Just("quorum 2"), Just("MISC_CHECK"), Just("misc_path /bin/true"),
    ], 0..40)) {
        let text = words.join("\n");
        if let Err(e) = parse(&text) {
            prop_assert!(e.line <= words.len().max(1), "{e}");
        }
    }
}

/// README's and docs/examples' keepalived.conf and `lbadm` lines say the same thing: the
/// file loads to exactly those lines, and README shows both verbatim.
#[test]
fn the_documented_keepalived_conf_and_lbadm_lines_are_equivalent() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let conf = std::fs::read_to_string(root.join("docs/examples/health.keepalived.conf")).unwrap();
    let lines = std::fs::read_to_string(root.join("docs/examples/health.lbadm")).unwrap();
    let (saved, warnings) = saved_after(&conf);
    let want: String = lines.lines().map(|l| format!("{}\n", l.strip_prefix("lbadm ").unwrap_or(l))).collect();
    assert_eq!(saved, want, "lbadm save after loading the example:\n{saved}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (name, text) in [("keepalived.conf", &conf), ("lbadm lines", &lines)] {
        assert!(readme.contains(text.as_str()), "README.md does not show the example's {name} verbatim");
    }
}

/// The HA pair's keepalived.conf files (docs/keepalived/director-{a,b}.conf, also what
/// `netns_ha` runs keepalived with) load into the director as they are: `global_defs` and
/// the `vrrp_instance` are skipped, both files give the same services, servers and checks
/// (they differ only in VRRP), without warnings.
#[test]
fn the_ha_pair_keepalived_confs_load_to_the_same_services() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut saved = Vec::new();
    for name in ["director-a.conf", "director-b.conf"] {
        let conf = std::fs::read_to_string(root.join("docs/keepalived").join(name)).unwrap();
        assert!(conf.contains("vrrp_instance"), "{name}");
        let (s, warnings) = saved_after(&conf);
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        saved.push(s);
    }
    assert_eq!(saved[0], saved[1], "A and B differ only in VRRP");
    let s = &saved[0];
    println!("{s}");
    for line in [
        "-A -t 198.51.100.100:80 -s rr\n",
        "-A -t 198.51.100.100:0 -s rr -p 600\n",
        "-A -f 5 -s rr -p 600\n",
        "-a -t 198.51.100.100:80 -r 198.51.100.11:80 -g -w 1\n",
        "-a -f 5 -r 198.51.100.12:0 -g -w 1\n",
    ] {
        assert!(s.contains(line), "missing {line:?} in\n{s}");
    }
    assert_eq!(s.matches("check add ").count(), 6, "{s}");
    assert!(s.contains("check add -t 198.51.100.100:0 -r 198.51.100.11:0 tcp"), "{s}");
    assert!(s.contains("--connect-port 80"), "{s}");
}
