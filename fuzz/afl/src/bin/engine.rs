//! AFL++ binary of the `engine` fuzz target (see `fuzz::engine`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        fuzz_afl::run("engine", data);
    });
    fuzz_afl::report();
}
