//! The socket server: concurrency, hostile input, timeouts, stop, socket file handling.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::ipvsadm::{IpvsCommand, ListOptions};
use control::proto::{
    client, decode_response, read_frame, write_frame, Op, Reply, Request, MAX_RESPONSE,
};
use control::serve;

fn list() -> Request {
    Request::new(Op::Ipvs(IpvsCommand::List(ListOptions {
        numeric: true,
        ..Default::default()
    })))
}

fn read_response(s: &mut UnixStream) -> control::proto::Response {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    decode_response(&read_frame(s, MAX_RESPONSE).unwrap()).unwrap()
}

fn assert_closed(s: &mut UnixStream, within: Duration) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed: {e}"),
    }
}

#[test]
fn socket_is_private_and_removed_on_stop() {
    let mut r = common::Running::start("perm");
    let mode = std::fs::metadata(&r.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(r.stop() < Duration::from_secs(2));
    assert!(!r.path.exists());
}

#[test]
fn stale_socket_is_replaced_and_live_one_refused() {
    let path = common::socket_path("stale");
    drop(UnixListener::bind(&path).unwrap()); // leaves a dead socket file behind
    assert!(path.exists());
    let (ctl, _) = common::controller();
    let stop = Arc::new(AtomicBool::new(false));
    let (p, s) = (path.clone(), Arc::clone(&stop));
    let h = std::thread::spawn(move || serve(&p, ctl, s));
    let deadline = Instant::now() + Duration::from_secs(5);
    let resp = loop {
        if let Ok(r) = client::request(&path, &list()) {
            break r;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(resp.result.is_ok());
    // A second director on the same path is refused while the first is alive.
    let (ctl2, _) = common::controller();
    let err = serve(&path, ctl2, Arc::new(AtomicBool::new(true))).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap().unwrap();

    // A regular file in the way is not deleted.
    std::fs::write(&path, b"precious").unwrap();
    let (ctl3, _) = common::controller();
    assert!(serve(&path, ctl3, Arc::new(AtomicBool::new(true))).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn concurrent_clients() {
    let r = common::Running::start("conc");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = r.path.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&path).unwrap();
                let add = format!("-A -t 10.0.{i}.1:80 -s rr");
                let args: Vec<String> = add.split_whitespace().map(str::to_string).collect();
                let req = Request::new(Op::Ipvs(control::ipvsadm::parse(&args).unwrap()));
                assert!(matches!(
                    client::exchange(&mut s, &req, Duration::from_secs(5))
                        .unwrap()
                        .result,
                    Ok(Reply::Warning(_))
                ));
                for _ in 0..20 {
                    let resp = client::exchange(&mut s, &list(), Duration::from_secs(5)).unwrap();
                    assert!(matches!(resp.result, Ok(Reply::Services { .. })));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let Ok(Reply::Services { services, .. }) = client::request(&r.path, &list()).unwrap().result
    else {
        panic!()
    };
    assert_eq!(services.len(), 8);
    assert_eq!(r.state.lock().unwrap().published.len(), 8);
}

#[test]
fn hostile_input_is_answered_or_dropped_and_server_survives() {
    let r = common::Running::start("hostile");

    // Garbage JSON in a well-formed frame: error response, connection stays usable.
    let mut s = UnixStream::connect(&r.path).unwrap();
    write_frame(&mut s, b"\x00\x01 not json {{{").unwrap();
    let e = read_response(&mut s).result.unwrap_err();
    assert!(
        e.message.starts_with("malformed request: not JSON"),
        "{}",
        e.message
    );
    write_frame(&mut s, br#"{"v":9,"op":"AddrShow"}"#).unwrap();
    assert!(read_response(&mut s)
        .result
        .unwrap_err()
        .message
        .contains("unsupported protocol version 9"));
    write_frame(&mut s, br#"{"v":1,"op":{"Ipvs":{"AddServer":{}}}}"#).unwrap();
    assert!(read_response(&mut s)
        .result
        .unwrap_err()
        .message
        .starts_with("malformed request:"));
    write_frame(&mut s, br#"{"v":1,"op":"AddrShow"}"#).unwrap();
    assert_eq!(read_response(&mut s).result, Ok(Reply::Addrs(vec![])));

    // Oversized length header: error response, then the connection is closed.
    let mut s = UnixStream::connect(&r.path).unwrap();
    s.write_all(&(2u32 << 20).to_be_bytes()).unwrap();
    s.write_all(b"xxxx").unwrap();
    let e = read_response(&mut s).result.unwrap_err();
    assert!(
        e.message.contains("request too large: 2097152 bytes"),
        "{}",
        e.message
    );
    assert_closed(&mut s, Duration::from_secs(2));
    let mut s = UnixStream::connect(&r.path).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(read_response(&mut s).result.is_err());

    // Truncated frames: header only, and header + part of the body, then close.
    for bytes in [&[0u8, 0][..], &[0, 0, 0, 100, b'{', b'"'][..], &[0xff][..]] {
        let mut s = UnixStream::connect(&r.path).unwrap();
        s.write_all(bytes).unwrap();
        drop(s);
    }
    // Random bytes.
    let mut s = UnixStream::connect(&r.path).unwrap();
    let _ = s.write_all(&[7u8; 3000]);
    drop(s);

    // A client that stalls mid-frame does not block others, and is cut after the frame timeout.
    let mut stalled = UnixStream::connect(&r.path).unwrap();
    stalled.write_all(&[0, 0, 0, 50, b'{']).unwrap();
    let t = Instant::now();
    assert!(client::request(&r.path, &list()).unwrap().result.is_ok());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "served while another client stalls"
    );
    assert_closed(&mut stalled, Duration::from_secs(8));

    // The server still answers a good request.
    assert!(matches!(
        client::request(&r.path, &list()).unwrap().result,
        Ok(Reply::Services { .. })
    ));
}

#[test]
fn stop_interrupts_idle_clients() {
    let mut r = common::Running::start("stop");
    let _idle = UnixStream::connect(&r.path).unwrap();
    let mut half = UnixStream::connect(&r.path).unwrap();
    half.write_all(&[0, 0]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let took = r.stop();
    assert!(took < Duration::from_secs(2), "serve took {took:?} to stop");
}

#[test]
fn too_many_clients_are_told_so_and_others_still_served() {
    let r = common::Running::start("busy");
    // MAX_CLIENTS connections, each proven served (so each holds a client thread).
    let mut held: Vec<UnixStream> = (0..control::server::MAX_CLIENTS)
        .map(|_| {
            let mut s = UnixStream::connect(&r.path).unwrap();
            let resp = client::exchange(&mut s, &list(), Duration::from_secs(5)).unwrap();
            assert!(resp.result.is_ok());
            s
        })
        .collect();
    // One more: an error response, then the connection is closed.
    let mut extra = UnixStream::connect(&r.path).unwrap();
    let e = read_response(&mut extra).result.unwrap_err();
    assert_eq!(e.message, "director busy: too many control clients");
    assert_closed(&mut extra, Duration::from_secs(2));
    // A held connection still works; after some close, new clients are served again.
    let resp = client::exchange(&mut held[0], &list(), Duration::from_secs(5)).unwrap();
    assert!(resp.result.is_ok());
    held.truncate(10);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = UnixStream::connect(&r.path).unwrap();
        match client::exchange(&mut s, &list(), Duration::from_secs(5)) {
            Ok(resp) if resp.result.is_ok() => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let r = common::Running::start("pipe");
    let mut s = UnixStream::connect(&r.path).unwrap();
    let reqs = [
        Request::new(Op::AddrShow),
        Request::new(Op::SysctlShow),
        Request::new(Op::ConfigShow),
        list(),
    ];
    let mut bytes = Vec::new();
    for q in &reqs {
        write_frame(&mut bytes, &control::proto::encode_request(q)).unwrap();
    }
    // A garbage frame in the middle of the pipeline, then a good one.
    write_frame(&mut bytes, b"{garbage").unwrap();
    write_frame(
        &mut bytes,
        &control::proto::encode_request(&Request::new(Op::AddrShow)),
    )
    .unwrap();
    s.write_all(&bytes).unwrap();
    assert!(matches!(read_response(&mut s).result, Ok(Reply::Addrs(_))));
    assert!(matches!(
        read_response(&mut s).result,
        Ok(Reply::Sysctls(_))
    ));
    assert!(matches!(read_response(&mut s).result, Ok(Reply::Config(_))));
    assert!(matches!(
        read_response(&mut s).result,
        Ok(Reply::Services { .. })
    ));
    assert!(read_response(&mut s).result.is_err());
    assert!(matches!(read_response(&mut s).result, Ok(Reply::Addrs(_))));
    // Every response carries the protocol version.
    write_frame(
        &mut s,
        &control::proto::encode_request(&Request::new(Op::AddrShow)),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = read_frame(&mut s, MAX_RESPONSE).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["v"], control::proto::PROTOCOL_VERSION);
}
