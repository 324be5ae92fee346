# pretokenizers.sh: every pre-tokenizer ramp knows (tokenizer.ggml.pre) cuts text as llama.cpp's,
# and a prompt gets a BOS token where llama.cpp gives it one: `ramp tokenize` and llama.cpp's
# llama-tokenize print the same ids on the same file.
#
# The files are llama.cpp's GPT-2 test vocabulary (reference/vocab, 50,257 tokens with their
# merges) with tokenizer.ggml.pre set to each name in turn, so one vocabulary serves every
# pattern. The inputs are llama.cpp's own tokenizer test text plus short texts aimed at the
# patterns' differences: digit groups, letter case, contractions, line breaks, scripts outside
# ASCII, emoji, code. Skipped, with the reason, where the peer cannot run.

pt_dir=$(mktemp -d "$E2E_TMP/pretokenizers.XXXXXX")
PT_VOCAB=$REF/vocab/ggml-vocab-gpt-2.gguf

# ramp tokenize on its own: ids, pieces, BOS and its absence, clear errors.
ramp tokenize -m "$PT_VOCAB" -p "Hello world" --ids
[ "$RC" -eq 0 ] && [ "$(cat "$OUT")" = "[15496, 995]" ]
check $? "ramp tokenize: GPT-2's ids for 'Hello world' (no BOS: its pre-tokenizer asks for none)" "$(last_run_details)"
ramp tokenize -m "$PT_VOCAB" -p "Hello world"
[ "$RC" -eq 0 ] && grep -q "^ *995 -> 'Ġworld'$" "$OUT"
check $? "ramp tokenize: one token a line with its piece" "$(last_run_details)"
ramp tokenize -m "$BASE16/model-f32.gguf" -p "Hello" --ids
bos_ids=$(cat "$OUT")
ramp tokenize -m "$BASE16/model-f32.gguf" -p "Hello" --ids --no-bos
[ "$RC" -eq 0 ] && [ "${bos_ids#\[1, }" != "$bos_ids" ] && [ "[${bos_ids#\[1, }" = "$(cat "$OUT")" ]
check $? "ramp tokenize: a SentencePiece vocabulary puts BOS (1) first, --no-bos leaves it out" \
    "with: $bos_ids; $(last_run_details)"
gguf_set_string "$PT_VOCAB" "$pt_dir/unknown.gguf" tokenizer.ggml.pre no-such-pretokenizer
ramp tokenize -m "$pt_dir/unknown.gguf" -p "Hello" --ids
[ "$RC" -eq 1 ] && grep -q '"no-such-pretokenizer", a pre-tokenizer ramp does not know' "$ERR"
check $? "ramp tokenize: an unknown pre-tokenizer is refused by name" "$(last_run_details)"
ramp tokenize -m "$pt_dir/missing.gguf" -p "Hello"
[ "$RC" -eq 1 ] && grep -q "missing.gguf" "$ERR"
check $? "ramp tokenize: a missing file is named" "$(last_run_details)"
ramp tokenize -m "$PT_VOCAB" -f "$pt_dir/missing.txt"
[ "$RC" -eq 1 ] && grep -q "missing.txt: cannot open the text file" "$ERR"
check $? "ramp tokenize: a missing text file is named" "$(last_run_details)"

. "$here/../scripts/llama-peer.sh"
PEER=${BENCH_PEER:-$RAMP_SHARED/peers/llama.cpp}
if peer_usable "$PEER" llama-tokenize; then
    mkdir -p "$pt_dir/in"
    pt_count=0
    pt_input() { printf "$1" >"$pt_dir/in/$pt_count.txt"; pt_count=$((pt_count + 1)); }
    pt_input ' '
    pt_input '   '
    pt_input '\t'
    pt_input '\n\n\n'
    pt_input 'Hello world'
    pt_input ' Hello World'
    pt_input 'Hello\nWorld\r\n'
    pt_input "IT'S I'LL we'VE don't"
    pt_input '3333333 12345678 1.5e10 1,000 1234567890123'
    pt_input 'HeLLo WoRLD camelCaseWord XMLHttpRequest'
    pt_input '你好世界 こんにちは 안녕하세요'
    pt_input 'Ελληνικά µ ÀÖØöø Ǆ ǅǈ ẞ ß \xe1\xbd\xbd \xe1\xbe\xbe \xe2\x84\xa6 \xe2\x84\xaa'
    pt_input '🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅'
    pt_input '  def f(x):\n\treturn x**2  # comment\n\n'
    pt_input 'foo();\n}\nx = 1;\r\ny'
    pt_input 'trailing spaces   '
    pt_input 'a  b   c    d'
    pt_input '!!!??? ...,,, --- ___ ¿¡ ！？。、'
    pt_input 'ied 4 ½ months'
    pt_input 'line one\nline two  \n  indented\n'
    cp "$PT_VOCAB.inp" "$pt_dir/in/$pt_count.txt"
    pt_count=$((pt_count + 1))

    # ramp's ids on input $2 under vocabulary $1, then llama.cpp's; 0 when they are the same.
    pt_same() {
        local ours theirs
        ours=$(timeout 60 "$RAMP_BIN" tokenize -m "$1" -f "$2" --ids 2>&1) || return 1
        theirs=$(timeout 60 "$PEER/llama-tokenize" -m "$1" -f "$2" --ids --log-disable 2>/dev/null | tail -n 1)
        [ "$ours" = "$theirs" ]
    }
    for pre in default gpt-2 llama-bpe dbrx qwen2 smollm falcon tekken gpt-4o deepseek-llm deepseek-coder viking seed-coder; do
        gguf_set_string "$PT_VOCAB" "$pt_dir/$pre.gguf" tokenizer.ggml.pre "$pre"
        differ=0 first=
        for ((i = 0; i < pt_count; i++)); do
            pt_same "$pt_dir/$pre.gguf" "$pt_dir/in/$i.txt" && continue
            differ=$((differ + 1))
            [ -n "$first" ] || first=$(head -c 60 "$pt_dir/in/$i.txt" | tr '\n' ' ')
        done
        check $((differ > 0)) "pre-tokenizer $pre: the ids (BOS included) equal llama.cpp's on $((pt_count - differ)) of $pt_count texts" \
            "first that differs: '$first'"
    done
    # The comparison sees the patterns: the same texts cut by GPT-2's pattern and by "default" (the
    # same pattern after three more: punctuation runs, digit runs, digits in threes) give other ids.
    differ=0
    for ((i = 0; i < pt_count; i++)); do
        [ "$(timeout 60 "$RAMP_BIN" tokenize -m "$pt_dir/gpt-2.gguf" -f "$pt_dir/in/$i.txt" --ids)" = \
            "$(timeout 60 "$RAMP_BIN" tokenize -m "$pt_dir/default.gguf" -f "$pt_dir/in/$i.txt" --ids)" ] ||
            differ=$((differ + 1))
    done
    check $((differ == 0)) "pre-tokenizers: gpt-2 and default give other ids on $differ of $pt_count texts"
else
    skip "pre-tokenizers against llama.cpp" "$PEER_PROBLEM"
fi
