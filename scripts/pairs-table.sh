#!/bin/bash
# pairs-table.sh: layer-parallel pairs (--parallel-layers): what they cost in quality, what they buy in speed.
#
#   scripts/pairs-table.sh [REPEATS]   (RAMP_BIN=bin/ramp, RAMP_SHARED=../shared, WORK=build/pairs-table)
#
# Quality, for lite16-tasks, lite16 and base16 and a few middle ranges (never the first or last
# layer): held-out NLL per token (`ramp nll`) of SST-2 dev and TREC test written as training
# documents, task accuracy and agreement with the unpaired model's answers (`eval --exit none`).
# Speed, REPEATS interleaved runs, without pairs and with the two forms of a pair: fused (one
# process with 2 threads, and 3 stages under mpirun -np 4) and on two ranks per stage (mpirun -np 3,
# --pair-ranks on, a thread each): decode = generation of 40 unseen prompts (generated tokens/s over
# the run), prefill = prompt tokens/s of `generate -n 1` over 200 whole SST-2 dev reviews (the
# 40 short prompts on synth). On lite16-tasks (lite16 and base16 have its shape) and on a
# `ramp synth` shape where compute dominates (dim 1024, 8 layers, ffn 2816). Markdown tables.
set -eu
repeats=${1:-3}
bin=${RAMP_BIN:-bin/ramp}
shared=${RAMP_SHARED:-../shared}
work=${WORK:-build/pairs-table}
data=$shared/data
mkdir -p "$work"
mpirun=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
for model in lite16-tasks lite16 base16; do
    weights=$shared/models/$model/model-f32.gguf
    for range in none 6-9 4-11 2-13; do
        pl=(); [ $range != none ] && pl=(--parallel-layers $range)
        "$bin" nll -m "$weights" --task sst2 --data "$data/sst2/glue_dev.tsv" "${pl[@]}" --json "$work/nll-$model-sst2-$range.json" >/dev/null 2>&1
        "$bin" nll -m "$weights" --task trec --data "$data/trec/test.txt" "${pl[@]}" --json "$work/nll-$model-trec-$range.json" >/dev/null 2>&1
        "$bin" eval -m "$weights" --ctx 256 --task sst2 --data "$data/sst2/glue_dev.tsv" --exit none "${pl[@]}" --json "$work/eval-$model-sst2-$range.json" >/dev/null 2>&1
        "$bin" eval -m "$weights" --ctx 256 --task trec --data "$data/trec/test.txt" --exit none "${pl[@]}" --json "$work/eval-$model-trec-$range.json" >/dev/null 2>&1
    done
done
python3 - "$data" "$work" <<'PY'
import sys
data, work = sys.argv[1], sys.argv[2]
dev = [l.split("\t")[0] for l in open(f"{data}/sst2/glue_dev.tsv").read().splitlines()[1:]]
test = [l.split(" ", 1)[1] for l in open(f"{data}/trec/test.txt").read().splitlines()]
p = ["Review: " + " ".join(t.split()[:4]) for t in dev[:20]] + ["Question: " + " ".join(t.split()[:4]) for t in test[:20]]
open(f"{work}/prompts.txt", "w").write("\n".join(p) + "\n")
open(f"{work}/reviews.txt", "w").write("\n".join("Review: " + t for t in dev[:200]) + "\n")
PY
synth=$work/synth.gguf
[ -f "$synth" ] || "$bin" synth -o "$synth" --dim 1024 --layers 8 --heads 16 --kv-heads 16 --ffn 2816 --vocab 512 --context 512
for i in $(seq "$repeats"); do
    for model in lite16-tasks synth; do
        weights=$shared/models/lite16-tasks/model-f32.gguf; range=4-11; n=48
        [ $model = synth ] && weights=$synth && range=2-5 && n=16
        for form in none fused fused3 ranks; do
            case $form in
                none) launch=("$bin"); extra=();;
                fused) launch=("$bin"); extra=(--parallel-layers $range);;
                fused3) launch=("${mpirun[@]}" -np 4 "$bin"); extra=(--parallel-layers $range);;
                ranks) launch=("${mpirun[@]}" -np 3 "$bin"); extra=(--parallel-layers $range --pair-ranks on);;
            esac
            OMP_WAIT_POLICY=passive "${launch[@]}" generate -m "$weights" -f "$work/prompts.txt" -n $n --temp 0 "${extra[@]}" \
                >"$work/gen-$model-$form-$i.out" 2>"$work/gen-$model-$form-$i.err"
            prompts=$work/reviews.txt; [ $model = synth ] && prompts=$work/prompts.txt
            OMP_WAIT_POLICY=passive "${launch[@]}" generate -m "$weights" -f "$prompts" -n 1 --temp 0 "${extra[@]}" \
                --metrics-json "$work/prefill-$model-$form-$i.json" >/dev/null 2>&1
        done
    done
done
python3 - "$work" "$repeats" <<'PY'
import json, re, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
print("| model | parallel layers | NLL/token SST-2 dev | NLL/token TREC test | SST-2 accuracy | SST-2 agreement | TREC accuracy | TREC agreement |")
print("|---|---|---|---|---|---|---|---|")
for model in ["lite16-tasks", "lite16", "base16"]:
    base = {t: json.load(open(f"{work}/eval-{model}-{t}-none.json")) for t in ["sst2", "trec"]}
    for r in ["none", "6-9", "4-11", "2-13"]:
        n = {t: json.load(open(f"{work}/nll-{model}-{t}-{r}.json"))["nll_per_token"] for t in ["sst2", "trec"]}
        e = {t: json.load(open(f"{work}/eval-{model}-{t}-{r}.json")) for t in ["sst2", "trec"]}
        a = {t: sum(x == y for x, y in zip(e[t]["labels_full"], base[t]["labels_full"])) / len(base[t]["labels_full"]) for t in e}
        print(f"| {model} | {r} | {n['sst2']:.4f} | {n['trec']:.4f} | {e['sst2']['accuracy_full']:.3f} | {a['sst2']:.3f} | "
              f"{e['trec']['accuracy_full']:.3f} | {a['trec']:.3f} |")
print()
def med(v): return f"{statistics.median(v):.0f} ({', '.join(f'{x:.0f}' for x in v)})"
print("| model | form | decode: generated tokens/s over the run, median (runs) | prefill: prompt tokens/s, median (runs) | greedy text = fused 1 process |")
print("|---|---|---|---|---|")
for model, r in [("lite16-tasks", "4-11"), ("synth", "2-5")]:
    for form, label in [("none", "no pairs, 1 process"), ("fused", f"{r} fused, 1 process"),
                        ("fused3", f"{r} fused, 3 stages (np 4)"), ("ranks", f"{r} on two ranks (np 3)")]:
        g = [float(re.search(r"([0-9.]+) generated tokens/s", open(f"{work}/gen-{model}-{form}-{i}.err").read()).group(1))
             for i in range(1, repeats + 1)]
        p = []
        for i in range(1, repeats + 1):
            m = json.load(open(f"{work}/prefill-{model}-{form}-{i}.json"))
            p.append(m["prompt_tokens"] / m["seconds"])
        fused = open(f"{work}/gen-{model}-fused-1.out").read()
        same = "-" if form == "none" else \
            ("yes" if all(open(f"{work}/gen-{model}-{form}-{i}.out").read() == fused for i in range(1, repeats + 1)) else "NO")
        print(f"| {model} | {label} | {med(g)} | {med(p)} | {same} |")
PY
