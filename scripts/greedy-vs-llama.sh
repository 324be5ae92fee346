#!/bin/bash
# Greedy text of ramp against llama.cpp's own (llama-simple) on the same files.
#
#   RAMP_SHARED=../shared RAMP_BIN=build/release/bin/ramp scripts/greedy-vs-llama.sh [FILE...]
#
# For each file (default: base16 in F32, Q8_0, Q4_0 and the Q4_K_M / Q6_K / IQ4_NL versions llama-quantize
# makes of base16-f32 into build/bench-models, then synth256 in every type), PROMPTS prompts
# (default 40: SST-2 reviews, TREC questions and stories openings, in the prompt formats base16 was
# trained on) are continued greedily for N tokens (default 24) by both engines, and the share of
# prompts whose continuations are identical is printed. Quantized math differs in the last bits
# between the engines (ramp quantizes activations per block with fp32 scales, llama.cpp with fp16),
# so near-ties can tip differently; most prompts should still match. Needs ../shared/peers/llama.cpp.
set -u
cd "$(dirname "$0")/.."
SHARED=${RAMP_SHARED:-../shared}
RAMP_BIN=${RAMP_BIN:-build/release/bin/ramp}
PEER=${BENCH_PEER:-$SHARED/peers/llama.cpp}
N=${GREEDY_TOKENS:-24}
PROMPTS=${GREEDY_PROMPTS:-40}
CACHE=${BENCH_QUANT_CACHE:-build/bench-models} # e.g. /tmp/ramp-bench-models: out of the tree
. scripts/llama-peer.sh
if ! peer_usable "$PEER" llama-simple llama-quantize; then
    echo "greedy-vs-llama: $PEER_PROBLEM: nothing to compare against"
    exit 0
fi
mkdir -p "$CACHE"
W=$(mktemp -d "$CACHE/greedy.XXXXXX")
trap 'rm -rf "$W"' EXIT

python3 - "$SHARED" "$PROMPTS" >"$W/prompts.txt" <<'PY'
import sys
shared, n = sys.argv[1], int(sys.argv[2])
stories = ["Once upon a time", "One day, a little girl", "The cat sat on the mat and", "Tom and Lily went to the park",
           "There was a big red ball", "The sun was shining and", "A small dog named Max", "Mom said to Ben"][: n // 5]
questions = [l.split(" ", 1)[1].strip() for l in open(f"{shared}/data/trec/test.txt", errors="replace")][: n // 4]
reviews = [l.split(" ", 1)[1].strip() for l in open(f"{shared}/data/sst2/stsa.binary.dev")][: n - len(stories) - len(questions)]
out = [f"Review: {r}" for r in reviews] + [f"Question: {q}" for q in questions] + stories
for p in out[:n]:
    print(p.replace("\n", " "))
PY

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    B=$SHARED/models/base16
    files=("$B/model-f32.gguf" "$B/model-q8_0.gguf" "$B/model-q4_0.gguf")
    for t in Q4_K_M Q6_K IQ4_NL; do
        f=$CACHE/base16-$(echo $t | tr 'A-Z' 'a-z').gguf
        [ -s "$f" ] || "$PEER/llama-quantize" "$B/model-f32.gguf" "$f" "$t" >/dev/null 2>&1
        [ -s "$f" ] && files+=("$f")
    done
    for f in "$SHARED"/models/synth256/synth256-*.gguf; do files+=("$f"); done
fi

printf '%-34s %s\n' "file" "prompts whose $N-token greedy continuation is identical"
for f in "${files[@]}"; do
    same=0 total=0
    while IFS= read -r prompt; do
        total=$((total + 1))
        "$RAMP_BIN" generate -m "$f" -p "$prompt" -n "$N" --temp 0 --threads 2 >"$W/ramp.txt" 2>/dev/null </dev/null
        # llama-simple prints the prompt's pieces (with <s> first for SentencePiece models, and a
        # first piece's U+2581 raw when the vocabulary is not llama's), then the continuation; both
        # stop at end of text. Bytes that are not printable ASCII are compared as one mark per run
        # (ramp writes U+FFFD for a byte token that is not valid UTF-8 on its own, llama-simple the
        # raw byte).
        "$PEER/llama-simple" -m "$f" -n "$N" "$prompt" >"$W/llama.txt" 2>/dev/null </dev/null
        python3 - "$W/ramp.txt" "$W/llama.txt" <<'PY' && same=$((same + 1))
import re, sys
def norm(path):
    b = open(path, "rb").read()
    b = re.sub(rb"^<s>", b"", b).replace("\u2581".encode(), b" ").lstrip(b" ")
    return re.sub(rb"[^\x09\x0a\x20-\x7e]+", b"?", b).rstrip()
sys.exit(0 if norm(sys.argv[1]) == norm(sys.argv[2]) else 1)
PY
    done <"$W/prompts.txt"
    printf '%-34s %d / %d\n' "$(basename "$(dirname "$f")")/$(basename "$f")" "$same" "$total"
done
