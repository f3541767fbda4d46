//! One truth for addresses: the kernel interfaces' IPv4 addresses and the configuration's
//! `addr` entries are kept equal.
//!
//! - Configuration → kernel: [`KernelAddrs::apply`] writes what `lbadm addr add/del` (and a
//!   `--config` file, `restore`) changed into the interface, from the publishing thread,
//!   under the controller's lock. Addresses of an interface that was just (re)created are
//!   all installed by [`Sync::install_all`].
//! - Kernel → configuration: [`Sync::run`] listens to rtnetlink. After any address
//!   notification on our interfaces it reads the kernel's addresses and, under the
//!   controller's lock, turns the difference into `AddAddr`/`DelAddr` commands
//!   ([`reconcile`]) applied like any other change (published, gratuitous ARP for new
//!   addresses) but marked as coming from the kernel, so they are not written back.
//! - Because the kernel is read under the same lock that `lbadm` changes hold while they
//!   write it, the two directions cannot undo each other: after every round the
//!   configuration equals what the kernel had when it was read, and every later kernel
//!   change brings its own notification.
//! - An interface that disappeared (deleted underneath the director) is not read as "all
//!   its addresses were removed": its configured addresses stay, the service thread
//!   recreates it, and they are installed again.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control::model::{AddrConfig, ConfigCommand};
use control::server::{lock, SharedController};

use super::rtnl::{Event, KernelAddr, Rtnl};
use super::{log_line, Leg};
use crate::backend::DirectorBackend;

/// How often the thread looks for notifications.
const POLL: Duration = Duration::from_millis(20);
/// How often links are checked even without a notification (a lost notification, an
/// interface renamed away).
const LINK_CHECK: Duration = Duration::from_secs(1);

/// The commands that make the configured addresses of the interfaces in `present` equal to
/// `kernel` (addresses on those interfaces, by interface name). Addresses of interfaces not
/// in `present` are left alone. A prefix-length change is a delete and an add.
pub fn reconcile(config: &[AddrConfig], kernel: &[AddrConfig], present: &HashSet<String>) -> Vec<ConfigCommand> {
    let mut cmds = Vec::new();
    for c in config.iter().filter(|c| present.contains(&c.dev)) {
        let same = kernel.iter().any(|k| k.dev == c.dev && k.addr == c.addr && k.prefix_len == c.prefix_len);
        if !same {
            cmds.push(ConfigCommand::DelAddr { addr: c.addr, prefix_len: Some(c.prefix_len), dev: c.dev.clone() });
        }
    }
    let mut seen: HashSet<(Ipv4Addr, &str)> = HashSet::new();
    for k in kernel.iter().filter(|k| present.contains(&k.dev)) {
        // The model holds one prefix per address and port: the kernel's first wins.
        if !seen.insert((k.addr, k.dev.as_str())) {
            continue;
        }
        let same = config.iter().any(|c| c.dev == k.dev && c.addr == k.addr && c.prefix_len == k.prefix_len);
        if !same {
            cmds.push(ConfigCommand::AddAddr(k.clone()));
        }
    }
    cmds
}

/// Writes configuration changes into the kernel interfaces (the publishing side).
pub struct KernelAddrs {
    leg: Arc<Leg>,
    rtnl: Mutex<Option<Rtnl>>,
}

impl KernelAddrs {
    /// Over the interfaces of `leg`.
    pub fn new(leg: Arc<Leg>) -> Self {
        KernelAddrs { leg, rtnl: Mutex::new(None) }
    }

    /// Makes the kernel follow a configuration change from `old` to `new` addresses: adds
    /// the new ones, removes the dropped ones. Failures are logged (the configuration stays
    /// the truth; the next change or recreation tries again).
    pub fn apply(&self, old: &[AddrConfig], new: &[AddrConfig]) {
        let removed: Vec<&AddrConfig> = old.iter().filter(|a| !new.contains(a)).collect();
        let added: Vec<&AddrConfig> = new.iter().filter(|a| !old.contains(a)).collect();
        if removed.is_empty() && added.is_empty() {
            return;
        }
        let mut g = self.rtnl.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            match Rtnl::open() {
                Ok(r) => *g = Some(r),
                Err(e) => {
                    log_line(&format!("rtnetlink: {e}; kernel interface addresses not updated"));
                    return;
                }
            }
        }
        let Some(r) = g.as_mut() else { return };
        for a in removed {
            if let Some(ifindex) = self.ifindex(&a.dev) {
                if let Err(e) = r.del_addr(ifindex, a.addr, a.prefix_len) {
                    log_line(&format!("removing {}/{} from {}: {e}", a.addr, a.prefix_len, a.dev));
                }
            }
        }
        for a in added {
            if let Some(ifindex) = self.ifindex(&a.dev) {
                if let Err(e) = r.add_addr(ifindex, a.addr, a.prefix_len) {
                    log_line(&format!("adding {}/{} to {}: {e}", a.addr, a.prefix_len, a.dev));
                }
            }
        }
    }

    fn ifindex(&self, dev: &str) -> Option<u32> {
        self.leg.iface(dev).map(|i| i.ifindex.load(Ordering::Acquire)).filter(|&i| i != 0)
    }
}

/// The address-sync thread's state.
pub struct Sync {
    leg: Arc<Leg>,
    ctl: SharedController<DirectorBackend>,
    rtnl: Rtnl,
    monitor: super::rtnl::Monitor,
}

impl Sync {
    /// Opens the rtnetlink sockets and learns the interfaces' indexes, so that
    /// [`KernelAddrs::apply`] can write addresses before the thread runs.
    pub fn new(leg: Arc<Leg>, ctl: SharedController<DirectorBackend>) -> std::io::Result<Sync> {
        let monitor = super::rtnl::Monitor::open()?;
        let rtnl = Rtnl::open()?;
        let mut s = Sync { leg, ctl, rtnl, monitor };
        s.check_links();
        Ok(s)
    }

    /// Runs until `stop`.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut last_links = Instant::now();
        // Start from the kernel's view (a reused interface may carry addresses already).
        let mut pull = true;
        while !stop.load(Ordering::Relaxed) {
            let mut links = last_links.elapsed() >= LINK_CHECK;
            for ev in self.monitor.poll() {
                match ev {
                    Event::Addr(i) if i == 0 || self.ours(i) => pull = true,
                    Event::Link(i) | Event::LinkGone(i) if i == 0 || self.ours(i) => links = true,
                    // A new link may be our recreated interface.
                    Event::Link(_) => links = true,
                    _ => {}
                }
            }
            if links {
                last_links = Instant::now();
                if self.check_links() {
                    pull = true;
                }
            }
            if pull {
                pull = false;
                self.pull();
            }
            std::thread::sleep(POLL);
        }
    }

    fn ours(&self, ifindex: u32) -> bool {
        self.leg.ifaces.iter().any(|i| i.ifindex.load(Ordering::Acquire) == ifindex)
    }

    /// Compares every interface with the kernel's links: records index, state, MTU and MAC;
    /// asks for a missing interface to be recreated; installs the configured addresses on a
    /// (re)created one. Returns true when an interface appeared.
    fn check_links(&mut self) -> bool {
        let links = match self.rtnl.links() {
            Ok(l) => l,
            Err(e) => {
                log_line(&format!("rtnetlink link dump: {e}"));
                return false;
            }
        };
        let mut appeared = false;
        let leg = self.leg.clone();
        for iface in &leg.ifaces {
            let known = iface.ifindex.load(Ordering::Acquire);
            match links.iter().find(|l| l.name == iface.name) {
                None => {
                    if known != 0 {
                        log_line(&format!("kernel interface {} was deleted; recreating it", iface.name));
                        iface.ifindex.store(0, Ordering::Release);
                    }
                    iface.up.store(false, Ordering::Relaxed);
                    iface.recreate.store(true, Ordering::Release);
                }
                Some(l) => {
                    let mac_changed = l.mac.as_slice() != iface.mac.0.as_slice();
                    if l.up != iface.up.load(Ordering::Relaxed) && known != 0 {
                        log_line(&format!("kernel interface {} is {}", iface.name, if l.up { "up" } else { "down (the host's traffic on it stops)" }));
                    }
                    if mac_changed && !iface.mac_changed.load(Ordering::Relaxed) {
                        log_line(&format!(
                            "kernel interface {} has MAC {}, not the port's {}: frames between them are rewritten",
                            iface.name,
                            l.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                            iface.mac
                        ));
                    }
                    let kmac = if mac_changed && l.mac.len() == 6 { super::mac_number(&l.mac) } else { 0 };
                    iface.kernel_mac.store(kmac, Ordering::Relaxed);
                    if l.mtu != u32::from(iface.mtu) && iface.kernel_mtu.load(Ordering::Relaxed) != l.mtu {
                        log_line(&format!("kernel interface {} has MTU {}, the port {}: larger frames from the host are dropped", iface.name, l.mtu, iface.mtu));
                    }
                    iface.up.store(l.up, Ordering::Relaxed);
                    iface.kernel_mtu.store(l.mtu, Ordering::Relaxed);
                    iface.mac_changed.store(mac_changed, Ordering::Relaxed);
                    if known != l.ifindex {
                        iface.ifindex.store(l.ifindex, Ordering::Release);
                        prepare_interface(&iface.name);
                        self.install_all(&iface.name, l.ifindex);
                        appeared = true;
                    }
                }
            }
        }
        appeared
    }

    /// Installs every configured address of `dev` on interface `ifindex`.
    fn install_all(&mut self, dev: &str, ifindex: u32) {
        let ctl = lock(&self.ctl);
        for a in ctl.config().addrs().iter().filter(|a| a.dev == dev) {
            if let Err(e) = self.rtnl.add_addr(ifindex, a.addr, a.prefix_len) {
                log_line(&format!("adding {}/{} to {dev}: {e}", a.addr, a.prefix_len));
            }
        }
    }

    /// Reads the kernel's addresses and makes the configuration equal to them for the
    /// interfaces that exist, under the controller's lock.
    fn pull(&mut self) {
        let mut ctl = lock(&self.ctl);
        let kernel = match self.rtnl.addrs() {
            Ok(k) => k,
            Err(e) => {
                log_line(&format!("rtnetlink address dump: {e}"));
                return;
            }
        };
        let mut present = HashSet::new();
        let mut mine: Vec<AddrConfig> = Vec::new();
        for iface in &self.leg.ifaces {
            let ifindex = iface.ifindex.load(Ordering::Acquire);
            if ifindex == 0 {
                continue;
            }
            present.insert(iface.name.clone());
            mine.extend(kernel.iter().filter(|k: &&KernelAddr| k.ifindex == ifindex).map(|k| AddrConfig {
                addr: k.addr,
                prefix_len: k.prefix_len,
                dev: iface.name.clone(),
            }));
        }
        let cmds = reconcile(ctl.config().addrs(), &mine, &present);
        if cmds.is_empty() {
            return;
        }
        ctl.backend_mut().set_kernel_origin(true);
        // One command at a time: an address the model refuses does not hold up the others.
        let results = ctl.commit(&cmds, false);
        ctl.backend_mut().set_kernel_origin(false);
        let results = match results {
            Ok(control::proto::Reply::Batch(r)) => r,
            Ok(_) => Vec::new(),
            Err(e) => vec![Err(e); cmds.len()],
        };
        for (c, r) in cmds.iter().zip(results) {
            let what = match c {
                ConfigCommand::AddAddr(a) => format!("address {}/{} added on {} by the host", a.addr, a.prefix_len, a.dev),
                ConfigCommand::DelAddr { addr, prefix_len, dev } => {
                    format!("address {}/{} removed from {} by the host", addr, prefix_len.unwrap_or(32), dev)
                }
                _ => continue,
            };
            match r {
                Ok(()) => log_line(&what),
                Err(e) => log_line(&format!("{what}: not taken: {e}")),
            }
        }
    }
}

/// Host settings of a new kernel interface: the director answers ARP for the interface's
/// addresses itself (the host would send a second, identical answer), so the host keeps
/// quiet (`arp_ignore=8`) but still resolves and learns from the replies it gets.
fn prepare_interface(name: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{name}/arp_ignore");
    if let Err(e) = std::fs::write(&path, "8") {
        log_line(&format!("{path}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(addr: [u8; 4], len: u8, dev: &str) -> AddrConfig {
        AddrConfig { addr: Ipv4Addr::from(addr), prefix_len: len, dev: dev.into() }
    }

    #[test]
    fn reconcile_adds_removes_and_leaves_missing_interfaces_alone() {
        let present: HashSet<String> = ["dpdk0".to_string()].into();
        let config = vec![a([10, 0, 0, 2], 24, "dpdk0"), a([10, 0, 0, 100], 32, "dpdk0"), a([10, 1, 0, 2], 24, "dpdk1")];
        let kernel = vec![a([10, 0, 0, 2], 24, "dpdk0"), a([10, 0, 0, 101], 32, "dpdk0")];
        let cmds = reconcile(&config, &kernel, &present);
        assert_eq!(
            cmds,
            vec![
                ConfigCommand::DelAddr { addr: Ipv4Addr::new(10, 0, 0, 100), prefix_len: Some(32), dev: "dpdk0".into() },
                ConfigCommand::AddAddr(a([10, 0, 0, 101], 32, "dpdk0")),
            ],
            "dpdk1 is absent (being recreated): its address stays"
        );
        assert!(reconcile(&kernel, &kernel, &present).is_empty(), "equal sets: nothing to do");
    }

    #[test]
    fn a_prefix_change_is_a_delete_and_an_add_and_the_first_prefix_wins() {
        let present: HashSet<String> = ["dpdk0".to_string()].into();
        let config = vec![a([10, 0, 0, 2], 24, "dpdk0")];
        let kernel = vec![a([10, 0, 0, 2], 16, "dpdk0"), a([10, 0, 0, 2], 8, "dpdk0")];
        let mut c = control::model::Config::new(vec!["dpdk0".into()], 16);
        for cmd in [ConfigCommand::AddAddr(config[0].clone())].iter().chain(reconcile(&config, &kernel, &present).iter()) {
            c.apply(cmd).unwrap();
        }
        assert_eq!(c.addrs(), &[a([10, 0, 0, 2], 16, "dpdk0")]);
    }
}
