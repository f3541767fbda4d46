//! Parsers for what `lbadm` prints: the `ipvsadm -L -n` listing (ipvs-semantics.md §7.3) and
//! the neighbour table of `lbadm neigh show`.
//!
//! They are deliberately lenient about spacing (the exact byte layout is checked by the
//! control crate's own tests); they extract the numbers the testbeds assert on.

/// One virtual service of an `-L -n` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `TCP`, `UDP`, `SCTP` or `FWM`.
    pub proto: String,
    /// `VIP:port` (or the mark for FWM).
    pub addr: String,
    /// Scheduler name (`rr`, `wlc`, …).
    pub scheduler: String,
    /// The rest of the service line (flags: persistent …), verbatim, trimmed.
    pub flags: String,
    pub servers: Vec<RealServer>,
}

/// One destination line (`  -> RIP:port Forward Weight ActiveConn InActConn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    pub addr: String,
    /// `Route`, `Masq`, `Tunnel`, `Local`.
    pub forward: String,
    pub weight: i64,
    pub active_conn: u64,
    pub inact_conn: u64,
}

impl Service {
    /// The destination whose `addr:port` is `addr`.
    pub fn server(&self, addr: &str) -> Option<&RealServer> {
        self.servers.iter().find(|s| s.addr == addr)
    }

    /// Sum of ActiveConn + InActConn over all destinations.
    pub fn total_conns(&self) -> u64 {
        self.servers
            .iter()
            .map(|s| s.active_conn + s.inact_conn)
            .sum()
    }
}

/// Parses an `ipvsadm -L -n` listing. Header and title lines are skipped; destination lines
/// that do not have five fields are ignored.
pub fn parse_list(text: &str) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("IP Virtual Server") || t.starts_with("Prot ") {
            continue;
        }
        if let Some(rest) = t.strip_prefix("->") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() < 5 || f[0] == "RemoteAddress:Port" {
                continue;
            }
            // Weight, ActiveConn, InActConn are the last three fields (a TunnelInfo column may
            // sit between Forward and Weight in ipvsadm 1.31 listings).
            let n = f.len();
            let (Ok(weight), Ok(active), Ok(inact)) =
                (f[n - 3].parse(), f[n - 2].parse(), f[n - 1].parse())
            else {
                continue;
            };
            if let Some(svc) = out.last_mut() {
                svc.servers.push(RealServer {
                    addr: f[0].to_string(),
                    forward: f[1].to_string(),
                    weight,
                    active_conn: active,
                    inact_conn: inact,
                });
            }
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        if f.len() >= 3 && matches!(f[0], "TCP" | "UDP" | "SCTP" | "FWM") {
            out.push(Service {
                proto: f[0].to_string(),
                addr: f[1].to_string(),
                scheduler: f[2].to_string(),
                flags: f[3..].join(" "),
                servers: Vec::new(),
            });
        }
    }
    out
}

/// Whether a neighbour listing (one entry per line, `ip neigh` style:
/// `198.51.100.11 dev dpdk0 lladdr 02:… REACHABLE`) has `ip` in state REACHABLE. The address
/// must be a whole whitespace-separated token (so `198.51.100.1` does not match `.11`).
pub fn neigh_is_reachable(text: &str, ip: &str) -> bool {
    text.lines().any(|l| {
        let toks: Vec<&str> = l.split_whitespace().collect();
        toks.contains(&ip) && toks.iter().any(|t| t.eq_ignore_ascii_case("REACHABLE"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.1.100:80 wlc persistent 600 mask 255.255.255.0
  -> 10.0.0.11:80                 Route   1      12         40        
  -> 10.0.0.12:80                 Route   0      0          31        
UDP  192.168.1.100:53 rr
  -> 10.0.0.21:53                 Route   1      0          118       
FWM  7 sh (sh-fallback,sh-port) persistent 360
  -> 10.0.0.31:0                  Route   2      3          5         
";

    #[test]
    fn parses_ipvsadm_listing() {
        let l = parse_list(LIST);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].proto, "TCP");
        assert_eq!(l[0].addr, "192.168.1.100:80");
        assert_eq!(l[0].scheduler, "wlc");
        assert_eq!(l[0].flags, "persistent 600 mask 255.255.255.0");
        assert_eq!(l[0].servers.len(), 2);
        assert_eq!(l[0].server("10.0.0.11:80").unwrap().active_conn, 12);
        assert_eq!(l[0].server("10.0.0.11:80").unwrap().inact_conn, 40);
        assert_eq!(l[0].total_conns(), 83);
        assert_eq!(l[1].servers[0].forward, "Route");
        assert_eq!(l[2].proto, "FWM");
        assert_eq!(l[2].addr, "7");
        assert_eq!(l[2].servers[0].weight, 2);
    }

    #[test]
    fn parses_listing_with_tunnel_info_column() {
        let t = "Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  192.168.1.100:80 wlc
  -> 10.0.0.12:80                 Route   n/a           0      7          31        
";
        let l = parse_list(t);
        assert_eq!(l[0].servers[0].forward, "Route");
        assert_eq!(
            (
                l[0].servers[0].weight,
                l[0].servers[0].active_conn,
                l[0].servers[0].inact_conn
            ),
            (0, 7, 31)
        );
    }

    #[test]
    fn neigh_reachable_matches_whole_address() {
        let t = "198.51.100.11 dev dpdk0 lladdr 02:00:00:00:00:01 REACHABLE\n\
                 198.51.100.12 dev dpdk0 INCOMPLETE\n";
        assert!(neigh_is_reachable(t, "198.51.100.11"));
        assert!(!neigh_is_reachable(t, "198.51.100.12"));
        assert!(!neigh_is_reachable(t, "198.51.100.1"));
    }
}
