//! AFL++ binary of the `config_file` fuzz target (see `fuzz::parsers`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz_afl::run("config_file", data);
    });
    fuzz_afl::report();
}
