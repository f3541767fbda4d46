//! Configuration files: `lbadm save`, `lbadm restore [--atomic]`, `director --config`
//! (`config_file::load`), and the `Stage`/`Commit` transaction behind them.

mod common;

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use control::cli::{run, CliIo};
use control::config_file;
use control::names::NumericOnly;
use control::proto::{client, Op, Reply, Request};
use control::ConfigCommand;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn lbadm_in(sock: &Path, args: &[&str], stdin: &str) -> Out {
    let mut argv = vec!["--socket".to_string(), sock.display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let mut input = Cursor::new(stdin.as_bytes().to_vec());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = {
        let mut io = CliIo {
            stdin: &mut input,
            stdout: &mut out,
            stderr: &mut err,
            socket_env: None,
            names: &NumericOnly,
        };
        run(&argv, &mut io)
    };
    Out {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn ok(sock: &Path, args: &str) -> String {
    let v: Vec<&str> = args.split_whitespace().collect();
    let o = lbadm_in(sock, &v, "");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "lbadm {args}");
    o.stdout
}

/// Every listing that shows configuration, for comparing two directors.
fn listings(sock: &Path) -> Vec<(String, String)> {
    [
        "-S -n",
        "-L -n",
        "-L -n --nosort",
        "-L -n --thresholds",
        "-L -n --persistent-conn",
        "-L --timeout",
        "addr show",
        "iptables -t mangle -S",
        "mark show",
        "sysctl -a",
        "save",
        "--json save",
    ]
    .iter()
    .map(|a| (a.to_string(), ok(sock, a)))
    .collect()
}

/// A configuration using every kind of line.
const SETUP: &[&str] = &[
    "addr add 192.168.1.2/24 dev dpdk0",
    "addr add 192.168.1.100/32 dev dpdk0",
    "addr add 10.0.0.1/24 dev dpdk1",
    "iptables -t mangle -A PREROUTING -d 192.168.1.100 -p tcp --dport 80 -j MARK --set-mark 10",
    "iptables -t mangle -A PREROUTING -i dpdk0 -d 192.168.1.0/24 -p udp --dport 1000:2000 -j MARK --set-mark 0x20",
    "mark add -d 10.9.0.0/16 --set-mark 7",
    "sysctl -w net.ipv4.vs.expire_nodest_conn=1",
    "sysctl -w conn_reuse_mode=2",
    "sysctl -w pmtu_disc=0",
    "--set 1800 60 200",
    // Created out of sort order; servers added in an order that is not sorted either.
    "-A -u 192.168.1.100:53 -s rr",
    "-a -u 192.168.1.100:53 -r 10.0.0.22:53 -g -w 1",
    "-a -u 192.168.1.100:53 -r 10.0.0.21:53 -g -w 1",
    "-A -t 192.168.1.100:80 -s wlc -p 600 -M 255.255.255.0",
    "-a -t 192.168.1.100:80 -r 10.0.0.12 -g -w 0",
    "-a -t 192.168.1.100:80 -r 10.0.0.11 -g -w 3 -x 100 -y 50",
    "-a -t 192.168.1.100:80 -r 10.0.0.13 -g -w 2 -x 7",
    "-A -f 10 -s sh -p 360 -b sh-fallback,sh-port",
    "-a -f 10 -r 10.0.0.31:0 -g -w 2",
    "-A -t 192.168.1.100:0 -s wrr -p",
    "-a -t 192.168.1.100:0 -r 10.0.0.41 -g -w 5",
    "-A -f 7 -s mh -b mh-port",
    // A deleted service and server leave trash behind; not part of the saved file.
    "-A -t 192.168.1.100:8080",
    "-a -t 192.168.1.100:8080 -r 10.0.0.99",
    "-D -t 192.168.1.100:8080",
    "-a -u 192.168.1.100:53 -r 10.0.0.23:53",
    "-d -u 192.168.1.100:53 -r 10.0.0.23:53",
];

fn build(sock: &Path) {
    for l in SETUP {
        ok(sock, l);
    }
}

#[test]
fn save_restore_round_trip_into_an_empty_director() {
    let a = common::Running::start("cfg-a");
    build(&a.path);
    let saved = ok(&a.path, "save");
    assert!(saved.starts_with("# director configuration"), "{saved}");
    let body: Vec<&str> = saved.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        body,
        vec![
            "addr add 192.168.1.2/24 dev dpdk0",
            "addr add 192.168.1.100/32 dev dpdk0",
            "addr add 10.0.0.1/24 dev dpdk1",
            "iptables -t mangle -A PREROUTING -d 192.168.1.100/32 -p tcp -m tcp --dport 80 -j MARK --set-xmark 0xa/0xffffffff",
            "iptables -t mangle -A PREROUTING -d 192.168.1.0/24 -i dpdk0 -p udp -m udp --dport 1000:2000 -j MARK --set-xmark 0x20/0xffffffff",
            "iptables -t mangle -A PREROUTING -d 10.9.0.0/16 -j MARK --set-xmark 0x7/0xffffffff",
            "sysctl -w net.ipv4.vs.conn_reuse_mode=2",
            "sysctl -w net.ipv4.vs.expire_nodest_conn=1",
            "sysctl -w net.ipv4.vs.pmtu_disc=0",
            "--set 1800 60 200",
            "-A -u 192.168.1.100:53 -s rr",
            "-a -u 192.168.1.100:53 -r 10.0.0.22:53 -g -w 1",
            "-a -u 192.168.1.100:53 -r 10.0.0.21:53 -g -w 1",
            "-A -t 192.168.1.100:80 -s wlc -p 600 -M 255.255.255.0",
            "-a -t 192.168.1.100:80 -r 10.0.0.12:80 -g -w 0",
            "-a -t 192.168.1.100:80 -r 10.0.0.11:80 -g -w 3 -x 100 -y 50",
            "-a -t 192.168.1.100:80 -r 10.0.0.13:80 -g -w 2 -x 7",
            "-A -f 10 -s sh -p 360 -b sh-fallback,sh-port",
            "-a -f 10 -r 10.0.0.31:0 -g -w 2",
            "-A -t 192.168.1.100:0 -s wrr -p 360",
            "-a -t 192.168.1.100:0 -r 10.0.0.41:0 -g -w 5",
            "-A -f 7 -s mh -b mh-port",
        ]
    );

    // lbadm restore --atomic from stdin into an empty director.
    let b = common::Running::start("cfg-b");
    let o = lbadm_in(&b.path, &["restore", "--atomic"], &saved);
    assert_eq!((o.code, o.stderr.as_str(), o.stdout.as_str()), (0, "", ""));
    assert_eq!(
        b.state.lock().unwrap().published.len(),
        1,
        "one publication"
    );
    assert_eq!(listings(&a.path), listings(&b.path));

    // From a file, without --atomic.
    let dir = std::env::temp_dir().join(format!("cfg-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("director.conf");
    assert_eq!(ok(&a.path, &format!("save {}", file.display())), "");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), saved);
    let c = common::Running::start("cfg-c");
    let o = lbadm_in(&c.path, &["restore", &file.display().to_string()], "");
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(listings(&a.path), listings(&c.path));

    // director --config: the same file loaded into a fresh controller.
    let (mut ctl, state) = common::controller();
    assert_eq!(
        config_file::load_with(&mut ctl, &file, &NumericOnly),
        Ok(saved.lines().filter(|l| !l.starts_with('#')).count())
    );
    assert_eq!(state.lock().unwrap().published.len(), 1);
    assert_eq!(
        control::format::config_file(&ctl.dump()),
        saved,
        "loaded config saves identically"
    );
    // Server order (kernel order, newest first) survives: rr/wrr depend on it.
    let key = control::ServiceKey::Addr {
        proto: control::Protocol::Tcp,
        addr: "192.168.1.100".parse().unwrap(),
        port: 80,
    };
    let order: Vec<String> = ctl
        .config()
        .service(&key)
        .unwrap()
        .servers
        .iter()
        .map(|s| s.addr.to_string())
        .collect();
    assert_eq!(order, ["10.0.0.13", "10.0.0.11", "10.0.0.12"]);

    // save --json: the dump.
    let j: serde_json::Value = serde_json::from_str(&ok(&a.path, "--json save")).unwrap();
    assert_eq!(j["addrs"][1]["addr"], "192.168.1.100");
    assert_eq!(j["services"][0]["config"]["key"]["addr"]["port"], 53);
    assert_eq!(j["timeouts"]["tcp"], 1800);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn atomic_restore_is_all_or_nothing() {
    let r = common::Running::start("cfg-atomic");
    let s = &r.path;
    build(s);
    let before = listings(s);
    let published = r.state.lock().unwrap().published.len();

    // A refused command in the middle: every failure reported with its line, nothing changed.
    let text = "\
# a comment
-A -t 10.5.5.5:80 -s rr
-a -t 10.5.5.5:80 -r 10.0.0.50
addr add 10.5.5.5/32 dev dpdk0
-A -t 192.168.1.100:80
sysctl -w sloppy_tcp=1
-a -t 10.6.6.6:80 -r 10.0.0.51
mark add -d 10.5.5.5 --set-mark 99
";
    let o = lbadm_in(s, &["restore", "--atomic", "-"], text);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            255,
            "stdin:5: Service already exists\n\
             stdin:7: Service not defined\n\
             lbadm: stdin: nothing changed (2 of 7 commands failed)\n"
        )
    );
    assert_eq!(listings(s), before, "configuration untouched");
    assert_eq!(
        r.state.lock().unwrap().published.len(),
        published,
        "nothing published"
    );

    // A parse error anywhere: nothing is sent.
    let o = lbadm_in(
        s,
        &["restore", "--atomic"],
        "-A -t 10.5.5.5:80\n-A -t 10.5.5.6:80 -w 2\n",
    );
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "stdin:2: Illegal 'weight' option with the 'add-service' command\n\
             lbadm: stdin: nothing changed\n"
        )
    );
    let o = lbadm_in(s, &["restore", "--atomic"], "-A -t 10.5.5.5:80\n-L -n\n");
    assert_eq!(o.code, 2);
    assert!(
        o.stderr
            .starts_with("stdin:2: lbadm: -L is not a configuration change"),
        "{}",
        o.stderr
    );
    assert_eq!(listings(s), before);
    assert_eq!(r.state.lock().unwrap().published.len(), published);

    // The director refusing the result as a whole (publish failure): nothing changed.
    r.state.lock().unwrap().fail_next_publish = true;
    let o = lbadm_in(s, &["restore", "--atomic"], "-A -t 10.5.5.5:80\n");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            255,
            "lbadm: stdin: fake publish failure\nlbadm: stdin: nothing changed\n"
        )
    );
    assert_eq!(listings(s), before);

    // A valid file is applied as one publication.
    let o = lbadm_in(
        s,
        &["restore", "--atomic"],
        "-C\n-A -t 10.5.5.5:80 -s rr\nlbadm -a -t 10.5.5.5:80 -r 10.0.0.50 -w 4\n",
    );
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(r.state.lock().unwrap().published.len(), published + 1);
    assert_eq!(
        ok(s, "-S -n"),
        "-A -t 10.5.5.5:80 -s rr\n-a -t 10.5.5.5:80 -r 10.0.0.50:80 -g -w 4\n"
    );

    // Missing file, bad usage.
    let o = lbadm_in(
        s,
        &["restore", "--atomic", "/nonexistent/director.conf"],
        "",
    );
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .starts_with("lbadm: cannot read /nonexistent/director.conf: "),
        "{}",
        o.stderr
    );
    let o = lbadm_in(s, &["restore", "--bogus"], "");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "lbadm: usage: restore [--atomic] [FILE|-] | restore --keepalived FILE\n")
    );
    let o = lbadm_in(s, &["save", "a", "b"], "");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (2, "lbadm: usage: save [FILE]\n")
    );
    let o = lbadm_in(s, &["save", "/nonexistent/dir/director.conf"], "");
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .starts_with("lbadm: cannot write /nonexistent/dir/director.conf: "),
        "{}",
        o.stderr
    );
}

#[test]
fn plain_restore_goes_line_by_line() {
    let r = common::Running::start("cfg-plain");
    let s = &r.path;
    // Refused lines are reported and skipped; the last line's status is the exit status.
    let o = lbadm_in(
        s,
        &["restore"],
        "-A -t 10.5.5.5:80\n-A -t 10.5.5.5:80\naddr add 10.5.5.5/32 dev dpdk9\n-A -t 10.5.5.6:80\n",
    );
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            0,
            "stdin:2: Service already exists\nstdin:3: Cannot find device \"dpdk9\"\n"
        )
    );
    assert_eq!(
        ok(s, "-S -n"),
        "-A -t 10.5.5.5:80 -s wlc\n-A -t 10.5.5.6:80 -s wlc\n"
    );
    // A parse error stops: the lines before it are applied, its status wins.
    let o = lbadm_in(
        s,
        &["restore"],
        "-D -t 10.5.5.5:80\n-A -t 1.1.1.1\n-D -t 10.5.5.6:80\n",
    );
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            2,
            "stdin:2: Zero port specified for non-persistent service\n"
        )
    );
    assert_eq!(ok(s, "-S -n"), "-A -t 10.5.5.6:80 -s wlc\n");
}

#[test]
fn director_config_load_reports_file_and_line() {
    let dir = std::env::temp_dir().join(format!("cfg-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.conf");

    // A refused command: FILE:LINE: message, nothing applied, nothing published.
    std::fs::write(
        &file,
        "addr add 10.0.0.1/24 dev dpdk0\n\n-A -t 10.0.0.100:80\n-a -t 10.0.0.100:81 -r 10.0.0.2\n",
    )
    .unwrap();
    let (mut ctl, state) = common::controller();
    let e = config_file::load_with(&mut ctl, &file, &NumericOnly).unwrap_err();
    assert_eq!(
        e.message,
        format!("{}:4: Service not defined", file.display())
    );
    assert_eq!(e.exit_code, 255);
    assert_eq!(ctl.config().generation(), 0);
    assert!(ctl.config().addrs().is_empty());
    assert!(state.lock().unwrap().published.is_empty());

    // A parse error.
    std::fs::write(
        &file,
        "-A -t 10.0.0.100:80\n-a -t 10.0.0.100:80 -r 10.0.0.2 -w 70000\n",
    )
    .unwrap();
    let e = config_file::load_with(&mut ctl, &file, &NumericOnly).unwrap_err();
    assert_eq!(
        e.message,
        format!("{}:2: illegal weight specified", file.display())
    );
    assert_eq!(e.exit_code, 2);

    // An unknown port.
    std::fs::write(&file, "addr add 10.0.0.1/24 dev eth0\n").unwrap();
    let e = config_file::load_with(&mut ctl, &file, &NumericOnly).unwrap_err();
    assert_eq!(
        e.message,
        format!("{}:1: Cannot find device \"eth0\"", file.display())
    );

    // Publication refused as a whole.
    std::fs::write(&file, "-A -t 10.0.0.100:80\n").unwrap();
    state.lock().unwrap().fail_next_publish = true;
    let e = config_file::load_with(&mut ctl, &file, &NumericOnly).unwrap_err();
    assert_eq!(
        e.message,
        format!("{}: fake publish failure", file.display())
    );
    assert_eq!(ctl.config().service_count(), 0);

    // Unreadable.
    let e = config_file::load_with(&mut ctl, &dir.join("missing.conf"), &NumericOnly).unwrap_err();
    assert!(
        e.message.contains("missing.conf: cannot read: "),
        "{}",
        e.message
    );

    // Good: applied, one publication.
    std::fs::write(&file, "# empty director\n-A -t 10.0.0.100:80\n").unwrap();
    assert_eq!(config_file::load_with(&mut ctl, &file, &NumericOnly), Ok(1));
    assert_eq!(state.lock().unwrap().published, vec![1]);
    // An empty file is fine and publishes nothing new... but still one (empty) transaction.
    std::fs::write(&file, "\n# nothing\n").unwrap();
    let (mut ctl2, _) = common::controller();
    assert_eq!(
        config_file::load_with(&mut ctl2, &file, &NumericOnly),
        Ok(0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn staged_transactions_belong_to_their_connection() {
    let r = common::Running::start("cfg-stage");
    let add = |a: &str| {
        let args: Vec<String> = format!("-A -t {a}:80")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        control::ipvsadm::parse(&args)
            .unwrap()
            .config_command()
            .unwrap()
    };
    let t = Duration::from_secs(5);
    let mut c1 = std::os::unix::net::UnixStream::connect(&r.path).unwrap();
    let mut c2 = std::os::unix::net::UnixStream::connect(&r.path).unwrap();
    let ex = |c: &mut std::os::unix::net::UnixStream, op: Op| {
        client::exchange(c, &Request::new(op), t).unwrap().result
    };
    assert_eq!(
        ex(&mut c1, Op::Stage(vec![add("10.0.0.1")])),
        Ok(Reply::Staged(1))
    );
    assert_eq!(
        ex(&mut c2, Op::Stage(vec![add("10.0.0.2"), add("10.0.0.3")])),
        Ok(Reply::Staged(2))
    );
    assert_eq!(
        ex(&mut c1, Op::Stage(vec![add("10.0.0.4")])),
        Ok(Reply::Staged(2))
    );
    // Nothing is applied before Commit.
    assert_eq!(ok(&r.path, "-S -n"), "");
    assert_eq!(ex(&mut c2, Op::Discard), Ok(Reply::Ok));
    assert_eq!(
        ex(&mut c2, Op::Commit { atomic: true }),
        Ok(Reply::Batch(vec![]))
    );
    assert_eq!(
        ex(&mut c1, Op::Commit { atomic: true }),
        Ok(Reply::Batch(vec![Ok(()), Ok(())]))
    );
    assert_eq!(
        ok(&r.path, "-S -n"),
        "-A -t 10.0.0.1:80 -s wlc\n-A -t 10.0.0.4:80 -s wlc\n"
    );
    // Commit empties the transaction.
    assert_eq!(
        ex(&mut c1, Op::Commit { atomic: false }),
        Ok(Reply::Batch(vec![]))
    );
    // A connection that closes with staged commands leaves nothing behind.
    assert_eq!(
        ex(&mut c2, Op::Stage(vec![add("10.0.0.9")])),
        Ok(Reply::Staged(1))
    );
    drop(c2);
    let mut c3 = std::os::unix::net::UnixStream::connect(&r.path).unwrap();
    assert_eq!(
        ex(&mut c3, Op::Commit { atomic: true }),
        Ok(Reply::Batch(vec![]))
    );
    assert!(!ok(&r.path, "-S -n").contains("10.0.0.9"));
    // Non-atomic commit: failures skipped, the rest applied.
    assert_eq!(
        ex(&mut c3, Op::Stage(vec![add("10.0.0.1"), add("10.0.0.5")])),
        Ok(Reply::Staged(2))
    );
    assert_eq!(
        ex(&mut c3, Op::Commit { atomic: false }),
        Ok(Reply::Batch(vec![
            Err(control::CtlError::service_exists()),
            Ok(())
        ]))
    );
    assert!(ok(&r.path, "-S -n").contains("10.0.0.5"));
}

#[test]
fn oversized_transactions_are_refused() {
    let (mut ctl, _) = common::controller();
    let mut session = control::server::Session::default();
    let cmd = ConfigCommand::FlushMarks;
    let chunk = vec![cmd; 1 << 16];
    let mut n = 0;
    loop {
        let r = ctl
            .handle_in(&mut session, Request::new(Op::Stage(chunk.clone())))
            .result;
        match r {
            Ok(Reply::Staged(k)) => {
                n += chunk.len();
                assert_eq!(k as usize, n);
            }
            Err(e) => {
                assert!(
                    e.message.starts_with("transaction too large"),
                    "{}",
                    e.message
                );
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(n <= control::server::MAX_STAGED);
    }
    assert_eq!(n, control::server::MAX_STAGED);
    assert_eq!(session.staged(), 0, "discarded");
}

#[test]
fn large_files_are_staged_in_several_requests() {
    let r = common::Running::start("cfg-large");
    // 6000 services, 250 of them with 4 servers (the fake director has 1024 server slots):
    // 7000 commands, several Stage requests, one publication.
    let mut text = String::new();
    for i in 0..6000u32 {
        let vip = format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256);
        text.push_str(&format!("-A -t {vip}:80 -s rr\n"));
        if i < 250 {
            for k in 0..4 {
                text.push_str(&format!(
                    "-a -t {vip}:80 -r 172.16.{k}.{} -g -w {}\n",
                    1 + i,
                    k + 1
                ));
            }
        }
    }
    let o = lbadm_in(&r.path, &["restore", "--atomic"], &text);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(r.state.lock().unwrap().published.len(), 1);
    assert_eq!(ok(&r.path, "-S -n").lines().count(), 7000);
}

/// The request/response examples of docs/protocol.md, replayed in order against a controller
/// (one connection's session): every `→` line is a request this server decodes, every `←`
/// line exactly its answer (an answer containing `…` is compared up to it).
#[test]
fn protocol_doc_examples_are_what_the_server_answers() {
    let doc = include_str!("../../docs/protocol.md");
    let (mut ctl, _) = common::controller();
    let mut session = control::server::Session::default();
    let mut pending: Option<control::proto::Response> = None;
    let mut checked = 0;
    for line in doc.lines() {
        if let Some(req) = line.strip_prefix("→ ") {
            assert!(pending.is_none(), "two requests in a row before {req}");
            pending = Some(match control::proto::decode_request(req.as_bytes()) {
                Ok(r) => ctl.handle_in(&mut session, r),
                Err(e) => control::proto::Response::err(e),
            });
        } else if let Some(want) = line.strip_prefix("← ") {
            let got = pending.take().expect("answer without request");
            let got_json = serde_json::to_string(&got).unwrap();
            if let Some((prefix, _)) = want.split_once('…') {
                let prefix = prefix.trim_end_matches(['`', ' ', ',']);
                assert!(
                    got_json.starts_with(prefix),
                    "doc: {want}\nserver: {got_json}"
                );
            } else {
                let want: serde_json::Value = serde_json::from_str(want)
                    .unwrap_or_else(|e| panic!("doc line is not JSON ({e}): {want}"));
                assert_eq!(
                    serde_json::to_value(&got).unwrap(),
                    want,
                    "server: {got_json}"
                );
                // And the documented response is one a client decodes.
                control::proto::decode_response(
                    line.strip_prefix("← ").unwrap_or_default().as_bytes(),
                )
                .unwrap();
            }
            checked += 1;
        }
    }
    assert!(checked >= 13, "only {checked} examples found");
}

/// `--json` on every listing prints the documented shape (docs/protocol.md, "lbadm --json").
#[test]
fn json_on_every_listing() {
    let r = common::Running::start("cfg-json");
    let s = &r.path;
    build(s);
    r.state.lock().unwrap().conns = vec![common::conn(40000)];
    let j = |args: &str| -> serde_json::Value {
        let out = ok(s, &format!("--json {args}"));
        assert!(out.ends_with('\n'), "{args}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("lbadm --json {args}: {e}\n{out}"))
    };
    for args in [
        "-L",
        "-L -n",
        "-l -n --stats --exact",
        "-L -n --rate",
        "-L -n --thresholds",
        "-L -n --persistent-conn",
        "-L -n --tun-info",
        "-L -n --nosort",
        "-S -n",
        "-S",
    ] {
        let v = j(args);
        assert_eq!(v["table_size"], 4096, "{args}");
        assert_eq!(v["services"].as_array().unwrap().len(), 5, "{args}");
        assert!(
            v["services"][0]["servers"][0]["server"]["weight"].is_u64(),
            "{args}"
        );
        assert!(v["services"][0]["rates"]["cps"].is_u64(), "{args}");
    }
    // Sorted like ipvsadm unless --nosort: TCP 192.168.1.100:0 first, in creation order UDP :53.
    assert_eq!(
        j("-L -n")["services"][0]["config"]["key"]["addr"]["port"],
        0
    );
    assert_eq!(
        j("-L -n --nosort")["services"][0]["config"]["key"]["addr"]["port"],
        53
    );
    let one = j("-L -n -u 192.168.1.100:53");
    assert_eq!(one["services"].as_array().unwrap().len(), 1);
    assert_eq!(j("-L -n -c")[0]["cport"], 40000);
    assert_eq!(j("-L --timeout")["tcp"], 1800);
    assert_eq!(j("-L --daemon"), serde_json::json!([]));
    assert_eq!(j("addr show").as_array().unwrap().len(), 3);
    assert_eq!(j("addr show dev dpdk1")[0]["addr"], "10.0.0.1");
    assert_eq!(j("neigh show")[0]["state"], "REACHABLE");
    assert_eq!(j("link show")[0]["name"], "dpdk0");
    for args in [
        "mark show",
        "iptables -t mangle -L -n -v",
        "iptables -t mangle -S",
    ] {
        let v = j(args);
        assert_eq!(v.as_array().unwrap().len(), 3, "{args}");
        assert_eq!(v[0]["rule"]["mark"], 10, "{args}");
        assert!(v[0]["packets"].is_u64(), "{args}");
    }
    assert_eq!(j("sysctl -a")["net.ipv4.vs.conn_reuse_mode"], 2);
    assert_eq!(
        j("sysctl conn_reuse_mode"),
        serde_json::json!({"net.ipv4.vs.conn_reuse_mode": 2})
    );
    let d = j("save");
    assert_eq!(d["services"].as_array().unwrap().len(), 5);
    assert_eq!(d["marks"][1]["dport"], serde_json::json!([1000, 2000]));
    assert_eq!(d["sysctls"]["pmtu_disc"], false);
}

#[test]
fn staged_commands_get_the_director_refusals() {
    let (mut ctl, _) = common::controller();
    let mut session = control::server::Session::default();
    let cmd = |s: &str| {
        let args: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        control::ipvsadm::parse(&args)
            .unwrap()
            .config_command()
            .unwrap()
    };
    let staged = vec![
        cmd("-A -t 10.0.0.1:80"),
        cmd("-a -t 10.0.0.1:80 -r 10.0.0.2 -m"),
        cmd("-A -u 10.0.0.1:53 -o"),
        cmd("-A -u 10.0.0.1:54 --pe sip -p"),
    ];
    ctl.handle_in(&mut session, Request::new(Op::Stage(staged.clone())));
    let Ok(Reply::Batch(r)) = ctl
        .handle_in(&mut session, Request::new(Op::Commit { atomic: false }))
        .result
    else {
        panic!()
    };
    assert_eq!(r[0], Ok(()));
    for e in &r[1..] {
        let e = e.as_ref().unwrap_err();
        assert_eq!(e.exit_code, 255);
        assert!(e.message.starts_with("director "), "{}", e.message);
    }
    assert_eq!(ctl.config().service_count(), 1);
    let e = ctl.apply_transaction(&staged[1..2]).unwrap_err();
    assert_eq!(e.index, Some(0));
}
