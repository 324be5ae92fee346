#!/bin/bash
# The main job (`make run`): a 3-stage MPI pipeline (4 ranks: coordinator + 3 stages) classifies
# SST-2 reviews with the AdaInfer exit classifier and prints what early exit saved; then sweeps the
# classifier's threshold over the same reviews, runs the dev set as a `ramp batch` job, and draws
# the plots (scripts/plot) into build/run/plots.
# usage: scripts/run.sh RAMP_BIN MODEL   (RAMP_SHARED points at ../shared)
set -eu
bin=$1
model=$2
shared=${RAMP_SHARED:-../shared}
data=$shared/data/sst2
if [ ! -f "$model" ]; then
    cat >&2 <<MSG
ramp: no model at $model.
  This setup reads models from ../shared/models (e.g. lite16/model-f32.gguf). Elsewhere, pass a
  llama-architecture GGUF with MODEL=path, e.g. one downloaded from Hugging Face
  (TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF) or llama2.c's stories15M.bin with TOKENIZER=tokenizer.bin.
MSG
    exit 1
fi
if [ ! -f "$data/stsa.binary.train" ]; then
    echo "ramp: SST-2 data not found in $data (expected ../shared/data/sst2 beside the repository)" >&2
    exit 1
fi
mpirun=(mpirun --oversubscribe -np 4)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
work=build/run
mkdir -p "$work"
tokenizer_args=()
[ -n "${TOKENIZER:-}" ] && case "$model" in *.bin) tokenizer_args=(--tokenizer "$TOKENIZER");; esac
common=(-m "$model" "${tokenizer_args[@]}" --ctx 256 --task sst2 --exit-layers 4,6,8,10,12,14)

echo "== a continuation (3-stage pipeline) =="
"${mpirun[@]}" "$bin" generate -m "$model" "${tokenizer_args[@]}" -p "Review: a gripping, funny and moving film" -n 24 2>/dev/null

classifier=$work/sst2-$(basename "$model").svm
if [ ! -f "$classifier" ] || [ ! -f "$classifier.json" ]; then
    echo "== training the exit classifier on 1200 SST-2 training reviews (full-depth run, libsvm) =="
    "$bin" exit-train "${common[@]}" --data "$data/stsa.binary.train" --limit 1200 -o "$classifier" 2>&1 |
        grep -E '^ramp (exit-train|:)' | grep -v '^ramp:   '
fi
echo "== 3-stage pipeline on 300 SST-2 dev reviews: full depth, then with early exit =="
"${mpirun[@]}" "$bin" eval "${common[@]}" --data "$data/stsa.binary.dev" --limit 300 \
    --exit "svm:$classifier" --json "$work/eval.json" --metrics-json "$work/eval-metrics.json" 2>&1 >/dev/null |
    grep -E '^ramp eval|early exit|stage [0-9]'
python3 - "$work/eval.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"agreement with the full model {r['agreement']:.3f}; accuracy full {r['accuracy_full']:.3f} vs exit {r['accuracy_exit']:.3f}")
print(f"layers saved: {100*r['pruning_ratio']:.1f}% (mean {r['mean_layers']:.2f} of 16 layers); exit histogram {r['exit_histogram']}")
print(f"rows/s: full {r['rows_per_second_full']:.1f}, exit {r['rows_per_second_exit']:.1f}")
PY

echo "== the classifier's threshold swept over the same 300 reviews (features recorded at full depth, replayed) =="
"${mpirun[@]}" "$bin" eval "${common[@]}" --data "$data/stsa.binary.dev" --limit 300 \
    --exit "svm:$classifier" --sweep 16 --json "$work/sweep.json" 2>&1 >/dev/null | grep -E '^(ramp eval: svm|  |\* )'

# Long enough (about 10 s on 2 idle cores) for a plot of the stages' busy time over time.
echo "== ramp batch: 1200 more SST-2 reviews (training file lines 1201-2400, unseen by the classifier), 3 stages =="
python3 - "$data/stsa.binary.train" >"$work/batch-requests.jsonl" <<'PY'
import json, sys
for number, line in enumerate(open(sys.argv[1]), 1):
    if 1200 < number <= 2400:
        text = line.rstrip("\n").split(" ", 1)[1]
        print(json.dumps({"custom_id": f"train-{number}", "prompt": f"Review: {text}\nSentiment:", "max_tokens": 1}))
PY
rm -f "$work/batch-results.jsonl"
"${mpirun[@]}" "$bin" batch -m "$model" "${tokenizer_args[@]}" --ctx 256 --exit "svm:$classifier" --exit-default svm \
    -i "$work/batch-requests.jsonl" -o "$work/batch-results.jsonl" --metrics-json "$work/batch-metrics.json" \
    --progress-seconds 600 2>&1 | grep -E '^ramp batch: (\[#+\]|[0-9]+ lines)'

echo "== plots =="
if command -v gnuplot >/dev/null 2>&1; then
    plots=$work/plots
    {
        scripts/plot "$work/eval-metrics.json" "$plots" &&
            scripts/plot --sweep "$work/sweep.json" "$plots" &&
            scripts/plot "$work/batch-metrics.json" "$plots/batch"
    } | sed -e 's|/exit-histogram.png$|&   where outputs left the pipeline|' \
        -e 's|plots/stage-busy.png$|&   per-stage busy and idle seconds (the eval above)|' \
        -e 's|batch/stage-busy.png$|&   per-stage busy share over time (the batch job)|' \
        -e 's|/sweep.png$|&   agreement and accuracy against layers skipped|'
else
    echo "gnuplot is not installed: no plots (apt-get install gnuplot-nox; scripts/install-deps.sh does as root)"
fi
