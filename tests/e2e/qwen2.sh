# qwen2.sh: files of the qwen2 architecture (Qwen2, Qwen2.5: biases on the query, key and value
# products, RoPE over the two halves of each head, qwen2.* keys) load and compute what llama.cpp
# computes on the same file, in every type ramp reads, and across pipeline splits.
#
# The file is a synthetic one (ramp synth --arch qwen2: random weights, biases as large as the
# products, RoPE base 1e6), so nothing is downloaded. llama.cpp's llama-simple continues the same
# prompts greedily on it (skipped, with the reason, where the peer cannot run). A reader that
# dropped the biases, rotated Llama's pairs or kept the default RoPE base writes other text.

q2_dir=$(mktemp -d "$E2E_TMP/qwen2.XXXXXX")
q2_file=$q2_dir/qwen2-f32.gguf
Q2_TOKENS=16
printf '%s\n' "Once upon a time there was" "Hello world" "Question: Who wrote Hamlet ?" \
    "Review: a gorgeous, witty, seductive movie." "The cat sat on the mat and" "Tom and Lily went to the park" \
    "Question: What is the capital of France ?" "Review: dull and lifeless" >"$q2_dir/prompts.txt"

ramp synth -o "$q2_file" --arch qwen2 --dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 7
check $? "qwen2: ramp synth --arch qwen2 writes a file" "$(last_run_details)"

. "$here/../scripts/llama-peer.sh"
PEER=${BENCH_PEER:-$RAMP_SHARED/peers/llama.cpp}
if peer_usable "$PEER" llama-simple llama-quantize; then
    # Even in F32 the engines sum in different orders: a near-tie between a random model's two
    # best tokens can tip (one of these prompts' first token does, without BOS); 7 of 8 must match.
    greedy_differs_from_llama "$q2_file" "$Q2_TOKENS" "$q2_dir/prompts.txt" "$q2_dir"
    differ=$?
    check $((differ > 1)) "qwen2: F32 greedy text equals llama.cpp's on $((8 - differ)) of 8 prompts ($Q2_TOKENS tokens; at least 7)" \
        "$differ of 8 differ"
    # Quantized files as llama-quantize writes them for this architecture (biases stay F32). A
    # random model's next-token scores are close together, so the engines' different rounding
    # (ramp quantizes activations with fp32 scales, llama.cpp with fp16) tips a near-tie within
    # a dozen tokens, for llama files as much as for these: the first 6 tokens are compared.
    for q2_type in Q8_0 Q4_K_M; do
        run 120 "$PEER/llama-quantize" "$q2_file" "$q2_dir/qwen2-$q2_type.gguf" "$q2_type"
        if [ "$RC" -eq 0 ]; then
            greedy_differs_from_llama "$q2_dir/qwen2-$q2_type.gguf" 6 "$q2_dir/prompts.txt" "$q2_dir"
            differ=$?
            check $((differ > 2)) "qwen2: $q2_type (llama-quantize): the first 6 greedy tokens equal llama.cpp's on $((8 - differ)) of 8 prompts (at least 6)" \
                "$differ of 8 differ"
        else
            fail "qwen2: llama-quantize makes a $q2_type file" "$(last_run_details)"
        fi
    done
else
    skip "qwen2: greedy text against llama.cpp" "$PEER_PROBLEM"
fi

# The same text whatever the split: one process, and a pipeline of 2 stages under mpirun.
run 60 "$RAMP_BIN" generate -m "$q2_file" -f "$q2_dir/prompts.txt" -n "$Q2_TOKENS" --temp 0
cp "$OUT" "$q2_dir/one.txt"
if have_mpi; then
    mpi_run 120 3 generate -m "$q2_file" -f "$q2_dir/prompts.txt" -n "$Q2_TOKENS" --temp 0 --timeout 30
    cmp -s "$OUT" "$q2_dir/one.txt"
    check $? "qwen2: mpirun -np 3 (2 stages) prints the one-process text" "$(last_run_details)"
else
    skip "qwen2: pipeline split" "no mpirun"
fi

# The architecture's own keys are read: a qwen2 file without qwen2.block_count is refused by name.
gguf_rename "$q2_file" "$q2_dir/renamed.gguf" qwen2.block_count qwen2.block_xount
ramp generate -m "$q2_dir/renamed.gguf" -p "Hello" -n 2
[ "$RC" -eq 1 ] && grep -q "qwen2.block_count" "$ERR"
check $? "qwen2: a file without qwen2.block_count is refused naming the key" "$(last_run_details)"
