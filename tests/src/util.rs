//! Small building blocks: bounded waiting, bounded external commands, unique names, temporary
//! directories, files of random bytes and their SHA-256.
//!
//! Every external command started through this module has a time limit ([`run_timeout`]): a
//! hung `ip`, `curl` or `lbadm` fails the test with a message instead of hanging CI.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Time limit of a command run through [`run`] / [`Netns::exec`](crate::Netns::exec).
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `cond` every 50 ms until it returns true or `timeout` has passed.
/// Returns whether the condition became true (it is evaluated at least once, and once more at
/// the deadline).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine while this process lives: `<prefix>-<pid>-<counter>`.
/// Harness resources (namespaces, sockets, DPDK file prefixes) all embed the pid, so leftovers
/// of a killed test run can be recognised and swept (see [`crate::netns::sweep_stale`]).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Runs a program with arguments, capturing stdout and stderr, bounded by
/// [`DEFAULT_CMD_TIMEOUT`]. See [`run_timeout`].
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Output {
    run_timeout(program, args, DEFAULT_CMD_TIMEOUT)
}

/// Runs a program with arguments (stdin closed), capturing stdout and stderr. If it has not
/// exited after `timeout` it is killed (SIGKILL, by PID) and the returned status is that of
/// the killed process, with a note appended to stderr. Panics only if the program cannot be
/// started at all (missing binary), with the program's name in the message.
pub fn run_timeout<S: AsRef<OsStr>>(program: &str, args: &[S], timeout: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{program}`: {e}"));
    // Drain both pipes in threads so a chatty child never blocks on a full pipe.
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    for (is_err, mut pipe) in [
        (
            false,
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        ),
        (
            true,
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        ),
    ] {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((is_err, buf));
        });
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            Err(e) => panic!("waiting for `{program}`: {e}"),
        }
    };
    // The pipes close when the child exits, unless it left a grandchild holding them: do not
    // wait for that forever.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(2)) {
            Ok((false, b)) => stdout = b,
            Ok((true, b)) => stderr = b,
            Err(_) => break,
        }
    }
    if timed_out {
        let note = format!("\n[harness] `{program}` killed after {timeout:?} (time limit)\n");
        stderr.extend_from_slice(note.as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Human-readable summary of a command's result, for panic messages.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command (root namespace) and returns its stdout; panics with stdout/stderr if it
/// fails. `args[0]` is the program.
pub fn run_ok(args: &[&str]) -> String {
    let out = run(args[0], &args[1..]);
    if !out.status.success() {
        panic!("{}", describe(&args.join(" "), &out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory under /tmp removed (recursively) on drop, unless the environment variable
/// `LBTEST_KEEP=1` is set (then its path is printed, for post-mortems).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `/tmp/<unique_name(prefix)>`.
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(prefix));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(name)`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if keep_artifacts() {
            eprintln!("[harness] kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Whether `LBTEST_KEEP=1` asks to keep temporary files and logs.
pub fn keep_artifacts() -> bool {
    std::env::var("LBTEST_KEEP")
        .map(|v| v == "1")
        .unwrap_or(false)
}

/// Writes `len` random bytes (from /dev/urandom) to `path`.
pub fn write_random_file(path: &Path, len: usize) {
    let mut data = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("read /dev/urandom");
    fs::File::create(path)
        .and_then(|mut f| f.write_all(&data))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Lower-case hex SHA-256 of a file (coreutils `sha256sum`, so the harness needs no crate).
pub fn sha256_file(path: &Path) -> String {
    let p = path.to_str().expect("utf-8 path");
    let out = run_ok(&["sha256sum", "--", p]);
    out.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// Sends a signal (`"TERM"`, `"KILL"`, …) to one process by PID, with kill(1): the harness
/// keeps `unsafe` out of test code. Errors (process already gone) are ignored.
pub fn send_signal(pid: i32, signal: &str) {
    if pid > 0 {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether a program is found on PATH (or is an existing path).
pub fn have_program(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_is_bounded() {
        let t = Instant::now();
        assert!(!wait_until(Duration::from_millis(120), || false));
        assert!(t.elapsed() < Duration::from_secs(2));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            n += 1;
            n == 3
        }));
    }

    #[test]
    fn run_timeout_kills() {
        let t = Instant::now();
        let out = run_timeout("sleep", &["10"], Duration::from_millis(200));
        assert!(!out.status.success());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(String::from_utf8_lossy(&out.stderr).contains("time limit"));
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("x"), unique_name("x"));
    }

    #[test]
    fn sha256_of_known_file() {
        let d = TempDir::new("lbt-unit");
        let f = d.join("abc");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
