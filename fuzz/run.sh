#!/bin/sh
# make fuzz: builds the libFuzzer targets with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer in BUILD (configured there on first use) and
# runs each for FUZZ_SECONDS (default 30). Inputs that crash are left as
# BUILD/crash-TARGET-*; reproduce with BUILD/fuzz_TARGET FILE, and once
# fixed, add the file to tests/data/fuzz/TARGET/ (make check replays it).
#   sh fuzz/run.sh SRCDIR BUILD [TARGET...]
set -u
src=$1 build=$2
shift 2
targets=${*:-safetensors json image tokenizer prompt manifest}
secs=${FUZZ_SECONDS:-30}
cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "make fuzz: needs clang with libFuzzer (Debian: apt-get install clang)" >&2
    exit 1
fi
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
mkdir -p "$build" && cd "$build" || exit 1
if [ ! -f Makefile ]; then
    echo "make fuzz: configuring $build with $cc"
    "$src/configure" -q CC="$cc" CFLAGS="-O1 -g -fno-omit-frame-pointer -Wno-unknown-warning-option $san -fsanitize=fuzzer-no-link" \
        LDFLAGS="-fsanitize=address,undefined" || exit 1
fi
${MAKE:-make} -j2 fuzz-programs FUZZ_TARGETS="$targets" || exit 1
failed=
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "make fuzz: fuzz_$t for ${secs}s"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "./fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 \
        -artifact_prefix="$build/crash-$t-" "corpus/$t" "$src/fuzz/corpus/$t" >"fuzz-$t.log" 2>&1
    rc=$?
    tail -n 12 "fuzz-$t.log" | grep -E "stat::number_of_executed_runs|stat::new_units_added|ERROR|SUMMARY" | sed "s/^/  $t: /"
    if [ $rc -ne 0 ]; then
        failed="$failed $t"
        echo "make fuzz: fuzz_$t FAILED (exit $rc); see $build/fuzz-$t.log and $build/crash-$t-*" >&2
    fi
done
if [ -n "$failed" ]; then
    echo "make fuzz: findings in:$failed" >&2
    exit 1
fi
echo "make fuzz: no findings ($targets; ${secs}s each)"
