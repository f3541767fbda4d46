//! AFL++ binary of the `sync` fuzz target (see `fuzz::sync`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz_afl::run("sync", data);
    });
    fuzz_afl::report();
}
