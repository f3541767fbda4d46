//! AFL++ binary of the `ipvsadm` fuzz target (see `fuzz::parsers`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz_afl::run("ipvsadm", data);
    });
    fuzz_afl::report();
}
