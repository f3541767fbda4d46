//! rtnetlink for the kernel leg: the IPv4 addresses and the links of the `dpdkN` interfaces,
//! through the rust-netlink crates (message types and socket; no async runtime).
//!
//! [`Rtnl`] is a request socket (one request, its answer or acknowledgement, in order);
//! [`Monitor`] is a non-blocking socket subscribed to link and IPv4 address notifications,
//! polled by the address-sync thread. Both are slow path: nothing here runs on a worker.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

/// Notification groups (linux/rtnetlink.h): RTMGRP_LINK, RTMGRP_IPV4_IFADDR.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;

/// An IPv4 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelAddr {
    /// Interface index.
    pub ifindex: u32,
    /// The address (IFA_LOCAL).
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix_len: u8,
}

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLink {
    /// Interface index.
    pub ifindex: u32,
    /// Name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// MAC address (empty if none).
    pub mac: Vec<u8>,
    /// Administratively up (IFF_UP).
    pub up: bool,
}

/// What a notification was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An IPv4 address was added to or removed from interface `ifindex`.
    Addr(u32),
    /// Link `ifindex` appeared or changed.
    Link(u32),
    /// Link `ifindex` was deleted.
    LinkGone(u32),
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

/// Splits a datagram into netlink messages (each aligned to 4 bytes).
fn parse_all(buf: &[u8]) -> io::Result<Vec<NetlinkMessage<RouteNetlinkMessage>>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            return Err(other(format!("netlink: bad message length {len}")));
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len]) {
            Ok(m) => out.push(m),
            // A message type this crate does not know: skip it, it is not ours to read.
            Err(_) => {}
        }
        off += (len + 3) & !3;
    }
    Ok(out)
}

fn addr_of(m: &AddressMessage) -> Option<KernelAddr> {
    if m.header.family != AddressFamily::Inet {
        return None;
    }
    // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on point-to-point).
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(v)) => Some(*v),
        _ => None,
    });
    let addr = local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
            _ => None,
        })
    })?;
    Some(KernelAddr { ifindex: m.header.index, addr, prefix_len: m.header.prefix_len })
}

fn link_of(m: &LinkMessage) -> KernelLink {
    let mut l = KernelLink {
        ifindex: m.header.index,
        name: String::new(),
        mtu: 0,
        mac: Vec::new(),
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(a) => l.mac = a.clone(),
            _ => {}
        }
    }
    l
}

/// A request socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a NETLINK_ROUTE socket in the current network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Sends one request and collects the messages of its answer up to the final
    /// acknowledgement, `NLMSG_DONE` or error (a kernel error comes back as `Err`).
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = flags;
        hdr.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(hdr, NetlinkPayload::InnerMessage(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            for reply in parse_all(&data)? {
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::InnerMessage(i) => out.push(i),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        }
                    }
                    _ => {}
                }
            }
            if !dump && flags & NLM_F_ACK == 0 {
                return Ok(out);
            }
        }
    }

    fn addr_message(ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix_len;
        m.header.scope = AddressScope::Universe;
        m.header.index = ifindex;
        m.attributes.push(AddressAttribute::Local(IpAddr::V4(addr)));
        m.attributes.push(AddressAttribute::Address(IpAddr::V4(addr)));
        if prefix_len < 31 {
            let bcast = u32::from(addr) | (u32::MAX >> prefix_len);
            m.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(bcast)));
        }
        m
    }

    /// Adds `addr/prefix_len` to interface `ifindex` (`ip addr add`); an address that is
    /// already there is success.
    pub fn add_addr(&mut self, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let m = RouteNetlinkMessage::NewAddress(Self::addr_message(ifindex, addr, prefix_len));
        match self.request(m, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Removes `addr/prefix_len` from interface `ifindex` (`ip addr del`); an address that
    /// is not there is success.
    pub fn del_addr(&mut self, ifindex: u32, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let m = RouteNetlinkMessage::DelAddress(Self::addr_message(ifindex, addr, prefix_len));
        match self.request(m, NLM_F_REQUEST | NLM_F_ACK) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT) | Some(libc::ENODEV)) => {
                Ok(())
            }
            r => r.map(|_| ()),
        }
    }

    /// Every IPv4 address of every interface.
    pub fn addrs(&mut self) -> io::Result<Vec<KernelAddr>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(m), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) => addr_of(a),
                _ => None,
            })
            .collect())
    }

    /// Every link.
    pub fn links(&mut self) -> io::Result<Vec<KernelLink>> {
        let replies = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_REQUEST | NLM_F_DUMP)?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, if it exists.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<KernelLink>> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }
}

/// A non-blocking notification socket (links and IPv4 addresses).
pub struct Monitor {
    sock: Socket,
}

impl Monitor {
    /// Subscribes to link and IPv4 address notifications of the current namespace.
    pub fn open() -> io::Result<Monitor> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))?;
        sock.set_non_blocking(true)?;
        Ok(Monitor { sock })
    }

    /// The notifications waiting, without blocking. An overrun (the kernel dropped
    /// notifications: ENOBUFS) is reported as [`Event::Addr`] and [`Event::Link`] of
    /// interface 0, which the caller treats as "resynchronise everything".
    pub fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.sock.recv_from_full() {
                Ok((data, _)) => {
                    let Ok(msgs) = parse_all(&data) else { continue };
                    for m in msgs {
                        let NetlinkPayload::InnerMessage(i) = m.payload else { continue };
                        match i {
                            RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
                                out.push(Event::Addr(a.header.index))
                            }
                            RouteNetlinkMessage::NewLink(l) => out.push(Event::Link(l.header.index)),
                            RouteNetlinkMessage::DelLink(l) => out.push(Event::LinkGone(l.header.index)),
                            _ => {}
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    out.push(Event::Addr(0));
                    out.push(Event::Link(0));
                }
                Err(_) => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_messages_round_trip_through_the_parser() {
        let m = Rtnl::addr_message(7, Ipv4Addr::new(198, 51, 100, 2), 24);
        assert!(m.attributes.contains(&AddressAttribute::Broadcast(Ipv4Addr::new(198, 51, 100, 255))));
        let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)));
        nl.finalize();
        let mut buf = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut buf);
        // Two messages in one datagram, as the kernel sends them.
        let two = [buf.clone(), buf].concat();
        let parsed = parse_all(&two).unwrap();
        assert_eq!(parsed.len(), 2);
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a)) = &parsed[1].payload else { panic!() };
        assert_eq!(addr_of(a), Some(KernelAddr { ifindex: 7, addr: Ipv4Addr::new(198, 51, 100, 2), prefix_len: 24 }));
    }

    #[test]
    fn garbage_datagrams_are_refused_not_panicked_on() {
        assert!(parse_all(&[0xff; 40]).is_err());
        assert!(parse_all(&[]).unwrap().is_empty());
        let mut short = vec![0u8; 20];
        short[0] = 8; // length below a header
        assert!(parse_all(&short).is_err());
    }
}
