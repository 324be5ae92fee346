#!/bin/bash
# split-table.sh: the exit-aware split against the compute-balanced one, 3 and 4 stages.
#
#   scripts/split-table.sh [REPEATS]   (RAMP_BIN=bin/ramp, RAMP_SHARED=../shared, WORK=build/exit-wall)
#
# Uses the classifiers scripts/exit-wall.sh trains (run it first). For SST-2 dev and TREC test on
# lite16-tasks: one full-depth eval whose answers later runs read (--full-from), then exit runs
# only (--no-full), under mpirun with 3 and 4 stages, --split compute vs --split exit-aware
# (the profile recorded in the classifier's sidecar), REPEATS each, interleaved. Reports each
# stage's busy fraction and row-layers computed, and rows/s (median). Markdown table.
set -eu
repeats=${1:-3}
bin=${RAMP_BIN:-bin/ramp}
shared=${RAMP_SHARED:-../shared}
work=${WORK:-build/exit-wall}
model=$shared/models/lite16-tasks/model-f32.gguf
exits=(--ctx 256 --exit-layers 4,6,8,10,12,14)
mpirun=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
judge_file() { case $1 in sst2) echo "$shared/data/sst2/glue_dev.tsv";; trec) echo "$shared/data/trec/test.txt";; esac; }
for task in sst2 trec; do
    [ -f "$work/$task.svm.json" ] || { echo "split-table.sh: run scripts/exit-wall.sh first ($work/$task.svm)" >&2; exit 1; }
    [ -f "$work/full-$task.json" ] || "$bin" eval -m "$model" "${exits[@]}" --task $task --data "$(judge_file $task)" \
        --exit none --json "$work/full-$task.json" >/dev/null 2>&1
done
for i in $(seq "$repeats"); do
    for task in sst2 trec; do
        for stages in 3 4; do
            for split in compute exit-aware; do
                tag=$work/split-$split-$task-$stages-$i
                OMP_WAIT_POLICY=passive "${mpirun[@]}" -np $((stages + 1)) "$bin" eval -m "$model" "${exits[@]}" --task $task \
                    --data "$(judge_file $task)" --exit "svm:$work/$task.svm" --full-from "$work/full-$task.json" \
                    --split $split --json "$tag.json" --metrics-json "$tag.metrics.json" >/dev/null 2>"$tag.err"
            done
        done
    done
done
python3 - "$work" "$repeats" <<'PY'
import json, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
print("| task | stages | split | layers | busy fraction per stage (median) | row-layers per stage | rows/s (runs) | median rows/s |")
print("|---|---|---|---|---|---|---|---|")
for task in ["sst2", "trec"]:
    for stages in [3, 4]:
        for split in ["compute", "exit-aware"]:
            tags = [f"{work}/split-{split}-{task}-{stages}-{i}" for i in range(1, repeats + 1)]
            m = [json.load(open(t + ".metrics.json")) for t in tags]
            e = [json.load(open(t + ".json")) for t in tags]
            busy = [statistics.median(s["stages"][k]["busy_seconds"] / (s["stages"][k]["busy_seconds"] + s["stages"][k]["idle_seconds"]) for s in m) for k in range(stages)]
            layers = "/".join(f"{s['first_layer']}-{s['end_layer'] - 1}" for s in m[0]["stages"])
            rows = " ".join(str(s["layer_rows"]) for s in m[0]["stages"])
            rps = [x["rows_per_second_exit"] for x in e]
            print(f"| {task} | {stages} | {split} | {layers} | {' '.join(f'{b:.2f}' for b in busy)} | {rows} | "
                  f"{', '.join(f'{r:.1f}' for r in rps)} | {statistics.median(rps):.1f} |")
PY
