# stage_memory.sh: each pipeline stage holds only its own layers (--metrics-json); for quantized
# files the weights figure is the stored bytes of the tensors (they stay in file form).
#
# A stage's weight_bytes must be (layers in the stage) x (bytes per layer), plus the token
# embedding on the first stage and the output head (final norm + LM head) on the last one; the
# stages add up to the one-stage total and a middle stage holds strictly less than the model.
# first_layer/end_layer must follow the split, and every stage must have seen every row.

sm_dir=$(mktemp -d "$E2E_TMP/stage_memory.XXXXXX")
printf '%s\n' "Once upon a time" "Review: dull and lifeless" "Question: Who wrote Hamlet ?" >"$sm_dir/prompts.txt"

# stage_table JSON: one line per stage, "stage rank first_layer end_layer weight_bytes rows".
stage_table() {
    if command -v jq >/dev/null 2>&1; then
        jq -r '.stages[] | "\(.stage) \(.rank) \(.first_layer) \(.end_layer) \(.weight_bytes) \(.rows)"' "$1"
    else
        python3 -c 'import json, sys
for s in json.load(open(sys.argv[1]))["stages"]:
    print(s["stage"], s["rank"], s["first_layer"], s["end_layer"], s["weight_bytes"], s["rows"])' "$1"
    fi
}

# json_top JSON KEY: a top-level number.
json_top() {
    if command -v jq >/dev/null 2>&1; then
        jq -r --arg k "$2" '.[$k]' "$1"
    else
        python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
    fi
}


# gguf_tensor_bytes FILE: the stored bytes of every tensor in a GGUF file (from its header).
gguf_tensor_bytes() {
    python3 - "$1" <<'PY'
import struct, sys
blocks = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 10: (256, 84),
          11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}
data = open(sys.argv[1], "rb").read(1 << 24)
pos = 4
_, n_tensors, n_kv = struct.unpack_from("<IQQ", data, pos); pos += 20
def string():
    global pos
    (n,) = struct.unpack_from("<Q", data, pos); pos += 8 + n
scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def value(t):
    global pos
    if t == 8: string()
    elif t == 9:
        et, n = struct.unpack_from("<IQ", data, pos); pos += 12
        for _ in range(n): value(et)
    else: pos += scalar[t]
for _ in range(n_kv):
    string(); (t,) = struct.unpack_from("<I", data, pos); pos += 4; value(t)
total = 0
for _ in range(n_tensors):
    string(); (nd,) = struct.unpack_from("<I", data, pos); pos += 4
    dims = struct.unpack_from("<%dQ" % nd, data, pos); pos += 8 * nd
    (t, _) = struct.unpack_from("<IQ", data, pos); pos += 12
    n = 1
    for d in dims: n *= d
    per, size = blocks[t]
    total += n // per * size
print(total)
PY
}

# Model shapes (see the MODEL.md files): bytes of one layer's fp32 weights, the embedding and the
# head. Per layer: 2 norms (2 dim) + wq, wo (2 dim^2) + wk, wv (2 kv_dim dim) + 3 FFN (3 ffn dim).
layer_bytes() { echo $((4 * (2 * $1 + 2 * $1 * $1 + 2 * $2 * $1 + 3 * $3 * $1))); }
LITE16_LAYER=$(layer_bytes 128 64 384)
LITE16_EMBED=$((4 * 512 * 128))
LITE16_HEAD=$((4 * (512 * 128 + 128)))
STORIES_LAYER=$(layer_bytes 64 32 172)
STORIES_EMBED=$((4 * 512 * 64))
STORIES_HEAD=$((4 * (512 * 64 + 64)))

# sm_check LABEL SPLIT N_LAYERS LAYER EMBED HEAD TOTAL: the last run's metrics ($sm_dir/m.json)
# against SPLIT ("0-3,4-9,10-15"). TOTAL is the one-stage weight_bytes (or empty).
sm_check() {
    local label=$1 split=$2 n_layers=$3 layer=$4 embed=$5 head=$6 total=$7
    if [ "$RC" -ne 0 ] || has_sanitizer_report || [ ! -s "$sm_dir/m.json" ]; then
        fail "$label: runs and writes --metrics-json" "$(last_run_details)"
        return
    fi
    local -a ranges
    IFS=, read -r -a ranges <<<"$split"
    local n_stages=${#ranges[@]} problems="" sum=0 rows0="" lines
    lines=$(stage_table "$sm_dir/m.json")
    [ "$(printf '%s\n' "$lines" | grep -c .)" -eq "$n_stages" ] ||
        problems+="metrics list $(printf '%s\n' "$lines" | grep -c .) stages, expected $n_stages; "
    local stage rank first end weight rows
    while read -r stage rank first end weight rows; do
        [ -z "$stage" ] && continue
        local want=${ranges[$((stage - 1))]:-}
        local want_first=${want%-*} want_last=${want#*-}
        [ "$first" = "$want_first" ] && [ "$end" = "$((want_last + 1))" ] ||
            problems+="stage $stage has layers [$first,$end), expected [$want_first,$((want_last + 1))); "
        [ "$rank" = "$stage" ] || problems+="stage $stage is on rank $rank, expected $stage; "
        local expected=$(((end - first) * layer))
        [ "$stage" -eq 1 ] && expected=$((expected + embed))
        [ "$stage" -eq "$n_stages" ] && expected=$((expected + head))
        [ "$weight" = "$expected" ] ||
            problems+="stage $stage (layers $first-$((end - 1))) has weight_bytes $weight, expected $expected; "
        if [ "$stage" -gt 1 ] && [ "$stage" -lt "$n_stages" ]; then
            [ "$weight" -eq $(((end - first) * layer)) ] && [ -n "$total" ] && [ "$weight" -lt "$total" ] ||
                problems+="middle stage $stage: $weight bytes is not (its layers) x $layer and below the model's $total; "
        fi
        [ -z "$rows0" ] && rows0=$rows
        [ "$rows" = "$rows0" ] && [ "$rows" -gt 0 ] || problems+="stage $stage computed $rows rows, stage 1 $rows0; "
        sum=$((sum + weight))
    done <<<"$lines"
    [ -z "$total" ] || [ "$sum" -eq "$total" ] || problems+="the stages hold $sum bytes, one stage $total; "
    local generated
    generated=$(json_top "$sm_dir/m.json" generated_tokens)
    [ "${generated:-0}" -gt 0 ] 2>/dev/null || problems+="generated_tokens is '$generated'; "
    if [ -z "$problems" ]; then
        pass "$label: stages $split hold their layers' bytes"
    else
        fail "$label: stages $split hold their layers' bytes" "${problems//; /$'\n'}" "$lines"
    fi
}

stage_memory_checks() {
    L16=$LITE16/model-f32.gguf
    rm -f "$sm_dir/m.json"
    ramp generate -m "$L16" -f "$sm_dir/prompts.txt" -n 8 --temp 0 --metrics-json "$sm_dir/m.json"
    sm_check "lite16 one stage" "0-15" 16 "$LITE16_LAYER" "$LITE16_EMBED" "$LITE16_HEAD" \
        $((16 * LITE16_LAYER + LITE16_EMBED + LITE16_HEAD))
    # The split runs below are measured against what this one-stage run reported.
    L16_TOTAL=
    if [ -s "$sm_dir/m.json" ]; then
        requests=$(json_top "$sm_dir/m.json" requests)
        check "$([ "$requests" = 3 ]; echo $?)" "metrics: requests = 3 prompts (got $requests)"
        L16_TOTAL=$(stage_table "$sm_dir/m.json" | awk 'NR == 1 { print $5 }')
    fi

    for split in 0-3,4-9,10-15 0-0,1-9,10-14,15-15 0-7,8-15; do
        n=$(($(tr -cd , <<<"$split" | wc -c) + 1))
        rm -f "$sm_dir/m.json"
        ramp generate -m "$L16" -f "$sm_dir/prompts.txt" -n 8 --temp 0 --stages "$n" --layers "$split" \
            --metrics-json "$sm_dir/m.json"
        sm_check "lite16 --stages $n" "$split" 16 "$LITE16_LAYER" "$LITE16_EMBED" "$LITE16_HEAD" "$L16_TOTAL"
    done

    # The balanced split of the 5-layer model into 5 stages: one layer each.
    rm -f "$sm_dir/m.json"
    ramp generate -m "$STORIES/stories260K-f32.gguf" -f "$sm_dir/prompts.txt" -n 8 --temp 0 --stages 5 \
        --metrics-json "$sm_dir/m.json"
    sm_check "stories260K --stages 5" "0-0,1-1,2-2,3-3,4-4" 5 "$STORIES_LAYER" "$STORIES_EMBED" "$STORIES_HEAD" \
        $((5 * STORIES_LAYER + STORIES_EMBED + STORIES_HEAD))

    # Quantized files: a stage's weight_bytes is the stored bytes of its tensors (weights stay in
    # file form), the one-stage figure is every tensor of the file, and stages add up to it.
    for f in "$BASE16/model-q4_0.gguf" "$RAMP_SHARED/models/synth256/synth256-q4_k_m.gguf"; do
        [ -s "$f" ] || { skip "stage memory of $(basename "$f")" "file missing"; continue; }
        tensor_total=$(gguf_tensor_bytes "$f")
        rm -f "$sm_dir/m.json"
        ramp generate -m "$f" -f "$sm_dir/prompts.txt" -n 4 --temp 0 --metrics-json "$sm_dir/m.json"
        one=$( [ -s "$sm_dir/m.json" ] && stage_table "$sm_dir/m.json" | awk 'NR == 1 { print $5 }')
        check "$([ "$RC" -eq 0 ] && [ -n "$one" ] && [ "$one" = "$tensor_total" ]; echo $?)" \
            "$(basename "$f"): one stage holds the file's $tensor_total tensor bytes (weight_bytes $one)" "$(last_run_details)"
        rm -f "$sm_dir/m.json"
        ramp generate -m "$f" -f "$sm_dir/prompts.txt" -n 4 --temp 0 --stages 2 --metrics-json "$sm_dir/m.json"
        sum=$( [ -s "$sm_dir/m.json" ] && stage_table "$sm_dir/m.json" | awk '{ s += $5 } END { print s }')
        check "$([ "$RC" -eq 0 ] && [ "$sum" = "$tensor_total" ]; echo $?)" \
            "$(basename "$f") --stages 2: the stages hold $sum bytes, the file's tensors $tensor_total" "$(last_run_details)"
    done

    # The same under MPI: each rank loads only its slice.
    if have_mpi; then
        rm -f "$sm_dir/m.json"
        mpi_run 120 4 generate -m "$L16" -f "$sm_dir/prompts.txt" -n 8 --temp 0 --layers 0-2,3-12,13-15 \
            --metrics-json "$sm_dir/m.json" --timeout 30
        sm_check "lite16 mpirun -np 4" "0-2,3-12,13-15" 16 "$LITE16_LAYER" "$LITE16_EMBED" "$LITE16_HEAD" "$L16_TOTAL"
        # CPU time: every rank reports its own, and the job's is rank 0's plus the stages'.
        cpu=$( [ -s "$sm_dir/m.json" ] && python3 -c 'import json, sys
m = json.load(open(sys.argv[1])); stages = [s["cpu_seconds"] for s in m["stages"]]
ok = len(stages) == 3 and all(c > 0 for c in stages) and m["rank0_cpu_seconds"] > 0 and \
    abs(m["cpu_seconds"] - m["rank0_cpu_seconds"] - sum(stages)) < 1e-6
print("ok" if ok else "cpu_seconds %s, rank 0 %s, stages %s" % (m["cpu_seconds"], m["rank0_cpu_seconds"], stages))' "$sm_dir/m.json")
        check "$([ "$cpu" = ok ]; echo $?)" "lite16 mpirun -np 4: CPU time per rank, and the job's is their sum" "$cpu"
        rm -f "$sm_dir/m.json"
        mpi_run 120 3 generate -m "$LITE16/model.bin" --tokenizer "$TOK" -f "$sm_dir/prompts.txt" -n 8 --temp 0 \
            --layers 0-4,5-15 --metrics-json "$sm_dir/m.json" --timeout 30
        sm_check "lite16/model.bin mpirun -np 3" "0-4,5-15" 16 "$LITE16_LAYER" "$LITE16_EMBED" "$LITE16_HEAD" "$L16_TOTAL"
    else
        skip "stage memory under mpirun" "mpirun not found"
    fi
}

if command -v jq >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1; then
    stage_memory_checks
else
    skip "stage memory checks" "needs jq or python3 to read the metrics JSON"
fi
