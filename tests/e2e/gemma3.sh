# gemma3.sh: files of the gemma3 architecture (Gemma 3: the embedding times sqrt(dim), per-head
# RMS norms on queries and keys, RMS norms after attention and after the feed-forward, a GELU gate,
# RoPE over head halves, and five of every six layers attending only to a sliding window of the
# last positions with their own RoPE base) load and compute what llama.cpp computes on the same
# file, and the same text across pipeline splits.
#
# The files are synthetic (ramp synth --arch gemma3: 7 layers, so layer 5 is global and the others
# local, a window of 6 positions, which the prompts and their continuations reach past, and heads of
# 48 over an embedding of 128). llama.cpp's llama-simple continues the same prompts greedily on them
# (skipped, with the reason, where the peer cannot run). The same file with a window of 1,000
# prints other text: the window is in play.

g3_dir=$(mktemp -d "$E2E_TMP/gemma3.XXXXXX")
g3_shape=(--arch gemma3 --dim 128 --layers 7 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 3 --head-size 48)
parity_prompts "$g3_dir"

ramp synth -o "$g3_dir/f32.gguf" "${g3_shape[@]}"
check $? "gemma3: ramp synth --arch gemma3 writes a file" "$(last_run_details)"
ramp synth -o "$g3_dir/q8_0.gguf" "${g3_shape[@]}" --type q8_0
check $? "gemma3: the same model in Q8_0" "$(last_run_details)"

# The same file with a window of 1,000.
gguf_set_u32 "$g3_dir/f32.gguf" "$g3_dir/wide.gguf" gemma3.attention.sliding_window 1000
texts_differ "gemma3: the sliding window changes the text (window 6 against 1,000)" "$g3_dir/prompts.txt" \
    "$g3_dir/f32.gguf" "$g3_dir/wide.gguf"

llama_parity_checks gemma3 "$g3_dir" "$g3_dir/f32.gguf" "$g3_dir/q8_0.gguf"

# Without a sliding window llama.cpp runs Gemma 3 otherwise (a final soft cap): refused by name.
gguf_rename "$g3_dir/f32.gguf" "$g3_dir/no_window.gguf" gemma3.attention.sliding_window gemma3.attention.sliding_xindow
ramp generate -m "$g3_dir/no_window.gguf" -p "Hello" -n 2
[ "$RC" -eq 1 ] && grep -q "without a sliding window" "$ERR"
check $? "gemma3: a file without a sliding window is refused by name" "$(last_run_details)"
