//! `fuzz-replay TARGET PATH…`: runs each file (every file of a directory) through a fuzz
//! target without AFL — to reproduce a crash AFL saved (`target/fuzz/out/T/default/crashes/`)
//! or to count what a corpus does. Prints the inputs run and, for `engine`, the frames.

use std::path::{Path, PathBuf};

fn files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            for f in v {
                files(&f, out);
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((name, paths)) = args.split_first() else {
        eprintln!("usage: fuzz-replay TARGET PATH...   (targets: {})", fuzz::TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", "));
        std::process::exit(2);
    };
    let Some(t) = fuzz::target(name) else {
        eprintln!("fuzz-replay: no target {name}");
        std::process::exit(2);
    };
    let mut all = Vec::new();
    for p in paths {
        files(Path::new(p), &mut all);
    }
    for f in &all {
        match std::fs::read(f) {
            Ok(data) => {
                eprintln!("{}", f.display());
                (t.run)(&data);
            }
            Err(e) => eprintln!("{}: {e}", f.display()),
        }
    }
    println!("{name}: {} inputs, {} engine frames", all.len(), fuzz::engine::frames());
}
