#!/bin/bash
# 1,000 short prompts (stories260K, generate -f, 16 tokens each) beside a job that keeps one core
# busy: first at the same priority (nice 0), then at the lowest (nice 19); each with the default
# thread count and with --threads 1, three runs each, wall seconds.
#
#   RAMP_SHARED=../shared scripts/busy-node.sh [RAMP_BIN]
set -u
cd "$(dirname "$0")/.."
SHARED=${RAMP_SHARED:-../shared}
RAMP=${1:-build/release/bin/ramp}
MODEL=$SHARED/models/stories260K/stories260K-f32.gguf
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 -c '
import random
random.seed(1)
words = "little sad dog moon girl house jumped sun ball cat tree happy big red ran played".split()
for _ in range(1000): print(" ".join(random.choice(words) for _ in range(random.randint(2, 6))))' >"$W/prompts.txt"
run() {
    /usr/bin/time -f %e -o "$W/t" "$RAMP" generate -m "$MODEL" -f "$W/prompts.txt" -n 16 --temp 0 "$@" \
        >/dev/null 2>"$W/err" || { echo "FAILED: ramp $*"; tail -n 3 "$W/err"; }
    cat "$W/t"
}
for level in 0 19; do
    nice -n "$level" sh -c 'while :; do :; done' &
    spinner=$!
    sleep 0.5
    for i in 1 2 3; do
        echo "spinner at nice $level, load $(cut -d' ' -f1 /proc/loadavg): default threads $(run) s, --threads 1 $(run --threads 1) s"
    done
    kill "$spinner"
    wait "$spinner" 2>/dev/null
done
