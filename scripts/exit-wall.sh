#!/bin/bash
# exit-wall.sh: do request-level exits save wall time in proportion to the layers they skip?
#
#   scripts/exit-wall.sh [REPEATS]     (RAMP_BIN=bin/ramp, RAMP_SHARED=../shared, WORK=build/exit-wall)
#
# lite16-tasks (the model that really classifies), exit points 4,6,...,14, an AdaInfer classifier
# trained with `exit-train --target-agreement 0.985` on the task's training file, judged on SST-2
# dev and TREC test. Each `eval` invocation runs the set at full depth and then with exits; its
# wall-time saving is 1 - seconds_exit / seconds_full, set against its pruning ratio. One process
# and 3 stages (mpirun -np 4), REPEATS invocations each (default 3, interleaved), medians.
# The goal (issue 11): median saving >= 0.8 x pruning. Prints a markdown table.
set -eu
repeats=${1:-3}
bin=${RAMP_BIN:-bin/ramp}
shared=${RAMP_SHARED:-../shared}
work=${WORK:-build/exit-wall}
model=$shared/models/lite16-tasks/model-f32.gguf
mkdir -p "$work"
mpirun=(mpirun --oversubscribe -np 4)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
exits=(--ctx 256 --exit-layers 4,6,8,10,12,14)
train_file() { case $1 in sst2) echo "$shared/data/sst2/stsa.binary.train";; trec) echo "$shared/data/trec/train.txt";; esac; }
judge_file() { case $1 in sst2) echo "$shared/data/sst2/glue_dev.tsv";; trec) echo "$shared/data/trec/test.txt";; esac; }
for task in sst2 trec; do
    svm=$work/$task.svm
    [ -f "$svm" ] && [ -f "$svm.json" ] && continue
    echo "training $svm ..." >&2
    "$bin" exit-train -m "$model" "${exits[@]}" --task $task --data "$(train_file $task)" --target-agreement 0.985 \
        -o "$svm" 2>&1 | grep '^ramp exit-train' >&2
done
for i in $(seq "$repeats"); do
    for task in sst2 trec; do
        for stages in 1 3; do
            launch=("$bin")
            [ $stages -eq 3 ] && launch=("${mpirun[@]}" "$bin")
            OMP_WAIT_POLICY=passive "${launch[@]}" eval -m "$model" "${exits[@]}" --task $task --data "$(judge_file $task)" \
                --exit "svm:$work/$task.svm" --json "$work/$task-$stages-$i.json" >/dev/null 2>"$work/$task-$stages-$i.err"
        done
    done
done
python3 - "$work" "$repeats" <<'PY'
import json, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
print("| task | stages | pruning | wall-time saving per invocation | median saving | median saving / pruning |")
print("|---|---|---|---|---|---|")
for task in ["sst2", "trec"]:
    for stages in [1, 3]:
        runs = [json.load(open(f"{work}/{task}-{stages}-{i}.json")) for i in range(1, repeats + 1)]
        s = [1 - r["seconds_exit"] / r["seconds_full"] for r in runs]
        p = runs[0]["pruning_ratio"]
        print(f"| {task} | {stages} | {100*p:.1f}% | {', '.join(f'{100*x:.1f}%' for x in s)} | "
              f"{100*statistics.median(s):.1f}% | {statistics.median(s)/p:.2f} |")
PY
