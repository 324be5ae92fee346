# gemma.sh: files of the gemma architecture (Gemma 2B and 7B: Llama's network with the embedding
# times sqrt(dim), a GELU gate, RoPE over head halves and the embedding as the output matrix) load
# and compute what llama.cpp computes on the same file, and the same text across pipeline splits.
#
# The files are synthetic (ramp synth --arch gemma: heads of 48 over an embedding of 128, as
# Gemma's heads of 256 do not divide its embedding either). llama.cpp's llama-simple continues the
# same prompts greedily on them (skipped, with the reason, where the peer cannot run).

g1_dir=$(mktemp -d "$E2E_TMP/gemma.XXXXXX")
g1_shape=(--arch gemma --dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 3 --head-size 48)
parity_prompts "$g1_dir"

ramp synth -o "$g1_dir/f32.gguf" "${g1_shape[@]}"
check $? "gemma: ramp synth --arch gemma writes a file" "$(last_run_details)"
ramp synth -o "$g1_dir/q8_0.gguf" "${g1_shape[@]}" --type q8_0
check $? "gemma: the same model in Q8_0" "$(last_run_details)"

llama_parity_checks gemma "$g1_dir" "$g1_dir/f32.gguf" "$g1_dir/q8_0.gguf"
