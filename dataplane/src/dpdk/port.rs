//! Ethernet ports: configuration, start/stop, MAC, link, statistics, bursts.

use std::ffi::CStr;

use super::{DpdkError, Eal, Mbuf, MbufBatch, Mempool};

/// How to set a port up.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// RX queues (one per worker).
    pub rx_queues: u16,
    /// TX queues (one per worker).
    pub tx_queues: u16,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// Hash only the IPv4 source address for RSS, where the PMD supports it (persistence
    /// steering); otherwise the PMD's IP hash is used and software steering fixes the rest.
    pub rss_src_only: bool,
    /// RSS key (40 bytes) to program, so software can compute the same hash.
    pub rss_key: Option<[u8; 40]>,
    /// Redirection table pattern: entry i of the NIC's table is `reta[i % reta.len()]`.
    pub reta: Vec<u16>,
    /// Put the port in promiscuous mode (needed on af_packet/veth to see frames for VIP MACs
    /// that are our own; harmless on real NICs).
    pub promiscuous: bool,
    /// Receive all multicast frames (the kernel leg passes VRRP and other link-local
    /// multicast to the host).
    pub allmulticast: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss_src_only: true,
            rss_key: None,
            reta: Vec::new(),
            promiscuous: true,
            allmulticast: false,
        }
    }
}

/// Link state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mb/s (0 = unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// RX packets dropped by the NIC (no descriptors).
    pub rx_missed: u64,
    /// RX errors.
    pub rx_errors: u64,
    /// TX errors.
    pub tx_errors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// A DPDK ethernet port, named `dpdkN` by its port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port {
    id: u16,
}

impl Port {
    /// All available ports in id order.
    pub fn all(_eal: &Eal) -> Vec<Port> {
        let mut v = Vec::new();
        let mut id: u64 = 0;
        loop {
            // SAFETY: iterates valid port ids; RTE_ETH_DEV_NO_OWNER = 0.
            let next = unsafe { ffi::rte_eth_find_next_owned_by(id as u16, 0) };
            if next >= ffi::RTE_MAX_ETHPORTS as u64 {
                break;
            }
            v.push(Port { id: next as u16 });
            id = next + 1;
        }
        v
    }

    /// The port with this id, if valid.
    pub fn from_id(_eal: &Eal, id: u16) -> Option<Port> {
        // SAFETY: validity check only.
        (unsafe { ffi::rte_eth_dev_is_valid_port(id) } == 1).then_some(Port { id })
    }

    /// A port by id, for ports this module created itself (hot-plugged virtual devices).
    pub(crate) fn from_raw(id: u16) -> Port {
        Port { id }
    }

    /// Port id.
    #[inline]
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The name the director and `lbadm` use: `dpdk<id>`.
    pub fn name(&self) -> String {
        format!("dpdk{}", self.id)
    }

    /// DPDK's device name (e.g. `net_af_packet0`).
    pub fn device_name(&self) -> String {
        let mut buf = [0 as std::ffi::c_char; 64];
        // SAFETY: buf holds RTE_ETH_NAME_MAX_LEN (64) bytes as the API requires.
        let r = unsafe { ffi::rte_eth_dev_get_name_by_port(self.id, buf.as_mut_ptr()) };
        if r != 0 {
            return String::new();
        }
        // SAFETY: on success buf holds a NUL-terminated string.
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// Driver name and queue limits.
    pub fn info(&self) -> Result<(String, u16, u16, u64), DpdkError> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-parameter.
        let r = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) };
        if r != 0 {
            return Err(DpdkError::from_errno(format!("dev_info_get port {}", self.id), r));
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points at a static string of the PMD.
            unsafe { CStr::from_ptr(info.driver_name) }.to_string_lossy().into_owned()
        };
        Ok((driver, info.max_rx_queues, info.max_tx_queues, info.flow_type_rss_offloads))
    }

    /// Index of the kernel network interface the port is bound to (`net_af_packet`,
    /// `net_tap`, …), if the PMD reports one.
    pub fn kernel_ifindex(&self) -> Option<u32> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-parameter.
        let r = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) };
        (r == 0 && info.if_index != 0).then_some(info.if_index)
    }

    /// Configures queues and RSS and sets up every queue with `pool`. Does not start.
    pub fn configure(&self, cfg: &PortConfig, pool: &Mempool) -> Result<(), DpdkError> {
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: info is a valid out-parameter.
        let r = unsafe { ffi::rte_eth_dev_info_get(self.id, &mut info) };
        if r != 0 {
            return Err(DpdkError::from_errno(format!("dev_info_get port {}", self.id), r));
        }
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(DpdkError {
                what: format!(
                    "port {} supports {} rx / {} tx queues, {} / {} requested",
                    self.id, info.max_rx_queues, info.max_tx_queues, cfg.rx_queues, cfg.tx_queues
                ),
                reason: "too many queues".into(),
                errno: 22,
            });
        }
        let mut conf = ffi::rte_eth_conf::default();
        // The key must outlive rte_eth_dev_configure, which copies it.
        let mut key = cfg.rss_key;
        let mut rss = false;
        if cfg.rx_queues > 1 {
            // SAFETY: reads constants.
            let (ip, src_only) = unsafe { (ffi::shim_rss_ip(), ffi::shim_rss_l3_src_only()) };
            let mut hf = ip & info.flow_type_rss_offloads;
            if cfg.rss_src_only && info.flow_type_rss_offloads & src_only != 0 {
                hf |= src_only;
            }
            if hf != 0 {
                conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
                conf.rx_adv_conf.rss_conf.rss_hf = hf;
                if let Some(k) = key.as_mut() {
                    if info.hash_key_size as usize == k.len() {
                        conf.rx_adv_conf.rss_conf.rss_key = k.as_mut_ptr();
                        conf.rx_adv_conf.rss_conf.rss_key_len = k.len() as u8;
                    }
                }
                rss = true;
            }
        }
        // SAFETY: reads a constant.
        let fast_free = unsafe { ffi::shim_tx_offload_mbuf_fast_free() };
        if info.tx_offload_capa & fast_free != 0 {
            conf.txmode.offloads |= fast_free;
        }
        // SAFETY: conf is a fully initialised configuration; the port is stopped.
        let r = unsafe { ffi::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf) };
        if r != 0 {
            return Err(DpdkError::from_errno(format!("configure port {}", self.id), r));
        }
        // SAFETY: plain query.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(self.id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..cfg.rx_queues {
            // SAFETY: null rxconf = PMD defaults; pool outlives the port's use (the director
            // stops ports before dropping pools).
            let r = unsafe {
                ffi::rte_eth_rx_queue_setup(self.id, q, cfg.rx_desc, socket, std::ptr::null(), pool.as_ptr())
            };
            if r != 0 {
                return Err(DpdkError::from_errno(format!("rx queue {q} setup on port {}", self.id), r));
            }
        }
        let mut txconf = info.default_txconf;
        txconf.offloads = conf.txmode.offloads;
        for q in 0..cfg.tx_queues {
            // SAFETY: txconf is a copy of the PMD's default with our offloads.
            let r = unsafe { ffi::rte_eth_tx_queue_setup(self.id, q, cfg.tx_desc, socket, &txconf) };
            if r != 0 {
                return Err(DpdkError::from_errno(format!("tx queue {q} setup on port {}", self.id), r));
            }
        }
        if rss && !cfg.reta.is_empty() && info.reta_size > 0 {
            self.program_reta(info.reta_size, &cfg.reta);
        }
        if cfg.promiscuous {
            // SAFETY: plain setter; failure (unsupported) is harmless and ignored.
            unsafe { ffi::rte_eth_promiscuous_enable(self.id) };
        }
        if cfg.allmulticast {
            // SAFETY: plain setter; failure (unsupported) is harmless and ignored (such a PMD
            // then delivers only what its filter lets through).
            unsafe { ffi::rte_eth_allmulticast_enable(self.id) };
        }
        Ok(())
    }

    /// Programs the NIC's redirection table: entry i = `pattern[i % pattern.len()]`. A PMD
    /// that refuses keeps its default; software steering hands off what lands elsewhere.
    fn program_reta(&self, size: u16, pattern: &[u16]) {
        // SAFETY: reads a constant.
        let group = unsafe { ffi::shim_reta_group_size() } as usize;
        let mut conf: Vec<ffi::rte_eth_rss_reta_entry64> =
            (0..(size as usize).div_ceil(group)).map(|_| ffi::rte_eth_rss_reta_entry64::default()).collect();
        for i in 0..size as usize {
            let e = &mut conf[i / group];
            e.mask |= 1u64 << (i % group);
            e.reta[i % group] = pattern[i % pattern.len()];
        }
        // SAFETY: conf holds size entries in groups of RTE_ETH_RETA_GROUP_SIZE as required.
        unsafe { ffi::rte_eth_dev_rss_reta_update(self.id, conf.as_mut_ptr(), size) };
    }

    /// Starts the port.
    pub fn start(&self) -> Result<(), DpdkError> {
        // SAFETY: the port was configured.
        let r = unsafe { ffi::rte_eth_dev_start(self.id) };
        if r != 0 {
            return Err(DpdkError::from_errno(format!("start port {}", self.id), r));
        }
        Ok(())
    }

    /// Stops the port.
    pub fn stop(&self) {
        // SAFETY: stopping an already stopped port is harmless.
        unsafe { ffi::rte_eth_dev_stop(self.id) };
    }

    /// Closes the port (after stop).
    pub fn close(&self) {
        // SAFETY: the port is stopped and no queue is in use any more.
        unsafe { ffi::rte_eth_dev_close(self.id) };
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: a is a valid out-parameter.
        let r = unsafe { ffi::rte_eth_macaddr_get(self.id, &mut a) };
        if r != 0 {
            return [0; 6];
        }
        a.addr_bytes
    }

    /// Sets the port's MAC address (PMDs without the operation refuse it).
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut a = ffi::rte_ether_addr { addr_bytes: mac };
        // SAFETY: a is a valid address the call copies.
        let r = unsafe { ffi::rte_eth_dev_default_mac_addr_set(self.id, &mut a) };
        if r != 0 {
            return Err(DpdkError::from_errno(format!("set mac on port {}", self.id), r));
        }
        Ok(())
    }

    /// Link status without waiting.
    pub fn link(&self) -> LinkStatus {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: l is a valid out-parameter.
        let r = unsafe { ffi::rte_eth_link_get_nowait(self.id, &mut l) };
        if r != 0 {
            return LinkStatus::default();
        }
        LinkStatus { up: l.link_status() == 1, speed_mbps: l.link_speed, full_duplex: l.link_duplex() == 1 }
    }

    /// MTU.
    pub fn mtu(&self) -> u16 {
        let mut mtu = 0u16;
        // SAFETY: mtu is a valid out-parameter.
        let r = unsafe { ffi::rte_eth_dev_get_mtu(self.id, &mut mtu) };
        if r != 0 {
            1500
        } else {
            mtu
        }
    }

    /// Sets the MTU.
    pub fn set_mtu(&self, mtu: u16) -> Result<(), DpdkError> {
        // SAFETY: plain setter on a valid port.
        let r = unsafe { ffi::rte_eth_dev_set_mtu(self.id, mtu) };
        if r != 0 {
            return Err(DpdkError::from_errno(format!("set mtu {mtu} on port {}", self.id), r));
        }
        Ok(())
    }

    /// Port counters.
    pub fn stats(&self) -> PortStats {
        let mut s = ffi::rte_eth_stats::default();
        // SAFETY: s is a valid out-parameter.
        let r = unsafe { ffi::rte_eth_stats_get(self.id, &mut s) };
        if r != 0 {
            return PortStats::default();
        }
        PortStats {
            rx_packets: s.ipackets,
            rx_bytes: s.ibytes,
            tx_packets: s.opackets,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// Receives up to the batch's free space from `queue` into `batch`. Returns how many arrived.
    /// Only the thread owning `queue` may call this.
    #[inline]
    pub fn rx_burst<const N: usize>(&self, queue: u16, batch: &mut MbufBatch<N>) -> usize {
        let free = (N - batch.len) as u16;
        if free == 0 {
            return 0;
        }
        // SAFETY: slots [len, N) are None (null) and have room for `free` pointers; the PMD
        // writes at most `free` valid mbuf pointers there and we take ownership of them.
        let n = unsafe { ffi::shim_eth_rx_burst(self.id, queue, batch.as_mut_ptr().add(batch.len), free) };
        batch.len += n as usize;
        n as usize
    }

    /// Sends the batch on `queue`; what the NIC accepted leaves the batch, the rest stays in it
    /// (the caller retries or drops and counts). Returns how many were sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&self, queue: u16, batch: &mut MbufBatch<N>) -> usize {
        if batch.len == 0 {
            return 0;
        }
        // SAFETY: slots [0, len) hold valid owned mbufs; the PMD takes ownership of the first
        // `sent`, which `consumed` then forgets without freeing.
        let sent = unsafe { ffi::shim_eth_tx_burst(self.id, queue, batch.as_mut_ptr(), batch.len as u16) };
        batch.consumed(sent as usize);
        sent as usize
    }

    /// Sends one mbuf; gives it back if the NIC refused it.
    pub fn tx_one(&self, queue: u16, m: Mbuf) -> Result<(), Mbuf> {
        let mut b = MbufBatch::<1>::new();
        b.push(m)?;
        if self.tx_burst(queue, &mut b) == 1 {
            Ok(())
        } else {
            match b.drain().next() {
                Some(m) => Err(m),
                None => Ok(()),
            }
        }
    }
}
