//! AFL++ binary of the `proto` fuzz target (see `fuzz::parsers`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz_afl::run("proto", data);
    });
    fuzz_afl::report();
}
