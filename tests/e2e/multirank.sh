# multirank.sh: a pipeline of several ranks (or in-process stages) prints exactly what one
# process prints, and bad layer splits are refused with a message.
#
# Prompts: every reference prompt (all three TSVs) plus a few of our own, one file, -n 24.
# Each model runs once in one process (the baseline); then under mpirun -np 2..5 (1..4 stages)
# and in-process --stages 3 and an explicit --layers split; stdout must match byte for byte.

mr_dir=$(mktemp -d "$E2E_TMP/multirank.XXXXXX")
mr_prompts=$mr_dir/prompts.txt
cut -f1 "$REF"/stories260K.greedy64.tsv "$REF"/base16.greedy48.tsv "$REF"/lite16.greedy48.tsv |
    awk 'NF && !seen[$0]++' >"$mr_prompts"
cat >>"$mr_prompts" <<'EOF'
A
The little bird sang a song and
Tom said, "Hello!\nHow are you?"
1 2 3 4 5
Question: What is the capital of France ?
EOF
mr_count=$(wc -l <"$mr_prompts")
MR_TOKENS=24

# mr_same WHAT BASELINE: the last run succeeded and printed exactly BASELINE.
mr_same() {
    local what=$1 baseline=$2
    if [ "$RC" -ne 0 ] || has_sanitizer_report; then
        fail "$what" "$(last_run_details)"
    elif cmp -s "$OUT" "$baseline"; then
        pass "$what"
    else
        fail "$what" "stdout differs from one process: $(cmp "$OUT" "$baseline" 2>&1 | head -n 1)" \
            "$(diff "$baseline" "$OUT" | head -n 6)"
    fi
}

# mr_model LABEL NPS MODEL_ARGS...: baseline, then mpirun with each -np in NPS.
mr_model() {
    local label=$1 nps=$2
    shift 2
    local baseline=$mr_dir/$label.single
    ramp generate "$@" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0
    cp "$OUT" "$baseline"
    if [ "$RC" -ne 0 ] || has_sanitizer_report || [ "$(wc -l <"$baseline")" -lt "$mr_count" ]; then
        fail "$label: one process, $mr_count prompts (baseline)" "$(last_run_details)"
        return
    fi
    pass "$label: one process, $mr_count prompts (baseline)"
    ramp generate "$@" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --stages 3
    mr_same "$label: --stages 3 in one process equals one stage" "$baseline"
    if ! have_mpi; then
        skip "$label: mpirun equals one process" "mpirun not found"
        return
    fi
    local np
    for np in $nps; do
        mpi_run 120 "$np" generate "$@" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --timeout 30
        mr_same "$label: mpirun -np $np ($((np - 1)) stage$([ "$np" -gt 2 ] && echo s)) equals one process" "$baseline"
    done
}

mr_model stories260K-f32 "2 3 4 5" -m "$STORIES/stories260K-f32.gguf"
mr_model lite16-f32 "2 3 4 5" -m "$LITE16/model-f32.gguf"
mr_model base16-q8_0 "3" -m "$BASE16/model-q8_0.gguf"
mr_model stories260K.bin "4" -m "$STORIES/stories260K.bin" --tokenizer "$TOK"

# Explicit splits equal the baseline too (uneven, one-layer stages).
L16=$LITE16/model-f32.gguf
ramp generate -m "$L16" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --stages 4 --layers 0-0,1-9,10-14,15-15
mr_same "lite16: --stages 4 --layers 0-0,1-9,10-14,15-15 equals one process" "$mr_dir/lite16-f32.single"
ramp generate -m "$STORIES/stories260K-f32.gguf" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --stages 5
mr_same "stories260K: --stages 5 (one layer per stage) equals one process" "$mr_dir/stories260K-f32.single"
if have_mpi; then
    mpi_run 120 4 generate -m "$L16" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --layers 0-2,3-12,13-15 --timeout 30
    mr_same "lite16: mpirun -np 4 --layers 0-2,3-12,13-15 equals one process" "$mr_dir/lite16-f32.single"
fi
# Micro-batching knobs change the schedule, never the tokens.
ramp generate -m "$L16" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --stages 2 --max-sequences 3 \
    --micro-batches 2 --batch-tokens 5
mr_same "lite16: --stages 2 --max-sequences 3 --micro-batches 2 --batch-tokens 5 equals one process" \
    "$mr_dir/lite16-f32.single"

# --- bad splits: exit 1 or 2 with a message about the layers ----------------------------------
# bad_split WHAT RUNNER ARGS...: RUNNER is "local" or an -np for mpirun.
bad_split() {
    local what=$1 runner=$2
    shift 2
    if [ "$runner" = local ]; then
        run 30 "$RAMP_BIN" generate -p "Once upon a time" -n 4 "$@"
    else
        if ! have_mpi; then skip "$what" "mpirun not found"; return; fi
        mpi_run 60 "$runner" generate -p "Once upon a time" -n 4 --timeout 20 "$@"
    fi
    if { [ "$RC" -eq 1 ] || [ "$RC" -eq 2 ]; } && grep -qi "layer" "$ERR" && ! has_sanitizer_report; then
        pass "$what: exit $RC, $(grep -i -m 1 "layer" "$ERR" | cut -c1-100)"
    elif [ "$runner" != local ] && [ "$RC" -ne 0 ] && [ "$RC" -lt 124 ] && grep -qi "layer" "$ERR" && ! has_sanitizer_report; then
        pass "$what: job failed ($RC), $(grep -i -m 1 "layer" "$ERR" | cut -c1-100)"
    else
        fail "$what: exit 1 or 2 with a message about the layers" "$(last_run_details)"
    fi
}
bad_split "--layers 0-3,5-15 (gap)" local -m "$L16" --stages 2 --layers 0-3,5-15
bad_split "--layers 0-5,5-15 (overlap)" local -m "$L16" --stages 2 --layers 0-5,5-15
bad_split "--layers 0-7,8-15 with --stages 3 (wrong stage count)" local -m "$L16" --stages 3 --layers 0-7,8-15
bad_split "--layers 0-7,8-14 (layer 15 missing)" local -m "$L16" --stages 2 --layers 0-7,8-14
bad_split "--layers 0-7,8-16 (past the last layer)" local -m "$L16" --stages 2 --layers 0-7,8-16
bad_split "--layers 15-0 (backwards)" local -m "$L16" --stages 1 --layers 15-0
bad_split "--layers 0-x (not a number)" local -m "$L16" --stages 2 --layers 0-x,9-15
bad_split "--stages 6 on the 5-layer model" local -m "$STORIES/stories260K-f32.gguf" --stages 6
bad_split "mpirun -np 7 (6 stages) on the 5-layer model" 7 -m "$STORIES/stories260K-f32.gguf"
bad_split "mpirun -np 3 with a 3-range --layers" 3 -m "$L16" --layers 0-3,4-9,10-15
