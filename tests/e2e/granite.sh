# granite.sh: files of the granite architecture (IBM Granite 3's dense models: Llama's network with
# four multipliers, on the embedding rows, the attention scores, each block's output before it
# joins the residual stream, and the logits) load and compute what llama.cpp computes on the same
# file, and the same text across pipeline splits.
#
# The files are synthetic (ramp synth --arch granite: Granite 3.0 2B's embedding, residual and logit
# multipliers, an attention scale of 1/16 apart from 1 / sqrt(head size)); the same weights as a
# llama file print other text. llama.cpp's llama-simple continues the same prompts greedily on them
# (skipped, with the reason, where the peer cannot run). Greedy text does not see the logit scale;
# test_model_load checks it on the logits themselves.

gr_dir=$(mktemp -d "$E2E_TMP/granite.XXXXXX")
gr_shape=(--dim 128 --layers 3 --heads 4 --kv-heads 2 --ffn 256 --vocab 4096 --seed 5)
parity_prompts "$gr_dir"

ramp synth -o "$gr_dir/f32.gguf" --arch granite "${gr_shape[@]}"
check $? "granite: ramp synth --arch granite writes a file" "$(last_run_details)"
ramp synth -o "$gr_dir/q8_0.gguf" --arch granite "${gr_shape[@]}" --type q8_0
check $? "granite: the same model in Q8_0" "$(last_run_details)"
ramp synth -o "$gr_dir/llama.gguf" "${gr_shape[@]}"
texts_differ "granite: the multipliers change the text of the same weights" "$gr_dir/prompts.txt" \
    "$gr_dir/f32.gguf" "$gr_dir/llama.gguf"

llama_parity_checks granite "$gr_dir" "$gr_dir/f32.gguf" "$gr_dir/q8_0.gguf"
