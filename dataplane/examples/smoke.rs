use dataplane::dpdk::*;
fn main() {
    let args: Vec<String> = ["smoke", "--no-huge", "-m", "256", "--file-prefix", "smoke", "-l", "0", "--log-level", "4", "--vdev", "net_null0"].iter().map(|s| s.to_string()).collect();
    let eal = Eal::init(&args).expect("eal");
    println!("consumed {} lcores {:?} ports {}", eal.args_consumed(), eal.lcores(), eal.port_count());
    let pool = Mempool::new(&eal, "p", 4095, 256, Mempool::default_data_room(), 0, true).expect("pool");
    let ring = Ring::new(&eal, "r", 1024, false, false).expect("ring");
    let rp = ring.as_port(&eal).expect("ringport");
    rp.configure(&PortConfig::default(), &pool).expect("cfg");
    rp.start().expect("start");
    for p in Port::all(&eal) { println!("{} {} {:?} {:02x?} mtu {} {:?}", p.name(), p.device_name(), p.info().map(|i| i.0), p.mac(), p.mtu(), p.link()); }
    let mut b = MbufBatch::<32>::new();
    for i in 0..10u8 { let mut m = pool.alloc().unwrap(); m.append(60).unwrap().fill(i); b.push(m).unwrap(); }
    println!("tx {}", rp.tx_burst(0, &mut b));
    let mut r = MbufBatch::<32>::new();
    println!("rx {}", rp.rx_burst(0, &mut r));
    for m in r.drain() { print!("{}:{} ", m.len(), m.data()[0]); }
    println!("\n{:?} inuse {}", rp.stats(), pool.in_use());
    rp.stop();
}
