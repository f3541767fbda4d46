//! The CI smoke of the coverage-guided fuzzing: every target under AFL++ for
//! `FUZZ_SMOKE_SECONDS` (default 13: 91 s for the seven targets, under two minutes with AFL's
//! start-up), from the committed seeds,
//! through `scripts/fuzz.sh` (which builds the instrumented binaries first). Fails on any
//! crash or hang, or when a target ran no input. Without cargo-afl the test fails under CI
//! (`CI=true`, where scripts/setup-host.sh installs it) and is skipped otherwise.

use std::path::Path;
use std::process::Command;

#[test]
fn every_target_survives_a_short_afl_run() {
    let have_afl = Command::new("cargo").args(["afl", "--version"]).output().is_ok_and(|o| o.status.success());
    if !have_afl {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("cargo-afl is missing (scripts/setup-host.sh installs it)");
        }
        eprintln!("SKIP: cargo-afl is not installed (run scripts/setup-host.sh)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root");
    let secs = std::env::var("FUZZ_SMOKE_SECONDS").unwrap_or_else(|_| "13".into());
    let out = repo.join("target/fuzz/smoke");
    let o = Command::new("bash")
        .arg(repo.join("scripts/fuzz.sh"))
        .env("FUZZ_SECONDS", &secs)
        .env("FUZZ_OUT", &out)
        .env_remove("FUZZ_TARGETS")
        .env_remove("FUZZ_RESUME")
        .output()
        .expect("running scripts/fuzz.sh");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(o.status.success(), "fuzz smoke failed (crash, hang, or AFL did not run): see {}", out.display());
    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    for t in fuzz::TARGETS {
        let row = report.lines().find(|l| l.starts_with(&format!("| {} |", t.name))).unwrap_or_else(|| panic!("no row for {}", t.name));
        let execs: u64 = row.split('|').nth(3).and_then(|c| c.trim().parse().ok()).unwrap_or(0);
        assert!(execs > 0, "{}: no executions", t.name);
    }
}
