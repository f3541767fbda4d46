//! AFL++ binary of the `iptables` fuzz target (see `fuzz::parsers`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz_afl::run("iptables", data);
    });
    fuzz_afl::report();
}
