#!/bin/bash
# exit-wall.sh: do request-level exits save wall time in proportion to the layers they skip?
#
#   scripts/exit-wall.sh [REPEATS]     (RAMP_BIN=bin/ramp, RAMP_SHARED=../shared, WORK=build/exit-wall,
#                                       MODEL=lite16-tasks, RUN_AHEAD=auto|on|off, ROUNDS=3)
#
# lite16-tasks (the model that really classifies; MODEL=lite16 for the untuned one), exit points 4,6,...,14, an AdaInfer classifier
# trained with `exit-train --target-agreement 0.985` on the task's training file, judged on SST-2
# dev and TREC test. Each `eval` invocation runs the set at full depth and then with exits, ROUNDS
# times alternating (eval --rounds: a busy host's drift falls on both runs alike); its wall-time
# saving is the median over its rounds of 1 - seconds_exit / seconds_full, set against its pruning
# ratio. One process and 3 stages (mpirun -np 4), REPEATS invocations each (default 3,
# interleaved), medians.
# The goal (issue 11): median saving >= 0.8 x pruning. Prints a markdown table, then where the time
# goes: per repeat, one full-depth run (--exit none) and one exit run alone (--no-full), each with
# --metrics-json: compute time per row-layer, rows per micro-batch and layer (exits shrink the
# batches), the exit heads' time on the stages, rank 0's time in the exit policy, and each stage's
# time idle with a micro-batch parked for its Decision, and CPU time (user + system) per rank and
# in all: on a node with fewer cores than ranks (mpirun -np 4 on 2 cores) the ranks share the
# cores, so wall time follows the job's CPU time, which the machine's load disturbs less
# (medians over the repeats).
set -eu
repeats=${1:-3}
bin=${RAMP_BIN:-bin/ramp}
shared=${RAMP_SHARED:-../shared}
work=${WORK:-build/exit-wall}
model=$shared/models/${MODEL:-lite16-tasks}/model-f32.gguf
mkdir -p "$work"
mpirun=(mpirun --oversubscribe -np 4)
[ "$(id -u)" -eq 0 ] && mpirun+=(--allow-run-as-root)
exits=(--ctx 256 --exit-layers 4,6,8,10,12,14)
run_ahead=(); [ -n "${RUN_AHEAD:-}" ] && run_ahead=(--run-ahead "$RUN_AHEAD")
rounds=${ROUNDS:-3}
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
            OMP_WAIT_POLICY=passive "${launch[@]}" eval -m "$model" "${exits[@]}" "${run_ahead[@]}" --task $task --data "$(judge_file $task)" \
                --exit "svm:$work/$task.svm" --rounds "$rounds" --json "$work/$task-$stages-$i.json" >/dev/null \
                2>"$work/$task-$stages-$i.err"
            OMP_WAIT_POLICY=passive "${launch[@]}" eval -m "$model" "${exits[@]}" "${run_ahead[@]}" --task $task --data "$(judge_file $task)" \
                --exit none --metrics-json "$work/where-full-$task-$stages-$i.json" >/dev/null 2>&1
            OMP_WAIT_POLICY=passive "${launch[@]}" eval -m "$model" "${exits[@]}" "${run_ahead[@]}" --task $task --data "$(judge_file $task)" \
                --exit "svm:$work/$task.svm" --no-full --metrics-json "$work/where-exit-$task-$stages-$i.json" >/dev/null 2>&1
        done
    done
done
python3 - "$work" "$repeats" <<'PY'
import json, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
pruning = {}
print("| task | stages | pruning | wall-time saving per invocation (median of its rounds) | median saving | median saving / pruning |")
print("|---|---|---|---|---|---|")
for task in ["sst2", "trec"]:
    for stages in [1, 3]:
        runs = [json.load(open(f"{work}/{task}-{stages}-{i}.json")) for i in range(1, repeats + 1)]
        s = [r["saving_median"] for r in runs]
        p = pruning[task, stages] = runs[0]["pruning_ratio"]
        print(f"| {task} | {stages} | {100*p:.1f}% | {', '.join(f'{100*x:.1f}%' for x in s)} | "
              f"{100*statistics.median(s):.1f}% | {statistics.median(s)/p:.2f} |")
print()
print("Where the time goes (separate runs, medians): full = --exit none, exit = --no-full with the classifier.")
print()
print("| task | stages | seconds full / exit | saving | row-layers saved | CPU seconds full / exit (all ranks) | "
      "CPU saving / pruning | CPU per rank full / exit (rank 0, stages) | us per row-layer full / exit | "
      "rows per micro-batch and layer full / exit | exit heads (s, all stages) | exit policy on rank 0 (s) | "
      "idle waiting for a Decision per stage (s) | idle fraction per stage, exit run |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
med = statistics.median
for task in ["sst2", "trec"]:
    for stages in [1, 3]:
        f = [json.load(open(f"{work}/where-full-{task}-{stages}-{i}.json")) for i in range(1, repeats + 1)]
        e = [json.load(open(f"{work}/where-exit-{task}-{stages}-{i}.json")) for i in range(1, repeats + 1)]
        def total(m, key): return sum(st[key] for st in m["stages"])
        sf, se = med([m["seconds"] for m in f]), med([m["seconds"] for m in e])
        saved = 1 - total(e[0], "layer_rows") / total(f[0], "layer_rows")
        us_f = med([1e6 * total(m, "compute_seconds") / total(m, "layer_rows") for m in f])
        us_e = med([1e6 * total(m, "compute_seconds") / total(m, "layer_rows") for m in e])
        rb_f = total(f[0], "layer_rows") / total(f[0], "layer_batches")
        rb_e = total(e[0], "layer_rows") / total(e[0], "layer_batches")
        heads = med([total(m, "exit_head_seconds") for m in e])
        policy = med([m["exit_policy_seconds"] for m in e])
        waits = " ".join(f"{med([m['stages'][k]['decision_wait_seconds'] for m in e]):.2f}" for k in range(stages))
        idle = " ".join(f"{med([m['stages'][k]['idle_fraction'] for m in e]):.2f}" for k in range(stages))
        cf, ce = med([m["cpu_seconds"] for m in f]), med([m["cpu_seconds"] for m in e])
        # rank 0, then each stage rank (in one process the stages are rank 0's process)
        ranks = lambda m: [m["rank0_cpu_seconds"]] + ([st["cpu_seconds"] for st in m["stages"]] if stages > 1 else [])
        per_rank = lambda ms: " ".join(f"{med(column):.2f}" for column in zip(*map(ranks, ms)))
        print(f"| {task} | {stages} | {sf:.2f} / {se:.2f} | {100*(1-se/sf):.1f}% | {100*saved:.1f}% | {cf:.2f} / {ce:.2f} | "
              f"{(1-ce/cf)/pruning[task, stages]:.2f} | {per_rank(f)} / {per_rank(e)} | {us_f:.2f} / {us_e:.2f} | "
              f"{rb_f:.0f} / {rb_e:.0f} | {heads:.3f} | {policy:.3f} | {waits} | {idle} |")
PY
