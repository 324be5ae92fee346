#!/bin/bash
# token-curve.sh: token-level exits (LITE confidence thresholds): layers saved against token
# agreement with the full-depth text, for every --kv-fill policy over a sweep of targets.
#
#   scripts/token-curve.sh [TARGETS...]     (RAMP_BIN=bin/ramp, RAMP_SHARED=../shared, MODEL=lite16,
#                                            TOKENS=48, WORK=build/token-curve)
#
# Prompts are the first words of SST-2 dev reviews and TREC test questions (texts the model never
# trained on): thresholds are calibrated (`exit-calibrate`) on examples 21-60 of each and judged
# on examples 1-20 (40 prompts x TOKENS tokens, greedy). For each target and policy one
# `generate --exit conf:FILE --kv-fill P` runs the prompts at full depth and then with exits, in one
# process, and reports:
#   - saved on the path: layer evaluations a token did not wait for (what the exit decision skips);
#   - computed: the row-layers the stages really ran against the full run's (recompute runs the
#     skipped layers later, with the sequence's next deep token; copy still fills their keys and
#     values; omit skips them);
#   - token agreement: the share of tokens before the first difference from the full-depth text.
# Prints a markdown table.
set -eu
bin=${RAMP_BIN:-bin/ramp}
shared=${RAMP_SHARED:-../shared}
model=${MODEL:-lite16}
tokens=${TOKENS:-48}
work=${WORK:-build/token-curve}
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(0.8 0.85 0.9 0.93 0.95 0.97 0.98 0.99)
mkdir -p "$work"
weights=$shared/models/$model/model-f32.gguf
exits=(--ctx 256 --exit-layers 4,6,8,10,12,14)
python3 - "$shared/data" "$work" <<'PY'
import sys
data, work = sys.argv[1], sys.argv[2]
dev = [l.split("\t")[0] for l in open(f"{data}/sst2/glue_dev.tsv").read().splitlines()[1:]]
test = [l.split(" ", 1)[1] for l in open(f"{data}/trec/test.txt").read().splitlines()]
def prompts(texts, prefix, first, last):
    return [prefix + " ".join(t.split()[:4]) for t in texts[first:last]]
with open(f"{work}/calibrate.txt", "w") as f:
    f.write("\n".join(prompts(dev, "Review: ", 20, 60) + prompts(test, "Question: ", 20, 60)) + "\n")
with open(f"{work}/judge.txt", "w") as f:
    f.write("\n".join(prompts(dev, "Review: ", 0, 20) + prompts(test, "Question: ", 0, 20)) + "\n")
PY
echo "| --kv-fill | target | saved on the path | row-layers not computed | token agreement |"
echo "|---|---|---|---|---|"
for target in "${targets[@]}"; do
    conf=$work/$model-conf-$target.json
    [ -f "$conf" ] || "$bin" exit-calibrate -m "$weights" "${exits[@]}" -f "$work/calibrate.txt" -n "$tokens" \
        --target-agreement "$target" -o "$conf" 2>/dev/null
    for fill in recompute copy omit; do
        log=$work/$model-$target-$fill.err
        "$bin" generate -m "$weights" --ctx 256 -f "$work/judge.txt" -n "$tokens" --exit "conf:$conf" --kv-fill "$fill" \
            >/dev/null 2>"$log"
        path=$(grep -o '[0-9.]*% of layer evaluations saved' "$log" | head -1 | cut -d' ' -f1)
        computed=$(grep -o "[0-9.-]*% of the full run's row-layers not computed" "$log" | head -1 | cut -d' ' -f1)
        agreement=$(grep -o 'full-depth text [0-9.]*' "$log" | head -1 | cut -d' ' -f3)
        echo "| $fill | $target | ${path:-?} | ${computed:-?} | ${agreement:-?} |"
    done
done
