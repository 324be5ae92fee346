# corrupt.sh: damaged, missing and wrong input files end in a clean error, never a crash.
#
# Copies of the shared files are truncated and overwritten (0xff bytes) at many offsets across
# every part of the file: GGUF header, metadata, tensor directory and data; the llama2.c header
# and data; the llama2.c tokenizer. For each, `generate` must exit with status exactly 1 and a
# message on stderr naming the damaged file, or 0 (a changed data byte can leave a loadable
# file) with the prompt on stdout; never a signal, a timeout or a sanitizer report.
# Then: a missing file, a directory, an empty file, a non-model file (exit 1 with a message)
# and bad usage (exit 2).

corrupt_dir=$(mktemp -d "$E2E_TMP/corrupt.XXXXXX")
CORRUPT_PROMPT="Once upon a time"

# corrupt_expect_clean WHAT NAME ARGS...: runs generate ARGS and judges the outcome; NAME is the
# damaged file's name, which an error message must contain.
corrupt_expect_clean() {
    local what=$1 name=$2
    shift 2
    run 20 "$RAMP_BIN" generate "$@" -p "$CORRUPT_PROMPT" -n 4 --temp 0
    if has_sanitizer_report; then
        fail "$what: no sanitizer report" "$(last_run_details)" "$(grep -m 3 -E "$SANITIZER_PATTERN" "$ERR")"
    elif [ "$RC" -eq 1 ]; then
        if [ ! -s "$ERR" ]; then
            fail "$what: exit 1 with a message" "stderr is empty"
        elif ! grep -qF "$name" "$ERR"; then
            fail "$what: the message names $name" "$(last_run_details)"
        else
            pass "$what: exit 1, $(head -n 1 "$ERR" | cut -c1-110)"
        fi
    elif [ "$RC" -eq 0 ]; then
        if [ "$(head -c ${#CORRUPT_PROMPT} "$OUT")" = "$CORRUPT_PROMPT" ]; then
            pass "$what: still loadable (exit 0)"
        else
            fail "$what: exit 0 prints the prompt" "stdout: $(head -c 200 "$OUT")"
        fi
    else
        local kind="exit status $RC"
        [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ] && kind="timed out (status $RC)"
        [ "$RC" -gt 128 ] && [ "$RC" -ne 137 ] && kind="killed by signal $((RC - 128))"
        fail "$what: clean exit 1 or 0, got $kind" "$(last_run_details)"
    fi
}

# fresh_copy SOURCE NAME: a writable copy of SOURCE at $corrupt_dir/NAME; echoes its path.
fresh_copy() {
    cp "$1" "$corrupt_dir/$2" && chmod u+w "$corrupt_dir/$2"
    echo "$corrupt_dir/$2"
}

# overwrite FILE OFFSET COUNT: COUNT bytes of 0xff at OFFSET, in place.
overwrite() {
    head -c "$3" /dev/zero | tr '\0' '\377' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# --- GGUF: stories260K-f32.gguf ----------------------------------------------------------------
# Layout (1,185,376 bytes): header 0-23 (magic, version, tensor count at 8, metadata count at 16);
# 19 metadata entries 24-11346 (tokens 24, scores 6470, token types 8563, architecture 10705,
# context length 11016, embedding length 11052, block count 11218, rms eps 11293); tensor
# directory 11347-14151 (48 entries: token_embd 11347, output_norm 11404, output 11454,
# blk.0.attn_q 11507 ... blk.4.ffn_norm 14099); data from 14176 (token_embd 14176, output 145504,
# blk.0 276576.., blk.4.ffn_norm 1185120).
gguf_src=$STORIES/stories260K-f32.gguf
gguf_truncations="1 3 4 5 8 12 16 20 24 28 32 100 1000 6470 6480 8563 10660 10705 10720 10790 11016
    11052 11218 11293 11300 11347 11360 11404 11500 12000 13000 14099 14152 14160 14176 14177 100000
    145504 262400 500000 1000000 1170944 1185375"
for offset in $gguf_truncations; do
    f=$(fresh_copy "$gguf_src" trunc.gguf)
    truncate -s "$offset" "$f"
    corrupt_expect_clean "stories260K-f32.gguf truncated to $offset bytes" trunc.gguf -m "$f"
done
# OFFSET:COUNT pairs: counts, string lengths, value types, key bytes, tensor names, dimension
# counts, dimensions, tensor types, data offsets, data.
gguf_overwrites="0:4 4:4 8:8 12:4 16:8 24:8 32:4 40:8 6470:8 6478:4 6498:4 6502:8 8563:8 8590:4
    10660:8 10705:8 10713:8 10735:8 10745:4 10790:4 11016:4 11040:4 11048:4 11052:8 11086:4
    11218:4 11240:4 11247:4 11250:4 11280:4 11330:4 11343:4 11347:8 11355:4 11372:4 11376:8
    11384:8 11392:4 11396:8 11404:8 11436:8 11500:4 11507:8 11520:8 11540:4 11548:8 11555:8
    14099:4 14120:8 14140:8 14144:4 14150:2 14176:4 14180:64 300000:64 1185372:4"
for spec in $gguf_overwrites; do
    f=$(fresh_copy "$gguf_src" over.gguf)
    overwrite "$f" "${spec%:*}" "${spec#*:}"
    corrupt_expect_clean "stories260K-f32.gguf with ${spec#*:} bytes of 0xff at ${spec%:*}" over.gguf -m "$f"
done
# A quantized file: block data and the directory of a Q4_0 model.
q4_src=$BASE16/model-q4_0.gguf
for spec in 11424:8 11460:4 11527:8 11700:8 500000:256; do
    f=$(fresh_copy "$q4_src" over-q4.gguf)
    overwrite "$f" "${spec%:*}" "${spec#*:}"
    corrupt_expect_clean "base16/model-q4_0.gguf with ${spec#*:} bytes of 0xff at ${spec%:*}" over-q4.gguf -m "$f"
done
for offset in 11424 100000 1912991; do
    f=$(fresh_copy "$q4_src" trunc-q4.gguf)
    truncate -s "$offset" "$f"
    corrupt_expect_clean "base16/model-q4_0.gguf truncated to $offset bytes" trunc-q4.gguf -m "$f"
done

# --- llama2.c checkpoint: stories260K.bin (7 int32 header, then fp32 data) ----------------------
bin_src=$STORIES/stories260K.bin
for offset in 1 4 27 28 100 131100 300000 1056536 1056539; do
    f=$(fresh_copy "$bin_src" trunc.bin)
    truncate -s "$offset" "$f"
    corrupt_expect_clean "stories260K.bin truncated to $offset bytes" trunc.bin -m "$f" --tokenizer "$TOK"
done
for spec in 0:4 4:4 8:4 12:4 16:4 20:4 24:4 20:1 23:1 27:1 3:1 11:1 28:64 500000:64; do
    f=$(fresh_copy "$bin_src" over.bin)
    overwrite "$f" "${spec%:*}" "${spec#*:}"
    corrupt_expect_clean "stories260K.bin with ${spec#*:} bytes of 0xff at ${spec%:*}" over.bin -m "$f" --tokenizer "$TOK"
done

# --- llama2.c tokenizer: tok512.bin (int32 max length, then per token: f32 score, int32 length,
# bytes) -------------------------------------------------------------------------------------------
for offset in 1 3 4 8 12 100 3000 6226; do
    f=$(fresh_copy "$TOK" trunc-tok.bin)
    truncate -s "$offset" "$f"
    corrupt_expect_clean "tok512.bin truncated to $offset bytes" trunc-tok.bin -m "$bin_src" --tokenizer "$f"
done
for spec in 0:4 4:4 8:4 12:4 13:1 20:4 100:8 3000:8 6220:4; do
    f=$(fresh_copy "$TOK" over-tok.bin)
    overwrite "$f" "${spec%:*}" "${spec#*:}"
    corrupt_expect_clean "tok512.bin with ${spec#*:} bytes of 0xff at ${spec%:*}" over-tok.bin -m "$bin_src" --tokenizer "$f"
done

# --- wrong files --------------------------------------------------------------------------------
# wrong_file WHAT EXPECTED_IN_MESSAGE ARGS...: exit exactly 1 with a message containing the text.
wrong_file() {
    local what=$1 needle=$2
    shift 2
    run 20 "$RAMP_BIN" generate "$@" -p "$CORRUPT_PROMPT" -n 4
    if [ "$RC" -eq 1 ] && grep -qF -- "$needle" "$ERR" && ! has_sanitizer_report; then
        pass "$what: exit 1, $(head -n 1 "$ERR" | cut -c1-100)"
    else
        fail "$what: exit 1 with a message naming '$needle'" "$(last_run_details)"
    fi
}
wrong_file "missing model file" "$corrupt_dir/no-such-model.gguf" -m "$corrupt_dir/no-such-model.gguf"
mkdir -p "$corrupt_dir/a-directory.gguf"
wrong_file "a directory as the model" "a-directory.gguf: is a directory" -m "$corrupt_dir/a-directory.gguf"
: >"$corrupt_dir/empty.gguf"
wrong_file "an empty model file" "empty.gguf" -m "$corrupt_dir/empty.gguf"
: >"$corrupt_dir/empty.bin"
wrong_file "an empty llama2.c file" "empty.bin" -m "$corrupt_dir/empty.bin" --tokenizer "$TOK"
printf 'This is not a model, just a little text file that is long enough.\n' >"$corrupt_dir/notes.txt"
wrong_file "a text file as the model" "notes.txt" -m "$corrupt_dir/notes.txt"
wrong_file "a tokenizer as the model" "tok512.bin" -m "$TOK" --tokenizer "$TOK"
printf 'GGUF' >"$corrupt_dir/magic-only.gguf"
wrong_file "a GGUF magic and nothing else" "magic-only.gguf" -m "$corrupt_dir/magic-only.gguf"
wrong_file "llama2.c checkpoint without --tokenizer" "tokenizer" -m "$bin_src"
wrong_file "missing tokenizer file" "$corrupt_dir/no-such-tok.bin" -m "$bin_src" --tokenizer "$corrupt_dir/no-such-tok.bin"
wrong_file "a GGUF model as the tokenizer" "stories260K-f32.gguf" -m "$bin_src" --tokenizer "$gguf_src"
# A vocabulary-only GGUF (no tensors) is not a model.
vocab_only=$(ls "$RAMP_SHARED"/reference/vocab/*.gguf 2>/dev/null | head -n 1)
if [ -n "$vocab_only" ]; then
    wrong_file "a vocabulary-only GGUF as the model" "$(basename "$vocab_only")" -m "$vocab_only"
fi
# A prompts file that is missing or empty.
run 20 "$RAMP_BIN" generate -m "$gguf_src" -f "$corrupt_dir/no-such-prompts.txt" -n 4
check "$([ "$RC" -eq 1 ] || [ "$RC" -eq 2 ]; echo $?)" \
    "missing prompts file: exit 1 or 2 ($RC), $(head -n 1 "$ERR" | cut -c1-80)" "$(last_run_details)"
: >"$corrupt_dir/empty-prompts.txt"
run 20 "$RAMP_BIN" generate -m "$gguf_src" -f "$corrupt_dir/empty-prompts.txt" -n 4
check "$([ "$RC" -eq 1 ] || [ "$RC" -eq 2 ]; echo $?)" \
    "empty prompts file: exit 1 or 2 ($RC), $(head -n 1 "$ERR" | cut -c1-80)" "$(last_run_details)"

# --- bad usage: exit 2 with a message -----------------------------------------------------------
# usage_error WHAT ARGS...: `ramp ARGS` exits 2 and says something on stderr.
usage_error() {
    local what=$1
    shift
    run 20 "$RAMP_BIN" "$@"
    if [ "$RC" -eq 2 ] && [ -s "$ERR" ] && ! has_sanitizer_report; then
        pass "usage: $what: exit 2"
    else
        fail "usage: $what: exit 2 with a message" "$(last_run_details)"
    fi
}
usage_error "unknown flag" generate -m "$gguf_src" -p hi --no-such-flag
usage_error "-n abc" generate -m "$gguf_src" -p hi -n abc
usage_error "-n -1" generate -m "$gguf_src" -p hi -n -1
usage_error "missing -m" generate -p hi -n 4
usage_error "missing prompt" generate -m "$gguf_src" -n 4
usage_error "--temp abc" generate -m "$gguf_src" -p hi --temp abc
usage_error "--stages 0" generate -m "$gguf_src" -p hi --stages 0
usage_error "--ctx 1 (no room to generate)" generate -m "$gguf_src" -p hi --ctx 1
usage_error "--timeout -5" generate -m "$gguf_src" -p hi --timeout -5
usage_error "--max-sequences x" generate -m "$gguf_src" -p hi --max-sequences x
usage_error "stray argument" generate -m "$gguf_src" -p hi extra
usage_error "unknown command" no-such-command
usage_error "no command"
run 20 "$RAMP_BIN" generate --help
check "$([ "$RC" -eq 0 ] && grep -q -- "--model" "$OUT"; echo $?)" "generate --help: exit 0 with usage on stdout" \
    "$(last_run_details)"
