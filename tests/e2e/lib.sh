# lib.sh: helpers shared by the end-to-end checks (sourced by tests/run-e2e.sh).
#
# Provides: pass/fail/skip (one "ok - ..." / "not ok - ..." line per check, counted),
# run (a command with a timeout, capturing $OUT/$ERR and the status in $RC), mpi_run, and
# small predicates. Expects RAMP_BIN, RAMP_SHARED and E2E_TMP to be set.

E2E_PASSED=${E2E_PASSED:-0}
E2E_FAILED=${E2E_FAILED:-0}
E2E_SKIPPED=${E2E_SKIPPED:-0}

# Shared models (read-only).
STORIES=$RAMP_SHARED/models/stories260K
TOK=$STORIES/tok512.bin
BASE16=$RAMP_SHARED/models/base16
LITE16=$RAMP_SHARED/models/lite16
REF=$RAMP_SHARED/reference

OUT=$E2E_TMP/last.out
ERR=$E2E_TMP/last.err
RC=0

# Sanitizer reports must never be mistaken for clean errors (ASan/UBSan exit with status 1 too).
# LeakSanitizer stays on for single-process runs: a leak on an error path is a bug.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}abort_on_error=0:exitcode=99"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:exitcode=99"
# With the default (spinning) OpenMP wait policy, a busy machine makes every parallel region wait
# for a descheduled thread: runs here took 15-30 s instead of 1 s while other jobs used the cores.
# Passive waiting keeps the run time of these checks predictable; results are unaffected.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
SANITIZER_PATTERN='AddressSanitizer|LeakSanitizer|runtime error|UndefinedBehaviorSanitizer'

# E2E_TIMES=1 appends the seconds since the previous check to each line.
E2E_LAST_CHECK=$(date +%s.%N)
E2E_CHECK_TIME=
check_time() {
    E2E_CHECK_TIME=
    [ "${E2E_TIMES:-0}" = 1 ] || return 0
    local t
    t=$(date +%s.%N)
    E2E_CHECK_TIME=$(awk -v a="$E2E_LAST_CHECK" -v b="$t" 'BEGIN { printf " [%.2f s]", b - a }')
    E2E_LAST_CHECK=$t
}

pass() {
    E2E_PASSED=$((E2E_PASSED + 1))
    check_time
    echo "ok - $1$E2E_CHECK_TIME"
}

# fail DESCRIPTION [DETAIL...]: details are printed as "#" comment lines under the check.
fail() {
    E2E_FAILED=$((E2E_FAILED + 1))
    check_time
    echo "not ok - $1$E2E_CHECK_TIME"
    shift
    local line
    for line in "$@"; do
        printf '%s\n' "$line" | sed 's/^/#   /'
    done
}

skip() {
    E2E_SKIPPED=$((E2E_SKIPPED + 1))
    echo "ok - $1 # SKIP ${2:-}"
}

# check CONDITION_STATUS DESCRIPTION [DETAIL...]: pass when the status is 0.
check() {
    local status=$1
    shift
    if [ "$status" -eq 0 ]; then pass "$1"; else fail "$@"; fi
}

# What went wrong with the last run, for failure details.
last_run_details() {
    echo "exit status $RC"
    if [ -s "$ERR" ]; then
        echo "stderr (first lines):"
        head -n 12 "$ERR" | cut -c1-300
    else
        echo "stderr: (empty)"
    fi
}

# run SECONDS CMD...: runs CMD with a time limit; stdout -> $OUT, stderr -> $ERR, status -> $RC.
# A command that overruns gets SIGTERM, then SIGKILL 5 s later (status 124 or 137).
run() {
    local seconds=$1
    shift
    timeout -k 5 "$seconds" "$@" </dev/null >"$OUT" 2>"$ERR"
    RC=$?
}

# ramp ARGS...: runs the binary under test with a 60 s limit.
ramp() { run 60 "$RAMP_BIN" "$@"; }

has_sanitizer_report() { grep -qE "$SANITIZER_PATTERN" "$ERR" 2>/dev/null; }

# --- MPI ---------------------------------------------------------------------------------------

MPIRUN=()
if command -v mpirun >/dev/null 2>&1; then
    MPIRUN=(mpirun --oversubscribe)
    [ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
    # Open MPI's own allocations show up as leaks at exit under LeakSanitizer; only there are
    # leaks not checked (memory errors still are).
    MPIRUN+=(-x "ASAN_OPTIONS=${ASAN_OPTIONS}:detect_leaks=0" -x UBSAN_OPTIONS -x OMP_WAIT_POLICY)
fi
have_mpi() { [ ${#MPIRUN[@]} -gt 0 ]; }

# mpi_run SECONDS NP ARGS...: mpirun -np NP RAMP_BIN ARGS... through run.
mpi_run() {
    local seconds=$1 np=$2
    shift 2
    run "$seconds" "${MPIRUN[@]}" -np "$np" "$RAMP_BIN" "$@"
}

# process_alive PID: the process runs (it exists and is not a zombie).
process_alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# kill_session SID: SIGKILL to every process of the session (mpirun and its ranks) and to its leader.
kill_session() {
    local pid
    for pid in $(pgrep -s "$1" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
    kill -9 "$1" 2>/dev/null
}

# session_rank_pid SID RANK: the pid of the MPI process of that rank in the session, or nothing.
session_rank_pid() {
    local pid
    for pid in $(pgrep -s "$1" 2>/dev/null); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
            echo "$pid"
            return
        fi
    done
}

# --- misc --------------------------------------------------------------------------------------

# unescape_text TEXT: the reference files write newlines as the two characters \n.
unescape_text() {
    local text=$1
    printf '%s' "${text//\\n/$'\n'}"
}

now() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# section NAME: a comment line with the time the previous section took.
E2E_SECTION_START=
E2E_SECTION_NAME=
section_end() {
    if [ -n "$E2E_SECTION_NAME" ]; then
        echo "# $E2E_SECTION_NAME: $(elapsed_since "$E2E_SECTION_START") s"
    fi
    E2E_SECTION_NAME=
}
section() {
    section_end
    E2E_SECTION_NAME=$1
    E2E_SECTION_START=$(now)
    echo "# --- $1"
}

# trec_batch_requests FIRST COUNT: COUNT batch requests from TREC test questions FIRST.. (every 5th
# a chat request, every 7th a shorthand line, greedy, 2-10 new tokens).
trec_batch_requests() {
    tail -n +"$1" "$RAMP_SHARED/data/trec/test.txt" | head -n "$2" | cut -d' ' -f2- |
        jq -R -c -n --argjson first "$1" '[inputs] | to_entries[] | (.key + $first - 1) as $i | .value as $q |
            ("q\($i)") as $id | (2 + $i % 9) as $n |
            if $i % 5 == 4 then {custom_id: $id, method: "POST", url: "/v1/chat/completions",
                body: {messages: [{role: "user", content: $q}], max_tokens: $n, temperature: 0}}
            elif $i % 7 == 3 then {custom_id: $id, prompt: "Question: \($q)\nType:", max_tokens: $n, temperature: 0}
            else {custom_id: $id, method: "POST", url: "/v1/completions",
                body: {prompt: "Question: \($q)\nType:", max_tokens: $n, temperature: 0}} end'
}

# batch_norm FILE: a ramp batch output's lines, keys sorted, without the "created" time, sorted.
batch_norm() { jq -S -c 'del(.response.body.created)' "$1" | LC_ALL=C sort; }
# batch_problems FILE REF REF_NAME: why FILE is not a final batch output equal to REF (nothing if it
# is): a missing or torn last line, lines that are not JSON, a custom_id twice, other answers.
batch_problems() {
    local file=$1 ref=$2 ref_name=$3 lines valid dups
    [ -s "$file" ] || { echo "$file is empty or missing"; return; }
    [ "$(tail -c 1 "$file" | od -An -c | tr -d ' ')" = '\n' ] || echo "the last line has no newline"
    lines=$(wc -l <"$file")
    valid=$(jq -R 'fromjson? | objects | 1' "$file" 2>/dev/null | wc -l)
    [ "$valid" -eq "$lines" ] || echo "$((lines - valid)) of $lines lines are not JSON objects"
    dups=$(jq -r '.custom_id // empty' "$file" 2>/dev/null | sort | uniq -d | head -n 5 | paste -sd' ')
    [ -z "$dups" ] || echo "custom_id written twice: $dups"
    if ! cmp -s <(batch_norm "$file") <(batch_norm "$ref"); then
        echo "differs from the $ref_name ($lines vs $(wc -l <"$ref") lines):"
        diff <(batch_norm "$ref") <(batch_norm "$file") | head -n 4 | cut -c1-240
    fi
}

# --- llama.cpp beside ramp ----------------------------------------------------------------------
# greedy_differs_from_llama FILE TOKENS PROMPTS SCRATCH_DIR: returns the number of prompts (one per
# line of PROMPTS) whose greedy continuation of TOKENS tokens differs between ramp and llama.cpp's
# llama-simple ($PEER; 0: all the same), printing both texts of each that differs.
# llama-simple prints the first piece's U+2581 (SentencePiece vocabulary; <s> before it where the
# file asks for BOS) before the prompt; its raw bytes that are not UTF-8 are decoded as ramp writes
# them (U+FFFD each).
greedy_differs_from_llama() {
    local file=$1 tokens=$2 prompts=$3 scratch=$4 prompt differ=0
    while IFS= read -r prompt; do
        run 60 "$RAMP_BIN" generate -m "$file" -p "$prompt" -n "$tokens" --temp 0
        cp "$OUT" "$scratch/ramp.txt"
        run 60 "$PEER/llama-simple" -m "$file" -n "$tokens" "$prompt"
        python3 - "$scratch/ramp.txt" "$OUT" <<'PY' || {
import re, sys
def norm(path):
    text = open(path, "rb").read().decode("utf-8", errors="replace")
    return re.sub(r"^<s>", "", text).replace("\u2581", " ").strip()
sys.exit(0 if norm(sys.argv[1]) == norm(sys.argv[2]) else 1)
PY
            differ=$((differ + 1))
            echo "# ramp:      $(head -c 200 "$scratch/ramp.txt")"
            echo "# llama.cpp: $(head -c 200 "$OUT")"
        }
    done <"$prompts"
    return "$differ"
}

# llama_parity_checks LABEL DIR F32_FILE Q8_FILE: one architecture's synthetic files against
# llama.cpp where the peer runs (F32: the greedy text of 16 tokens on at least 7 of the 8 prompts
# in DIR/prompts.txt; Q8_0: the first token on at least 7 of 8, as a random model's near-ties make
# longer quantized texts part ways within a few tokens in either engine), then the Q8_0 file's text
# in one process against 2 pipeline stages under mpirun.
llama_parity_checks() {
    local label=$1 dir=$2 f32=$3 q8=$4 differ
    . "$here/../scripts/llama-peer.sh"
    PEER=${BENCH_PEER:-$RAMP_SHARED/peers/llama.cpp}
    if peer_usable "$PEER" llama-simple; then
        greedy_differs_from_llama "$f32" 16 "$dir/prompts.txt" "$dir"
        differ=$?
        check $((differ > 1)) "$label: F32 greedy text equals llama.cpp's on $((8 - differ)) of 8 prompts (16 tokens; at least 7)" \
            "$differ of 8 differ"
        greedy_differs_from_llama "$q8" 1 "$dir/prompts.txt" "$dir"
        differ=$?
        check $((differ > 1)) "$label: Q8_0, the first greedy token equals llama.cpp's on $((8 - differ)) of 8 prompts (at least 7)" \
            "$differ of 8 differ"
    else
        skip "$label: greedy text against llama.cpp" "$PEER_PROBLEM"
    fi
    one_process_then_two_stages "$label: Q8_0" "$q8" "$dir"
}

# one_process_then_two_stages LABEL FILE DIR: FILE's greedy text (16 tokens for each line of
# DIR/prompts.txt) in one process, then the same text from a pipeline of 2 stages under mpirun.
one_process_then_two_stages() {
    local label=$1 file=$2 dir=$3
    run 60 "$RAMP_BIN" generate -m "$file" -f "$dir/prompts.txt" -n 16 --temp 0
    cp "$OUT" "$dir/one.txt"
    [ "$RC" -eq 0 ] && [ -s "$OUT" ]
    check $? "$label, one process" "$(last_run_details)"
    two_stages_print "$label, mpirun -np 3 (2 stages) prints the one-process text" "$dir/one.txt" \
        -m "$file" -f "$dir/prompts.txt" -n 16
}

# two_stages_print WHAT BASELINE GENERATE_ARGS...: `generate GENERATE_ARGS --temp 0` as a pipeline of
# 2 stages under mpirun prints exactly BASELINE (skipped without mpirun).
two_stages_print() {
    local what=$1 baseline=$2
    shift 2
    if ! have_mpi; then
        skip "$what" "no mpirun"
        return
    fi
    mpi_run 120 3 generate "$@" --temp 0 --timeout 30
    [ "$RC" -eq 0 ] && cmp -s "$OUT" "$baseline"
    check $? "$what" "$(last_run_details)"
}

# texts_differ WHAT PROMPTS FILE_A FILE_B: the greedy texts (16 tokens) of two files differ, as a
# setting the reader must honour changes them.
texts_differ() {
    local what=$1 prompts=$2 a=$3 b=$4
    run 60 "$RAMP_BIN" generate -m "$b" -f "$prompts" -n 16 --temp 0
    cp "$OUT" "$OUT.other"
    run 60 "$RAMP_BIN" generate -m "$a" -f "$prompts" -n 16 --temp 0
    [ "$RC" -eq 0 ] && ! cmp -s "$OUT" "$OUT.other"
    check $? "$what" "$(last_run_details)"
}

# parity_prompts DIR: the eight prompts the architecture checks continue, into DIR/prompts.txt.
parity_prompts() {
    printf '%s\n' "Once upon a time there was" "Hello world" "Question: Who wrote Hamlet ?" \
        "Review: a gorgeous, witty, seductive movie." "The cat sat on the mat and" "Tom and Lily went to the park" \
        "Question: What is the capital of France ?" "Review: dull and lifeless" >"$1/prompts.txt"
}

# gguf_rename IN OUT OLD NEW: a copy of the GGUF file IN at OUT with the first occurrence of the
# name OLD (a key or a tensor) spelled NEW, of the same length, so every offset stays valid.
gguf_rename() {
    [ ${#3} -eq ${#4} ] || { echo "gguf_rename: '$3' and '$4' differ in length" >&2; return 1; }
    python3 - "$@" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(data.replace(sys.argv[3].encode(), sys.argv[4].encode(), 1))
PY
}

# gguf_set_u32 IN OUT KEY VALUE: a copy of the GGUF file IN at OUT with the uint32 metadata value of
# KEY replaced in place (the same length, so every offset stays valid).
gguf_set_u32() {
    python3 - "$1" "$2" "$3" "$4" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
key = sys.argv[3].encode()
at = data.index(key) + len(key) + 4  # past the key and its value type
data[at:at + 4] = struct.pack("<I", int(sys.argv[4]))
open(sys.argv[2], "wb").write(data)
PY
}

# gguf_set_string IN OUT KEY VALUE: a copy of the GGUF file IN at OUT with the string metadata
# value of KEY set to VALUE (added when IN has no such key). The key/value section changes length,
# so the tensor data moves to the next aligned offset after it (tensor offsets are relative to it).
gguf_set_string() {
    python3 - "$@" <<'PY'
import struct, sys
src, dst, key, value = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()
d = open(src, "rb").read()
magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", d, 0)
assert magic == b"GGUF", src + ": not a GGUF file"
fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def past_value(kind, at):
    if kind == 8:
        return at + 8 + struct.unpack_from("<Q", d, at)[0]
    if kind == 9:
        item, count = struct.unpack_from("<IQ", d, at)
        at += 12
        if item in fixed:
            return at + count * fixed[item]
        for _ in range(count):
            at = past_value(item, at)
        return at
    return at + fixed[kind]
def string(b):
    return struct.pack("<Q", len(b)) + b
at, kvs, alignment = 24, [], 32
for _ in range(n_kv):
    start = at
    name = d[at + 8:at + 8 + struct.unpack_from("<Q", d, at)[0]]
    at += 8 + len(name)
    kind = struct.unpack_from("<I", d, at)[0]
    at = past_value(kind, at + 4)
    if name == b"general.alignment":
        alignment = struct.unpack_from("<I", d, at - 4)[0]
    if name != key:
        kvs.append(d[start:at])
kvs.append(string(key) + struct.pack("<I", 8) + string(value))
infos = at
for _ in range(n_tensors):
    at += 8 + struct.unpack_from("<Q", d, at)[0]
    at += 4 + 8 * struct.unpack_from("<I", d, at)[0] + 12
data = at + (-at % alignment)
out = struct.pack("<4sIQQ", b"GGUF", version, n_tensors, len(kvs)) + b"".join(kvs) + d[infos:at]
out += b"\0" * (-len(out) % alignment) + d[data:]
open(dst, "wb").write(out)
PY
}
