#!/usr/bin/env bash
# tests/fuzz/run.sh: builds every libFuzzer harness in tests/fuzz/ (fuzz_*.c) and runs each for
# FUZZ_SECONDS (default 60). `make fuzz` calls it; CI runs `make fuzz FUZZ_SECONDS=10`.
#
#   FUZZ_SECONDS=600 RAMP_SHARED=../shared tests/fuzz/run.sh [NAME...]     (NAME: gguf, encode, ...)
#
# Per harness fuzz_NAME, under build/fuzz/ (never in the repository):
#   seeds/NAME    generated once from the shared models by tests/fuzz/seeds.sh
#   corpus/NAME   what libFuzzer found so far; kept between runs, so coverage accumulates
#   crashes/NAME  the input of any crash, leak, timeout or failed property
#   logs/NAME.log libFuzzer's output
# Inputs that once crashed a harness live in tests/fuzz/regressions/NAME/ and are replayed by
# `make test` (tests/test_fuzz_regressions.c); they also seed the fuzzer here.
# Ends with one line per harness: executions, executions per second, coverage (edges and
# features), corpus size and the verdict; exits 1 when any harness failed to build or found a crash.
# FUZZ_JOBS (default 1) harnesses run at once, each at low priority (nice).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
export RAMP_SHARED=${RAMP_SHARED:-../shared}
export RAMP_BIN=${RAMP_BIN:-bin/ramp}
build=build/fuzz
# ASan's leak check at exit counts as a finding; the scratch files live in /dev/shm.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if ! command -v "${FUZZ_CC:-clang}" >/dev/null; then
    echo "run.sh: clang is needed for libFuzzer (Debian: apt-get install -y clang)" >&2
    exit 1
fi
if [ ! -x "$RAMP_BIN" ]; then
    echo "run.sh: RAMP_BIN=$RAMP_BIN is not built (run make first): seeds that need it are skipped" >&2
fi

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        names+=("${n#fuzz_}")
    done
fi

run_one() {
    local name=$1 bin=$build/bin/fuzz_$1
    mkdir -p "$build/corpus/$name" "$build/crashes/$name" "$build/logs"
    local log=$build/logs/$name.log
    if ! make --no-print-directory -s -f tests/fuzz/fuzz.mk "$bin" >"$log" 2>&1; then
        echo "$name build-failed" >"$build/logs/$name.result"
        return
    fi
    if [ ! -d "$build/seeds/$name" ]; then
        tests/fuzz/seeds.sh "$name" "$build/seeds/$name.tmp" >>"$log" 2>&1 && mv "$build/seeds/$name.tmp" "$build/seeds/$name"
    fi
    # a dictionary of the input's own words, where the harness's parser sits on an uninstrumented one
    local dict=()
    case $name in openai | batch_line) dict=(-dict=tests/fuzz/openai.dict) ;; esac
    local dirs=("$build/corpus/$name")
    [ -d "$build/seeds/$name" ] && dirs+=("$build/seeds/$name")
    [ -d "tests/fuzz/regressions/$name" ] && dirs+=("tests/fuzz/regressions/$name")
    nice -n 10 "$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$name/" "${dict[@]}" "${dirs[@]}" >>"$log" 2>&1
    local status=$?
    local done_line execs rate
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    local cov ft corp
    cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corp=$(sed -n 's/.*corp: \([0-9]*\).*/\1/p' <<<"$done_line")
    local verdict=ok
    [ "$status" -ne 0 ] && verdict="FOUND (exit $status, see $log and $build/crashes/$name/)"
    echo "$name ${execs:-?} ${rate:-?} ${cov:-?} ${ft:-?} ${corp:-?} $seconds $verdict" >"$build/logs/$name.result"
}

# The instrumented library every harness links, built once with every core before the harnesses
# start (each harness's own make then only links; two makes building it at once would race).
mkdir -p "$build/logs"
if ! make --no-print-directory -s -j"$(nproc)" -f tests/fuzz/fuzz.mk "$build/libramp-fuzz.a" >"$build/logs/library.log" 2>&1; then
    echo "run.sh: the instrumented library did not build (see $build/logs/library.log)" >&2
fi

running=0
for name in "${names[@]}"; do
    if [ ! -f "tests/fuzz/fuzz_$name.c" ]; then
        echo "run.sh: no harness tests/fuzz/fuzz_$name.c" >&2
        echo "$name missing" >"$build/logs/$name.result"
        continue
    fi
    mkdir -p "$build/logs"
    rm -f "$build/logs/$name.result"
    echo "# fuzz_$name: ${seconds}s"
    run_one "$name" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

status=0
printf '%-14s %14s %9s %7s %8s %7s %6s  %s\n' harness executions exec/s cov ft corpus secs verdict
for name in "${names[@]}"; do
    result=$(cat "$build/logs/$name.result" 2>/dev/null || echo "$name no-result")
    read -r n execs rate cov ft corp secs verdict <<<"$result"
    [ "$execs" = build-failed ] && { verdict="BUILD FAILED (see $build/logs/$name.log)"; execs=-; }
    [ "$execs" = missing ] && { verdict="no harness"; execs=-; }
    printf '%-14s %14s %9s %7s %8s %7s %6s  %s\n' "$n" "$execs" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}" \
        "${secs:--}" "${verdict:-ok}"
    [ "${verdict:-ok}" = ok ] || status=1
done | tee "$build/summary.txt"
grep -qv -E ' ok$|^harness ' "$build/summary.txt" && status=1
exit $status
