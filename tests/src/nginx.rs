//! Real web servers for the health-check testbeds: Debian's nginx, one instance per
//! namespace with a configuration of its own, and a test CA made with openssl (seed 002's
//! way), for SSL_GET.
//!
//! Every instance answers on port 80 (and 443 with TLS when given a certificate):
//! * `GET /`        → `"<name>\n"` (which real server answered);
//! * `GET /health`  → `"ok\n"` (MD5 [`HEALTH_MD5`]);
//! * `GET /fail`    → status 500;
//! * `GET /testurl3/test.jsp` → `"keepalived sample\n"` (MD5 [`SAMPLE_MD5`]), the URL of
//!   keepalived's own sample configuration.
//!
//! [`NginxBed`] is the one-armed DR segment of [`crate::OneArmed`] with nginx real servers.
//! Everything lives in a [`TempDir`]; nginx is stopped (by PID) on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::director::{DirectorOptions, DirectorProcess, NEIGH_TIMEOUT};
use crate::http::curl_get;
use crate::netns::{ChildGuard, Netns};
use crate::testbed::{VIP, VPORT};
use crate::topo::{add_addr, configure_dr_real_server, prepare_director_port, Switch};
use crate::util::{wait_until, TempDir};

/// MD5 of `/health`'s body.
pub const HEALTH_MD5: &str = "eff5bc1ef8ec9d03e640fc4370f5eacd";
/// MD5 of `/testurl3/test.jsp`'s body.
pub const SAMPLE_MD5: &str = "d9e232f9f7e6a03fb580bf51ac9ac18b";

/// The nginx binary (setup-host.sh installs Debian's).
pub fn nginx_bin() -> &'static str {
    if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    }
}

/// MD5 hex of `data` (md5sum, so the constants above are checked, not trusted).
pub fn md5_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// TLS material for one server: certificate and key files.
#[derive(Debug, Clone)]
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA and certificates, made with openssl in `dir`.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    fn run(&self, args: &[&str]) {
        let out = Command::new("openssl").args(args).current_dir(&self.dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A new CA named `name` in `dir` (created if needed).
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ca = TestCa { dir };
        ca.run(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", &format!("/CN={name}")]);
        std::fs::write(ca.dir.join("index.txt"), "").unwrap();
        std::fs::write(ca.dir.join("serial"), "1000\n").unwrap();
        std::fs::write(
            ca.dir.join("ca.cnf"),
            "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\n\
             copy_extensions=copy\nx509_extensions=e\nunique_subject=no\n[p]\ncommonName=supplied\n[e]\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        ca
    }

    /// The CA certificate file.
    pub fn pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `cn` (also its DNS name), valid from `start` to `end`
    /// (`YYYYMMDDHHMMSSZ`; `None`: now until 30 days from now).
    pub fn issue(&self, cn: &str, dates: Option<(&str, &str)>) -> Cert {
        let stem = format!("{cn}-{}", dates.map_or("now".to_string(), |(a, _)| a.to_string()));
        let (key, csr, pem) = (format!("{stem}.key"), format!("{stem}.csr"), format!("{stem}.pem"));
        self.run(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}"), "-addext", &format!("subjectAltName=DNS:{cn}")]);
        let mut args = vec!["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", &csr, "-out", &pem, "-notext"];
        match dates {
            Some((a, b)) => args.extend(["-startdate", a, "-enddate", b]),
            None => args.extend(["-days", "30"]),
        }
        self.run(&args);
        Cert { cert: self.dir.join(pem), key: self.dir.join(key) }
    }
}

/// An nginx instance in a namespace.
#[derive(Debug)]
pub struct Nginx {
    child: Option<ChildGuard>,
    conf: PathBuf,
    prefix: PathBuf,
    ns_name: String,
}

impl Nginx {
    /// Writes the configuration for server `name` in `dir` and starts nginx in `ns`; waits
    /// (≤ 10 s) until it answers on 127.0.0.1:80 inside the namespace.
    pub fn start(ns: &Netns, dir: &Path, name: &str, tls: Option<&Cert>) -> Nginx {
        let prefix = dir.join(format!("nginx-{name}"));
        std::fs::create_dir_all(prefix.join("tmp")).unwrap();
        let ssl = match tls {
            Some(c) => format!(
                "listen 443 ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n",
                c.cert.display(),
                c.key.display()
            ),
            None => String::new(),
        };
        let p = prefix.display();
        let conf = format!(
            "worker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\nevents {{ worker_connections 512; }}\n\
             http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/tmp;\n  proxy_temp_path {p}/tmp;\n  fastcgi_temp_path {p}/tmp;\n  uwsgi_temp_path {p}/tmp;\n  scgi_temp_path {p}/tmp;\n\
             \x20 server {{\n    listen 80;\n    {ssl}    default_type text/plain;\n\
             \x20   location = / {{ return 200 \"{name}\\n\"; }}\n\
             \x20   location = /health {{ return 200 \"ok\\n\"; }}\n\
             \x20   location = /fail {{ return 500 \"failing\\n\"; }}\n\
             \x20   location = /testurl3/test.jsp {{ return 200 \"keepalived sample\\n\"; }}\n  }}\n}}\n"
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut n = Nginx { child: None, conf: conf_path, prefix, ns_name: ns.name().to_string() };
        n.restart(ns);
        n
    }

    /// Starts it again (after [`Nginx::stop`]).
    pub fn restart(&mut self, ns: &Netns) {
        assert_eq!(ns.name(), self.ns_name);
        let child = ns.spawn(&[
            nginx_bin(),
            "-p",
            self.prefix.to_str().unwrap(),
            "-e",
            self.prefix.join("error.log").to_str().unwrap(),
            "-c",
            self.conf.to_str().unwrap(),
            "-g",
            "daemon off;",
        ]);
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || curl_get(ns, "http://127.0.0.1/", 1).is_ok());
        if !up {
            let log = std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default();
            panic!("nginx in {} did not start:\n{log}", self.ns_name);
        }
    }

    /// Stops it (SIGTERM to the master: nginx's fast shutdown, workers included).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop(Duration::from_secs(5));
        }
    }

    /// Requests nginx logged (lines of its access log).
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(self.prefix.join("access.log")).map_or(0, |s| s.lines().count())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real server of an [`NginxBed`] (field order: nginx stops before the namespace goes).
#[derive(Debug)]
pub struct NginxHost {
    /// `rs1`, …
    pub name: String,
    /// Its address.
    pub ip: String,
    pub nginx: Nginx,
    pub ns: Netns,
}

/// The one-armed segment (client, director, real servers on 198.51.100.0/24, VIP
/// 198.51.100.100) with nginx real servers.
#[derive(Debug)]
pub struct NginxBed {
    pub rs: Vec<NginxHost>,
    pub client: Netns,
    pub director_ns: Netns,
    pub switch: Switch,
    pub dir: TempDir,
}

impl NginxBed {
    pub const CLIENT_IP: &'static str = "198.51.100.50";
    pub const DIRECTOR_IP: &'static str = "198.51.100.2";
    pub const DIRECTOR_IF: &'static str = "eth0";

    /// Address of real server `i` (0-based).
    pub fn rs_ip(i: usize) -> String {
        format!("198.51.100.{}", 11 + i)
    }

    /// `n` real servers; `tls(i)` gives server `i` a certificate for port 443.
    pub fn new(n: usize, tls: impl Fn(usize) -> Option<Cert>, dir: TempDir) -> NginxBed {
        let switch = Switch::new();
        switch.add_bridge("lan");
        let client = Netns::new("client");
        let director_ns = Netns::new("director");
        switch.plug("lan", &client, "eth0");
        switch.plug("lan", &director_ns, Self::DIRECTOR_IF);
        prepare_director_port(&director_ns, Self::DIRECTOR_IF);
        add_addr(&client, &format!("{}/24", Self::CLIENT_IP), "eth0");
        director_ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        let mut rs = Vec::new();
        for i in 0..n {
            let name = format!("rs{}", i + 1);
            let ns = Netns::new(&name);
            switch.plug("lan", &ns, "eth0");
            let ip = Self::rs_ip(i);
            add_addr(&ns, &format!("{ip}/24"), "eth0");
            configure_dr_real_server(&ns, VIP, &["eth0"]);
            let nginx = Nginx::start(&ns, dir.path(), &name, tls(i).as_ref());
            rs.push(NginxHost { name, ip, nginx, ns });
        }
        for r in &rs {
            let got = curl_get(&client, &format!("http://{}/", r.ip), 3);
            assert_eq!(got.as_deref().map(str::trim_end), Ok(r.name.as_str()), "plumbing: client -> {}", r.ip);
        }
        NginxBed { rs, client, director_ns, switch, dir }
    }

    /// The director on dpdk0 (kernel leg on), with `extra` arguments.
    pub fn start_director(&self, extra: &[&str]) -> DirectorProcess {
        DirectorProcess::start_with(
            &self.director_ns,
            &[Self::DIRECTOR_IF],
            &DirectorOptions { extra_args: extra.iter().map(|s| s.to_string()).collect(), ..Default::default() },
        )
    }

    /// The director's address and the VIP on dpdk0, then waits for the servers' ARP.
    pub fn addresses(&self, d: &DirectorProcess) {
        d.lbadm_ok(&["addr", "add", &format!("{}/24", Self::DIRECTOR_IP), "dev", "dpdk0"]);
        d.lbadm_ok(&["addr", "add", &format!("{VIP}/32"), "dev", "dpdk0"]);
    }

    /// Waits until the director resolved every real server.
    pub fn wait_neigh(&self, d: &DirectorProcess) {
        let ips: Vec<&str> = self.rs.iter().map(|r| r.ip.as_str()).collect();
        d.wait_neigh_reachable(&ips, NEIGH_TIMEOUT);
    }

    /// One GET of `http://VIP:port/` from the client: the answering server's name.
    pub fn get_vip(&self, port: u16) -> Result<String, String> {
        let _ = VPORT;
        curl_get(&self.client, &format!("http://{VIP}:{port}/"), 2).map(|s| s.trim_end().to_string())
    }
}
