//! Our IPVS sync messages against an independent implementation: Debian's tshark and its
//! IPVS dissector (`tshark -d udp.port==8848,ipvs`).
//!
//! The messages are the kinds the director sends (TCP connections in the synchronised states,
//! UDP, PPC/PCC templates, fwmark templates: IPv4 entries without options; the dissector of
//! Wireshark 4.0 does not know the version-1 options and would misread them, so they are
//! covered by the codec's kernel-layout fixtures instead), split over several messages of the
//! default 1472-byte maximum. Every field tshark reads must equal what was encoded, and tshark
//! must report no expert error (no "Malformed Packet").

use std::net::Ipv4Addr;
use std::process::Command;

use control::sync_proto::{encode_all, flags, SyncConn, DEFAULT_MAXLEN, SYNC_GROUP, SYNC_PORT};
use tests::pcapfile::{write, UdpDatagram};
use tests::util::{have_program, TempDir};

fn conns() -> Vec<SyncConn> {
    let vip = Ipv4Addr::new(198, 51, 100, 100);
    let dr = flags::DROUTE | flags::NOOUTPUT;
    let mut v = Vec::new();
    for i in 0..90u16 {
        let client = Ipv4Addr::new(10, 9, (i >> 8) as u8, i as u8);
        let rs = Ipv4Addr::new(198, 51, 100, 11 + (i % 3) as u8);
        let (state, inactive) = match i % 5 {
            0 => (1, 0),                 // ESTABLISHED
            1 => (4, flags::INACTIVE),   // FIN_WAIT
            2 => (5, flags::INACTIVE),   // TIME_WAIT
            3 => (6, flags::INACTIVE),   // CLOSE
            _ => (7, flags::INACTIVE),   // CLOSE_WAIT
        };
        v.push(SyncConn::v4(6, dr | inactive, state, (client, 30000 + i), (vip, 80), (rs, 80), 0, 900));
        if i % 10 == 0 {
            v.push(SyncConn::v4(17, dr | flags::INACTIVE, 0, (client, 5353), (vip, 53), (rs, 53), 0, 300));
            // PPC template (client port 0), then a fwmark template (protocol IP, vaddr = mark).
            v.push(SyncConn::v4(6, dr | flags::INACTIVE | flags::TEMPLATE, 1, (client, 0), (vip, 80), (rs, 80), 0, 360));
            v.push(SyncConn::v4(0, dr | flags::INACTIVE | flags::TEMPLATE, 0, (client, 0), (Ipv4Addr::from(10u32), 0), (rs, 0), 10, 600));
        }
    }
    v
}

#[test]
fn tshark_decodes_our_messages_field_for_field() {
    if !have_program("tshark") {
        if std::env::var_os("CI").is_some() {
            panic!("tshark missing on CI (scripts/setup-host.sh installs it)");
        }
        eprintln!("SKIP: tshark not installed (scripts/setup-host.sh installs it)");
        return;
    }
    let conns = conns();
    let msgs = encode_all(5, DEFAULT_MAXLEN, &conns);
    assert!(msgs.len() >= 3, "the entries span several messages");
    assert!(msgs.iter().all(|m| m.len() <= usize::from(DEFAULT_MAXLEN)));
    let dir = TempDir::new("lbt-sync-wire");
    let pcap = dir.join("sync.pcap");
    let datagrams: Vec<UdpDatagram> = msgs
        .iter()
        .map(|m| UdpDatagram { src: (Ipv4Addr::new(198, 51, 100, 2), 41000), dst: (SYNC_GROUP, SYNC_PORT), payload: m.clone() })
        .collect();
    write(&pcap, &datagrams).expect("write pcap");
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args(["-d", "udp.port==8848,ipvs", "-T", "fields", "-E", "aggregator=,", "-E", "separator=;"])
        .args(["-e", "ipvs.syncid", "-e", "ipvs.version", "-e", "ipvs.size", "-e", "ipvs.conncount"])
        .args(["-e", "ipvs.proto", "-e", "ipvs.flags.v1", "-e", "ipvs.state", "-e", "ipvs.cport", "-e", "ipvs.vport", "-e", "ipvs.dport"])
        .args(["-e", "ipvs.fwmark", "-e", "ipvs.timeout", "-e", "ipvs.caddr", "-e", "ipvs.vaddr", "-e", "ipvs.daddr", "-e", "_ws.expert"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), msgs.len(), "one dissected packet per message:\n{text}");
    let mut next = 0usize;
    for (line, msg) in lines.iter().zip(&msgs) {
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!(f.len(), 16, "{line}");
        assert_eq!(f[15], "", "tshark reports a problem: {line}");
        assert_eq!((f[0], f[1]), ("5", "1"), "syncid, version");
        assert_eq!(f[2], msg.len().to_string(), "size");
        let n: usize = f[3].parse().unwrap();
        let col = |i: usize| -> Vec<String> { f[i].split(',').map(str::to_string).collect() };
        let (protos, fl, states, cports, vports, dports) = (col(4), col(5), col(6), col(7), col(8), col(9));
        let (marks, timeouts, caddrs, vaddrs, daddrs) = (col(10), col(11), col(12), col(13), col(14));
        for k in 0..n {
            let c = &conns[next + k];
            let control::sync_proto::Addrs::V4 { caddr, vaddr, daddr } = c.addrs else { unreachable!() };
            let want = [
                format!("0x{:02x}", c.protocol),
                format!("0x{:08x}", c.flags),
                format!("0x{:04x}", c.state),
                c.cport.to_string(),
                c.vport.to_string(),
                c.dport.to_string(),
                format!("0x{:08x}", c.fwmark),
                c.timeout.to_string(),
                caddr.to_string(),
                vaddr.to_string(),
                daddr.to_string(),
            ];
            let got = [&protos[k], &fl[k], &states[k], &cports[k], &vports[k], &dports[k], &marks[k], &timeouts[k], &caddrs[k], &vaddrs[k], &daddrs[k]];
            for (w, g) in want.iter().zip(got) {
                assert_eq!(g, w, "entry {} of the message: {line}", k);
            }
        }
        next += n;
    }
    assert_eq!(next, conns.len(), "every entry dissected");
}
