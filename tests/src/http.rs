//! HTTP servers on the real servers and curl on the clients.
//!
//! The server is scripts/testbed-httpd.py (the same file scripts/demo.sh runs), embedded at
//! compile time and run with `python3 -c`, so tests do not depend on the working directory:
//! * `GET /`        -> `"<name>\n"`: which real server answered;
//! * `POST <any>`   -> `"<name> <sha256-hex> <length>\n"` of the request body: the upload sink
//!   used to prove byte-for-byte integrity through the director;
//! * `GET /bytes/N` -> N bytes of a fixed pattern with an `X-Sha256` header.
//!
//! Every response closes its connection, so each curl call is one new TCP connection (and one
//! new scheduling decision of the director).

use crate::netns::{ChildGuard, Netns};
use crate::util::wait_until;
use std::path::Path;
use std::time::Duration;

/// Source of scripts/testbed-httpd.py.
pub const HTTPD_SCRIPT: &str = include_str!("../../scripts/testbed-httpd.py");

/// The Python interpreter: `$PYTHON`, else Debian's `/usr/bin/python3` (installed by
/// setup-host.sh; independent of pyenv shims), else `python3` from PATH.
pub fn python() -> String {
    if let Ok(p) = std::env::var("PYTHON") {
        return p;
    }
    if Path::new("/usr/bin/python3").exists() {
        return "/usr/bin/python3".into();
    }
    "python3".into()
}

/// A testbed HTTP server running inside a namespace; stopped (by PID) on drop.
#[derive(Debug)]
pub struct HttpServer {
    child: ChildGuard,
    name: String,
    port: u16,
}

impl HttpServer {
    /// Starts the server in `ns` on `0.0.0.0:port`, answering with `name`, and waits (≤ 10 s)
    /// until it answers on 127.0.0.1 inside the namespace. Panics otherwise.
    pub fn start(ns: &Netns, name: &str, port: u16) -> HttpServer {
        let py = python();
        let port_s = port.to_string();
        let mut child = ns.spawn(&[
            &py,
            "-c",
            HTTPD_SCRIPT,
            "--name",
            name,
            "--bind",
            "0.0.0.0",
            "--port",
            &port_s,
        ]);
        let url = format!("http://127.0.0.1:{port}/");
        let ready = wait_until(Duration::from_secs(10), || {
            if !child.is_running() {
                return true; // fail fast below
            }
            matches!(curl_get(ns, &url, 1), Ok(body) if body == name)
        });
        if !ready || !child.is_running() {
            panic!(
                "http server {name} did not start in {} on port {port}",
                ns.name()
            );
        }
        HttpServer {
            child,
            name: name.to_string(),
            port,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's PID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }
}

/// `curl -s --max-time <secs> <url>` inside `ns`; the trimmed body on HTTP success, else an
/// error text (curl's exit code, HTTP status, stderr).
pub fn curl_get(ns: &Netns, url: &str, max_time_secs: u32) -> Result<String, String> {
    let t = max_time_secs.to_string();
    curl(
        ns,
        &["-s", "-S", "--fail", "--max-time", &t, url],
        max_time_secs,
    )
}

/// POSTs the file `body` to `url` from inside `ns` (`curl --data-binary @file`, without
/// `Expect: 100-continue`); returns the trimmed response body.
pub fn curl_post_file(
    ns: &Netns,
    url: &str,
    body: &Path,
    max_time_secs: u32,
) -> Result<String, String> {
    let t = max_time_secs.to_string();
    let data = format!("@{}", body.display());
    curl(
        ns,
        &[
            "-s",
            "-S",
            "--fail",
            "--max-time",
            &t,
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
            url,
        ],
        max_time_secs,
    )
}

fn curl(ns: &Netns, args: &[&str], max_time_secs: u32) -> Result<String, String> {
    let mut full = vec!["curl"];
    full.extend_from_slice(args);
    // curl bounds itself with --max-time; the outer limit only guards against a wedged exec.
    let out = ns.exec_timeout(&full, Duration::from_secs(max_time_secs as u64 + 10));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "curl {} failed ({}): {}",
            args.last().unwrap_or(&""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The upload sink's answer: `"<name> <sha256> <length>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReply {
    pub server: String,
    pub sha256: String,
    pub len: u64,
}

impl UploadReply {
    /// Parses the POST response body; None if it is not three fields.
    pub fn parse(body: &str) -> Option<UploadReply> {
        let f: Vec<&str> = body.split_whitespace().collect();
        if f.len() != 3 {
            return None;
        }
        Some(UploadReply {
            server: f[0].into(),
            sha256: f[1].to_lowercase(),
            len: f[2].parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upload_reply() {
        let r = UploadReply::parse("rs1 ABCDEF 1048576\n").unwrap();
        assert_eq!(
            r,
            UploadReply {
                server: "rs1".into(),
                sha256: "abcdef".into(),
                len: 1048576
            }
        );
        assert!(UploadReply::parse("rs1").is_none());
    }
}
