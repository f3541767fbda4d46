//! The connection-sync master beside the engine loop (mode (b) with `--sync-master`): the
//! engine gets a worker sync queue with the master flag set, and a sender thread runs the
//! director's own `sync::master_loop` (the kernel's send rules on the worker, message
//! building and one UDP `send` per message on the sender) towards a sink socket on loopback
//! that reads and discards. What the benchmark compares: new connections per second of the
//! engine loop with and without it (the worker's share of the cost), and what the sender
//! achieved (messages and entries per second, queue-full drops).
//!
//! The sender thread is not pinned: EAL pins the loop to CPU 0, so it runs on the other core,
//! as a director's sync thread does beside its workers.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use control::sync_proto::DEFAULT_MAXLEN;
use dataplane::engine::Engine;
use dataplane::sync::{master_loop, DaemonStats, SyncPort, SyncShared};

/// What the sync master did during the measured runs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct SyncCounts {
    /// Entries the engine queued.
    pub entries_queued: u64,
    /// Entries dropped because the queue was full.
    pub ring_full: u64,
    /// Entries sent.
    pub entries_sent: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Messages the socket refused.
    pub send_errors: u64,
    /// Wall seconds of the measured phase (the sender runs throughout).
    pub secs: f64,
}

/// A running sync master for one engine.
pub struct Master {
    port: Arc<SyncPort>,
    stats: Arc<DaemonStats>,
    stop: Arc<AtomicBool>,
    stop_sink: Arc<AtomicBool>,
    sender: Option<JoinHandle<()>>,
    sink: Option<JoinHandle<()>>,
    started: Instant,
}

impl Master {
    /// Attaches a sync queue (master running) to `engine` and starts the sender and the sink.
    pub fn start(engine: &mut Engine) -> Result<Master> {
        let shared = Arc::new(SyncShared::default());
        shared.master.store(true, Ordering::SeqCst);
        let port = Arc::new(SyncPort::new(shared));
        engine.attach_sync(port.clone());
        engine.sync_poll(0);
        let sink = UdpSocket::bind("127.0.0.1:0").context("sink socket")?;
        sink.set_read_timeout(Some(Duration::from_millis(100)))?;
        let send = UdpSocket::bind("127.0.0.1:0").context("send socket")?;
        send.connect(sink.local_addr()?).context("connect to the sink")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(DaemonStats::default());
        let (p2, s2, st2) = (vec![port.clone()], stats.clone(), stop.clone());
        let never = Arc::new(AtomicBool::new(false));
        let sender = std::thread::Builder::new()
            .name("sync-master".into())
            .spawn(move || master_loop(&send, &p2, 0, DEFAULT_MAXLEN, &s2, &st2, &never))?;
        let stop_sink = Arc::new(AtomicBool::new(false));
        let st3 = stop_sink.clone();
        let sink = std::thread::Builder::new().name("sync-sink".into()).spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !st3.load(Ordering::Relaxed) {
                let _ = sink.recv(&mut buf);
            }
        })?;
        Ok(Master { port, stats, stop, stop_sink, sender: Some(sender), sink: Some(sink), started: Instant::now() })
    }

    /// Counters now (to subtract the preparation phases).
    pub fn counts(&self) -> SyncCounts {
        SyncCounts {
            entries_queued: self.port.stats.queued.get(),
            ring_full: self.port.stats.ring_full.get(),
            entries_sent: self.stats.entries_sent.get(),
            messages_sent: self.stats.messages_sent.get(),
            bytes_sent: self.stats.bytes_sent.get(),
            send_errors: self.stats.send_errors.get(),
            secs: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Stops the threads (the sender flushes what is queued) and returns what happened since
    /// `before`.
    pub fn finish(mut self, before: SyncCounts) -> SyncCounts {
        let mid = self.counts();
        // The sender flushes and ends first, then the sink stops reading.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.sender.take() {
            let _ = t.join();
        }
        self.stop_sink.store(true, Ordering::SeqCst);
        if let Some(t) = self.sink.take() {
            let _ = t.join();
        }
        let end = self.counts();
        SyncCounts {
            entries_queued: end.entries_queued - before.entries_queued,
            ring_full: end.ring_full - before.ring_full,
            entries_sent: end.entries_sent - before.entries_sent,
            messages_sent: end.messages_sent - before.messages_sent,
            bytes_sent: end.bytes_sent - before.bytes_sent,
            send_errors: end.send_errors - before.send_errors,
            secs: mid.secs - before.secs,
        }
    }
}
