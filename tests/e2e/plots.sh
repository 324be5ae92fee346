# plots.sh: `ramp eval --sweep` and scripts/plot.
# Sourced by tests/run-e2e.sh (helpers from lib.sh).
#
# The sweep replays features recorded at full depth instead of running the model once per
# threshold. That is exact because a request-level exit is decided from features that do not
# depend on the decision; the checks below hold it to that: at the policy's own threshold the
# replay gives exactly the figures of a real exit run (svm and conf, one process and 3 stages).

M=$LITE16/model-f32.gguf
SST2=$RAMP_SHARED/data/sst2
EXITS=(--ctx 256 --task sst2 --exit-layers 4,6,8,10,12,14)
PLOT=$here/../scripts/plot
T=$E2E_TMP/plots
mkdir -p "$T"

# same_as_exit_run PLAIN.json SWEEP.json: the sweep's point at the policy's own threshold (and its
# top-level exit figures) equal the plain eval's; prints what differs.
same_as_exit_run() {
    python3 - "$1" "$2" <<'PY' 2>&1
import json, sys
plain, sweep = (json.load(open(p)) for p in sys.argv[1:3])
own = [p for p in sweep["sweep"] if p["policy"]]
problems = []
if len(own) != 1:
    problems.append(f"{len(own)} points marked as the policy's own")
else:
    for key, name in [("agreement", "agreement"), ("accuracy", "accuracy_exit"), ("pruning_ratio", "pruning_ratio")]:
        if abs(own[0][key] - plain[name]) > 1e-12:
            problems.append(f"{key}: sweep {own[0][key]} vs exit run {plain[name]}")
for key in ["accuracy_full", "accuracy_exit", "agreement", "pruning_ratio", "exit_histogram"]:
    if sweep[key] != plain[key]:
        problems.append(f"{key}: sweep {sweep[key]} vs exit run {plain[key]}")
# Across the range: more threshold, fewer layers skipped; the ends are "all at the first exit
# point" (75% of 16 layers skipped) and "none leaves".
pruning = [p["pruning_ratio"] for p in sweep["sweep"]]
if any(b > a + 1e-12 for a, b in zip(pruning, pruning[1:])):
    problems.append(f"pruning does not fall as the threshold rises: {pruning}")
if abs(pruning[0] - 0.75) > 1e-12 or pruning[-1] != 0:
    problems.append(f"the sweep spans {pruning[0]}..{pruning[-1]}, expected 0.75..0")
print("\n".join(problems) if problems else "same")
PY
}

ramp exit-train -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.train" --limit 160 -o "$T/sst2.svm"
check $RC "exit-train writes a classifier for the sweep" "$(last_run_details)"

# 1. svm: a plain exit run and a sweep over the same 80 reviews.
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 80 --exit "svm:$T/sst2.svm" \
    --json "$T/plain.json" --metrics-json "$T/eval-metrics.json"
check $RC "eval with the classifier (the exit run the sweep is compared with)" "$(last_run_details)"
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 80 --exit "svm:$T/sst2.svm" \
    --sweep 12 --json "$T/sweep.json"
points=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['sweep']))" "$T/sweep.json" 2>/dev/null)
[ "$RC" -eq 0 ] && [ "$points" = 13 ] && grep -q "^\* " "$ERR"
check $? "eval --sweep 12 prints a table and writes 12 points plus the policy's own (got ${points:-none})" \
    "$(last_run_details)"
same=$(same_as_exit_run "$T/plain.json" "$T/sweep.json")
[ "$same" = same ]
check $? "the sweep at the classifier's own threshold equals the real exit run (agreement, accuracy, pruning, histogram)" \
    "$same"

# 2. The same on a 3-stage pipeline, where the features are recorded across ranks.
if have_mpi; then
    mpi_run 120 4 eval -m "$M" "${EXITS[@]}" --threads 1 --data "$SST2/stsa.binary.dev" --limit 80 \
        --exit "svm:$T/sst2.svm" --json "$T/plain3.json"
    check $RC "eval with the classifier on 3 stages" "$(last_run_details)"
    mpi_run 120 4 eval -m "$M" "${EXITS[@]}" --threads 1 --data "$SST2/stsa.binary.dev" --limit 80 \
        --exit "svm:$T/sst2.svm" --sweep 12 --json "$T/sweep3.json"
    same=$(same_as_exit_run "$T/plain3.json" "$T/sweep3.json")
    [ "$RC" -eq 0 ] && [ "$same" = same ]
    check $? "on 3 stages too, the sweep at the classifier's own threshold equals the real exit run" "$same" \
        "$(last_run_details)"
fi

# 3. conf (LITE thresholds used request-level): the factor 1 point equals a real exit run.
ramp exit-calibrate -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.train" --limit 160 --target-agreement 0.9 -o "$T/conf.json"
check $RC "exit-calibrate writes confidence thresholds for the sweep" "$(last_run_details)"
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 80 --exit "conf:$T/conf.json" \
    --json "$T/plain-conf.json"
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 80 --exit "conf:$T/conf.json" \
    --sweep 6 --json "$T/sweep-conf.json"
same=$(same_as_exit_run "$T/plain-conf.json" "$T/sweep-conf.json")
[ "$RC" -eq 0 ] && [ "$same" = same ]
check $? "a conf policy's sweep at factor 1 equals its real exit run" "$same" "$(last_run_details)"

ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 10 --sweep 5
[ "$RC" -eq 2 ] && grep -q -- "--sweep is for eval with --exit" "$ERR"
check $? "--sweep without an exit policy is a usage error" "$(last_run_details)"

# 4. scripts/plot: every PNG is written, is a PNG, and is not empty.
# is_png FILE...: each file starts with the PNG signature and holds more than a blank image.
is_png() {
    local file
    for file in "$@"; do
        [ -s "$file" ] && [ "$(head -c 8 "$file" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
            [ "$(stat -c %s "$file")" -gt 10000 ] || { echo "$file: missing, empty or not a PNG"; return 1; }
    done
}
if ! command -v gnuplot >/dev/null 2>&1; then
    fail "gnuplot is installed for scripts/plot" "install it with: apt-get install gnuplot-nox (scripts/install-deps.sh does)"
else
    # A batch job has a time series (per-stage busy/idle over time).
    head -n 40 "$SST2/stsa.binary.dev" | python3 -c '
import json, sys
for i, line in enumerate(sys.stdin):
    text = line.rstrip("\n").split(" ", 1)[1]
    print(json.dumps({"custom_id": f"r{i}", "prompt": f"Review: {text}\nSentiment:", "max_tokens": 1}))' \
        >"$T/requests.jsonl"
    ramp batch -m "$M" --ctx 256 --stages 3 --exit "svm:$T/sst2.svm" --exit-default svm -i "$T/requests.jsonl" \
        -o "$T/results.jsonl" --metrics-json "$T/batch-metrics.json" --progress-seconds 60
    check $RC "ramp batch writes metrics with a time series to plot" "$(last_run_details)"

    run 60 "$PLOT" "$T/batch-metrics.json" "$T/batch"
    detail=$(is_png "$T/batch/exit-histogram.png" "$T/batch/stage-busy.png")
    [ "$RC" -eq 0 ] && [ -z "$detail" ] && grep -qx "$T/batch/stage-busy.png" "$OUT"
    check $? "scripts/plot draws a batch job's exit histogram and per-stage busy time, and prints their paths" \
        "$detail" "$(last_run_details)"
    run 60 "$PLOT" "$T/eval-metrics.json" "$T/eval"
    detail=$(is_png "$T/eval/exit-histogram.png" "$T/eval/stage-busy.png")
    [ "$RC" -eq 0 ] && [ -z "$detail" ]
    check $? "scripts/plot draws an eval's metrics (no time series: busy and idle totals)" "$detail" "$(last_run_details)"
    run 60 "$PLOT" --sweep "$T/sweep.json" "$T/sweep"
    detail=$(is_png "$T/sweep/sweep.png")
    [ "$RC" -eq 0 ] && [ -z "$detail" ] && grep -qx "$T/sweep/sweep.png" "$OUT"
    check $? "scripts/plot --sweep draws agreement and accuracy against pruning" "$detail" "$(last_run_details)"
    run 60 "$PLOT" --sweep "$T/plain.json" "$T/none"
    [ "$RC" -eq 1 ] && grep -q 'no "sweep"' "$ERR"
    check $? "scripts/plot --sweep on an eval without a sweep says so" "$(last_run_details)"
fi
mkdir -p "$T/bin"
ln -sf "$(command -v python3)" "$T/bin/python3"
run 60 env PATH="$T/bin" "$PLOT" "$T/batch-metrics.json" "$T/nognuplot"
[ "$RC" -eq 1 ] && grep -q "gnuplot is not installed.*gnuplot-nox" "$ERR"
check $? "scripts/plot without gnuplot says how to install it" "$(last_run_details)"
