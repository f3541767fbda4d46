//! Mark rules ("port groups"): the director's stand-in for the `iptables -t mangle -A
//! PREROUTING ... -j MARK --set-mark N` rules that group several VIP:port pairs into one
//! firewall-mark service (`ipvsadm -A -f N`). No iptables stands in front of a DPDK port, so the
//! director marks packets itself, before the service lookup.
//!
//! Semantics (the reference is [`evaluate_marks`]; the dataplane compiles its own matcher and
//! must agree with it):
//! - Rules form one ordered list (the PREROUTING chain of the mangle table), kept in the order
//!   they were appended or inserted.
//! - A rule matches a packet when every field it sets matches: the receiving port (`-i`), the
//!   destination address under the rule's prefix (`-d A/LEN`), the IP protocol (`-p`) and the
//!   destination port range (`--dport P[:P2]`, inclusive). Unset fields match anything.
//! - Like iptables' MARK target (non-terminating, mask 0xffffffff overwrites the whole mark),
//!   every rule is evaluated in order and **the last matching rule's mark wins**. A packet
//!   that matches no rule has mark 0 (packets from the wire carry no mark). A rule with mark 0
//!   is allowed: it clears a mark set by an earlier rule.
//! - Only packets that start a new connection consult the marks (the connection lookup comes
//!   first, ipvs-semantics.md §1.2), so changing the rules never moves an established
//!   connection. A non-zero mark makes the lookup try the fwmark service with that mark first;
//!   if there is none, the lookup goes on with VIP:port and VIP:0 as if unmarked.
//! - `--dport` needs `-p tcp` or `-p udp`; a rule with a port range never matches a packet of
//!   another protocol, nor a non-first IPv4 fragment (it carries no ports; iptables' tcp/udp
//!   matches do not match them either).
//!
//! Invariants kept by [`crate::Config`]: stored rules are [`MarkRule::normalized`] (address
//! bits outside the prefix cleared, as iptables stores them), pass [`MarkRule::check`], name
//! a known port in `in_dev`, and number at most [`MAX_MARK_RULES`].

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::CtlError;
use crate::model::Protocol;

/// Most mark rules the director holds (a bound for the dataplane's compiled matcher).
pub const MAX_MARK_RULES: usize = 4096;

/// One mark rule: `[-i dpdkN] [-d A[/LEN]] [-p tcp|udp] [--dport P[:P2]] -j MARK --set-mark N`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MarkRule {
    /// Receiving port (`dpdkN`); `None` = any port.
    pub in_dev: Option<String>,
    /// Destination address (bits outside `prefix_len` are zero once stored).
    pub dst: Ipv4Addr,
    /// Destination prefix length, 0..=32 (32 when `-d` has no `/LEN`, 0 when `-d` is absent).
    pub prefix_len: u8,
    /// IP protocol; `None` = any (`-p all` or no `-p`).
    pub proto: Option<Protocol>,
    /// Inclusive destination port range (`--dport P` is `(P, P)`); needs `proto`.
    pub dport: Option<(u16, u16)>,
    /// The mark set on matching packets (0 clears it).
    pub mark: u32,
}

impl MarkRule {
    /// A rule matching `dst/prefix_len` on any port and protocol, setting `mark`.
    pub fn new(dst: Ipv4Addr, prefix_len: u8, mark: u32) -> Self {
        MarkRule {
            in_dev: None,
            dst,
            prefix_len,
            proto: None,
            dport: None,
            mark,
        }
    }

    /// The destination netmask as a host-order integer (0 for /0).
    pub fn netmask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }

    /// The rule with the address bits outside the prefix cleared (`-d 10.1.2.3/24` is stored
    /// and listed as `10.1.2.0/24`, as iptables does). Identity of rules (for delete) is
    /// equality of normalized rules.
    pub fn normalized(&self) -> MarkRule {
        let mut r = self.clone();
        r.prefix_len = r.prefix_len.min(32);
        r.dst = Ipv4Addr::from(u32::from(self.dst) & r.netmask());
        r
    }

    /// Structural validity (exit status 2 on error): prefix length at most 32, a port range
    /// only with a protocol, and range bounds in order.
    pub fn check(&self) -> Result<(), CtlError> {
        if self.prefix_len > 32 {
            return Err(CtlError::input(format!(
                "invalid mask `{}' specified",
                self.prefix_len
            )));
        }
        if let Some((lo, hi)) = self.dport {
            if self.proto.is_none() {
                return Err(CtlError::dport_needs_proto());
            }
            if lo > hi {
                return Err(CtlError::input("invalid portrange (min > max)"));
            }
        }
        Ok(())
    }

    /// Whether a packet received on port `in_dev`, addressed to `dst`, of IP protocol `proto`
    /// and destination port `dport` (ignored unless the rule has a port range) matches.
    pub fn matches(&self, in_dev: &str, dst: Ipv4Addr, proto: u8, dport: u16) -> bool {
        if let Some(d) = &self.in_dev {
            if d != in_dev {
                return false;
            }
        }
        let mask = self.netmask();
        if u32::from(dst) & mask != u32::from(self.dst) & mask {
            return false;
        }
        if let Some(p) = self.proto {
            if p.number() != proto {
                return false;
            }
        }
        match self.dport {
            Some((lo, hi)) => (lo..=hi).contains(&dport),
            None => true,
        }
    }
}

impl fmt::Display for MarkRule {
    /// The rule in `lbadm mark add` syntax (without the verb), e.g.
    /// `-i dpdk0 -d 10.0.0.1/32 -p tcp --dport 80 --set-mark 10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.in_dev {
            write!(f, "-i {d} ")?;
        }
        write!(f, "-d {}/{}", self.dst, self.prefix_len)?;
        if let Some(p) = self.proto {
            write!(f, " -p {}", p.services_name())?;
        }
        match self.dport {
            Some((lo, hi)) if lo == hi => write!(f, " --dport {lo}")?,
            Some((lo, hi)) => write!(f, " --dport {lo}:{hi}")?,
            None => {}
        }
        write!(f, " --set-mark {}", self.mark)
    }
}

/// The reference mark evaluation: the mark a packet received on port `in_dev` (`dpdkN`),
/// addressed to `dst`, of IP protocol `proto` (6 TCP, 17 UDP, ...) with destination port
/// `dport` (pass 0 for packets without ports; it is only looked at by rules with `--dport`,
/// which also require TCP or UDP) gets from `rules`: the mark of the LAST matching rule, or 0
/// when none matches. See the module documentation for the semantics.
pub fn evaluate_marks(
    rules: &[MarkRule],
    in_dev: &str,
    dst: Ipv4Addr,
    proto: u8,
    dport: u16,
) -> u32 {
    rules
        .iter()
        .rev()
        .find(|r| r.matches(in_dev, dst, proto, dport))
        .map_or(0, |r| r.mark)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(
        dev: Option<&str>,
        dst: [u8; 4],
        len: u8,
        proto: Option<Protocol>,
        dport: Option<(u16, u16)>,
        mark: u32,
    ) -> MarkRule {
        MarkRule {
            in_dev: dev.map(str::to_string),
            dst: Ipv4Addr::from(dst),
            prefix_len: len,
            proto,
            dport,
            mark,
        }
    }

    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;

    fn ip(a: [u8; 4]) -> Ipv4Addr {
        Ipv4Addr::from(a)
    }

    #[test]
    fn no_rules_or_no_match_gives_zero() {
        assert_eq!(evaluate_marks(&[], "dpdk0", ip([10, 0, 0, 1]), TCP, 80), 0);
        let r = [rule(
            None,
            [10, 0, 0, 1],
            32,
            Some(Protocol::Tcp),
            Some((80, 80)),
            7,
        )];
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 0, 0, 1]), TCP, 81), 0);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 0, 0, 2]), TCP, 80), 0);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 0, 0, 1]), UDP, 80), 0);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 0, 0, 1]), ICMP, 80), 0);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 0, 0, 1]), TCP, 80), 7);
    }

    #[test]
    fn seed_port_group_http_and_https_share_a_mark() {
        // iptables -t mangle -A PREROUTING -d 192.168.195.200 -p tcp --dport 80 -j MARK --set-mark 10
        // iptables -t mangle -A PREROUTING -d 192.168.195.200 -p tcp --dport 443 -j MARK --set-mark 10
        let vip = [192, 168, 195, 200];
        let r = [
            rule(None, vip, 32, Some(Protocol::Tcp), Some((80, 80)), 10),
            rule(None, vip, 32, Some(Protocol::Tcp), Some((443, 443)), 10),
        ];
        for port in [80, 443] {
            assert_eq!(evaluate_marks(&r, "dpdk0", ip(vip), TCP, port), 10);
            assert_eq!(evaluate_marks(&r, "dpdk1", ip(vip), TCP, port), 10);
        }
        assert_eq!(evaluate_marks(&r, "dpdk0", ip(vip), TCP, 22), 0);
    }

    #[test]
    fn last_matching_rule_wins_and_mark_zero_clears() {
        let r = vec![
            rule(None, [10, 0, 0, 0], 8, None, None, 1),
            rule(None, [10, 1, 0, 0], 16, Some(Protocol::Tcp), None, 2),
            rule(
                None,
                [10, 1, 2, 3],
                32,
                Some(Protocol::Tcp),
                Some((80, 90)),
                3,
            ),
        ];
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 9, 9, 9]), UDP, 53), 1);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 1, 9, 9]), UDP, 53), 1);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 1, 9, 9]), TCP, 53), 2);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 1, 2, 3]), TCP, 85), 3);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([10, 1, 2, 3]), TCP, 91), 2);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([11, 0, 0, 1]), TCP, 80), 0);
        // Order matters: the broad rule appended last overrides the specific ones.
        let mut rev = r.clone();
        rev.reverse();
        assert_eq!(evaluate_marks(&rev, "dpdk0", ip([10, 1, 2, 3]), TCP, 85), 1);
        // A later mark-0 rule clears the mark.
        let mut clear = r.clone();
        clear.push(rule(None, [10, 1, 2, 3], 32, None, None, 0));
        assert_eq!(
            evaluate_marks(&clear, "dpdk0", ip([10, 1, 2, 3]), TCP, 85),
            0
        );
        assert_eq!(
            evaluate_marks(&clear, "dpdk0", ip([10, 1, 2, 4]), TCP, 85),
            2
        );
    }

    #[test]
    fn interface_and_prefix_and_ranges() {
        let r = [
            rule(
                Some("dpdk1"),
                [172, 16, 0, 1],
                32,
                Some(Protocol::Tcp),
                Some((80, 80)),
                8,
            ),
            rule(
                None,
                [0, 0, 0, 0],
                0,
                Some(Protocol::Udp),
                Some((1000, 2000)),
                9,
            ),
        ];
        assert_eq!(evaluate_marks(&r, "dpdk1", ip([172, 16, 0, 1]), TCP, 80), 8);
        assert_eq!(evaluate_marks(&r, "dpdk0", ip([172, 16, 0, 1]), TCP, 80), 0);
        for (port, want) in [(999, 0), (1000, 9), (1500, 9), (2000, 9), (2001, 0)] {
            assert_eq!(
                evaluate_marks(&r, "dpdk0", ip([1, 2, 3, 4]), UDP, port),
                want,
                "{port}"
            );
        }
        // Full range and /0 match everything of the protocol.
        let all = [rule(
            None,
            [9, 9, 9, 9],
            0,
            Some(Protocol::Tcp),
            Some((0, 65535)),
            5,
        )];
        assert_eq!(evaluate_marks(&all, "x", ip([1, 1, 1, 1]), TCP, 0), 5);
        assert_eq!(evaluate_marks(&all, "x", ip([1, 1, 1, 1]), UDP, 0), 0);
        // Rules without a protocol match any protocol, ICMP included.
        let any = [rule(None, [10, 0, 0, 1], 32, None, None, 4)];
        assert_eq!(evaluate_marks(&any, "dpdk0", ip([10, 0, 0, 1]), ICMP, 0), 4);
    }

    #[test]
    fn normalize_and_check() {
        let r = rule(None, [10, 1, 2, 3], 24, None, None, 1).normalized();
        assert_eq!(r.dst, ip([10, 1, 2, 0]));
        assert_eq!(
            rule(None, [10, 1, 2, 3], 0, None, None, 1).normalized().dst,
            ip([0, 0, 0, 0])
        );
        assert_eq!(
            rule(None, [10, 1, 2, 3], 32, None, None, 1)
                .normalized()
                .dst,
            ip([10, 1, 2, 3])
        );
        assert!(rule(None, [1, 1, 1, 1], 33, None, None, 1).check().is_err());
        let e = rule(None, [1, 1, 1, 1], 32, None, Some((80, 80)), 1)
            .check()
            .unwrap_err();
        assert_eq!(e.exit_code, 2);
        assert!(rule(
            None,
            [1, 1, 1, 1],
            32,
            Some(Protocol::Tcp),
            Some((81, 80)),
            1
        )
        .check()
        .is_err());
        assert!(rule(
            Some("dpdk0"),
            [1, 1, 1, 1],
            32,
            Some(Protocol::Udp),
            Some((80, 80)),
            0
        )
        .check()
        .is_ok());
        assert_eq!(
            rule(
                Some("dpdk0"),
                [1, 1, 1, 1],
                32,
                Some(Protocol::Udp),
                Some((80, 90)),
                3
            )
            .to_string(),
            "-i dpdk0 -d 1.1.1.1/32 -p udp --dport 80:90 --set-mark 3"
        );
    }

    fn arb_rule() -> impl Strategy<Value = MarkRule> {
        (
            prop::option::of(prop::sample::select(vec!["dpdk0", "dpdk1"])),
            (0u8..4, 0u8..4),
            prop::sample::select(vec![0u8, 8, 24, 30, 32]),
            prop::option::of(prop::sample::select(vec![Protocol::Tcp, Protocol::Udp])),
            prop::option::of((75u16..85, 0u16..10)),
            0u32..4,
        )
            .prop_map(|(dev, (c, d), len, proto, ports, mark)| MarkRule {
                in_dev: dev.map(str::to_string),
                dst: Ipv4Addr::new(10, 0, c, d),
                prefix_len: len,
                proto,
                dport: proto.and(ports.map(|(lo, w)| (lo, lo + w))),
                mark,
            })
    }

    proptest! {
        /// The reverse-scan reference agrees with a literal forward evaluation of the chain
        /// (each matching MARK overwrites), and normalizing a rule never changes what it
        /// matches.
        #[test]
        fn last_match_equals_forward_overwrite(
            rules in prop::collection::vec(arb_rule(), 0..12),
            dev in prop::sample::select(vec!["dpdk0", "dpdk1"]),
            (c, d) in (0u8..4, 0u8..4),
            proto in prop::sample::select(vec![1u8, 6, 17]),
            port in 70u16..100,
        ) {
            let dst = Ipv4Addr::new(10, 0, c, d);
            let mut mark = 0;
            for r in &rules {
                if r.matches(dev, dst, proto, port) {
                    mark = r.mark;
                }
            }
            prop_assert_eq!(evaluate_marks(&rules, dev, dst, proto, port), mark);
            let norm: Vec<MarkRule> = rules.iter().map(MarkRule::normalized).collect();
            prop_assert_eq!(evaluate_marks(&norm, dev, dst, proto, port), mark);
        }
    }
}
