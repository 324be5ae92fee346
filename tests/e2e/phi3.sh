# phi3.sh: files of the phi3 architecture (Phi-3 and Phi-3.5 mini and medium with a 4k context:
# the query, key and value matrices fused into one attn_qkv, the gate and up matrices into one
# ffn_up of twice the feed-forward width, RoPE over the two halves of each head) load in place,
# cut into row ranges, and compute what llama.cpp computes on the same file, and the same text
# across pipeline splits; the 128k-context models' LongRoPE is refused by name.
#
# The files are synthetic (ramp synth --arch phi3, random weights). llama.cpp's llama-simple
# continues the same prompts greedily on them (skipped, with the reason, where the peer cannot
# run). A reader that took the up rows for the gate's, or the key rows for the query's, writes
# other text.

p3_dir=$(mktemp -d "$E2E_TMP/phi3.XXXXXX")
p3_shape=(--arch phi3 --dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 5)
parity_prompts "$p3_dir"

ramp synth -o "$p3_dir/f32.gguf" "${p3_shape[@]}"
check $? "phi3: ramp synth --arch phi3 writes a file" "$(last_run_details)"
ramp synth -o "$p3_dir/q8_0.gguf" "${p3_shape[@]}" --type q8_0
check $? "phi3: the same model in Q8_0" "$(last_run_details)"

llama_parity_checks phi3 "$p3_dir" "$p3_dir/f32.gguf" "$p3_dir/q8_0.gguf"

# The 128k-context models' per-frequency RoPE factors are refused by name: a model of 11 layers,
# whose blk.10.attn_output.weight is renamed rope_factors_short.weight in place (the same length,
# so every offset stays valid).
ramp synth -o "$p3_dir/eleven.gguf" --arch phi3 --dim 64 --layers 11 --heads 2 --ffn 64 --vocab 300
gguf_rename "$p3_dir/eleven.gguf" "$p3_dir/long.gguf" blk.10.attn_output.weight rope_factors_short.weight
ramp generate -m "$p3_dir/long.gguf" -p "Hello" -n 2
[ "$RC" -eq 1 ] && grep -q "rope_factors_short.weight: LongRoPE" "$ERR"
check $? "phi3: LongRoPE factors (the 128k-context models) are refused by name" "$(last_run_details)"
