//! `lbadm`: ipvsadm-compatible administration of the director over its control socket.
//! See `control::cli` for the command line and exit statuses.

use std::io::{self, Write};

use control::cli::{run, CliIo, SOCKET_ENV};
use control::names::SystemNames;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names = SystemNames::load();
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    let code = {
        let mut cli = CliIo {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
            socket_env: std::env::var(SOCKET_ENV).ok(),
            names: &names,
        };
        run(&args, &mut cli)
    };
    let _ = stdout.flush();
    let _ = stderr.flush();
    std::process::exit(code);
}
