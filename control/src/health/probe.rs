//! The probes: ordinary non-blocking host sockets (so they go out through the director's
//! kernel interfaces like any program's traffic) and child processes.
//!
//! - TCP_CHECK: connect within `connect_timeout`, then close with a reset (SO_LINGER 0, as
//!   HAProxy does) so ten thousand checks a second leave no TIME_WAIT behind.
//! - HTTP_GET / SSL_GET: keepalived's request (`GET PATH HTTP/1.x`, `User-Agent:
//!   KeepAliveClient`, `Host`), the response read until the server closes (each read within
//!   `connect_timeout`); passes if a status line arrived, the status is in the URL's set and
//!   the MD5 of the body (at most Content-Length bytes) equals `digest` when one is given.
//! - SSL_GET runs over rustls. With a CA file the server's chain must lead to it and be
//!   within its validity period (an expired or foreign certificate fails); the name is not
//!   checked, since checks address servers by IP. Without a CA nothing is verified, as in
//!   keepalived.
//! - MISC_CHECK and notify scripts: the command line split like a shell word list and
//!   executed directly in its own process group; on timeout the group gets SIGTERM, then
//!   SIGKILL two seconds later (check_misc.c).
//!
//! Sources: `bindto`/`bind_port`, else the director's address on the server's subnet with
//! IP_BIND_ADDRESS_NO_PORT (the port is picked at connect time, per destination); if the
//! host does not have that address (no kernel interface), the host's routing chooses.
//! Every await is bounded by a timeout; nothing here blocks the engine thread.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use md5::{Digest, Md5};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

use super::machine::ScriptEnd;
use super::spec::{HttpCheck, HttpProtocol, UrlSpec};

/// Largest response head read.
const MAX_HEAD: usize = 64 * 1024;
/// Most body bytes read (and hashed) from one response.
const MAX_BODY: u64 = 16 << 20;
/// How long a killed script gets between SIGTERM and SIGKILL (keepalived: 2 s).
const TERM_GRACE: Duration = Duration::from_secs(2);

/// A probe's outcome and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Passed.
    pub ok: bool,
    /// Human reason ("connected", "connection refused", "HTTP status 500", ...).
    pub reason: String,
}

impl Outcome {
    fn ok(reason: impl Into<String>) -> Self {
        Outcome {
            ok: true,
            reason: reason.into(),
        }
    }

    fn fail(reason: impl Into<String>) -> Self {
        Outcome {
            ok: false,
            reason: reason.into(),
        }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    /// Destination.
    pub dst: SocketAddrV4,
    /// Source address.
    pub source: Option<Ipv4Addr>,
    /// The source was configured: failing to bind it fails the probe.
    pub source_explicit: bool,
    /// Source port (`bind_port`).
    pub bind_port: Option<u16>,
    /// Per connect and per read.
    pub timeout: Duration,
}

/// io::Error text without the "(os error N)" tail, lower case like keepalived's logs.
fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn bind(sock: &TcpSocket, ip: Ipv4Addr, port: u16) -> io::Result<()> {
    if port == 0 {
        // Pick the port at connect time, per 4-tuple: binding alone would reserve one
        // ephemeral port per probe for the whole host.
        let _ = nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true);
    } else {
        sock.set_reuseaddr(true)?;
    }
    sock.bind(SocketAddr::V4(SocketAddrV4::new(ip, port)))
}

/// Opens a TCP connection as the checker's connection options say.
pub async fn connect(c: &Conn) -> Result<TcpStream, String> {
    let mut sock = TcpSocket::new_v4().map_err(|e| format!("socket: {}", describe(&e)))?;
    let port = c.bind_port.unwrap_or(0);
    match c.source {
        Some(ip) => {
            if let Err(e) = bind(&sock, ip, port) {
                let missing = e.raw_os_error() == Some(libc::EADDRNOTAVAIL);
                if c.source_explicit || !missing {
                    return Err(format!("bind {ip}:{port}: {}", describe(&e)));
                }
                // The director's address is not on the host (no kernel interface): let
                // the host's routing choose.
                sock = TcpSocket::new_v4().map_err(|e| format!("socket: {}", describe(&e)))?;
                if port != 0 {
                    bind(&sock, Ipv4Addr::UNSPECIFIED, port)
                        .map_err(|e| format!("bind 0.0.0.0:{port}: {}", describe(&e)))?;
                }
            }
        }
        None if port != 0 => bind(&sock, Ipv4Addr::UNSPECIFIED, port)
            .map_err(|e| format!("bind 0.0.0.0:{port}: {}", describe(&e)))?,
        None => {}
    }
    match timeout(c.timeout, sock.connect(SocketAddr::V4(c.dst))).await {
        Err(_) => Err("connect timeout".into()),
        Ok(Err(e)) => Err(describe(&e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// TCP_CHECK.
pub async fn tcp(c: &Conn) -> Outcome {
    match connect(c).await {
        Ok(s) => {
            // Reset instead of FIN: no TIME_WAIT on the director for each check.
            let _ = nix::sys::socket::setsockopt(
                &s,
                nix::sys::socket::sockopt::Linger,
                &libc::linger { l_onoff: 1, l_linger: 0 },
            );
            drop(s);
            Outcome::ok("connected")
        }
        Err(e) => Outcome::fail(e),
    }
}

/// The request keepalived sends for `url`.
pub fn request(h: &HttpCheck, url: &UrlSpec, dst: SocketAddrV4) -> String {
    let host = url
        .virtualhost
        .clone()
        .or_else(|| h.virtualhost.clone())
        .unwrap_or_else(|| format!("{}:{}", dst.ip(), dst.port()));
    let (minor, close) = match h.http_protocol {
        HttpProtocol::V10 => (0, ""),
        HttpProtocol::V10C => (0, "Connection: close\r\n"),
        HttpProtocol::V11 => (1, "Connection: close\r\n"),
    };
    format!(
        "GET {} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n",
        url.path
    )
}

/// Reads one chunk within the per-read timeout; EOF (including a TLS close without
/// close_notify) is `Ok(0)`.
async fn read_some<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8], t: Duration) -> Result<usize, String> {
    match timeout(t, s.read(buf)).await {
        Err(_) => Err("read timeout".into()),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        Ok(Err(e)) => Err(format!("read error: {}", describe(&e))),
    }
}

/// Sends the request and judges the response (keepalived's http_handle_response).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &str,
    url: &UrlSpec,
    t: Duration,
) -> Outcome {
    match timeout(t, s.write_all(req.as_bytes())).await {
        Err(_) => return Outcome::fail("write timeout"),
        Ok(Err(e)) => return Outcome::fail(format!("cannot send request: {}", describe(&e))),
        Ok(Ok(())) => {}
    }
    let _ = timeout(t, s.flush()).await;
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    let mut md5 = Md5::new();
    let (status, content_len, mut body_seen) = loop {
        let n = match read_some(s, &mut buf, t).await {
            Ok(n) => n,
            Err(e) => return Outcome::fail(e),
        };
        if n == 0 {
            return Outcome::fail(if head.is_empty() {
                "no data received".to_string()
            } else {
                "connection closed before the end of the response head".to_string()
            });
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(len)) => {
                let Some(code) = resp.code else {
                    return Outcome::fail("response without a status code");
                };
                let clen = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let body = &head[len..];
                let take = clen.map_or(body.len() as u64, |c| c.min(body.len() as u64)) as usize;
                md5.update(&body[..take]);
                break (code, clen, take as u64);
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Outcome::fail("response head too large"),
            Err(e) => return Outcome::fail(format!("malformed response: {e}")),
        }
    };
    if url.digest.is_some() {
        let limit = content_len.unwrap_or(MAX_BODY).min(MAX_BODY);
        while body_seen < limit {
            let n = match read_some(s, &mut buf, t).await {
                Ok(n) => n,
                Err(e) => return Outcome::fail(e),
            };
            if n == 0 {
                break;
            }
            let take = ((limit - body_seen) as usize).min(n);
            md5.update(&buf[..take]);
            body_seen += take as u64;
        }
    }
    if !url.status.accepts(status) {
        return Outcome::fail(format!("HTTP status {status}"));
    }
    if let Some(want) = url.digest_bytes() {
        let got: [u8; 16] = md5.finalize().into();
        if got != want {
            let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
            return Outcome::fail(format!("MD5 digest mismatch (got {hex})"));
        }
        return Outcome::ok(format!("HTTP status {status}, MD5 digest"));
    }
    Outcome::ok(format!("HTTP status {status}"))
}

/// HTTP_GET of one URL.
pub async fn http(c: &Conn, h: &HttpCheck, url: &UrlSpec) -> Outcome {
    let mut s = match connect(c).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(e),
    };
    exchange(&mut s, &request(h, url, c.dst), url, c.timeout).await
}

/// SSL_GET of one URL with a prepared TLS configuration.
pub async fn https(c: &Conn, h: &HttpCheck, url: &UrlSpec, tls: &Arc<rustls::ClientConfig>) -> Outcome {
    let tcp = match connect(c).await {
        Ok(s) => s,
        Err(e) => return Outcome::fail(e),
    };
    let sni = h
        .sni_name
        .clone()
        .or_else(|| url.virtualhost.clone())
        .or_else(|| h.virtualhost.clone())
        .filter(|_| h.enable_sni);
    let name = match sni.map(ServerName::try_from) {
        Some(Ok(n)) => n.to_owned(),
        Some(Err(_)) => return Outcome::fail("invalid SNI name"),
        None => ServerName::IpAddress((*c.dst.ip()).into()),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
    let mut s = match timeout(c.timeout, connector.connect(name, tcp)).await {
        Err(_) => return Outcome::fail("TLS handshake timeout"),
        Ok(Err(e)) => return Outcome::fail(format!("TLS handshake failed: {e}")),
        Ok(Ok(s)) => s,
    };
    let out = exchange(&mut s, &request(h, url, c.dst), url, c.timeout).await;
    let _ = timeout(c.timeout, s.shutdown()).await;
    out
}

/// Accepts any certificate (SSL_GET without a CA), still checking handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Chain and validity against the configured CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS client configuration of an SSL_GET checker (reads its CA, certificate and key
/// files).
pub fn tls_config(h: &HttpCheck) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match &h.ca {
        None => Arc::new(AcceptAny(Arc::clone(&provider))),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CA file {path}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("CA file {path}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("CA file {path}: no certificate"));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("CA file {path}: {e}"))?;
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("CA file {path}: {e}"))?;
            Arc::new(ChainOnly(v))
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut cfg = match (&h.certificate, &h.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("certificate {cert}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("certificate {cert}: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("key {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.enable_sni = h.enable_sni;
    Ok(Arc::new(cfg))
}

/// Runs a command line in its own process group; kills the group (SIGTERM, then SIGKILL
/// two seconds later) if it runs longer than `limit`.
pub async fn run_command(cmd: &str, limit: Duration) -> (ScriptEnd, String) {
    let args = match shlex::split(cmd) {
        Some(a) if !a.is_empty() => a,
        _ => return (ScriptEnd::Exited(127), format!("cannot parse command \"{cmd}\"")),
    };
    let mut command = tokio::process::Command::new(&args[0]);
    command
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return (ScriptEnd::Exited(127), format!("cannot run {}: {}", args[0], describe(&e))),
    };
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    match timeout(limit, child.wait()).await {
        Ok(Ok(st)) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(code), _) => (ScriptEnd::Exited(code), format!("exit status {code}")),
                (None, Some(sig)) => (ScriptEnd::Killed, format!("killed by signal {sig}")),
                _ => (ScriptEnd::Killed, "ended abnormally".into()),
            }
        }
        Ok(Err(e)) => (ScriptEnd::Killed, format!("wait: {}", describe(&e))),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = killpg(pid, Signal::SIGTERM);
                if timeout(TERM_GRACE, child.wait()).await.is_err() {
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = timeout(TERM_GRACE, child.wait()).await;
                } else {
                    // Its children too (keepalived kills the group after a SIGTERM exit).
                    let _ = killpg(pid, Signal::SIGKILL);
                }
            }
            (
                ScriptEnd::Killed,
                format!("timed out after {}", humantime::format_duration(limit)),
            )
        }
    }
}
