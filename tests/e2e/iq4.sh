# iq4.sh: IQ4_NL and IQ4_XS files (the nibble-table types behind many "IQ4_XS" downloads) compute
# what llama.cpp computes on the same file, and the same text across pipeline splits.
#
# llama.cpp's llama-quantize makes them from a synthetic llama model of 256-wide rows (IQ4_XS
# needs whole super-blocks of 256; narrower rows fall back to IQ4_NL) and from base16, a small
# trained model (128-wide: IQ4_NL throughout). Its llama-simple continues the same prompts
# greedily on them; skipped, with the reason, where the peer cannot run.

iq_dir=$(mktemp -d "$E2E_TMP/iq4.XXXXXX")
parity_prompts "$iq_dir"
ramp synth -o "$iq_dir/f32.gguf" --dim 256 --layers 3 --heads 4 --kv-heads 2 --ffn 512 --vocab 4096 --seed 3
check $? "iq4: ramp synth writes a 256-wide model" "$(last_run_details)"

. "$here/../scripts/llama-peer.sh"
PEER=${BENCH_PEER:-$RAMP_SHARED/peers/llama.cpp}
if peer_usable "$PEER" llama-simple llama-quantize; then
    for iq_type in iq4_nl iq4_xs; do
        upper=$(echo "$iq_type" | tr 'a-z' 'A-Z')
        run 120 "$PEER/llama-quantize" "$iq_dir/f32.gguf" "$iq_dir/$iq_type.gguf" "$upper"
        converted=$(grep -c "converting to $iq_type" "$OUT" "$ERR" | awk -F: '{s += $NF} END {print s + 0}')
        [ "$RC" -eq 0 ] && [ "$converted" -ge 21 ]
        check $? "iq4: llama-quantize makes a $upper file ($converted of its 22 matrices in $iq_type)" "$(last_run_details)"
        # As for every quantized type: a random model's near-ties tip within a few tokens when
        # the engines round activations differently (seeds 1 to 4 matched 4 to 8 of 8 prompts
        # over 6 tokens, as Q4_K_M files did 5 to 8; the weights themselves dequantize to
        # llama.cpp's values bit for bit): the first 3 tokens are compared.
        greedy_differs_from_llama "$iq_dir/$iq_type.gguf" 3 "$iq_dir/prompts.txt" "$iq_dir"
        differ=$?
        check $((differ > 1)) "iq4: $upper, the first 3 greedy tokens equal llama.cpp's on $((8 - differ)) of 8 prompts (at least 7)" \
            "$differ of 8 differ"
    done
    # A trained model has fewer near-ties: base16 in IQ4_NL, 16 tokens.
    run 120 "$PEER/llama-quantize" "$BASE16/model-f32.gguf" "$iq_dir/base16-iq4_nl.gguf" IQ4_NL
    check $? "iq4: llama-quantize makes base16 in IQ4_NL" "$(last_run_details)"
    greedy_differs_from_llama "$iq_dir/base16-iq4_nl.gguf" 16 "$iq_dir/prompts.txt" "$iq_dir"
    differ=$?
    check $((differ > 1)) "iq4: base16 IQ4_NL, greedy text equals llama.cpp's on $((8 - differ)) of 8 prompts (16 tokens; at least 7)" \
        "$differ of 8 differ"
    one_process_then_two_stages "iq4: IQ4_XS" "$iq_dir/iq4_xs.gguf" "$iq_dir"
else
    skip "iq4: IQ4_NL and IQ4_XS files against llama.cpp" "$PEER_PROBLEM"
fi
