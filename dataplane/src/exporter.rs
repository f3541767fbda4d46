//! `director --metrics ADDR:PORT`: an HTTP server (tiny_http) on its own thread serving the
//! Prometheus exposition of [`metrics::render`] at `/metrics`.
//!
//! One request at a time: each `GET /metrics` takes a fresh [`Sample`](crate::sample::Sample)
//! (workers answer through their mailboxes between bursts; a worker is never blocked by a
//! scrape, and a scrape waits at most a second for a worker). `/` answers with a short index,
//! other paths 404, other methods 405. The thread polls the stop flag every 100 ms and ends
//! with the director. Malformed HTTP is tiny_http's to refuse; nothing a client sends can stop
//! the thread.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::metrics;
use crate::sample::Sampler;

/// How often the server thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// A response: status, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

/// What a request gets; `render` is called only for the metrics page.
pub fn respond(method: &str, url: &str, render: impl FnOnce() -> String) -> Reply {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let text = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return Reply { status: 405, content_type: text, body: "method not allowed: use GET\n".into() };
    }
    match path {
        "/metrics" => Reply { status: 200, content_type: metrics::CONTENT_TYPE, body: render() },
        "/" => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: "<html><head><title>director</title></head><body><h1>director</h1>\
                   <p><a href=\"/metrics\">Metrics</a></p></body></html>\n"
                .into(),
        },
        _ => Reply { status: 404, content_type: text, body: "not found: the metrics are at /metrics\n".into() },
    }
}

/// Binds `addr`: done first thing at start-up, so that an unusable address stops the
/// director before anything else runs.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("metrics endpoint {addr}"))
}

/// Serves on `listener` until `stop` is set.
pub fn spawn(listener: TcpListener, sampler: Arc<Sampler>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    let addr = listener.local_addr().context("metrics endpoint address")?;
    let server = tiny_http::Server::from_listener(listener, None).map_err(|e| anyhow!("metrics endpoint {addr}: {e}"))?;
    log::info!("metrics served at http://{addr}/metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let req = match server.recv_timeout(POLL) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => {
                        log::warn!("metrics endpoint: {e}");
                        std::thread::sleep(POLL);
                        continue;
                    }
                };
                let r = respond(req.method().as_str(), req.url(), || metrics::render(&sampler.take()));
                let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], r.content_type.as_bytes())
                    .expect("static header is valid");
                let resp = tiny_http::Response::from_string(r.body).with_status_code(r.status).with_header(header);
                // A client that went away is not an error worth a line.
                let _ = req.respond(resp);
            }
        })
        .context("spawning the metrics thread")
}

#[cfg(test)]
mod tests {
    use super::respond;

    #[test]
    fn routes() {
        let r = respond("GET", "/metrics", || "x 1\n".into());
        assert_eq!((r.status, r.body.as_str()), (200, "x 1\n"));
        assert!(r.content_type.contains("version=0.0.4"));
        assert_eq!(respond("GET", "/metrics?name[]=x", || "y".into()).body, "y");
        assert_eq!(respond("GET", "/", || unreachable!()).status, 200);
        assert_eq!(respond("GET", "/other", || unreachable!()).status, 404);
        assert_eq!(respond("POST", "/metrics", || unreachable!()).status, 405);
    }
}
