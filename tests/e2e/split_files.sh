# split_files.sh: a model split over several GGUF files, as llama.cpp's gguf-split writes them and
# large models are published (NAME-00001-of-00004.gguf, ...), is opened by its first part and
# computes exactly what the same model in one file computes, in one process and across pipeline
# stages; a later part, a missing part or a renamed first part is refused with a message that
# names the file to open or the file that is missing.
#
# The files come from `ramp synth --parts` (the same seed as a one-file copy, so the same
# weights). llama.cpp's llama-simple reads the parts too and writes the one-file text (skipped,
# with the reason, where the peer cannot run): the parts are in gguf-split's own format.

split_dir=$(mktemp -d "$E2E_TMP/split.XXXXXX")
split_shape=(--dim 128 --layers 4 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 11 --type q4_0)
split_first=$split_dir/model-00001-of-00004.gguf
printf '%s\n' "Once upon a time" "Hello world" "The cat sat on the mat and" "1 2 3 4 5" >"$split_dir/prompts.txt"

ramp synth -o "$split_dir/whole.gguf" "${split_shape[@]}"
check $? "split: ramp synth writes the one-file model" "$(last_run_details)"
ramp synth -o "$split_dir/model" --parts 4 "${split_shape[@]}"
[ "$RC" -eq 0 ] && [ -s "$split_first" ] && [ -s "$split_dir/model-00004-of-00004.gguf" ] &&
    [ ! -e "$split_dir/model-00005-of-00004.gguf" ]
check $? "split: ramp synth --parts 4 writes model-00001-of-00004.gguf .. model-00004-of-00004.gguf" \
    "$(last_run_details)" "$(ls "$split_dir")"

ramp generate -m "$split_dir/whole.gguf" -f "$split_dir/prompts.txt" -n 16 --temp 0
cp "$OUT" "$split_dir/whole.txt"
ramp generate -m "$split_first" -f "$split_dir/prompts.txt" -n 16 --temp 0
[ "$RC" -eq 0 ] && [ -s "$OUT" ] && cmp -s "$OUT" "$split_dir/whole.txt"
check $? "split: the four parts, opened by the first, print what the one-file model prints" \
    "$(last_run_details)" "$(diff "$split_dir/whole.txt" "$OUT" | head -n 4)"
two_stages_print "split: mpirun -np 3 (2 stages) on the parts prints the one-file text" "$split_dir/whole.txt" \
    -m "$split_first" -f "$split_dir/prompts.txt" -n 16

# split_refused WHAT MODEL TEXT: generate on MODEL exits 1 with TEXT in its message.
split_refused() {
    local what=$1 model=$2 text=$3
    run 20 "$RAMP_BIN" generate -m "$model" -p "Hello" -n 2 --temp 0
    if [ "$RC" -eq 1 ] && ! has_sanitizer_report && grep -qF -- "$text" "$ERR"; then
        pass "split: $what: exit 1, $(head -n 1 "$ERR" | cut -c1-120)"
    else
        fail "split: $what (expected exit 1 and '$text' in the message)" "$(last_run_details)"
    fi
}

split_refused "a later part names the first" "$split_dir/model-00002-of-00004.gguf" "open its first part, $split_first"
cp "$split_first" "$split_dir/renamed.gguf"
split_refused "a renamed first part cannot find the others" "$split_dir/renamed.gguf" \
    "its name does not end in -00001-of-00004.gguf"
mv "$split_dir/model-00003-of-00004.gguf" "$split_dir/away.gguf"
split_refused "a missing part is named" "$split_first" "part 3 of 4 of this split model: $split_dir/model-00003-of-00004.gguf"
cp "$split_dir/model-00004-of-00004.gguf" "$split_dir/model-00003-of-00004.gguf"
split_refused "a part in the wrong place is refused" "$split_first" "says it is part 4 of 4"
mv "$split_dir/away.gguf" "$split_dir/model-00003-of-00004.gguf"

. "$here/../scripts/llama-peer.sh"
SPLIT_PEER=${BENCH_PEER:-$RAMP_SHARED/peers/llama.cpp}
if peer_usable "$SPLIT_PEER" llama-simple; then
    run 60 "$SPLIT_PEER/llama-simple" -m "$split_first" -n 16 "Once upon a time"
    cp "$OUT" "$split_dir/llama-parts.txt"
    parts_rc=$RC
    run 60 "$SPLIT_PEER/llama-simple" -m "$split_dir/whole.gguf" -n 16 "Once upon a time"
    [ "$parts_rc" -eq 0 ] && [ "$RC" -eq 0 ] && [ -s "$OUT" ] && cmp -s "$OUT" "$split_dir/llama-parts.txt"
    check $? "split: llama.cpp's llama-simple reads the parts and writes its one-file text" \
        "$(last_run_details)" "parts: $(head -c 200 "$split_dir/llama-parts.txt")"
else
    skip "split: llama.cpp reads the parts" "$PEER_PROBLEM"
fi
