# untrusted.sh: files from outside end in a clear error through the `ramp` command (issue 12):
# damaged exit classifiers and sidecars, classifiers made for another model, prompt and data files
# that are directories, endless streams, unreadable or full of control bytes, GGUF files with an
# infinite norm epsilon or a block count that disagrees with their tensors, llama2.c headers whose
# fields overflowed `int`. Each must exit 1 (2 for bad usage) with a message naming the file and
# never with a signal or a sanitizer report. Sourced by tests/run-e2e.sh (helpers from lib.sh).

U=$E2E_TMP/untrusted
mkdir -p "$U"
M=$LITE16/model-f32.gguf
SST2=$RAMP_SHARED/data/sst2
EXIT_ARGS=(--ctx 256 --task sst2 --exit-layers 4,8,12)

# refused WHAT NEEDLE STATUSES CMD...: CMD exits with one of STATUSES ("1" or "1 2"), its stderr
# contains NEEDLE, and no sanitizer spoke.
refused() {
    local what=$1 needle=$2 statuses=$3
    shift 3
    run 60 "$RAMP_BIN" "$@"
    local status_ok=1 s
    for s in $statuses; do [ "$RC" -eq "$s" ] && status_ok=0; done
    if has_sanitizer_report; then
        fail "$what: no sanitizer report" "$(last_run_details)"
    elif [ "$status_ok" -ne 0 ] || ! grep -qF -- "$needle" "$ERR"; then
        fail "$what: exit $statuses with a message containing '$needle'" "$(last_run_details)"
    else
        pass "$what: exit $RC, $(grep -m 1 -F -- "$needle" "$ERR" | cut -c1-140)"
    fi
}

# --- exit classifiers ---------------------------------------------------------------------------
ramp exit-train -m "$M" "${EXIT_ARGS[@]}" --data "$SST2/stsa.binary.train" --limit 80 -o "$U/clf"
check $RC "a classifier to damage is trained" "$(last_run_details)"
ramp exit-calibrate -m "$M" "${EXIT_ARGS[@]}" --data "$SST2/stsa.binary.train" --limit 80 -o "$U/conf.json"
check $RC "confidence thresholds to damage are calibrated" "$(last_run_details)"

# damaged NAME SED_SCRIPT: a copy of the classifier as U/NAME with the libsvm file edited by sed.
damaged() {
    sed "$2" "$U/clf" >"$U/$1"
    cp "$U/clf.json" "$U/$1.json"
}
# sidecar NAME PYTHON_EDIT: a copy with the sidecar edited (d is the JSON object).
sidecar() {
    cp "$U/clf" "$U/$1"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); $2; json.dump(d, open(sys.argv[2], 'w'))" \
        "$U/clf.json" "$U/$1.json"
}
eval_with() { refused "$1" "$2" 1 eval -m "$M" "${EXIT_ARGS[@]}" --data "$SST2/stsa.binary.dev" --limit 20 --exit "svm:$U/$3"; }

damaged norho '/^rho /d'
eval_with "classifier without its rho line (was SIGSEGV)" "norho:line 8 (libsvm model): missing key 'rho'" norho
damaged bigsv 's/^total_sv .*/total_sv 2147483647/'
eval_with "total_sv 2147483647 (was SIGSEGV in libsvm)" "key 'total_sv' expected 2..36000" bigsv
damaged negsv 's/^total_sv .*/total_sv -1/'
eval_with "total_sv -1 (was an ASan allocation-size-too-big)" "key 'total_sv'" negsv
damaged bigclass 's/^nr_class .*/nr_class 2147483647/'
eval_with "nr_class 2147483647 (was an ASan allocation-size-too-big)" "key 'nr_class' expected 2" bigclass
damaged nolabel '/^label /d'
eval_with "classifier without its label line (was uninitialised labels)" "missing key 'label'" nolabel
damaged gammanan 's/^gamma .*/gamma nan/'
eval_with "gamma nan (was an undefined shift, then never exiting)" "key 'gamma'" gammanan
head -c "$(($(wc -c <"$U/clf") * 2 / 5))" "$U/clf" >"$U/cut"
cp "$U/clf.json" "$U/cut.json"
eval_with "a classifier cut short (was accepted)" "cut" cut
sidecar layers24 'd["total_layers"] = 24'
eval_with "sidecar total_layers 24 for a 16-layer classifier" "total_layers differ" layers24
sidecar task 'd["task"] = "nonsense"'
eval_with "sidecar with an unknown task" "key 'task'" task
sidecar flat 'd["scale_max"][0] = d["scale_min"][0]'
eval_with "sidecar with scale_min == scale_max for top_prob" "top_prob" flat
sidecar shifted 'd["exit_layers"] = [l + 1 for l in d["exit_layers"]]'
refused "sidecar with exit layers other than the training run's" "exit_layers or total_layers differ" 1 \
    eval -m "$M" --ctx 256 --task sst2 --exit-layers 5,9,13 --data "$SST2/stsa.binary.dev" --limit 20 --exit "svm:$U/shifted"
# A sound classifier of the 16-layer lite16 on the 5-layer stories260K (same tokenizer, same labels).
refused "a classifier made for another model's depth" "made for a model of 16 layers" 1 \
    eval -m "$STORIES/stories260K-f32.gguf" --ctx 256 --task sst2 --exit-layers 2 --data "$SST2/stsa.binary.dev" \
    --limit 20 --exit "svm:$U/clf"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['thresholds'][0] = 7; json.dump(d, open(sys.argv[2], 'w'))" \
    "$U/conf.json" "$U/conf-bad.json"
refused "a confidence threshold of 7" "key 'thresholds' element 0" 1 \
    generate -m "$M" -p "Once upon a time" -n 4 --exit "conf:$U/conf-bad.json"
refused "a directory as the confidence file" "is a directory" 1 generate -m "$M" -p "Once" -n 4 --exit "conf:$U"

# --- prompt and data files ----------------------------------------------------------------------
mkdir -p "$U/prompts.d"
refused "a directory as -f (said 'no prompts')" "is a directory" "1 2" generate -m "$M" -f "$U/prompts.d" -n 4
refused "-f /dev/zero (grew without bound)" "NUL byte at offset 0" "1 2" generate -m "$M" -f /dev/zero -n 4
if [ -r /proc/self/mem ]; then
    refused "a read error in -f (was taken for the end of the file)" "read error at byte 0" "1 2" \
        generate -m "$M" -f /proc/self/mem -n 4
fi
head -c 1100000 /dev/zero | tr '\0' 'a' >"$U/long-line.txt"
refused "a prompt line over 1 MiB" "line 1 is longer than 1 MiB" "1 2" generate -m "$M" -f "$U/long-line.txt" -n 4
refused "a directory as --data" "is a directory" 1 eval -m "$M" --task sst2 --data "$U/prompts.d" --limit 4
printf '2 \033[2J\033]0;owned\007 review\n' >"$U/escapes.txt"
refused "control bytes from a data file are escaped" '\x1b[2J\x1b]0;owned\x07' 1 \
    eval -m "$M" --task sst2 --data "$U/escapes.txt"
if grep -q $'\033' "$ERR"; then
    fail "no raw escape byte reaches the terminal" "$(od -c "$ERR" | head -5)"
else
    pass "no raw escape byte reaches the terminal"
fi

# --- model files --------------------------------------------------------------------------------
# patch_gguf SOURCE OUT KEY STRUCT_FORMAT VALUE: OUT = SOURCE with the value of metadata KEY
# replaced (found as the key's bytes followed by its 4-byte type).
patch_gguf() {
    python3 - "$@" <<'PY'
import struct, sys
src, out, key, fmt, value = sys.argv[1:6]
data = bytearray(open(src, "rb").read())
at = data.find(key.encode()) + len(key) + 4
data[at:at + struct.calcsize(fmt)] = struct.pack(fmt, float(value) if fmt.endswith("f") else int(value))
open(out, "wb").write(data)
PY
}
patch_gguf "$STORIES/stories260K-f32.gguf" "$U/eps-inf.gguf" llama.attention.layer_norm_rms_epsilon '<f' inf
refused "GGUF with an infinite RMS epsilon (printed nothing, exit 0)" "eps-inf.gguf: RMSNorm epsilon" 1 \
    generate -m "$U/eps-inf.gguf" -p "Once upon a time" -n 4
patch_gguf "$STORIES/stories260K-f32.gguf" "$U/blocks3.gguf" llama.block_count '<I' 3
refused "GGUF declaring 3 blocks of its 5 (ran a truncated model)" "blocks3.gguf: tensor blk.3" 1 \
    generate -m "$U/blocks3.gguf" -p "Once upon a time" -n 4
patch_gguf "$STORIES/stories260K-f32.gguf" "$U/kvheads.gguf" llama.attention.head_count_kv '<I' 2147483647
refused "GGUF with head_count_kv 2^31-1" "head_count_kv is 2147483647" 1 generate -m "$U/kvheads.gguf" -p "Once" -n 4
cp "$STORIES/stories260K.bin" "$U/kv.bin" && chmod u+w "$U/kv.bin"
printf '\377\377\377\177' | dd of="$U/kv.bin" bs=1 seek=16 conv=notrunc status=none
refused "llama2.c header with n_kv_heads 2^31-1 (was UBSan in config_derive)" "n_kv_heads is 2147483647" 1 \
    generate -m "$U/kv.bin" --tokenizer "$TOK" -p "Once" -n 4
refused "a directory as --tokenizer" "is a directory" 1 \
    generate -m "$STORIES/stories260K.bin" --tokenizer "$U/prompts.d" -p "Once" -n 4

# --- output ---------------------------------------------------------------------------------------
if [ -w /dev/full ]; then
    timeout -k 5 60 "$RAMP_BIN" eval -m "$M" --task sst2 --data "$SST2/stsa.binary.dev" --limit 8 </dev/null \
        >/dev/full 2>"$ERR"
    RC=$?
    [ "$RC" -eq 1 ] && grep -qF "stdout: cannot write the results" "$ERR" && ! has_sanitizer_report
    check $? "eval's results to a full disk: exit 1 (was 0)" "$(last_run_details)"
fi
