# pairs.sh: layer-parallel pairs (--parallel-layers A-B, model/forward.h) end to end: greedy text
# is the same in one process, in-process stages and an MPI pipeline; pairs and exit points work
# together; ranges that cannot be paired are refused with a message; `ramp nll` sees the change.

pr_dir=$(mktemp -d "$E2E_TMP/pairs.XXXXXX")
L16T=$RAMP_SHARED/models/lite16-tasks/model-f32.gguf
[ -f "$L16T" ] || L16T=$LITE16/model-f32.gguf
cut -f1 "$REF"/lite16.greedy48.tsv "$REF"/lite16-tasks.greedy48.tsv | awk 'NF && !seen[$0]++' >"$pr_dir/prompts.txt"
echo "Question: What is the capital of France ?" >>"$pr_dir/prompts.txt"

# The baseline without pairs, then pairs in the middle (never the first or last layer).
ramp generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0
cp "$OUT" "$pr_dir/plain.txt"
ramp generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0 --parallel-layers 4-11
cp "$OUT" "$pr_dir/paired.txt"
[ "$RC" -eq 0 ] && [ -s "$pr_dir/paired.txt" ] && ! cmp -s "$pr_dir/plain.txt" "$pr_dir/paired.txt"
check $? "--parallel-layers 4-11 runs in one process and changes the text (pairs are another computation)" \
    "$(last_run_details)"
ramp generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0 --parallel-layers 4-11 --stages 3
[ "$RC" -eq 0 ] && cmp -s "$OUT" "$pr_dir/paired.txt"
check $? "--parallel-layers 4-11 --stages 3 in one process: the same text as one stage" "$(last_run_details)"
if have_mpi; then
    mpi_run 120 4 generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0 --parallel-layers 4-11 --timeout 30
    [ "$RC" -eq 0 ] && cmp -s "$OUT" "$pr_dir/paired.txt"
    check $? "--parallel-layers 4-11 on mpirun -np 4 (3 stages): the same text as one process" \
        "$(diff "$pr_dir/paired.txt" "$OUT" | head -n 4); $(last_run_details)"
    mpi_run 120 3 generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0 --parallel-layers 4-11 \
        --layers 0-7,8-15 --timeout 30
    [ "$RC" -eq 0 ] && cmp -s "$OUT" "$pr_dir/paired.txt"
    check $? "--parallel-layers 4-11 with --layers 0-7,8-15 on 2 stages: the same text" "$(last_run_details)"
fi

# The second form: two ranks per stage, computing a pair's two layers at the same time.
if have_mpi; then
    for np in 3 5 7; do
        mpi_run 120 $np generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0 --parallel-layers 4-11 \
            --pair-ranks on --timeout 30
        [ "$RC" -eq 0 ] && cmp -s "$OUT" "$pr_dir/paired.txt"
        check $? "--pair-ranks on, mpirun -np $np ($(((np - 1) / 2)) stage(s), each with a partner rank): the fused text" \
            "$(diff "$pr_dir/paired.txt" "$OUT" | head -n 4); $(last_run_details)"
    done
    # the partner rank holds its layers' keys and values in the job's KV type too
    ramp generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0 --parallel-layers 4-11 --kv-type f16
    cp "$OUT" "$pr_dir/paired-f16kv.txt"
    mpi_run 120 3 generate -m "$L16T" -f "$pr_dir/prompts.txt" -n 24 --temp 0 --parallel-layers 4-11 \
        --pair-ranks on --kv-type f16 --timeout 30
    [ "$RC" -eq 0 ] && [ -s "$pr_dir/paired-f16kv.txt" ] && cmp -s "$OUT" "$pr_dir/paired-f16kv.txt"
    check $? "--pair-ranks on --kv-type f16, mpirun -np 3: the fused text with the fp16 cache" \
        "$(diff "$pr_dir/paired-f16kv.txt" "$OUT" | head -n 4); $(last_run_details)"
    mpi_run 60 4 generate -m "$L16T" -p "Review: a fine film" -n 2 --parallel-layers 4-11 --pair-ranks on --timeout 20
    [ "$RC" -ne 0 ] && grep -q "needs 1 + 2P ranks" "$ERR"
    check $? "--pair-ranks on with an even number of ranks is refused" "$(last_run_details)"
fi
ramp generate -m "$L16T" -p "Review: a fine film" -n 2 --parallel-layers 4-11 --pair-ranks on
[ "$RC" -eq 1 ] && grep -q "needs an MPI job" "$ERR"
check $? "--pair-ranks on in one process is refused (the pairs run fused there)" "$(last_run_details)"

# Pairs and exits together: exit points on pair boundaries, the same answers on 1 process and 3 stages.
SST2DEV=$RAMP_SHARED/data/sst2/stsa.binary.dev
ramp eval -m "$L16T" --ctx 256 --task sst2 --data "$SST2DEV" --limit 60 --parallel-layers 4-11 \
    --exit-layers 4,8,12 --exit none --json "$pr_dir/eval-none.json"
ramp exit-train -m "$L16T" --ctx 256 --task sst2 --data "$RAMP_SHARED/data/sst2/stsa.binary.train" --limit 120 \
    --parallel-layers 4-11 --exit-layers 4,8,12 -o "$pr_dir/paired.svm"
check $RC "exit-train with --parallel-layers 4-11 and exit points 4,8,12" "$(last_run_details)"
ramp eval -m "$L16T" --ctx 256 --task sst2 --data "$SST2DEV" --limit 60 --parallel-layers 4-11 \
    --exit "svm:$pr_dir/paired.svm" --json "$pr_dir/eval1.json"
check $RC "eval with pairs and exits together in one process" "$(last_run_details)"
if have_mpi; then
    mpi_run 120 4 eval -m "$L16T" --ctx 256 --task sst2 --data "$SST2DEV" --limit 60 --parallel-layers 4-11 \
        --exit "svm:$pr_dir/paired.svm" --json "$pr_dir/eval3.json" --timeout 30
    same=$(python3 -c "
import json,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
print(all(a[k]==b[k] for k in ['labels_full','labels_exit','exit_histogram','pruning_ratio']))" \
        "$pr_dir/eval1.json" "$pr_dir/eval3.json" 2>&1)
    [ "$RC" -eq 0 ] && [ "$same" = True ]
    check $? "pairs and exits on 3 stages: the same answers, exits and pruning as one process" \
        "$same; $(last_run_details)"
    mpi_run 180 7 eval -m "$L16T" --ctx 256 --task sst2 --data "$SST2DEV" --limit 60 --parallel-layers 4-11 \
        --exit "svm:$pr_dir/paired.svm" --pair-ranks on --json "$pr_dir/eval7.json" --timeout 30
    same=$(python3 -c "
import json,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
print(all(a[k]==b[k] for k in ['labels_full','labels_exit','exit_histogram','pruning_ratio']))" \
        "$pr_dir/eval1.json" "$pr_dir/eval7.json" 2>&1)
    [ "$RC" -eq 0 ] && [ "$same" = True ]
    check $? "pairs on partner ranks with exits (mpirun -np 7): the same answers as one process" "$same; $(last_run_details)"
fi

# What cannot be paired is refused, naming the layers.
pr_refused() {
    local what=$1 needle=$2
    shift 2
    ramp generate -m "$L16T" -p "Review: a fine film" -n 2 "$@"
    { [ "$RC" -eq 1 ] || [ "$RC" -eq 2 ]; } && grep -q -- "$needle" "$ERR"
    check $? "$what: exit $RC naming it" "$(last_run_details)"
}
pr_refused "--parallel-layers 4-10 (an odd number of layers)" "even number of layers" --parallel-layers 4-10
pr_refused "--parallel-layers 10-17 (past the last layer)" "the model has layers 0-15" --parallel-layers 10-17
pr_refused "--layers starting a stage inside a pair" "stage 2 starts at layer 5, inside the parallel pair 4,5" \
    --parallel-layers 4-11 --stages 2 --layers 0-4,5-15
pr_refused "an exit point inside a pair" "exit point after 5 layers falls inside the parallel pair 4,5" \
    --parallel-layers 4-11 --exit-layers 5

# ramp nll: held-out documents, with and without pairs.
ramp nll -m "$L16T" --task sst2 --data "$SST2DEV" --limit 40 --json "$pr_dir/nll-plain.json"
check $RC "ramp nll scores held-out documents" "$(last_run_details)"
ramp nll -m "$L16T" --task sst2 --data "$SST2DEV" --limit 40 --parallel-layers 4-11 --json "$pr_dir/nll-paired.json"
python3 -c "
import json,sys
a,b=json.load(open(sys.argv[1])),json.load(open(sys.argv[2]))
assert a['tokens']==b['tokens'] and 0 < a['nll_per_token'] < 10 and a['nll_per_token'] != b['nll_per_token']
" "$pr_dir/nll-plain.json" "$pr_dir/nll-paired.json" 2>/dev/null
check $? "ramp nll --parallel-layers scores the same tokens and a different NLL" "$(last_run_details)"
