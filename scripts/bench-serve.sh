#!/bin/bash
# bench-serve.sh: serving throughput side by side with llama.cpp's llama-server (`make bench`).
#
#   RAMP_SHARED=../shared RAMP_BIN=bin/ramp scripts/bench-serve.sh
#
# For each model (lite16 F32, a synthetic 768x12 F32 model), three servers run at once on
# 127.0.0.1: ramp in one process, ramp as a 3-stage pipeline (mpirun -np 4), and llama-server
# (../shared/peers/llama.cpp) on the same GGUF, each with 2 threads in all. The same streaming
# greedy load (scripts/serve_load.py: generated tokens/s, time to first token p50/p99) goes to each
# in turn, at 1, 4 and 16 concurrent clients, over interleaved rounds (the machine is shared and
# noisy): every figure is the median of the rounds with (min, max), and the ratio ramp/llama.cpp
# is computed per round. Servers are stopped by PID at the end, also on failure.
set -u
cd "$(dirname "$0")/.."
SHARED=${RAMP_SHARED:-../shared}
RAMP_BIN=${RAMP_BIN:-bin/ramp}
ROUNDS=${BENCH_ROUNDS:-3}
MAX_TOKENS=${BENCH_SERVE_TOKENS:-32}
LEVELS=${BENCH_SERVE_LEVELS:-"1 4 16"}
PEER_DIR=${BENCH_PEER:-$SHARED/peers/llama.cpp} # a llama.cpp build/bin (scripts/llama-peer.sh)
. scripts/llama-peer.sh
PEER=$PEER_DIR/llama-server
have_peer=0
peer_usable "$PEER_DIR" llama-server && have_peer=1 # checked once: PEER_PROBLEM says why not
CACHE=build/bench-models
export OMP_WAIT_POLICY=passive

W=$(mktemp -d "${TMPDIR:-/tmp}/ramp-bench-serve.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    rm -rf "$W"
}
trap cleanup EXIT

MPI=(mpirun --oversubscribe -np 4)
[ "$(id -u)" -eq 0 ] && MPI=(mpirun --oversubscribe --allow-run-as-root -np 4)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready URL PID: until /health answers 200 (60 s at most)
wait_ready() {
    local i
    for i in $(seq 1 300); do
        curl -sf "$1/health" >/dev/null 2>&1 && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# start NAME CMD...: a server in the background on $PORT; sets URL_<NAME>
start() {
    local name=$1
    shift
    setsid "$@" >"$W/$name.out" 2>"$W/$name.err" </dev/null &
    local pid=$!
    PIDS+=("$pid")
    if wait_ready "http://127.0.0.1:$PORT" "$pid"; then
        printf -v "URL_$name" '%s' "http://127.0.0.1:$PORT"
    else
        echo "FAILED: $name did not come up"
        tail -n 3 "$W/$name.err" | sed 's/^/  | /'
        printf -v "URL_$name" '%s' ""
    fi
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null
    done
    PIDS=()
}

median_of() { # median_of FIELD FILES... -> "median min max"
    local field=$1
    shift
    python3 - "$field" "$@" <<'EOF'
import json, sys
field, files = sys.argv[1], sys.argv[2:]
values = sorted(v for v in (json.load(open(f)).get(field) for f in files) if v is not None)
if not values:
    print("- - -")
else:
    print(f"{values[len(values)//2]:.4g} {values[0]:.4g} {values[-1]:.4g}")
EOF
}

ratio_of() { # ratio_of FIELD RAMP_FILES -- PEER_FILES (per round) -> "median min max"
    python3 - "$@" <<'EOF'
import json, sys
field = sys.argv[1]
args = sys.argv[2:]
cut = args.index("--")
mine, theirs = args[:cut], args[cut + 1:]
ratios = []
for a, b in zip(mine, theirs):
    x, y = json.load(open(a)).get(field), json.load(open(b)).get(field)
    if x and y:
        ratios.append(x / y)
ratios.sort()
print(f"{ratios[len(ratios)//2]:.2f} {ratios[0]:.2f} {ratios[-1]:.2f}" if ratios else "- - -")
EOF
}

bench_model() { # bench_model LABEL GGUF PROMPTS CONTEXT
    local label=$1 model=$2 prompts=$3 context=$4
    echo
    echo "== serve: $label ($(basename "$model")), $MAX_TOKENS tokens per request, greedy, streaming =="
    PORT=$(free_port); start ramp1 "$RAMP_BIN" serve -m "$model" --port "$PORT" --threads 2 --max-sequences 16
    PORT=$(free_port); start ramp3 "${MPI[@]}" "$RAMP_BIN" serve -m "$model" --port "$PORT" --threads 1 --max-sequences 16
    URL_peer=
    if [ $have_peer -eq 1 ]; then
        PORT=$(free_port); start peer "$PEER" -m "$model" --host 127.0.0.1 --port "$PORT" -t 2 -np 16 \
            -c $((context * 16)) --no-webui
    else
        echo "  # $PEER_PROBLEM: ramp's figures alone"
    fi
    local level round engine url
    for level in $LEVELS; do
        local requests=$((level * 3 + 4))
        for round in $(seq 1 "$ROUNDS"); do
            for engine in ramp1 ramp3 peer; do
                url_var="URL_$engine"
                url=${!url_var:-}
                [ -n "$url" ] || continue
                python3 scripts/serve_load.py "$url" "$level" "$requests" "$MAX_TOKENS" "$prompts" \
                    >"$W/$engine.$level.$round.json" 2>"$W/$engine.$level.$round.err" ||
                    echo '{}' >"$W/$engine.$level.$round.json"
            done
        done
        printf '  %-3s clients  %-22s %-28s %-26s %-26s\n' "$level" "engine" "tokens/s med (min, max)" \
            "TTFT p50 s med (min, max)" "TTFT p99 s med (min, max)"
        for engine in ramp1 ramp3 peer; do
            url_var="URL_$engine"
            [ -n "${!url_var:-}" ] || continue
            local files=("$W/$engine.$level."*.json) tps p50 p99 name
            read -r tps tmin tmax <<<"$(median_of tokens_per_second "${files[@]}")"
            read -r p50 pmin pmax <<<"$(median_of ttft_p50 "${files[@]}")"
            read -r p99 qmin qmax <<<"$(median_of ttft_p99 "${files[@]}")"
            case $engine in ramp1) name="ramp 1 process" ;; ramp3) name="ramp 3 stages (MPI)" ;; *) name="llama-server" ;; esac
            printf '  %-3s clients  %-22s %-28s %-26s %-26s\n' "$level" "$name" "$tps ($tmin, $tmax)" \
                "$p50 ($pmin, $pmax)" "$p99 ($qmin, $qmax)"
        done
        if [ -n "${URL_peer:-}" ]; then
            for engine in ramp1 ramp3; do
                url_var="URL_$engine"
                [ -n "${!url_var:-}" ] || continue
                local mine=("$W/$engine.$level."*.json) theirs=("$W/peer.$level."*.json)
                read -r r rmin rmax <<<"$(ratio_of tokens_per_second "${mine[@]}" -- "${theirs[@]}")"
                printf '  %-3s clients  ratio %-16s tokens/s %s (%s, %s) per round\n' "$level" \
                    "$([ $engine = ramp1 ] && echo "1 process" || echo "3 stages")/llama" "$r" "$rmin" "$rmax"
            done
        fi
        for engine in ramp1 ramp3 peer; do
            f=$(cat "$W/$engine.$level."*.json 2>/dev/null | python3 -c 'import sys,json
n=0
for l in sys.stdin:
    l=l.strip()
    if l: n+=json.loads(l).get("failed",0) or 0
print(n)')
            [ "${f:-0}" != 0 ] && echo "  ! $engine at $level clients: $f failed requests"
        done
    done
    stop_all
}

if [ ! -x "$RAMP_BIN" ]; then
    echo "FAILED: no ramp binary at $RAMP_BIN (run make first)"
    exit 1
fi
for i in $(seq 1 40); do echo "Review: a film number $i that was quite"; done >"$W/prompts.txt"
LITE=$SHARED/models/lite16/model-f32.gguf
if [ -f "$LITE" ]; then
    bench_model "lite16" "$LITE" "$W/prompts.txt" 128
else
    echo "FAILED: no model at $LITE"
fi
SYNTH=$CACHE/synth-768x12-v32000-f32.gguf
mkdir -p "$CACHE"
if [ ! -s "$SYNTH" ]; then
    "$RAMP_BIN" synth -o "$SYNTH.tmp" --dim 768 --layers 12 --heads 12 --ffn 2048 --vocab 32000 --type f32 \
        >/dev/null 2>&1 && mv "$SYNTH.tmp" "$SYNTH"
fi
if [ -s "$SYNTH" ]; then
    bench_model "synth 768x12" "$SYNTH" "$W/prompts.txt" 256
else
    echo "FAILED: could not create $SYNTH"
fi
