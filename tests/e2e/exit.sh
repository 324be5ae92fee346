# exit.sh: early exit end to end: features, the classifier, the short-circuit, token-level exits.
# Sourced by tests/run-e2e.sh (helpers from lib.sh).

M=$LITE16/model-f32.gguf
SST2=$RAMP_SHARED/data/sst2
EXITS=(--ctx 256 --task sst2 --exit-layers 4,6,8,10,12,14)
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
# Where two feature CSVs differ: the number of differing rows, the largest difference per column
# and the first differing row of each.
features_difference() {
    python3 - "$1" "$2" <<'PY' 2>&1
import csv, sys
a, b = (list(csv.reader(open(path))) for path in sys.argv[1:3])
print(f"{len(a)} vs {len(b)} rows; header {'equal' if a[:1] == b[:1] else 'differs'}")
header, differing, largest = a[0], 0, {}
for row_a, row_b in zip(a[1:], b[1:]):
    if row_a == row_b:
        continue
    differing += 1
    if differing == 1:
        print("first differing rows:", row_a, row_b, sep="\n  ")
    for name, x, y in zip(header, row_a, row_b):
        try:
            largest[name] = max(largest.get(name, 0.0), abs(float(x) - float(y)))
        except ValueError:
            largest[name] = float("inf") if x != y else largest.get(name, 0.0)
print(differing, "rows differ; largest difference per column:", {k: v for k, v in largest.items() if v})
PY
}

# 1. The same features whatever the split and the threads: a classifier trained from a 1-process
#    run with 2 threads and from a 3-stage run (one thread per rank) is the same file, byte for byte.
ramp exit-train -m "$M" "${EXITS[@]}" --threads 2 --data "$SST2/stsa.binary.train" --limit 240 \
    -o "$E2E_TMP/one.svm" --features-csv "$E2E_TMP/one.csv"
check $RC "exit-train in one process writes a classifier" "$(last_run_details)"
if have_mpi; then
    mpi_run 120 4 exit-train -m "$M" "${EXITS[@]}" --threads 1 --data "$SST2/stsa.binary.train" --limit 240 \
        -o "$E2E_TMP/three.svm" --features-csv "$E2E_TMP/three.csv"
    check $RC "exit-train on a 3-stage pipeline writes a classifier" "$(last_run_details)"
    cmp -s "$E2E_TMP/one.csv" "$E2E_TMP/three.csv" && cmp -s "$E2E_TMP/one.svm" "$E2E_TMP/three.svm" &&
        cmp -s "$E2E_TMP/one.svm.json" "$E2E_TMP/three.svm.json"
    check $? "exit features from 3 stages equal those from one process (identical features and classifier files)" \
        "$(features_difference "$E2E_TMP/one.csv" "$E2E_TMP/three.csv")"
fi

# 2. The short-circuit: with the classifier, the last stage receives fewer rows than the first;
#    without it, the same number. Results equal one process's.
if have_mpi; then
    mpi_run 120 4 eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 120 --exit none \
        --metrics-json "$E2E_TMP/none.json"
    first=$(json_get "$E2E_TMP/none.json" "d['stages'][0]['rows']" 2>/dev/null)
    last=$(json_get "$E2E_TMP/none.json" "d['stages'][2]['rows']" 2>/dev/null)
    [ "$RC" -eq 0 ] && [ -n "$first" ] && [ "$first" = "$last" ]
    check $? "without exits every stage receives every row ($first vs $last)" "$(last_run_details)"
    details=$(python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
r = d['request_details']
ok = (len(r) == d['requests'] == 120 and sum(x['prompt_tokens'] for x in r) == d['prompt_tokens'] and
      all(x['prompt_tokens'] > 0 and x['queued_seconds'] >= 0 and 0 < x['prompt_seconds'] and
          x['queued_seconds'] + x['prompt_seconds'] <= x['seconds'] + 1e-6 for x in r))
print('ok' if ok else json.dumps(r[:3]))" "$E2E_TMP/none.json" 2>&1)
    [ "$details" = ok ]
    check $? "--metrics-json request_details: one entry per request, queued + prompt seconds within its seconds" "$details"
    mpi_run 120 4 eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 120 --exit "svm:$E2E_TMP/one.svm" \
        --metrics-json "$E2E_TMP/exit.json" --json "$E2E_TMP/eval3.json"
    first=$(json_get "$E2E_TMP/exit.json" "d['stages'][0]['rows']" 2>/dev/null)
    last=$(json_get "$E2E_TMP/exit.json" "d['stages'][2]['rows']" 2>/dev/null)
    [ "$RC" -eq 0 ] && [ -n "$first" ] && [ -n "$last" ] && [ "$last" -lt "$first" ]
    check $? "exited requests never reach the last stage (stage 1 got $first rows, stage 3 $last)" "$(last_run_details)"
    ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 120 --exit "svm:$E2E_TMP/one.svm" \
        --threads 2 --json "$E2E_TMP/eval1.json"
    same=$(python3 -c "
import json,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
keys=['accuracy_full','accuracy_exit','agreement','pruning_ratio','mean_layers','exit_histogram']
print(all(a[k]==b[k] for k in keys))" "$E2E_TMP/eval1.json" "$E2E_TMP/eval3.json" 2>&1)
    [ "$same" = True ]
    check $? "eval on 3 stages gives the same predictions, exits and pruning as one process" "$same"
fi
python3 -c "
import json,sys
d=json.load(open(sys.argv[1]))
for k in ['accuracy_full','accuracy_exit','agreement','pruning_ratio','mean_layers','exit_histogram','seconds_full','seconds_exit']:
    assert k in d, k
assert 0 <= d['pruning_ratio'] < 1 and 0 <= d['agreement'] <= 1
" "$E2E_TMP/eval1.json" 2>/dev/null
check $? "eval --json has the documented keys with sane values"

# An exit run need not pay for a full-depth run: --no-full, with agreement from a stored result.
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 120 --exit "svm:$E2E_TMP/one.svm" \
    --full-from "$E2E_TMP/eval1.json" --json "$E2E_TMP/nofull.json"
same=$(python3 -c "
import json,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
keys=['accuracy_full','accuracy_exit','agreement','pruning_ratio','exit_histogram','labels_exit','exit_profile']
print(b['full']=='stored' and 'seconds_full' not in b and all(a[k]==b[k] for k in keys))" "$E2E_TMP/eval1.json" \
    "$E2E_TMP/nofull.json" 2>&1)
[ "$RC" -eq 0 ] && [ "$same" = True ]
check $? "eval --full-from: no full-depth run, the same agreement and accuracy as with one" "$same; $(last_run_details)"
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 100 --exit "svm:$E2E_TMP/one.svm" \
    --full-from "$E2E_TMP/eval1.json"
[ "$RC" -eq 1 ] && grep -q "120 examples of stsa.binary.dev from #0; this run has task 'sst2', 100 examples" "$ERR"
check $? "eval --full-from refuses a result of other examples, naming both" "$(last_run_details)"
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 20 --exit "svm:$E2E_TMP/one.svm" --no-full \
    --json "$E2E_TMP/nofull2.json"
python3 -c "
import json,sys
d=json.load(open(sys.argv[1]))
assert d['full']=='none' and 'agreement' not in d and 'accuracy_full' not in d and 'accuracy_exit' in d
" "$E2E_TMP/nofull2.json" 2>/dev/null
check $? "eval --no-full alone leaves agreement and full accuracy out" "$(last_run_details)"

# --rounds: the two runs alternate N times; the times are medians of the rounds, the answers those of one round.
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 120 --exit "svm:$E2E_TMP/one.svm" --rounds 3 \
    --json "$E2E_TMP/rounds.json"
rounds=$(python3 -c "
import json,statistics,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
f,e=b['round_seconds_full'],b['round_seconds_exit']
savings=[1-x/y for x,y in zip(e,f)]
print(b['rounds']==3 and len(f)==3 and len(e)==3 and b['seconds_full']==statistics.median(f)
      and b['seconds_exit']==statistics.median(e) and abs(b['saving_median']-statistics.median(savings))<1e-12
      and all(a[k]==b[k] for k in ['labels_full','labels_exit','agreement','pruning_ratio','exit_histogram']))" \
    "$E2E_TMP/eval1.json" "$E2E_TMP/rounds.json" 2>&1)
[ "$RC" -eq 0 ] && [ "$rounds" = True ] && grep -q "medians of 3 rounds, wall-time saving" "$ERR"
check $? "eval --rounds 3: medians of alternating full and exit runs, the same answers as one round" \
    "$rounds; $(last_run_details)"
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 10 --exit "svm:$E2E_TMP/one.svm" --sweep 4 \
    --rounds 2
[ "$RC" -eq 2 ] && grep -q "it is for eval without --sweep" "$ERR"
check $? "eval --rounds refuses --sweep (a sweep replays one recorded run)" "$(last_run_details)"

# The exit-aware split: stage boundaries from the exit profile eval recorded; the same answers.
if have_mpi; then
    mpi_run 120 4 eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 120 --exit "svm:$E2E_TMP/one.svm" \
        --split "exit-aware:$E2E_TMP/eval1.json" --full-from "$E2E_TMP/eval1.json" --json "$E2E_TMP/aware3.json"
    same=$(python3 -c "
import json,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
print(all(a[k]==b[k] for k in ['agreement','labels_exit','exit_histogram']))" "$E2E_TMP/eval1.json" \
        "$E2E_TMP/aware3.json" 2>&1)
    [ "$RC" -eq 0 ] && [ "$same" = True ] && grep -q "^ramp: exit-aware split " "$ERR"
    check $? "--split exit-aware on 3 stages: boundaries from the profile, the same answers as one process" \
        "$same; $(grep 'exit-aware split' "$ERR"); $(last_run_details)"
fi
printf '{"exit_profile": {"layers": 16, "reach": [1, 1, 1, 1, 0.5, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}}' \
    >"$E2E_TMP/bad-profile.json"
ramp eval -m "$M" "${EXITS[@]}" --stages 3 --data "$SST2/stsa.binary.dev" --limit 10 --exit "svm:$E2E_TMP/one.svm" \
    --split "exit-aware:$E2E_TMP/bad-profile.json"
[ "$RC" -eq 1 ] && grep -q "bad-profile.json: exit profile: layer 5 is reached by more rows (0.6) than layer 4 (0.5)" "$ERR"
check $? "--split exit-aware refuses an invalid profile, naming the file and the layer" "$(last_run_details)"

# 3. A broken classifier file is a clear error.
printf '{"kind": "svm"' >"$E2E_TMP/broken.svm.json"
cp "$E2E_TMP/one.svm" "$E2E_TMP/broken.svm" 2>/dev/null
ramp eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 10 --exit "svm:$E2E_TMP/broken.svm"
[ "$RC" -eq 1 ] && grep -q "broken.svm" "$ERR"
check $? "a corrupt classifier sidecar fails cleanly, naming the file" "$(last_run_details)"
ramp eval -m "$M" --ctx 256 --task trec --exit-layers 4,6,8,10,12,14 --data "$RAMP_SHARED/data/trec/test.txt" --limit 10 \
    --exit "svm:$E2E_TMP/one.svm"
[ "$RC" -eq 1 ] && grep -q "trained for task 'sst2'" "$ERR"
check $? "an SST-2 classifier refuses a TREC run (its inputs are SST-2's label tokens)" "$(last_run_details)"

# The cheap setting: an exit head after every 4th layer only.
ramp exit-train -m "$M" --ctx 256 --task sst2 --exit-layers every:4 --data "$SST2/stsa.binary.train" --limit 80 \
    -o "$E2E_TMP/every4.svm"
layers=$(json_get "$E2E_TMP/every4.svm.json" "d['exit_layers']" 2>/dev/null)
[ "$RC" -eq 0 ] && [ "$layers" = "[4, 8, 12]" ]
check $? "--exit-layers every:4 puts exit points after layers 4, 8, 12 ($layers)" "$(last_run_details)"

# 4. Token-level exits in generation, with each KV policy.
cut -f1 "$REF/lite16.greedy48.tsv" "$REF/stories260K.greedy64.tsv" >"$E2E_TMP/prompts.txt"
ramp exit-calibrate -m "$M" --ctx 256 -f "$E2E_TMP/prompts.txt" -n 32 --exit-layers 4,6,8,10,12,14 \
    --target-agreement 0.9 -o "$E2E_TMP/conf.json"
check $RC "exit-calibrate writes confidence thresholds" "$(last_run_details)"
# The default target is the operating point scripts/token-curve.sh chose (README: token level).
ramp exit-calibrate -m "$M" --ctx 256 -f "$E2E_TMP/prompts.txt" -n 8 --exit-layers 4,8,12 -o "$E2E_TMP/conf-default.json"
target=$(json_get "$E2E_TMP/conf-default.json" "round(d['target_agreement'], 4)" 2>/dev/null)
[ "$RC" -eq 0 ] && [ "$target" = 0.99 ]
check $? "exit-calibrate's default --target-agreement is 0.99 ($target)" "$(last_run_details)"
for policy in recompute copy omit; do
    ramp generate -m "$M" --ctx 256 --threads 2 -f "$E2E_TMP/prompts.txt" -n 32 --exit "conf:$E2E_TMP/conf.json" --kv-fill $policy
    cp "$OUT" "$E2E_TMP/gen-$policy.txt"
    [ "$RC" -eq 0 ] && grep -q "layer evaluations saved" "$ERR"
    check $? "generate --exit conf --kv-fill $policy runs and reports what it saved" "$(last_run_details)"
    if [ $policy = recompute ]; then
        grep -q "first differences at full-depth tokens: 0$" "$ERR"
        check $? "recompute fills skipped layers exactly: a full-depth token never differs first" "$(grep 'early exit' "$ERR")"
        computed=$(grep "row-layers not computed" "$ERR")
        ramp generate -m "$M" --ctx 256 --threads 2 -f "$E2E_TMP/prompts.txt" -n 32 --exit "conf:$E2E_TMP/conf.json"
        [ "$RC" -eq 0 ] && cmp -s "$OUT" "$E2E_TMP/gen-recompute.txt" && [ "$(grep "row-layers not computed" "$ERR")" = "$computed" ]
        check $? "--kv-fill's default is recompute: the same text and the same row-layers computed" "$(last_run_details)"
    fi
done
if have_mpi; then
    mpi_run 120 4 generate -m "$M" --ctx 256 -f "$E2E_TMP/prompts.txt" -n 32 --exit "conf:$E2E_TMP/conf.json" \
        --kv-fill recompute
    [ "$RC" -eq 0 ] && cmp -s "$OUT" "$E2E_TMP/gen-recompute.txt"
    check $? "token-level exits on 3 stages give the same text as one process" "$(last_run_details)"
    # Stages run parked micro-batches ahead of their Decisions (--run-ahead on; auto, the default, only
    # where cores are spare): rows that leave give back what they wrote beyond their exit point;
    # copy and omit show it if not.
    for policy in copy omit; do
        mpi_run 120 4 generate -m "$M" --ctx 256 -f "$E2E_TMP/prompts.txt" -n 32 --exit "conf:$E2E_TMP/conf.json" \
            --kv-fill $policy --run-ahead on --metrics-json "$E2E_TMP/ahead-$policy.json"
        [ "$RC" -eq 0 ] && cmp -s "$OUT" "$E2E_TMP/gen-$policy.txt"
        check $? "token-level exits with --kv-fill $policy on 3 stages (running ahead of decisions) give one process's text" \
            "ran ahead: $(json_get "$E2E_TMP/ahead-$policy.json" "[s['run_ahead_layer_rows'] for s in d['stages']]" 2>&1); $(last_run_details)"
    done
    mpi_run 120 4 eval -m "$M" "${EXITS[@]}" --data "$SST2/stsa.binary.dev" --limit 120 --exit "svm:$E2E_TMP/one.svm" \
        --run-ahead on --json "$E2E_TMP/eval3-on.json"
    same=$(python3 -c "
import json,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
print(all(a[k]==b[k] for k in ['labels_full','labels_exit','exit_histogram']))" "$E2E_TMP/eval3.json" "$E2E_TMP/eval3-on.json" 2>&1)
    [ "$RC" -eq 0 ] && [ "$same" = True ]
    check $? "eval on 3 stages: the same answers with --run-ahead on as without" "$same; $(last_run_details)"
fi
