#!/bin/bash
# exit-table.sh: the early-exit acceptance table, measured.
#
#   scripts/exit-table.sh [REPEATS]      (RAMP_BIN=bin/ramp, RAMP_SHARED=../shared,
#                                         CLASSIFIERS=build/exit-table, TARGET=0.985)
#
# Request-level exits (AdaInfer SVM): for lite16 and base16, SST-2 dev (glue_dev.tsv) and TREC
# test, exit points 4,6,...,14, a classifier trained with `exit-train` on the task's training file
# (stsa.binary.train, trec/train.txt: other data than it is judged on), `eval` in one process and
# on a 3-stage pipeline (mpirun -np 4: coordinator + 3 stages). Each eval runs full depth and then
# with exits in one invocation; the wall-time ratio is the median over REPEATS invocations (default
# 3) of seconds_full / seconds_exit.
# Token-level exits (LITE confidence thresholds): lite16 continuing 40 prompts from the dev/test
# sets, thresholds calibrated on 40 from the training sets, with each --kv-fill policy.
# Prints markdown tables; training the four classifiers takes about 10 minutes on 2 cores.
set -eu
repeats=${1:-3}
bin=${RAMP_BIN:-bin/ramp}
shared=${RAMP_SHARED:-../shared}
classifiers=${CLASSIFIERS:-build/exit-table}
target=${TARGET:-0.985}
work=build/exit-table/runs
mkdir -p "$classifiers" "$work"
mpirun=(mpirun --oversubscribe -np 4)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
exits=(--ctx 256 --exit-layers 4,6,8,10,12,14)

train_file() { case $1 in sst2) echo "$shared/data/sst2/stsa.binary.train";; trec) echo "$shared/data/trec/train.txt";; esac; }
judge_file() { case $1 in sst2) echo "$shared/data/sst2/glue_dev.tsv";; trec) echo "$shared/data/trec/test.txt";; esac; }

for model in lite16 base16; do
    for task in sst2 trec; do
        svm=$classifiers/$model-$task.svm
        [ -f "$svm" ] && [ -f "$svm.json" ] && continue
        echo "training $svm (target agreement $target) ..." >&2
        "$bin" exit-train -m "$shared/models/$model/model-f32.gguf" "${exits[@]}" --task $task \
            --data "$(train_file $task)" --target-agreement "$target" -o "$svm" 2>&1 | grep '^ramp exit-train' >&2
    done
done

echo "| model | task | stages | agreement | accuracy full | accuracy exit | pruning | mean layers | wall-time ratio full/exit (runs) |"
echo "|---|---|---|---|---|---|---|---|---|"
for model in lite16 base16; do
    for task in sst2 trec; do
        for stages in 1 3; do
            launch=("$bin")
            [ $stages -eq 3 ] && launch=("${mpirun[@]}" "$bin")
            for i in $(seq "$repeats"); do
                "${launch[@]}" eval -m "$shared/models/$model/model-f32.gguf" "${exits[@]}" --task $task \
                    --data "$(judge_file $task)" --exit "svm:$classifiers/$model-$task.svm" \
                    --json "$work/$model-$task-$stages-$i.json" >/dev/null 2>"$work/$model-$task-$stages-$i.err"
            done
            python3 - "$model" "$task" "$stages" "$work/$model-$task-$stages" "$repeats" <<'PY'
import json, statistics, sys
model, task, stages, prefix, repeats = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
runs = [json.load(open(f"{prefix}-{i}.json")) for i in range(1, repeats + 1)]
r = runs[0]
ratios = [d["seconds_full"] / d["seconds_exit"] for d in runs]
print(f"| {model} | {task} | {stages} | {r['agreement']:.3f} | {r['accuracy_full']:.3f} | {r['accuracy_exit']:.3f} "
      f"| {100 * r['pruning_ratio']:.1f}% | {r['mean_layers']:.2f} | x{statistics.median(ratios):.2f} "
      f"({', '.join(f'{x:.2f}' for x in ratios)}) |")
PY
        done
    done
done

# Token-level exits: prompts are the first words of SST-2 dev reviews and TREC test questions,
# texts the model never trained on (on its training texts it is far more sure of itself than on
# new text, so thresholds calibrated there exit too eagerly). Thresholds are calibrated on
# examples 21-60 of each and judged on examples 1-20.
echo
echo "| --kv-fill | conf target | layer evaluations saved | token agreement with full-depth text |"
echo "|---|---|---|---|"
lite=$shared/models/lite16/model-f32.gguf
python3 - "$shared/data" "$work" <<'PY'
import sys
data, work = sys.argv[1], sys.argv[2]
def reviews(path, skip_header):
    lines = open(path).read().splitlines()[1 if skip_header else 0:]
    return [l.split("\t")[0] if skip_header else l.split(" ", 1)[1] for l in lines]
def questions(path):
    return [l.split(" ", 1)[1] for l in open(path).read().splitlines()]
def prompts(texts, prefix, first, last):
    return [prefix + " ".join(t.split()[:4]) for t in texts[first:last]]
dev, test = reviews(f"{data}/sst2/glue_dev.tsv", True), questions(f"{data}/trec/test.txt")
with open(f"{work}/calibrate.txt", "w") as f:
    f.write("\n".join(prompts(dev, "Review: ", 20, 60) + prompts(test, "Question: ", 20, 60)) + "\n")
with open(f"{work}/judge.txt", "w") as f:
    f.write("\n".join(prompts(dev, "Review: ", 0, 20) + prompts(test, "Question: ", 0, 20)) + "\n")
PY
for conf_target in 0.9 0.97; do
    conf=$classifiers/lite16-conf-$conf_target.json
    [ -f "$conf" ] || "$bin" exit-calibrate -m "$lite" "${exits[@]}" -f "$work/calibrate.txt" -n 48 \
        --target-agreement $conf_target -o "$conf" 2>/dev/null
    for fill in recompute copy omit; do
        "$bin" generate -m "$lite" --ctx 256 -f "$work/judge.txt" -n 48 --exit "conf:$conf" --kv-fill $fill \
            >/dev/null 2>"$work/gen-$fill.err"
        saved=$(grep -o '[0-9.]*% of layer evaluations saved' "$work/gen-$fill.err" | head -1 | cut -d' ' -f1)
        agreement=$(grep -o 'full-depth text [0-9.]*' "$work/gen-$fill.err" | head -1 | cut -d' ' -f3)
        echo "| $fill | $conf_target | ${saved:-?} | ${agreement:-?} |"
    done
done
