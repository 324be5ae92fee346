# head_size.sh: files whose heads have a size of their own (attention.key_length apart from
# embedding_length / head_count, as Mistral NeMo 12B and Mistral Small 24B have: 128 where 5120 / 32
# would be 160) load and compute what llama.cpp computes on the same file, and the same text
# across pipeline splits.
#
# The file is a synthetic one (ramp synth --head-size 48 with dim 128 and 4 heads: queries 192
# wide, keys and values 96), so nothing is downloaded. llama.cpp's llama-simple continues the same
# prompts greedily on it (skipped, with the reason, where the peer cannot run). A reader that
# kept the head size at dim / heads refuses the file's shapes or rotates and scores other values.

hs_dir=$(mktemp -d "$E2E_TMP/head_size.XXXXXX")
HS_TOKENS=16
hs_shape=(--dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 3 --head-size 48)
printf '%s\n' "Once upon a time there was" "Hello world" "Question: Who wrote Hamlet ?" \
    "Review: a gorgeous, witty, seductive movie." "The cat sat on the mat and" "Tom and Lily went to the park" \
    "Question: What is the capital of France ?" "Review: dull and lifeless" >"$hs_dir/prompts.txt"

ramp synth -o "$hs_dir/f32.gguf" "${hs_shape[@]}"
check $? "head size: ramp synth --head-size 48 writes a file" "$(last_run_details)"
ramp synth -o "$hs_dir/q8_0.gguf" "${hs_shape[@]}" --type q8_0
check $? "head size: the same model in Q8_0" "$(last_run_details)"

. "$here/../scripts/llama-peer.sh"
PEER=${BENCH_PEER:-$RAMP_SHARED/peers/llama.cpp}
if peer_usable "$PEER" llama-simple; then
    # The engines sum in different orders: a near-tie between a random model's two best tokens can
    # tip, so 7 of 8 must match (Q8_0: the engines also quantize activations differently, 6 of 8 over
    # 6 tokens; over seeds 1 to 4, 7 or 8 of 8 matched with this head size and 5 to 8 with dim / heads).
    greedy_differs_from_llama "$hs_dir/f32.gguf" "$HS_TOKENS" "$hs_dir/prompts.txt" "$hs_dir"
    differ=$?
    check $((differ > 1)) "head size: F32 greedy text equals llama.cpp's on $((8 - differ)) of 8 prompts ($HS_TOKENS tokens; at least 7)" \
        "$differ of 8 differ"
    greedy_differs_from_llama "$hs_dir/q8_0.gguf" 6 "$hs_dir/prompts.txt" "$hs_dir"
    differ=$?
    check $((differ > 2)) "head size: Q8_0, the first 6 greedy tokens equal llama.cpp's on $((8 - differ)) of 8 prompts (at least 6)" \
        "$differ of 8 differ"
else
    skip "head size: greedy text against llama.cpp" "$PEER_PROBLEM"
fi

# The same text whatever the split: one process, stages in one process, and 2 stages under mpirun.
for hs_type in f32 q8_0; do
    run 60 "$RAMP_BIN" generate -m "$hs_dir/$hs_type.gguf" -f "$hs_dir/prompts.txt" -n "$HS_TOKENS" --temp 0
    cp "$OUT" "$hs_dir/one.txt"
    [ "$RC" -eq 0 ] && [ -s "$OUT" ]
    check $? "head size: $hs_type, one process" "$(last_run_details)"
    run 60 "$RAMP_BIN" generate -m "$hs_dir/$hs_type.gguf" -f "$hs_dir/prompts.txt" -n "$HS_TOKENS" --temp 0 --stages 3
    [ "$RC" -eq 0 ] && cmp -s "$OUT" "$hs_dir/one.txt"
    check $? "head size: $hs_type, --stages 3 prints the one-process text" "$(last_run_details)"
    two_stages_print "head size: $hs_type, mpirun -np 3 (2 stages) prints the one-process text" "$hs_dir/one.txt" \
        -m "$hs_dir/$hs_type.gguf" -f "$hs_dir/prompts.txt" -n "$HS_TOKENS"
done

# Keys and values of different sizes are refused by name (value_length changed in place).
gguf_set_u32 "$hs_dir/f32.gguf" "$hs_dir/uneven.gguf" llama.attention.value_length 64
ramp generate -m "$hs_dir/uneven.gguf" -p "Hello" -n 2
[ "$RC" -eq 1 ] && grep -q "keys of 48 values per head and values of 64" "$ERR"
check $? "head size: keys and values of different sizes are refused by name" "$(last_run_details)"
