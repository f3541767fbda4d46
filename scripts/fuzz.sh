#!/usr/bin/env bash
# fuzz.sh — coverage-guided fuzzing of every fuzz target with AFL++ (cargo-afl, stable
# toolchain); see fuzz/src/lib.rs for the targets and their invariants.
#
#   scripts/fuzz.sh                      every target for FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=15 scripts/fuzz.sh      the smoke `make test` runs (6 targets: 90 s)
#   FUZZ_TARGETS="engine" FUZZ_SECONDS=3600 scripts/fuzz.sh
#
# Builds fuzz/afl with AFL's instrumentation (cargo afl build --release), starts each target
# from its committed seeds (fuzz/corpus/TARGET) into FUZZ_OUT/TARGET (default
# target/fuzz/out; FUZZ_RESUME=1 continues a previous run's queue instead), then prints per
# target the executions, the engine frames, the corpus found, the coverage and the crashes
# and hangs, and writes them to FUZZ_OUT/report.md. Exit status 1 if any target crashed or
# hung (the inputs are under FUZZ_OUT/TARGET/default/crashes|hangs; reproduce one with
# `target/release/fuzz-replay TARGET FILE`), or if AFL could not run.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"engine proto ipvsadm iptables config_file keepalived_conf sync"}
OUT=${FUZZ_OUT:-$REPO/target/fuzz/out}
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[fuzz] %s\n' "$*"; }
die() { printf '[fuzz] ERROR: %s\n' "$*" >&2; exit 1; }

cargo afl --version >/dev/null 2>&1 || die "cargo-afl is missing (scripts/setup-host.sh installs it)"

say "building the AFL binaries (cargo afl build --release in fuzz/afl)"
(cd "$REPO/fuzz/afl" && nice cargo afl build --release --quiet) || die "cargo afl build failed"
BIN=$REPO/fuzz/afl/target/release

# No CPU binding (cores are shared), no core_pattern requirement, no curses UI.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1
# Restart the persistent child every 20,000 inputs so that it reports its engine frames.
export AFL_FUZZER_LOOPCOUNT=20000

mkdir -p "$OUT"
report=$OUT/report.md
{
    echo "| target | seconds | executions | execs/s | engine frames | corpus | coverage | crashes | hangs |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} > "$report"
failed=0
for t in $TARGETS; do
    [[ -x $BIN/$t ]] || die "no AFL binary for target $t"
    [[ -d $REPO/fuzz/corpus/$t ]] || die "no seeds in fuzz/corpus/$t"
    dir=$OUT/$t
    frames=$dir.frames
    if [[ ${FUZZ_RESUME:-0} == 1 && -d $dir/default/queue ]]; then
        input=-
    else
        rm -rf "$dir" "$frames"
        input=$REPO/fuzz/corpus/$t
    fi
    say "$t: ${SECS} s"
    FUZZ_FRAMES_FILE=$frames nice cargo afl fuzz -i "$input" -o "$dir" -V "$SECS" -t 1000 -- "$BIN/$t" \
        > "$dir.log" 2>&1 || { say "$t: afl-fuzz failed (see $dir.log)"; failed=1; continue; }
    stats=$dir/default/fuzzer_stats
    [[ -f $stats ]] || { say "$t: no fuzzer_stats"; failed=1; continue; }
    get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
    execs=$(get execs_done); eps=$(get execs_per_sec); corpus=$(get corpus_count)
    cvg=$(get bitmap_cvg); crashes=$(get saved_crashes); hangs=$(get saved_hangs)
    runtime=$(( $(get last_update) - $(get start_time) ))
    nframes=-
    if [[ $t == engine && -f $frames ]]; then
        nframes=$(awk '{ s += $1 } END { print s + 0 }' "$frames")
    fi
    echo "| $t | $runtime | $execs | $eps | $nframes | $corpus | $cvg | $crashes | $hangs |" >> "$report"
    say "$t: $execs executions ($eps/s), engine frames $nframes, corpus $corpus, coverage $cvg, crashes $crashes, hangs $hangs"
    if [[ $crashes != 0 || $hangs != 0 ]]; then
        failed=1
        ls "$dir"/default/crashes "$dir"/default/hangs 2>/dev/null | sed 's/^/[fuzz]   /' >&2 || true
    fi
    if [[ ${execs:-0} == 0 ]]; then
        say "$t: no executions"
        failed=1
    fi
done
cat "$report"
say "report: $report"
exit $failed
