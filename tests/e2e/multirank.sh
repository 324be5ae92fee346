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

# --- --kv-type f16: keys and values held as fp16 ------------------------------------------------
# Rounding them changes the sums, so the fp16 cache has its own baseline, which every split and
# thread count must print byte for byte as the fp32 one does; it holds half the bytes; and greedy
# text still follows the fp32 cache's on most prompts (a share, reported: rounding may flip a pick).
mr_model lite16-f16kv "3" -m "$L16" --kv-type f16
ramp generate -m "$L16" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --kv-type f16 --stages 2 --threads 1
mr_same "lite16 --kv-type f16: --stages 2 --threads 1 equals one process, 2 threads" "$mr_dir/lite16-f16kv.single"
kv_peak() { jq '[.stages[].kv_bytes_peak] | add' "$1" 2>/dev/null; }
ramp generate -m "$L16" -p "Once upon a time" -n 8 --temp 0 --metrics-json "$mr_dir/kv32.json"
ramp generate -m "$L16" -p "Once upon a time" -n 8 --temp 0 --kv-type f16 --metrics-json "$mr_dir/kv16.json"
kv32=$(kv_peak "$mr_dir/kv32.json")
kv16=$(kv_peak "$mr_dir/kv16.json")
kv_named=$(jq -r .kv_type "$mr_dir/kv16.json" 2>/dev/null)
if [ -n "$kv32" ] && [ -n "$kv16" ] && [ "$kv16" -gt 0 ] && [ $((kv16 * 2)) -le $((kv32 + 1000)) ] &&
    [ $((kv16 * 2)) -ge $((kv32 - 1000)) ] && [ "$kv_named" = f16 ]; then
    pass "--kv-type f16 holds half the KV bytes ($kv16 against $kv32), and the metrics name it"
else
    fail "--kv-type f16 holds half the KV bytes" "peak KV bytes: f16 '$kv16', f32 '$kv32'; metrics kv_type '$kv_named'"
fi
# (output lines: a prompt with a newline prints two)
all_lines=$(wc -l <"$mr_dir/lite16-f32.single")
same_lines=$(awk 'NR == FNR { f32[FNR] = $0; next } f32[FNR] == $0' "$mr_dir/lite16-f32.single" \
    "$mr_dir/lite16-f16kv.single" | wc -l)
if [ "$same_lines" -ge $((all_lines / 2)) ] && [ "$all_lines" -ge "$mr_count" ]; then
    pass "--kv-type f16: $same_lines of $all_lines output lines exactly as with the fp32 cache"
else
    fail "--kv-type f16 follows the fp32 cache on most prompts" "$same_lines of $all_lines lines identical"
fi
run 30 "$RAMP_BIN" generate -m "$L16" -p "Once upon a time" -n 4 --kv-type q4
if [ "$RC" -eq 2 ] && grep -q "kv-type expects f32 or f16, got 'q4'" "$ERR" && ! has_sanitizer_report; then
    pass "--kv-type q4 is refused: $(head -n 1 "$ERR" | cut -c1-80)"
else
    fail "--kv-type q4 is refused with exit 2 and a message" "$(last_run_details)"
fi

# --- --huge-pages: which pages hold the weights, never what they say -----------------------------
# reread drops a slice cached in small pages from the page cache and reads it again into 2 MiB
# pages (model/weight_pages.h). The copy is written 4 KiB at a time, as a download is, so that its
# cache starts in small folios; the mode reaches every rank in its Setup.
hp_model=$mr_dir/lite16-small-folios.gguf
dd if="$L16" of="$hp_model" bs=4k status=none
if have_mpi; then
    mpi_run 120 3 generate -m "$hp_model" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --timeout 30 \
        --huge-pages reread --metrics-json "$mr_dir/huge-pages.json"
    mr_same "lite16 --huge-pages reread: mpirun -np 3 equals one process" "$mr_dir/lite16-f32.single"
    huge=$(jq '[.stages[].weight_bytes_huge] | add' "$mr_dir/huge-pages.json" 2>/dev/null)
    held=$(jq '[.stages[].weight_bytes] | add' "$mr_dir/huge-pages.json" 2>/dev/null)
    if [[ "$huge" =~ ^[0-9]+$ ]] && [[ "$held" =~ ^[0-9]+$ ]] && [ "$huge" -le "$held" ]; then
        pass "--huge-pages reread: the stages report $huge of $held weight bytes in 2 MiB pages"
    else
        fail "--huge-pages reread: the stages report their bytes in 2 MiB pages" "weight_bytes_huge '$huge', weight_bytes '$held'"
    fi
else
    skip "lite16 --huge-pages reread: mpirun -np 3 equals one process" "mpirun not found"
fi
ramp generate -m "$hp_model" -f "$mr_prompts" -n "$MR_TOKENS" --temp 0 --stages 2 --huge-pages off
mr_same "lite16 --huge-pages off: --stages 2 equals one process" "$mr_dir/lite16-f32.single"
rm -f "$hp_model"
run 30 "$RAMP_BIN" generate -m "$L16" -p "Once upon a time" -n 4 --huge-pages yes
if [ "$RC" -eq 2 ] && grep -q "huge-pages expects on, reread or off, got 'yes'" "$ERR" && ! has_sanitizer_report; then
    pass "--huge-pages yes is refused: $(head -n 1 "$ERR" | cut -c1-80)"
else
    fail "--huge-pages yes is refused with exit 2 and a message" "$(last_run_details)"
fi

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
