# reference.sh: greedy output must equal the reference continuations token for token.
#
# $RAMP_SHARED/reference/*.tsv hold "prompt TAB n TAB expected" (expected = prompt + continuation,
# newlines written as \n) on which llama2.c's `run` and llama.cpp agree. For each line and each
# file format of the model, `generate --temp 0 -n n -p prompt` must print exactly expected + "\n".
# Then all prompts of a file at once (-f, batched), which must give the same bytes.

ref_dir=$(mktemp -d "$E2E_TMP/reference.XXXXXX")

# reference_check TSV LABEL MODEL_ARGS...
reference_check() {
    local tsv=$1 label=$2
    shift 2
    if [ ! -f "$tsv" ]; then
        fail "reference $label: $(basename "$tsv") exists" "missing $tsv"
        return
    fi
    local prompt n expected i=0 batch_n='' batch_ok=1
    : >"$ref_dir/batch.prompts"
    : >"$ref_dir/batch.expected"
    while IFS=$'\t' read -r prompt n expected || [ -n "$prompt" ]; do
        [ -z "$prompt" ] && continue
        i=$((i + 1))
        unescape_text "$expected" >"$ref_dir/expected"
        echo >>"$ref_dir/expected"
        ramp generate "$@" -p "$prompt" -n "$n" --temp 0
        local what="reference $label: '$prompt' -n $n"
        if [ "$RC" -ne 0 ] || has_sanitizer_report; then
            fail "$what" "$(last_run_details)"
        elif cmp -s "$OUT" "$ref_dir/expected"; then
            pass "$what"
        else
            fail "$what" "expected: $(head -c 400 "$ref_dir/expected" | od -An -c | head -n 4)" \
                "got:      $(head -c 400 "$OUT" | od -An -c | head -n 4)" \
                "first difference: $(cmp "$OUT" "$ref_dir/expected" 2>&1 | head -n 1)"
        fi
        printf '%s\n' "$prompt" >>"$ref_dir/batch.prompts"
        cat "$ref_dir/expected" >>"$ref_dir/batch.expected"
        if [ -z "$batch_n" ]; then batch_n=$n; elif [ "$batch_n" != "$n" ]; then batch_ok=0; fi
    done <"$tsv"
    if [ "$i" -eq 0 ]; then
        fail "reference $label: $(basename "$tsv") has lines"
        return
    fi
    if [ "$batch_ok" -ne 1 ]; then
        skip "reference $label: all $i prompts in one batch" "token budgets differ between lines"
        return
    fi
    ramp generate "$@" -f "$ref_dir/batch.prompts" -n "$batch_n" --temp 0
    if [ "$RC" -ne 0 ] || has_sanitizer_report; then
        fail "reference $label: all $i prompts in one batch (-f)" "$(last_run_details)"
    elif cmp -s "$OUT" "$ref_dir/batch.expected"; then
        pass "reference $label: all $i prompts in one batch (-f)"
    else
        fail "reference $label: all $i prompts in one batch (-f)" \
            "first difference: $(cmp "$OUT" "$ref_dir/batch.expected" 2>&1 | head -n 1)"
    fi
}

reference_check "$REF/stories260K.greedy64.tsv" "stories260K.bin" -m "$STORIES/stories260K.bin" --tokenizer "$TOK"
reference_check "$REF/stories260K.greedy64.tsv" "stories260K-f32.gguf" -m "$STORIES/stories260K-f32.gguf"
reference_check "$REF/stories260K.greedy64.tsv" "stories260K-f16.gguf" -m "$STORIES/stories260K-f16.gguf"
reference_check "$REF/base16.greedy48.tsv" "base16/model.bin" -m "$BASE16/model.bin" --tokenizer "$TOK"
reference_check "$REF/base16.greedy48.tsv" "base16/model-f32.gguf" -m "$BASE16/model-f32.gguf"
reference_check "$REF/lite16.greedy48.tsv" "lite16/model.bin" -m "$LITE16/model.bin" --tokenizer "$TOK"
reference_check "$REF/lite16.greedy48.tsv" "lite16/model-f32.gguf" -m "$LITE16/model-f32.gguf"

# Quantized base16 files: no reference text (quantization may change greedy picks), but they
# must load, run and continue the prompt.
for quant in f16 q8_0 q4_0; do
    prompt="Review: a gripping, funny and moving film"
    ramp generate -m "$BASE16/model-$quant.gguf" -p "$prompt" -n 16 --temp 0
    what="base16/model-$quant.gguf generates"
    if [ "$RC" -ne 0 ] || has_sanitizer_report; then
        fail "$what" "$(last_run_details)"
    elif [ "$(head -c ${#prompt} "$OUT")" != "$prompt" ]; then
        fail "$what" "stdout does not start with the prompt: $(head -c 200 "$OUT")"
    elif [ "$(wc -c <"$OUT")" -le $((${#prompt} + 1)) ]; then
        fail "$what" "no continuation: $(head -c 200 "$OUT")"
    else
        pass "$what ($(($(wc -c <"$OUT") - ${#prompt} - 1)) bytes of continuation)"
    fi
done

# Edge cases of the CLI on a good model.
G=$STORIES/stories260K-f32.gguf
ramp generate -m "$G" -p "Once upon a time" -n 0 --temp 0
check "$([ "$RC" -eq 0 ] && [ "$(cat "$OUT")" = "Once upon a time" ] && echo 0 || echo 1)" \
    "-n 0 prints the prompt alone" "$(last_run_details)" "stdout: $(head -c 200 "$OUT")"
printf 'Once upon a time\nOne day, Tom\\nsaid\n' >"$ref_dir/escaped.prompts"
ramp generate -m "$G" -f "$ref_dir/escaped.prompts" -n 0 --temp 0
printf 'Once upon a time\nOne day, Tom\nsaid\n' >"$ref_dir/escaped.expected"
check "$([ "$RC" -eq 0 ] && cmp -s "$OUT" "$ref_dir/escaped.expected" && echo 0 || echo 1)" \
    "-f: \\n in a prompt line stands for a newline" "$(last_run_details)" "stdout: $(head -c 200 "$OUT" | od -An -c)"
# Sampling: a fixed seed reproduces, and the stages do not change it either.
ramp generate -m "$G" -p "Once upon a time" -n 24 --temp 0.8 --top-p 0.9 --seed 7
cp "$OUT" "$ref_dir/sampled.1"
ramp generate -m "$G" -p "Once upon a time" -n 24 --temp 0.8 --top-p 0.9 --seed 7 --stages 2
check "$([ "$RC" -eq 0 ] && [ -s "$OUT" ] && cmp -s "$OUT" "$ref_dir/sampled.1" && echo 0 || echo 1)" \
    "sampling with --seed is reproducible (1 and 2 stages)" "$(last_run_details)"
