# gemma2.sh: files of the gemma2 architecture (Gemma 2: Gemma 3's network without the head norms,
# every other layer attending only to a sliding window of positions, and soft caps on the attention
# scores and on the logits, cap x tanh(x / cap)) load and compute what llama.cpp computes on the
# same file, and the same text across pipeline splits.
#
# The files are synthetic (ramp synth --arch gemma2: 4 layers, a window of 6 positions, heads of 48
# over an embedding of 128, an attention cap of 1 where Gemma 2's is 50, so that it changes the
# text; no output.weight: llama.cpp takes the embedding for it and refuses a file that has one).
# llama.cpp's llama-simple continues the same prompts greedily on them (skipped, with the reason,
# where the peer cannot run). The logits' cap does not change a greedy text: test_model_load checks it.

g2_dir=$(mktemp -d "$E2E_TMP/gemma2.XXXXXX")
g2_shape=(--arch gemma2 --dim 128 --layers 4 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 3 --head-size 48)
parity_prompts "$g2_dir"

ramp synth -o "$g2_dir/f32.gguf" "${g2_shape[@]}"
check $? "gemma2: ramp synth --arch gemma2 writes a file" "$(last_run_details)"
ramp synth -o "$g2_dir/q8_0.gguf" "${g2_shape[@]}" --type q8_0
check $? "gemma2: the same model in Q8_0" "$(last_run_details)"

# The same file with a window of 1,000: other text, so the window is in play.
gguf_set_u32 "$g2_dir/f32.gguf" "$g2_dir/wide.gguf" gemma2.attention.sliding_window 1000
texts_differ "gemma2: the sliding window changes the text (window 6 against 1,000)" "$g2_dir/prompts.txt" \
    "$g2_dir/f32.gguf" "$g2_dir/wide.gguf"

llama_parity_checks gemma2 "$g2_dir" "$g2_dir/f32.gguf" "$g2_dir/q8_0.gguf"
