//! AFL++ binary of the `keepalived_conf` fuzz target (see `fuzz::parsers`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz_afl::run("keepalived_conf", data);
    });
    fuzz_afl::report();
}
