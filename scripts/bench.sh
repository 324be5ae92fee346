#!/bin/bash
# Throughput figures for ramp (`make bench`).
#
#   RAMP_SHARED=../shared RAMP_BIN=build/release/bin/ramp scripts/bench.sh
#
# 1. Engine: prompt-processing and generation tokens/s on stories260K, synthetic dim-768/12-layer
#    models (F32, Q8_0) and a Llama-7B layer shape with 2 layers (Q8_0).
# 2. Pipeline: throughput and per-stage busy fraction for P = 1, 2, 3 stages, many requests at once.
# 3. Early exit: the AdaInfer SVM on lite16 / SST-2 dev, in one process and as a 3-stage pipeline.
# 4. Quantized GGUF files side by side with llama.cpp's llama-bench (scripts/bench-quant.sh).
#
# Every figure is the median of 3 runs, printed as "name  value unit  (min, max)". Synthetic models
# are cached in build/bench-models (git-ignored) and reused; per-run files go to a temporary
# directory that is removed at the end. A step that fails prints "FAILED: <what>" and the bench
# carries on; the exit status is 0 only if every step ran.
set -eu

cd "$(dirname "$0")/.."
SHARED=${RAMP_SHARED:-../shared}
RAMP_BIN=${RAMP_BIN:-build/release/bin/ramp}
RUNS=${BENCH_RUNS:-3}
RUN_TIMEOUT=${BENCH_RUN_TIMEOUT:-300}   # seconds for any one run
CACHE=build/bench-models
START=$(date +%s)
FAILS=0

fail() { # fail WHAT [LOG]   (LOG: run prefix whose .err/.out tails are shown)
    echo "FAILED: $1"
    FAILS=$((FAILS + 1))
    if [ $# -ge 2 ]; then
        local f
        for f in "$2.err" "$2.out"; do
            [ -s "$f" ] && tail -n 4 "$f" | sed 's/^/  | /'
        done
    fi
    return 0
}

if [ ! -x "$RAMP_BIN" ]; then
    echo "FAILED: no ramp binary at $RAMP_BIN (run make first)"
    exit 1
fi
mkdir -p "$CACHE"
W=$(mktemp -d "$CACHE/run.XXXXXX")
trap 'rm -rf "$W"' EXIT
# A private copy of the binary: other builds may relink $RAMP_BIN while the bench runs.
BIN=$W/ramp
cp "$RAMP_BIN" "$BIN"

MPI=()
if command -v mpirun >/dev/null 2>&1; then
    MPI=(mpirun --oversubscribe -np)
    [ "$(id -u)" -eq 0 ] && MPI=(mpirun --oversubscribe --allow-run-as-root -np)
fi

run() { # run PREFIX CMD...   stdout -> PREFIX.out, stderr -> PREFIX.err; time-limited
    local prefix=$1 rc=0
    shift
    timeout -k 10 "$RUN_TIMEOUT" "$@" >"$prefix.out" 2>"$prefix.err" || rc=$?
    [ $rc -eq 124 ] && echo "(timed out after $RUN_TIMEOUT s)" >>"$prefix.err"
    return $rc
}

mpi_run() { # mpi_run PREFIX NP CMD...
    local prefix=$1 np=$2
    shift 2
    if [ ${#MPI[@]} -eq 0 ]; then
        echo "mpirun not found" >"$prefix.err"
        return 1
    fi
    run "$prefix" "${MPI[@]}" "$np" "$@"
}

section() { printf '\n== %s ==\n' "$1"; }
note() { printf '  # %s\n' "$1"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
busy_cores() { # cores kept busy by other processes, measured over 1 s while the bench is idle
    python3 - "$W/busy" <<'PY'
import sys, time
def stat():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]          # total, idle + iowait
t0, i0 = stat(); time.sleep(1); t1, i1 = stat()
import os
busy = (1 - (i1 - i0) / max(t1 - t0, 1)) * os.cpu_count()
open(sys.argv[1], "a").write(f"{busy:.2f}\n")
print(f"{busy:.2f}")
PY
}

line() { # line NAME VALUE UNIT [NOTE]
    printf '  %-46s %12s %-8s%s\n' "$1" "$2" "$3" "${4:+ $4}" | sed 's/[[:space:]]*$//'
}

rowj() { # rowj NAME UNIT DECIMALS EXPR JSON...   median over files of EXPR (d = the JSON)
    python3 - "$@" <<'PY'
import json, statistics, sys
name, unit, dec, expr, *files = sys.argv[1:]
vals = []
for f in files:
    d = json.load(open(f))
    vals.append(float(eval(expr, {"d": d})))
d = int(dec)
m = statistics.median(vals)
lo, hi = f"{min(vals):.{d}f}", f"{max(vals):.{d}f}"
spread = f" (min {lo}, max {hi})" if lo != hi else ""
print(f"  {name:<46} {m:>12.{d}f} {unit:<8}{spread}".rstrip())
PY
}

jget() { # jget JSON EXPR
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"d": d}))' "$1" "$2"
}

# --- header -----------------------------------------------------------------------------------
section "ramp bench"
line "date" "$(date -u +%Y-%m-%dT%H:%MZ)" ""
line "git revision" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "" "$(git diff --quiet HEAD -- 2>/dev/null || echo '(working tree has local changes)')"
line "cores" "$(nproc)" ""
line "load average (1 min) at start" "$(load1)" ""
line "cores busy with other work (1 s sample)" "$(busy_cores)" "cores" "(of $(nproc); sampled before each section)"
line "runs per figure (median)" "$RUNS" ""

# --- 1. engine --------------------------------------------------------------------------------
SENTENCE="The little dog ran to the park and played with a ball in the warm sun."
words() { # words N : the first N words of SENTENCE repeated
    python3 -c 'import sys; w=sys.argv[2].split(); n=int(sys.argv[1]); print(" ".join((w*(n//len(w)+1))[:n]))' "$1" "$SENTENCE"
}

probe_tokens() { # probe_tokens MODEL NWORDS -> prompt tokens, or fails (e.g. longer than the context)
    local p=$W/probe
    run "$p" "$BIN" generate -m "$1" -p "$(words "$2")" -n 1 --temp 0 --metrics-json "$p.json" || return 1
    jget "$p.json" "d['prompt_tokens']"
}

calibrate() { # calibrate MODEL TARGET -> word count whose prompt is as close to TARGET tokens as
    # possible without exceeding it (nor the model's context, which fails the run)
    local model=$1 target=$2 w t best=0 i
    t=$(probe_tokens "$model" 40) || return 1
    w=$((40 * target / t))
    for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
        if t=$(probe_tokens "$model" "$w") && [ "$t" -le "$target" ]; then
            best=$w
            w=$((w + 1))
        else
            [ $best -gt 0 ] && break
            w=$((w - 1))
        fi
        [ $w -ge 1 ] || break
    done
    [ $best -gt 0 ] || return 1
    echo "$best"
}

PP_TARGET=128
GEN_TOKENS=64
GEN_PROMPT="Once upon a time"

engine() { # engine LABEL MODEL PP_WORDS
    local label=$1 model=$2 nw=$3 tag i ok pp=() tg=()
    tag=$(echo "$label" | tr -c 'A-Za-z0-9\n' '_')
    ok=1
    for i in $(seq "$RUNS"); do
        if run "$W/$tag-pp$i" "$BIN" generate -m "$model" -p "$(words "$nw")" -n 1 --temp 0 \
            --metrics-json "$W/$tag-pp$i.json"; then
            pp+=("$W/$tag-pp$i.json")
        else
            fail "engine $label: prompt-processing run $i" "$W/$tag-pp$i"
            ok=0
            break
        fi
    done
    if [ $ok -eq 1 ]; then
        rowj "$label prompt tokens" "tokens" 0 "d['prompt_tokens']" "${pp[@]}"
        rowj "$label prompt processing" "tok/s" 1 \
            "d['prompt_tokens'] / d['time_to_first_token_seconds']" "${pp[@]}"
    fi
    ok=1
    for i in $(seq "$RUNS"); do
        if run "$W/$tag-tg$i" "$BIN" generate -m "$model" -p "$GEN_PROMPT" -n "$GEN_TOKENS" --temp 0 \
            --metrics-json "$W/$tag-tg$i.json"; then
            tg+=("$W/$tag-tg$i.json")
        else
            fail "engine $label: generation run $i" "$W/$tag-tg$i"
            ok=0
            break
        fi
    done
    if [ $ok -eq 1 ]; then
        rowj "$label generated tokens" "tokens" 0 "d['generated_tokens']" "${tg[@]}"
        rowj "$label generation (decode only)" "tok/s" 1 \
            "(d['generated_tokens'] - 1) / (d['seconds'] - d['time_to_first_token_seconds'])" "${tg[@]}"
        rowj "$label generation (end to end)" "tok/s" 1 "d['tokens_per_second']" "${tg[@]}"
        rowj "$label weights" "MB" 1 "d['stages'][0]['weight_bytes'] / 1e6" "${tg[@]}"
        rowj "$label peak resident" "MB" 1 "d['stages'][0]['peak_resident_bytes'] / 1e6" "${tg[@]}"
    fi
}

synth() { # synth FILE ARGS... : create FILE unless cached
    local file=$1
    shift
    [ -s "$file" ] && return 0
    run "$W/synth" "$BIN" synth -o "$file.tmp" "$@" || { rm -f "$file.tmp"; return 1; }
    mv "$file.tmp" "$file"
}

section "1. engine: one request, prompt processing (~$PP_TARGET-token prompt, -n 1) and generation (\"$GEN_PROMPT\", -n $GEN_TOKENS), greedy"
line "cores busy with other work (1 s sample)" "$(busy_cores)" "cores"
note "prompt processing = prompt_tokens / time_to_first_token; decode = (generated - 1) / (seconds - ttft)"

# (a) stories260K (context 128: the prompt is kept at most 127 tokens so that -n 1 fits)
STORIES=$SHARED/models/stories260K/stories260K-f32.gguf
if [ ! -f "$STORIES" ]; then
    fail "engine stories260K: no model at $STORIES (RAMP_SHARED=$SHARED)"
elif ! nw=$(calibrate "$STORIES" 127); then
    fail "engine stories260K: could not build a prompt of at most 127 tokens" "$W/probe"
else
    engine "stories260K f32" "$STORIES" "$nw"
fi

# (b) synthetic dim 768, 12 layers, 12 heads, ffn 2048, vocab 32000
SYNTH_ARGS=(--dim 768 --layers 12 --heads 12 --ffn 2048 --vocab 32000)
S_F32=$CACHE/synth-768x12-v32000-f32.gguf
S_Q8=$CACHE/synth-768x12-v32000-q8_0.gguf
SYNTH_WORDS=
if ! synth "$S_F32" "${SYNTH_ARGS[@]}" --type f32; then
    fail "engine synth 768x12: creating $S_F32" "$W/synth"
elif ! SYNTH_WORDS=$(calibrate "$S_F32" "$PP_TARGET"); then
    fail "engine synth 768x12: could not build a ~$PP_TARGET-token prompt" "$W/probe"
    SYNTH_WORDS=
else
    engine "768x12 f32" "$S_F32" "$SYNTH_WORDS"
    line "reference llama.cpp 2 threads, same shape F32" "~500" "tok/s" "prompt (128 tokens)"
    line "reference llama.cpp 2 threads, same shape F32" "~55" "tok/s" "generation"
fi
if [ -z "$SYNTH_WORDS" ]; then
    : # already reported
elif ! synth "$S_Q8" "${SYNTH_ARGS[@]}" --type q8_0; then
    fail "engine synth 768x12: creating $S_Q8" "$W/synth"
else
    engine "768x12 q8_0" "$S_Q8" "$SYNTH_WORDS"
    line "reference llama.cpp 2 threads, same shape Q8_0" "~490" "tok/s" "prompt (128 tokens)"
    line "reference llama.cpp 2 threads, same shape Q8_0" "~131" "tok/s" "generation"
fi

# (c) Llama-7B layer shape, 2 layers, Q8_0 (about 0.7 GB on disk, ~3.5 GB in memory)
S_7B=$CACHE/synth-4096x2-ffn11008-v32000-q8_0.gguf
disk_mb=$(df -Pm "$CACHE" | awk 'NR==2 {print $4}')
mem_mb=$(awk '/^MemAvailable:/ {print int($2/1024)}' /proc/meminfo)
if [ -z "$SYNTH_WORDS" ]; then
    fail "engine 7B-shape: no calibrated prompt (synthetic 768x12 step failed)"
elif [ ! -s "$S_7B" ] && [ "${disk_mb:-0}" -lt 2000 ]; then
    line "7B-shape 2L q8_0" "SKIPPED" "" "(only ${disk_mb} MB free on disk, need 2000)"
elif [ "${mem_mb:-0}" -lt 5000 ]; then
    line "7B-shape 2L q8_0" "SKIPPED" "" "(only ${mem_mb} MB memory available, need 5000)"
elif ! synth "$S_7B" --dim 4096 --layers 2 --heads 32 --ffn 11008 --vocab 32000 --type q8_0; then
    fail "engine 7B-shape: creating $S_7B" "$W/synth"
else
    engine "7B-shape 2L q8_0" "$S_7B" "$SYNTH_WORDS"
fi

# --- 2. pipeline ------------------------------------------------------------------------------
NREQ=16
PIPE_TOKENS=32
section "2. pipeline: $NREQ requests at once, -n $PIPE_TOKENS, --max-sequences $NREQ, synth-768x12 f32"
line "cores busy with other work (1 s sample)" "$(busy_cores)" "cores"
note "P stages run as P+1 MPI ranks (rank 0 coordinates) oversubscribing $(nproc) cores, so wall-clock"
note "throughput cannot grow with P on this machine; per-stage busy time is the figure to read."
note "busy fraction = busy / (busy + idle); idle_bound = (P-1)/(M+P-1), M = micro-batches in flight"
PROMPTS=$W/prompts.txt
python3 - "$NREQ" >"$PROMPTS" <<'PY'
import sys
subjects = ["The little dog", "A tired old sailor", "My sister", "The robot", "Every morning the baker",
            "A small green frog", "The king of the north", "Two friends", "The teacher", "A lost cat",
            "The river", "Our neighbour", "The tallest tree", "A young wizard", "The train", "Grandma"]
n = int(sys.argv[1])
for i in range(n):
    print(f"{subjects[i % len(subjects)]} walked to the market and saw something that")
PY
if [ ! -s "$S_F32" ]; then
    fail "pipeline: no synthetic model $S_F32"
else
    for P in 1 2 3; do
        pj=()
        for i in $(seq "$RUNS"); do
            pre=$W/pipe-p$P-$i
            args=(generate -m "$S_F32" -f "$PROMPTS" -n "$PIPE_TOKENS" --temp 0 --max-sequences "$NREQ"
                --metrics-json "$pre.json")
            if [ "$P" -eq 1 ]; then
                run "$pre" "$BIN" "${args[@]}" || { fail "pipeline P=1 run $i" "$pre"; pj=(); break; }
            else
                mpi_run "$pre" $((P + 1)) "$BIN" "${args[@]}" ||
                    { fail "pipeline P=$P run $i (mpirun -np $((P + 1)))" "$pre"; pj=(); break; }
            fi
            pj+=("$pre.json")
        done
        [ ${#pj[@]} -gt 0 ] || continue
        if [ "$P" -eq 1 ]; then how="in process"; else how="mpirun -np $((P + 1))"; fi
        layers=$(jget "${pj[0]}" "','.join('%d-%d' % (s['first_layer'], s['end_layer'] - 1) for s in d['stages'])")
        threads=$(jget "${pj[0]}" "d['threads_per_rank']")
        line "P=$P stages" "$P" "" "($how; layers $layers; threads per rank $threads)"
        rowj "P=$P throughput" "tok/s" 1 "d['tokens_per_second']" "${pj[@]}"
        rowj "P=$P time to first token (mean)" "s" 3 "d['time_to_first_token_seconds']" "${pj[@]}"
        nst=$(jget "${pj[0]}" "len(d['stages'])")
        for s in $(seq 0 $((nst - 1))); do
            st="d['stages'][$s]"
            rowj "P=$P stage $((s + 1)) busy" "s" 3 "$st['busy_seconds']" "${pj[@]}"
            rowj "P=$P stage $((s + 1)) busy fraction" "" 3 \
                "$st['busy_seconds'] / ($st['busy_seconds'] + $st['idle_seconds'])" "${pj[@]}"
            rowj "P=$P stage $((s + 1)) weight_bytes" "MB" 1 "$st['weight_bytes'] / 1e6" "${pj[@]}"
            rowj "P=$P stage $((s + 1)) peak_resident_bytes" "MB" 1 "$st['peak_resident_bytes'] / 1e6" "${pj[@]}"
        done
        rowj "P=$P pipeline_idle_fraction" "" 3 "d['pipeline_idle_fraction']" "${pj[@]}"
        rowj "P=$P idle_bound (P-1)/(M+P-1)" "" 3 \
            "(len(d['stages']) - 1) / (d['micro_batches_in_flight'] + len(d['stages']) - 1)" "${pj[@]}"
    done
fi

# --- 3. early exit ----------------------------------------------------------------------------
LITE=$SHARED/models/lite16/model-f32.gguf
SST2=$SHARED/data/sst2
SVM=$CACHE/sst2.svm
section "3. early exit: AdaInfer SVM on lite16 f32, SST-2 dev (400 reviews), exit points 4,6,...,14"
line "cores busy with other work (1 s sample)" "$(busy_cores)" "cores"
if [ ! -f "$LITE" ] || [ ! -f "$SST2/stsa.binary.train" ] || [ ! -f "$SST2/stsa.binary.dev" ]; then
    fail "early exit: lite16 model or SST-2 data missing under $SHARED"
else
    t0=$(date +%s.%N)
    if ! run "$W/exit-train" "$BIN" exit-train -m "$LITE" --ctx 256 --task sst2 \
        --data "$SST2/stsa.binary.train" --limit 1500 --exit-layers 4,6,8,10,12,14 --target-agreement 0.985 -o "$SVM"; then
        fail "early exit: exit-train" "$W/exit-train"
    else
        t1=$(date +%s.%N)
        line "exit-train (1500 reviews, one run)" "$(python3 -c "print(f'{$t1 - $t0:.1f}')")" "s"
        for P in 1 3; do
            ej=()
            for i in $(seq "$RUNS"); do
                pre=$W/eval-p$P-$i
                args=(eval -m "$LITE" --ctx 256 --task sst2 --data "$SST2/stsa.binary.dev"
                    --exit "svm:$SVM" --limit 400 --json "$pre.json")
                if [ "$P" -eq 1 ]; then
                    run "$pre" "$BIN" "${args[@]}" || { fail "early exit: eval P=1 run $i" "$pre"; ej=(); break; }
                else
                    mpi_run "$pre" $((P + 1)) "$BIN" "${args[@]}" ||
                        { fail "early exit: eval P=$P run $i (mpirun -np $((P + 1)))" "$pre"; ej=(); break; }
                fi
                ej+=("$pre.json")
            done
            [ ${#ej[@]} -gt 0 ] || continue
            if [ "$P" -eq 1 ]; then how="in process"; else how="mpirun -np $((P + 1))"; fi
            line "P=$P stages" "$P" "" "($how)"
            line "P=$P examples" "$(jget "${ej[0]}" "d['examples']")" ""
            rowj "P=$P agreement with full depth" "" 4 "d['agreement']" "${ej[@]}"
            rowj "P=$P accuracy_full" "" 4 "d['accuracy_full']" "${ej[@]}"
            rowj "P=$P accuracy_exit" "" 4 "d['accuracy_exit']" "${ej[@]}"
            rowj "P=$P pruning_ratio" "" 4 "d['pruning_ratio']" "${ej[@]}"
            rowj "P=$P mean_layers (of 16)" "layers" 2 "d['mean_layers']" "${ej[@]}"
            rowj "P=$P rows_per_second_full" "rows/s" 1 "d['rows_per_second_full']" "${ej[@]}"
            rowj "P=$P rows_per_second_exit" "rows/s" 1 "d['rows_per_second_exit']" "${ej[@]}"
            rowj "P=$P speed-up exit/full (per-run ratio)" "x" 2 \
                "d['rows_per_second_exit'] / d['rows_per_second_full']" "${ej[@]}"
        done
        line "reference oracle pruning ceiling (MODEL.md)" "0.457" "" "(full SST-2 dev, exits 4..14)"
    fi
fi

# --- 4. quantized files side by side with llama.cpp -------------------------------------------
# scripts/bench-quant.sh: F32 / Q8_0 / Q4_0 / Q4_K_M files on two shapes, ramp and llama-bench
# interleaved, min / median / max, ratio, RSS, decode bandwidth (BENCH_QUANT_ROUNDS rounds).
line "cores busy with other work (1 s sample)" "$(busy_cores)" "cores"
RAMP_SHARED=$SHARED RAMP_BIN=$BIN BENCH_RUN_TIMEOUT=$RUN_TIMEOUT scripts/bench-quant.sh ||
    fail "quantized files side by side (scripts/bench-quant.sh)"

# --- summary ----------------------------------------------------------------------------------
section "summary"
line "cores busy with other work (1 s sample)" "$(busy_cores)" "cores"
line "load average (1 min) at end" "$(load1)" ""
bmax=$(sort -g "$W/busy" | tail -n 1)
line "cores busy with other work, highest sample" "$bmax" "cores"
if python3 -c "import sys; sys.exit(0 if $bmax >= 0.5 else 1)"; then
    note "other processes used the cores during the bench: figures are noisy (see min/max)"
fi
line "bench wall time" "$(($(date +%s) - START))" "s"
if [ "$FAILS" -eq 0 ]; then
    line "steps failed" "0" ""
    exit 0
fi
line "steps failed" "$FAILS" "" "(see FAILED lines above)"
exit 1
