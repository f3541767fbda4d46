//! Controller semantics against a fake backend (no socket).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use control::iptables::MarkCommand;
use control::ipvsadm::{parse, IpvsCommand, ListOptions};
use control::proto::{MarkCounters, Op, Reply, Request, ServerStats};
use control::{CtlError, MarkRule, ServiceKey, Slot, Sysctls};

fn ipvs(s: &str) -> Request {
    let args: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    Request::new(Op::Ipvs(parse(&args).unwrap()))
}

fn vip80() -> ServiceKey {
    ServiceKey::Addr {
        proto: control::Protocol::Tcp,
        addr: Ipv4Addr::new(192, 168, 1, 100),
        port: 80,
    }
}

#[test]
fn changes_are_published_and_failed_publish_changes_nothing() {
    let (mut ctl, state) = common::controller();
    // Done, with a warning: the VIP is not (yet) an address of the director.
    assert!(matches!(
        ctl.handle(ipvs("-A -t 192.168.1.100:80 -s rr")).result,
        Ok(Reply::Warning(w)) if w.starts_with("192.168.1.100 is not an address")
    ));
    assert_eq!(
        ctl.handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.11"))
            .result,
        Ok(Reply::Ok)
    );
    assert_eq!(state.lock().unwrap().published, vec![1, 2]);
    let gen = ctl.config().generation();

    state.lock().unwrap().fail_next_publish = true;
    let r = ctl.handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.12"));
    assert_eq!(r.result, Err(CtlError::refused("fake publish failure")));
    assert_eq!(ctl.config().generation(), gen);
    assert_eq!(ctl.config().service(&vip80()).unwrap().servers.len(), 1);
    // The same command succeeds once publishing works again.
    assert_eq!(
        ctl.handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.12"))
            .result,
        Ok(Reply::Ok)
    );
    assert_eq!(state.lock().unwrap().last_servers.len(), 2);

    // Refused and failing commands do not publish.
    let n = state.lock().unwrap().published.len();
    assert_eq!(
        ctl.handle(ipvs("-A -t 192.168.1.100:80")).result,
        Err(CtlError::service_exists())
    );
    assert_eq!(
        ctl.handle(ipvs("-A -t 1.1.1.1:80 -s nope")).result,
        Err(CtlError::scheduler_not_found())
    );
    let masq = ctl
        .handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.13 -m"))
        .result
        .unwrap_err();
    assert_eq!(masq.exit_code, 255);
    assert_eq!(state.lock().unwrap().published.len(), n);
}

#[test]
fn listings_merge_counters_and_zero() {
    let (mut ctl, state) = common::controller();
    ctl.handle(ipvs("-A -t 192.168.1.100:80 -p 600"));
    ctl.handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.11 -w 3"));
    ctl.handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.12"));
    let ids: Vec<_> = ctl
        .config()
        .service(&vip80())
        .unwrap()
        .servers
        .iter()
        .map(|s| s.id)
        .collect();
    {
        let mut s = state.lock().unwrap();
        s.stats.insert(
            ids[0],
            ServerStats {
                active: 2,
                inactive: 5,
                persist: 1,
                conns: 40,
                inpkts: 400,
                inbytes: 40_000,
                ..Default::default()
            },
        );
        s.stats.insert(
            ids[1],
            ServerStats {
                conns: 2,
                inpkts: 20,
                inbytes: 2_000,
                ..Default::default()
            },
        );
    }
    let Ok(Reply::Services {
        table_size,
        services,
    }) = ctl.handle(ipvs("-L -n")).result
    else {
        panic!()
    };
    assert_eq!(table_size, 4096);
    assert_eq!(services.len(), 1);
    let s = &services[0];
    assert_eq!((s.conns, s.inpkts, s.inbytes), (42, 420, 42_000));
    assert_eq!(
        s.servers[0].server.addr,
        Ipv4Addr::new(10, 0, 0, 12),
        "kernel order: newest first"
    );
    assert_eq!(
        (
            s.servers[0].active,
            s.servers[0].inactive,
            s.servers[0].persist
        ),
        (2, 5, 1)
    );

    // -Z: counters restart from zero; connection gauges are kept.
    assert_eq!(
        ctl.handle(ipvs("-Z -t 192.168.1.100:80")).result,
        Ok(Reply::Ok)
    );
    state.lock().unwrap().stats.get_mut(&ids[0]).unwrap().conns += 3;
    let Ok(Reply::Services { services, .. }) = ctl.handle(ipvs("-L -n --stats")).result else {
        panic!()
    };
    assert_eq!(services[0].conns, 3);
    assert_eq!(services[0].servers[0].active, 2);
    assert_eq!(
        ctl.handle(ipvs("-Z -t 9.9.9.9:80")).result,
        Err(CtlError::no_such_service())
    );

    // Single-service listing and its failure (exit status 1).
    let Ok(Reply::Services { services, .. }) = ctl.handle(ipvs("-L -n -t 192.168.1.100:80")).result
    else {
        panic!()
    };
    assert_eq!(services.len(), 1);
    let e = ctl
        .handle(ipvs("-L -n -t 192.168.1.100:81"))
        .result
        .unwrap_err();
    assert_eq!((e.message.as_str(), e.exit_code), ("No such service", 1));

    // Connections, timeouts, daemons, save.
    state.lock().unwrap().conns = vec![common::conn(1234)];
    assert!(
        matches!(ctl.handle(ipvs("-L -n -c")).result, Ok(Reply::Connections(c)) if c.len() == 1)
    );
    assert!(
        matches!(ctl.handle(ipvs("-L --timeout")).result, Ok(Reply::Timeouts(t)) if t.tcp == 900)
    );
    assert_eq!(ctl.handle(ipvs("--set 0 60 0")).result, Ok(Reply::Ok));
    assert!(
        matches!(ctl.handle(ipvs("-L --timeout")).result, Ok(Reply::Timeouts(t)) if t.tcp_fin == 60 && t.udp == 300)
    );
    assert_eq!(
        ctl.handle(ipvs("-L --daemon")).result,
        Ok(Reply::Daemons(vec![]))
    );
    assert!(matches!(
        ctl.handle(ipvs("-S -n")).result,
        Ok(Reply::Services { .. })
    ));
    assert_eq!(
        ctl.handle(ipvs("--stop-daemon master")).result,
        Err(CtlError::no_daemon())
    );
    assert_eq!(
        ctl.handle(ipvs("--start-daemon master"))
            .result
            .unwrap_err()
            .exit_code,
        255
    );
}

#[test]
fn rates_follow_counters() {
    let (mut ctl, state) = common::controller();
    ctl.handle(ipvs("-A -u 10.0.0.1:53 -s rr"));
    ctl.handle(ipvs("-a -u 10.0.0.1:53 -r 10.0.0.21"));
    let id = ctl
        .config()
        .service(&ServiceKey::Addr {
            proto: control::Protocol::Udp,
            addr: Ipv4Addr::new(10, 0, 0, 1),
            port: 53,
        })
        .unwrap()
        .servers[0]
        .id;
    let t0 = Instant::now();
    for i in 0..80u64 {
        state.lock().unwrap().stats.insert(
            id,
            ServerStats {
                conns: 100 * i,
                inpkts: 1000 * i,
                ..Default::default()
            },
        );
        ctl.tick(t0 + Duration::from_secs(2 * i));
    }
    let Ok(Reply::Services { services, .. }) = ctl.handle(ipvs("-L -n --rate")).result else {
        panic!()
    };
    assert_eq!(
        (
            services[0].servers[0].rates.cps,
            services[0].servers[0].rates.inpps
        ),
        (50, 500)
    );
    assert_eq!(services[0].rates.cps, 50);
}

#[test]
fn trash_is_reclaimed_only_when_idle() {
    let (mut ctl, state) = common::controller();
    ctl.handle(ipvs("-A -t 192.168.1.100:80"));
    ctl.handle(ipvs("-a -t 192.168.1.100:80 -r 10.0.0.11"));
    let id = ctl.config().service(&vip80()).unwrap().servers[0].id;
    state.lock().unwrap().stats.insert(
        id,
        ServerStats {
            active: 1,
            ..Default::default()
        },
    );
    ctl.handle(ipvs("-d -t 192.168.1.100:80 -r 10.0.0.11"));
    let t0 = Instant::now();
    ctl.tick(t0);
    ctl.tick(t0 + Duration::from_secs(200));
    assert!(
        matches!(ctl.config().slot(id), Slot::Trash { .. }),
        "in use: kept"
    );
    state.lock().unwrap().stats.clear();
    ctl.tick(t0 + Duration::from_secs(250));
    assert!(
        matches!(ctl.config().slot(id), Slot::Trash { .. }),
        "idle for only 50 s"
    );
    ctl.tick(t0 + Duration::from_secs(321));
    assert_eq!(ctl.config().slot(id), Slot::Free);
}

#[test]
fn restore_applies_in_order_and_publishes_once() {
    let (mut ctl, state) = common::controller();
    let p = |s: &str| parse(&s.split_whitespace().map(str::to_string).collect::<Vec<_>>()).unwrap();
    let cmds = vec![
        p("-A -t 192.168.1.100:80 -s wlc"),
        p("-a -t 192.168.1.100:80 -r 10.0.0.11"),
        p("-a -t 192.168.1.100:80 -r 10.0.0.11"),
        p("-a -t 192.168.1.100:80 -r 10.0.0.12 -m"),
        p("-L -n"),
        p("-a -t 192.168.1.100:80 -r 10.0.0.12"),
    ];
    let Ok(Reply::Batch(results)) = ctl.handle(Request::new(Op::Restore(cmds.clone()))).result
    else {
        panic!()
    };
    assert_eq!(results.len(), 6);
    assert!(results[0].is_ok() && results[1].is_ok() && results[5].is_ok());
    assert_eq!(results[2], Err(CtlError::destination_exists()));
    assert_eq!(results[3].as_ref().unwrap_err().exit_code, 255);
    assert_eq!(results[4].as_ref().unwrap_err().exit_code, 255);
    assert_eq!(state.lock().unwrap().published.len(), 1);
    assert_eq!(ctl.config().service(&vip80()).unwrap().servers.len(), 2);

    // A failed publish turns every applied change into that error and changes nothing.
    state.lock().unwrap().fail_next_publish = true;
    let Ok(Reply::Batch(results)) = ctl
        .handle(Request::new(Op::Restore(vec![p("-C"), p("-A -f 1")])))
        .result
    else {
        panic!()
    };
    assert!(results
        .iter()
        .all(|r| r == &Err(CtlError::refused("fake publish failure"))));
    assert_eq!(ctl.config().service_count(), 1);
}

#[test]
fn addresses_and_director_tables() {
    let (mut ctl, _state) = common::controller();
    let add = |dev: &str| {
        Request::new(Op::AddrAdd {
            addr: Ipv4Addr::new(192, 168, 1, 100),
            prefix_len: 32,
            dev: dev.into(),
        })
    };
    assert_eq!(ctl.handle(add("dpdk0")).result, Ok(Reply::Ok));
    assert_eq!(
        ctl.handle(add("dpdk0")).result,
        Err(CtlError::addr_exists())
    );
    assert_eq!(
        ctl.handle(add("dpdk7")).result,
        Err(CtlError::no_such_device("dpdk7"))
    );
    assert!(
        matches!(ctl.handle(Request::new(Op::AddrShow)).result, Ok(Reply::Addrs(a)) if a.len() == 1)
    );
    let del = Request::new(Op::AddrDel {
        addr: Ipv4Addr::new(192, 168, 1, 100),
        prefix_len: Some(32),
        dev: "dpdk0".into(),
    });
    assert_eq!(ctl.handle(del.clone()).result, Ok(Reply::Ok));
    assert_eq!(ctl.handle(del).result, Err(CtlError::addr_not_found()));
    assert!(
        matches!(ctl.handle(Request::new(Op::NeighShow)).result, Ok(Reply::Neighs(n)) if n.len() == 1)
    );
    assert!(
        matches!(ctl.handle(Request::new(Op::LinkShow)).result, Ok(Reply::Links(l)) if l.len() == 1)
    );
}

#[test]
fn version_and_client_only_commands() {
    let (mut ctl, _) = common::controller();
    let e = ctl
        .handle(Request {
            v: 7,
            op: Op::AddrShow,
        })
        .result
        .unwrap_err();
    assert!(e.message.contains("unsupported protocol version 7"));
    assert_eq!(
        ctl.handle(Request::new(Op::Ipvs(IpvsCommand::Help)))
            .result
            .unwrap_err()
            .exit_code,
        1
    );
    assert_eq!(
        ctl.handle(Request::new(Op::Ipvs(IpvsCommand::Restore)))
            .result
            .unwrap_err()
            .exit_code,
        1
    );
    assert!(ctl
        .handle(Request::new(Op::Ipvs(IpvsCommand::List(
            ListOptions::default()
        ))))
        .result
        .is_ok());
}

/// Maps a seed's iptables line to the request lbadm sends.
fn iptables_op(line: &str) -> Op {
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let at = words.iter().position(|w| w == "iptables").unwrap();
    match control::iptables::parse_iptables(&words[at + 1..], &control::names::NumericOnly).unwrap()
    {
        MarkCommand::Append(r) => Op::MarkAdd(r),
        MarkCommand::Flush => Op::MarkFlush,
        other => panic!("{other:?}"),
    }
}

#[test]
fn mark_rules_round_trip_and_publish() {
    let (mut ctl, state) = common::controller();
    // seeds/002: two ports grouped into fwmark 10, then the fwmark service.
    for line in [
        "iptables -t mangle -A PREROUTING  -d 192.168.195.200 -p tcp --dport 80 -j MARK --set-mark 10",
        "iptables -t mangle -A PREROUTING  -d 192.168.195.200 -p tcp --dport 443 -j MARK --set-mark 10",
    ] {
        assert_eq!(ctl.handle(Request::new(iptables_op(line))).result, Ok(Reply::Ok));
    }
    assert_eq!(
        ctl.handle(ipvs("-A -f 10 -s rr -p 1200")).result,
        Ok(Reply::Ok)
    );
    assert_eq!(state.lock().unwrap().published, vec![1, 2, 3]);
    let marks = state.lock().unwrap().last_marks.clone();
    assert_eq!(marks.len(), 2);
    assert_eq!(marks, ctl.config().marks());
    let vip = Ipv4Addr::new(192, 168, 195, 200);
    for port in [80, 443] {
        assert_eq!(control::evaluate_marks(&marks, "dpdk0", vip, 6, port), 10);
    }
    assert_eq!(control::evaluate_marks(&marks, "dpdk0", vip, 6, 22), 0);

    // seeds/001 names eth0: refused, naming the director's ports; nothing published.
    let n = state.lock().unwrap().published.len();
    let e = ctl
        .handle(Request::new(iptables_op(
            "iptables -A PREROUTING -i eth0 -t mangle -p tcp -d 172.16.100.6 --dport 80 -j MARK --set-mark 1",
        )))
        .result
        .unwrap_err();
    assert_eq!(e.exit_code, 2);
    assert!(
        e.message.contains("\"eth0\"") && e.message.contains("dpdk0, dpdk1"),
        "{}",
        e.message
    );
    assert_eq!(state.lock().unwrap().published.len(), n);
    let mut on_dpdk0 = MarkRule {
        in_dev: Some("dpdk0".into()),
        dst: Ipv4Addr::new(172, 16, 100, 6),
        prefix_len: 32,
        proto: Some(control::Protocol::Tcp),
        dport: Some((80, 80)),
        mark: 1,
    };
    assert_eq!(
        ctl.handle(Request::new(Op::MarkInsert {
            pos: 1,
            rule: on_dpdk0.clone()
        }))
        .result,
        Ok(Reply::Ok)
    );

    // Listing with counters from the backend (missing entries are 0).
    state.lock().unwrap().mark_counters = vec![MarkCounters {
        packets: 4,
        bytes: 240,
    }];
    let Ok(Reply::Marks(list)) = ctl.handle(Request::new(Op::MarkShow)).result else {
        panic!()
    };
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].rule, on_dpdk0);
    assert_eq!((list[0].packets, list[0].bytes), (4, 240));
    assert_eq!((list[2].packets, list[2].bytes), (0, 0));

    // Delete: by identity (first identical), by number, missing → iptables' error.
    assert_eq!(
        ctl.handle(Request::new(Op::MarkDel(on_dpdk0.clone())))
            .result,
        Ok(Reply::Ok)
    );
    assert_eq!(
        ctl.handle(Request::new(Op::MarkDel(on_dpdk0.clone())))
            .result,
        Err(CtlError::mark_rule_not_found())
    );
    on_dpdk0.mark = 2;
    assert_eq!(
        ctl.handle(Request::new(Op::MarkDelAt(2))).result,
        Ok(Reply::Ok)
    );
    assert_eq!(
        ctl.handle(Request::new(Op::MarkDelAt(2))).result,
        Err(CtlError::mark_delete_index_too_big())
    );
    assert_eq!(ctl.config().marks().len(), 1);
    assert_eq!(ctl.config().marks()[0].dport, Some((80, 80)));

    // -C (ipvsadm) keeps the marks; flush (seeds/003 "iptables -F -t mangle") drops them.
    assert_eq!(ctl.handle(ipvs("-C")).result, Ok(Reply::Ok));
    assert_eq!(ctl.config().marks().len(), 1);
    assert_eq!(
        ctl.handle(Request::new(iptables_op("iptables -F -t mangle")))
            .result,
        Ok(Reply::Ok)
    );
    assert!(ctl.config().marks().is_empty());
    assert!(state.lock().unwrap().last_marks.is_empty());

    // A failed publish changes nothing.
    state.lock().unwrap().fail_next_publish = true;
    let gen = ctl.config().generation();
    assert!(ctl
        .handle(Request::new(Op::MarkAdd(MarkRule::new(vip, 32, 3))))
        .result
        .is_err());
    assert!(ctl.config().marks().is_empty());
    assert_eq!(ctl.config().generation(), gen);
}

#[test]
fn sysctls_round_trip() {
    let (mut ctl, state) = common::controller();
    assert_eq!(
        ctl.handle(Request::new(Op::SysctlShow)).result,
        Ok(Reply::Sysctls(Sysctls::default()))
    );
    let set = |name: &str, value| {
        Request::new(Op::SysctlSet {
            name: name.into(),
            value,
        })
    };
    let Ok(Reply::Sysctls(s)) = ctl.handle(set("net.ipv4.vs.expire_nodest_conn", 1)).result else {
        panic!()
    };
    assert!(s.expire_nodest_conn);
    assert_eq!(state.lock().unwrap().last_sysctls, s);
    assert_eq!(state.lock().unwrap().published.len(), 1);
    let e = ctl.handle(set("conn_reuse_mode", 9)).result.unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.exit_code),
        (
            "sysctl: setting key \"net.ipv4.vs.conn_reuse_mode\": Invalid argument",
            255
        )
    );
    let e = ctl.handle(set("sloppy_sctp", 1)).result.unwrap_err();
    assert_eq!(
        e.message,
        "sysctl: cannot stat /proc/sys/net/ipv4/vs/sloppy_sctp: No such file or directory"
    );
    assert_eq!(state.lock().unwrap().published.len(), 1);
    assert_eq!(ctl.config().sysctls().conn_reuse_mode, 1);
    // The defense strategies are published like any sysctl; an automatic mode reads 1
    // while the backend reports no memory pressure (the test backend never does).
    let Ok(Reply::Sysctls(s)) = ctl.handle(set("drop_entry", 2)).result else {
        panic!()
    };
    assert_eq!(s.drop_entry, 1);
    assert_eq!(state.lock().unwrap().last_sysctls.drop_entry, 2);
    assert_eq!(state.lock().unwrap().published.len(), 2);
}
