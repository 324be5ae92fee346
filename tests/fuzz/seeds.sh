#!/usr/bin/env bash
# tests/fuzz/seeds.sh NAME DIR: writes the seed corpus of harness fuzz_NAME into DIR, generated at
# run time from the shared models and data ($RAMP_SHARED, default ../shared) and from models that
# `ramp` synthesizes or trains here ($RAMP_BIN, default bin/ramp). Nothing here is copied into the
# repository: DIR is under build/. A harness without seeds here starts from an empty corpus.
set -eu
name=$1
dir=$2
shared=${RAMP_SHARED:-../shared}
ramp=${RAMP_BIN:-bin/ramp}
mkdir -p "$dir"
models=$shared/models
have() { [ -e "$1" ] || { echo "seeds.sh: $1 is missing; fewer seeds for $name" >&2; return 1; }; }
# with_prefix BYTE_ESCAPE FILE OUT [HEAD_LINES]: OUT = the byte(s), then FILE (or its first lines).
with_prefix() {
    { printf "$1"; if [ -n "${4:-}" ]; then head -n "$4" "$2"; else cat "$2"; fi; } >"$3"
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ramp-seeds.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

case $name in
gguf)
    for f in stories260K/stories260K-f32.gguf stories260K/stories260K-f16.gguf base16/model-q4_0.gguf \
        base16/model-q8_0.gguf synth256/synth256-q2_k.gguf; do
        have "$models/$f" && cp "$models/$f" "$dir/$(echo "$f" | tr / -)"
    done
    have "$shared/reference/vocab/ggml-vocab-llama-spm.gguf" && cp "$shared/reference/vocab/ggml-vocab-llama-spm.gguf" "$dir/"
    # Tiny complete models of every supported type: every parser path in a few KB.
    for type in f32 f16 q8_0 q4_0; do
        "$ramp" synth -o "$dir/tiny-$type.gguf" --dim 32 --layers 2 --heads 4 --kv-heads 2 --ffn 64 --vocab 300 \
            --type "$type" >/dev/null 2>&1 || echo "seeds.sh: ramp synth failed ($type)" >&2
    done
    ;;
llama2c)
    have "$models/stories260K/stories260K.bin" && cp "$models/stories260K/stories260K.bin" "$dir/"
    # A tiny checkpoint of the right size: dim 8, hidden 16, 2 layers, 2 heads, 1 KV head, vocab 8
    # (negative: its own classifier), seq_len 4; fp32 zeros after the header.
    python3 - "$dir/tiny.bin" <<'PY'
import struct, sys
dim, hidden, layers, heads, kv, vocab, seq = 8, 16, 2, 2, 1, 8, 4
head = dim // heads; kv_dim = kv * head
floats = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv_dim * dim + layers * dim * dim
          + layers * dim + 3 * layers * hidden * dim + dim + seq * head + vocab * dim)
open(sys.argv[1], "wb").write(struct.pack("<7i", dim, hidden, layers, heads, kv, -vocab, seq) + bytes(4 * floats))
PY
    ;;
tokenizer_bin)
    tok=$models/stories260K/tok512.bin
    if have "$tok"; then
        with_prefix '\377\001' "$tok" "$dir/tok512-vocab512"   # 0x01ff + 1 = 512 tokens
        with_prefix '\377\000' "$tok" "$dir/tok512-vocab256"   # fewer tokens than the file holds
        with_prefix '\377\003' "$tok" "$dir/tok512-vocab1024"  # more
    fi
    ;;
encode)
    python3 - "$shared" "$dir" <<'PY'
import os, sys
shared, out = sys.argv[1], sys.argv[2]
texts = []
for name in ("ggml-vocab-llama-spm.gguf.inp", "ggml-vocab-gpt-2.gguf.inp"):
    path = os.path.join(shared, "reference", "vocab", name)
    if os.path.exists(path):
        texts += open(path, "rb").read().split(b"\n__ggml_vocab_test__\n")
path = os.path.join(shared, "data", "sst2", "stsa.binary.dev")
if os.path.exists(path):
    texts += open(path, "rb").read().split(b"\n")[:20]
texts += [b"", b" ", b"\x00\xff\xfe", "Ünïcödé 日本語 🙂".encode(), b"\xe2\x96\x81\xe2\x96\x81x"]
for i, text in enumerate(texts):
    for selector in (0, 1, 2, 0x82):
        open(os.path.join(out, f"text{i:03d}-{selector}"), "wb").write(bytes([selector]) + text)
PY
    ;;
exit_policy)
    m=$models/lite16/model-f32.gguf
    data=$shared/data/sst2/stsa.binary.train
    if have "$m" && have "$data"; then
        "$ramp" exit-train -m "$m" --ctx 256 --task sst2 --exit-layers 4,8,12 --data "$data" --limit 80 \
            -o "$tmp/svm" >/dev/null 2>&1 || echo "seeds.sh: exit-train failed" >&2
        "$ramp" exit-calibrate -m "$m" --ctx 256 --task sst2 --exit-layers 4,8,12 --data "$data" --limit 80 \
            -o "$tmp/conf.json" >/dev/null 2>&1 || echo "seeds.sh: exit-calibrate failed" >&2
        if [ -f "$tmp/svm" ] && [ -f "$tmp/svm.json" ]; then
            { cat "$tmp/svm"; printf '\0'; cat "$tmp/svm.json"; } >"$dir/svm-with-sidecar"
            with_prefix 'p' "$tmp/svm" "$dir/svm-alone"
        fi
        [ -f "$tmp/conf.json" ] && with_prefix 'c' "$tmp/conf.json" "$dir/confidence"
    fi
    ;;
text_files)
    d=$shared/data
    ref=$shared/reference/base16.greedy48.tsv
    [ -f "$ref" ] && { printf '\0'; cut -f1 "$ref"; } >"$dir/prompts"
    printf '\0first\\nprompt\r\n\n\\\\ second\n' >"$dir/prompts-escapes"
    have "$d/sst2/stsa.binary.train" && with_prefix '\001' "$d/sst2/stsa.binary.train" "$dir/sst2-stsa" 25
    have "$d/sst2/glue_dev.tsv" && with_prefix '\001' "$d/sst2/glue_dev.tsv" "$dir/sst2-glue" 25
    have "$d/trec/train.txt" && with_prefix '\002' "$d/trec/train.txt" "$dir/trec" 25
    have "$d/agnews/train6000.csv" && with_prefix '\003' "$d/agnews/train6000.csv" "$dir/agnews" 25
    have "$d/rte/superglue_val.jsonl" && with_prefix '\004' "$d/rte/superglue_val.jsonl" "$dir/rte" 25
    ;;
chat_template)
    # family byte, then messages: a role byte (0 system, 1 user, 2 assistant) and content, 0x1e between
    for family in 00 01 02 03 04 05 06 07; do
        printf "\x$family\x00Be brief.\x1e\x01  Hello \xc2\xa0there\xe2\x80\x80\x1e\x02Hi!\n\x1e\x01Again?" >"$dir/family-$family"
        printf "\x$family\x01 \t\xe3\x80\x80 lone user \xe2\x80\xa8" >"$dir/lone-$family"
    done
    for marker in '<|im_start|>' '[INST] <<SYS>>' '[INST]' '<|start_header_id|>' '<start_of_turn>' '<|user|><|end|>' \
        '<|user|>' 'chatml' 'gemma'; do
        printf '\x80%s' "$marker" >"$dir/detect-$(printf '%s' "$marker" | tr -c 'a-zA-Z' '_')"
    done
    ;;
openai | batch_line)
    # jansson is not instrumented, so coverage alone cannot lead the fuzzer into valid JSON: start
    # from request bodies that use every field the parser reads (and tests/fuzz/openai.dict).
    python3 - "$name" "$dir" <<'PY'
import json, os, sys
name, out = sys.argv[1], sys.argv[2]
completions = [
    {"prompt": "Review: a fine film", "max_tokens": 16, "temperature": 0},
    {"model": "ramp", "prompt": [1, 15043, 3186], "max_tokens": 4, "temperature": 0.7, "top_p": 0.9,
     "top_k": 40, "seed": 7, "stop": ["\n", "."], "logprobs": 2, "echo": False, "n": 1, "user": "u"},
    {"prompt": ["only one prompt"], "stream": True, "stream_options": {"include_usage": True},
     "ramp": {"exit": "conf"}, "suffix": None, "best_of": 1, "logit_bias": {}, "presence_penalty": 0,
     "frequency_penalty": 0},
    {"prompt": "x", "max_tokens": -1, "stop": "END", "ramp": {"exit": "none"}, "metadata": {"k": "v"}},
]
chat = [
    {"messages": [{"role": "user", "content": "Hi"}], "stream": True},
    {"model": "ramp", "messages": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
                                   {"role": "assistant", "content": "Hi", "refusal": None}],
     "max_completion_tokens": 8, "logprobs": True, "top_logprobs": 3, "seed": 1, "temperature": 1.5,
     "response_format": {"type": "text"}, "ramp": {"exit": "svm"}, "store": False, "service_tier": "auto"},
    {"messages": [{"role": "user", "content": "q"}], "tools": [], "tool_choice": "none",
     "parallel_tool_calls": False, "functions": [], "function_call": "none", "stop": ["a", "b", "c", "d"]},
]
seeds = []
if name == "openai":
    seeds = completions + chat
else:
    for i, body in enumerate(completions):
        seeds.append({"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions", "body": body})
    for i, body in enumerate(chat):
        seeds.append({"custom_id": f"m{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
    seeds.append({"custom_id": "short", "prompt": "Once upon a time", "max_tokens": 8})
    seeds.append({"custom_id": "bad-url", "url": "/v1/embeddings", "body": {}})
    seeds.append({"id": "batch_req_1", "custom_id": "c0", "response": {"status_code": 200,
                  "request_id": "req-1", "body": {"object": "text_completion"}}, "error": None})
    seeds.append({"id": "batch_req_2", "custom_id": "m1", "response": None,
                  "error": {"code": "invalid_value", "message": "bad"}})
for i, seed in enumerate(seeds):
    with open(os.path.join(out, f"{name}-{i:02d}.json"), "w") as f:
        f.write(json.dumps(seed))
PY
    ;;
*)
    echo "seeds.sh: no generated seeds for $name" >&2
    ;;
esac
exit 0
