# batch.sh: `ramp batch` without Slurm (lite16, --threads 1), sourced by tests/run-e2e.sh.
#
# (1) A mixed input: OpenAI Batch API lines for /v1/completions and /v1/chat/completions, shorthand
#     lines (completions and chat), malformed JSON, a non-object, a missing and an empty custom_id,
#     an unknown url, a GET, a body that is not an object, a duplicate custom_id, a prompt beyond the
#     context, bad body fields, a blank line: exact counts of 200 / 400 / error lines (each error
#     line naming its input line), every valid custom_id exactly once, greedy bodies equal to
#     `ramp generate`'s continuation of the same prompts (chat: of the fallback template's
#     "User: ...\nAssistant:"), the summary line's counts; rerunning the finished job writes nothing.
# (2) Bad files: a missing, an unreadable (as nobody when root) and a directory input: exit 1 with a
#     message naming the file and why, the output untouched (and not created); usage errors exit 2.
# (3) Resume, 100 requests, against one uninterrupted run: SIGTERM mid-run (exit 75, rerun exit 0),
#     SIGTERM with --grace 0.1 (requests in flight are cancelled and redone), SIGUSR1, kill -9 mid-run
#     (no torn line; rerun), a torn last line appended by hand (cut, redone): every time the final
#     output equals the uninterrupted run, valid JSONL, no custom_id twice.
# (4) mpirun -np 4 equals one process; SIGUSR1 to mpirun mid-run -> 75, resumed under mpirun;
#     cluster/launch --stages 3 (mpirun) + SIGTERM mid-run -> 75, resumed.
# (5) --metrics-json (--stages 3, LITE exits via --exit conf:FILE --exit-default conf): figures,
#     the time series (monotonic, last sample = every line, per-stage busy/idle) and the exit-layer
#     histogram, consistent with the bodies' layer counts; the same exits under mpirun -np 4 equal
#     the one-process run.
# (6) --progress-seconds 1: progress lines on stderr (one is printed in the check's line).
# Background runs go in sessions of their own (setsid) and are killed by session on overrun.

bt_dir=$(mktemp -d "$E2E_TMP/batch.XXXXXX")
BT_MODEL=$LITE16/model-f32.gguf
BT_FLAGS=(--threads 1)
BT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# A line of progress (non-terminal stderr), e.g.
# "ramp batch: [########............] 41/100 requests, 20.3 req/s, 112 tokens/s, ETA 3 s, layers skipped 0.0%"
BT_PROGRESS='^ramp batch: \[[#.]{20}\] [0-9]+/[0-9]+ requests, [0-9.]+ req/s, [0-9]+ tokens/s, ETA [0-9]+ s, layers skipped [0-9.]+%$'

# --- helpers -------------------------------------------------------------------------------------
# bt_start ERR CMD...: CMD in a session of its own, stderr to ERR; BT_PID is the session leader.
BT_PID=
bt_start() {
    local err=$1
    shift
    setsid "$@" </dev/null >/dev/null 2>"$err" &
    BT_PID=$!
}
# bt_wait PID SECONDS: BT_RC is its exit status (124 after an overrun: its session is killed).
BT_RC=
bt_wait() {
    local pid=$1 limit=$2 t0
    t0=$(now)
    while process_alive "$pid"; do
        if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            kill_session "$pid"
            wait "$pid" 2>/dev/null
            BT_RC=124
            return
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null
    BT_RC=$?
}
bt_lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
# bt_wait_lines FILE N PID SECONDS: until FILE has N lines (0), the process ended or time ran out (1).
bt_wait_lines() {
    local file=$1 n=$2 pid=$3 deadline=$(($(date +%s) + $4))
    while [ "$(bt_lines "$file")" -lt "$n" ]; do
        process_alive "$pid" || return 1
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.02
    done
}
bt_problems() { batch_problems "$1" "$2" "reference run"; }
# bt_summary ERR: ramp batch's summary line.
bt_summary() { grep -m 1 '^ramp batch: [0-9]* lines:' "$1"; }

# --- (1) a mixed input ----------------------------------------------------------------------------
bt_mixed=$bt_dir/mixed.jsonl
: >"$bt_mixed"
bt_line_no=0
bt_expect_ok=()      # custom_ids answered 200
bt_expect_refused=() # custom_id:code of the 400s
bt_expect_errors=()  # line:code of the error lines
bt_greedy=()         # custom_id|kind|prompt|max_tokens for the generate comparison
bt_add() { printf '%s\n' "$1" >>"$bt_mixed"; bt_line_no=$((bt_line_no + 1)); }
# bt_ok ID KIND(completions|chat) FORM(openai|short) TEXT N
bt_ok() {
    local id=$1 kind=$2 form=$3 text=$4 n=$5 body
    if [ "$kind" = chat ]; then
        body=$(jq -cn --arg t "$text" --argjson n "$n" '{messages: [{role: "user", content: $t}], max_tokens: $n, temperature: 0}')
    else
        body=$(jq -cn --arg t "$text" --argjson n "$n" '{prompt: $t, max_tokens: $n, temperature: 0}')
    fi
    if [ "$form" = openai ]; then
        local url=/v1/completions
        [ "$kind" = chat ] && url=/v1/chat/completions
        bt_add "$(jq -cn --arg id "$id" --arg url "$url" --argjson b "$body" '{custom_id: $id, method: "POST", url: $url, body: $b}')"
    else
        bt_add "$(jq -cn --arg id "$id" --argjson b "$body" '{custom_id: $id} + $b')"
    fi
    bt_expect_ok+=("$id")
    bt_greedy+=("$id|$kind|$text|$n")
}
bt_err() { bt_add "$1"; bt_expect_errors+=("$bt_line_no:$2"); }
bt_refused() { bt_add "$1"; bt_expect_refused+=("$2:$3"); }

bt_ok c1 completions openai $'Review: a gripping, funny and moving film\nSentiment:' 8
bt_ok c2 completions openai $'Question: Who wrote Hamlet ?\nType:' 6
bt_err 'this line is not JSON' invalid_line
bt_ok h1 chat openai 'hello' 8
bt_ok c3 completions openai 'Article: Stocks fell sharply on Monday' 12
bt_err '{"custom_id": "cut", "prompt": "a line cut in the middle"' invalid_line
bt_err '[1, 2, 3]' invalid_line
bt_ok s1 completions short 'Once upon a time' 10
bt_err '{"prompt": "no custom_id here", "max_tokens": 3}' invalid_line
bt_ok h2 chat openai 'Who was Galileo ?' 10
bt_err '{"custom_id": "", "prompt": "an empty custom_id", "max_tokens": 3}' invalid_line
bt_err '{"custom_id": "u1", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}' invalid_line
bt_add ''
bt_ok c4 completions openai 'The little bird sang a song and' 16
bt_err '{"custom_id": "g1", "method": "GET", "url": "/v1/completions", "body": {"prompt": "x"}}' invalid_line
bt_err '{"custom_id": "b1", "method": "POST", "url": "/v1/completions", "body": "not an object"}' invalid_line
bt_refused "$(jq -cn --arg p "Review: $(printf 'this film is long and slow , %.0s' $(seq 1 30))" \
    '{custom_id: "long1", method: "POST", url: "/v1/completions", body: {prompt: $p, max_tokens: 8, temperature: 0}}')" \
    long1 context_length_exceeded
bt_ok c5 completions openai $'Review: one long string of cliches .\nSentiment:' 5
bt_err '{"custom_id": "c1", "prompt": "the same custom_id as line 1", "max_tokens": 2}' duplicate_custom_id
bt_refused '{"custom_id": "neg1", "prompt": "x", "max_tokens": -3}' neg1 invalid_value
bt_ok h3 chat openai 'Tell me a story' 12
bt_refused '{"custom_id": "hot1", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "temperature": "hot"}}' hot1 invalid_type
bt_ok s2 completions short $'Question: What is an atom ?\nType:' 6
bt_ok s3 chat short 'What county is Modesto , California in ?' 6
bt_ok c6 completions openai $'Question: How far is it from Denver to Aspen ?\nType:' 7

bt_n_ok=${#bt_expect_ok[@]}
bt_n_refused=${#bt_expect_refused[@]}
bt_n_err=${#bt_expect_errors[@]}
bt_mixed_out=$bt_dir/mixed.out
run 120 "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_mixed" -o "$bt_mixed_out" "${BT_FLAGS[@]}"
cp "$ERR" "$bt_dir/mixed.err"
if [ "$RC" -ne 0 ] || has_sanitizer_report; then
    fail "batch: the mixed input ($bt_line_no lines) runs to its end, exit 0" "$(last_run_details)"
else
    problems=()
    total=$(bt_lines "$bt_mixed_out")
    n200=$(jq -c 'select(.response.status_code == 200)' "$bt_mixed_out" | wc -l)
    n400=$(jq -c 'select(.response.status_code == 400)' "$bt_mixed_out" | wc -l)
    nerr=$(jq -c 'select(.response == null and (.error | type) == "object")' "$bt_mixed_out" | wc -l)
    [ "$total" -eq $((bt_n_ok + bt_n_refused + bt_n_err)) ] ||
        problems+=("$total output lines, expected $((bt_n_ok + bt_n_refused + bt_n_err))")
    [ "$n200" -eq "$bt_n_ok" ] && [ "$n400" -eq "$bt_n_refused" ] && [ "$nerr" -eq "$bt_n_err" ] ||
        problems+=("200/400/error lines: $n200/$n400/$nerr, expected $bt_n_ok/$bt_n_refused/$bt_n_err")
    got=$(jq -r 'select(.response.status_code == 200) | .custom_id' "$bt_mixed_out" | sort | paste -sd' ')
    want=$(printf '%s\n' "${bt_expect_ok[@]}" | sort | paste -sd' ')
    [ "$got" = "$want" ] || problems+=("answered custom_ids: $got" "expected exactly once each: $want")
    got=$(jq -r 'select(.response.status_code == 400) | "\(.custom_id):\(.response.body.error.code)"' "$bt_mixed_out" | sort | paste -sd' ')
    want=$(printf '%s\n' "${bt_expect_refused[@]}" | sort | paste -sd' ')
    [ "$got" = "$want" ] || problems+=("400s (custom_id:code): $got" "expected: $want")
    got=$(jq -r 'select(.response == null) | "\(.ramp.line):\(.error.code)"' "$bt_mixed_out" | sort -n | paste -sd' ')
    want=$(printf '%s\n' "${bt_expect_errors[@]}" | sort -n | paste -sd' ')
    [ "$got" = "$want" ] || problems+=("error lines (input line:code): $got" "expected: $want")
    # The OpenAI shapes: a 200 has the body of its endpoint, an error line an error object, a 400
    # an OpenAI error body; ids tie the output to the request.
    bad=$(jq -r 'select(.response.status_code == 200) | select(
            (.id | startswith("batch_req_")) and .error == null and .response.request_id == .response.body.id and
            ((.response.body.object == "text_completion" and (.response.body.choices[0].text | type) == "string") or
             (.response.body.object == "chat.completion" and .response.body.choices[0].message.role == "assistant"))
            | not) | .custom_id' "$bt_mixed_out" | paste -sd' ')
    [ -z "$bad" ] || problems+=("200 lines without the OpenAI body shape: $bad")
    bad=$(jq -r 'select(.response.status_code == 400) | select((.response.body.error.type == "invalid_request_error" and
            (.response.body.error.message | length) > 0 and .error == null) | not) | .custom_id' "$bt_mixed_out" | paste -sd' ')
    [ -z "$bad" ] || problems+=("400 lines without an OpenAI error body: $bad")
    bad=$(jq -r 'select(.response == null) | select(((.error.message | length) > 0 and (.id | startswith("batch_req_"))) | not) |
            .ramp.line' "$bt_mixed_out" | paste -sd' ')
    [ -z "$bad" ] || problems+=("error lines without a message: $bad")
    summary=$(bt_summary "$bt_dir/mixed.err")
    # the summary counts the lines that hold something (the blank line is no request)
    [[ $summary == "ramp batch: $((bt_line_no - 1)) lines: $bt_n_ok answered, $bt_n_refused refused (bad request), $bt_n_err not requests, 0 already in"* ]] ||
        problems+=("summary: ${summary:-none}")
    check ${#problems[@]} "batch: mixed input of $bt_line_no lines -> exactly $bt_n_ok answered (200), $bt_n_refused refused (400: context, max_tokens, temperature), $bt_n_err error lines (bad JSON x2, not an object, no/empty custom_id, unknown url, GET, body not an object, duplicate custom_id), the blank line skipped; summary counts agree" \
        "${problems[@]}"

    # Greedy bodies: each equals ramp generate's continuation (chat: the fallback template's prompt).
    diffs=()
    for entry in "${bt_greedy[@]}"; do
        id=${entry%%|*}
        rest=${entry#*|}
        kind=${rest%%|*}
        rest=${rest#*|}
        n=${rest##*|}
        prompt=${rest%|*}
        [ "$kind" = chat ] && prompt=$'User: '"$prompt"$'\nAssistant:'
        run 60 "$RAMP_BIN" generate -m "$BT_MODEL" -p "$prompt" -n "$n" --temp 0 "${BT_FLAGS[@]}"
        length=$(printf '%s' "$prompt" | wc -c)
        if [ "$RC" -ne 0 ] || [ "$(head -c "$length" "$OUT")" != "$prompt" ]; then
            diffs+=("generate -p for $id: $(last_run_details | head -n 3 | tr '\n' ' ')")
            continue
        fi
        tail -c +$((length + 1)) "$OUT" | head -c -1 >"$bt_dir/ref.$id"
        if [ "$kind" = chat ]; then
            jq -j --arg id "$id" 'select(.custom_id == $id and .response.status_code == 200) | .response.body.choices[0].message.content' \
                "$bt_mixed_out" >"$bt_dir/got.$id"
        else
            jq -j --arg id "$id" 'select(.custom_id == $id and .response.status_code == 200) | .response.body.choices[0].text' \
                "$bt_mixed_out" >"$bt_dir/got.$id"
        fi
        cmp -s "$bt_dir/got.$id" "$bt_dir/ref.$id" ||
            diffs+=("$id ($kind, max_tokens $n): batch '$(head -c 120 "$bt_dir/got.$id" | od -An -c | tr -s ' ' | head -c 160)'"
                "    generate '$(head -c 120 "$bt_dir/ref.$id" | od -An -c | tr -s ' ' | head -c 160)'")
    done
    check ${#diffs[@]} "batch: greedy bodies of all $bt_n_ok answered requests (completions, chat, shorthand) equal ramp generate's continuations" "${diffs[@]}"

    # A finished job rerun: nothing to do, the file unchanged.
    sum_before=$(sha256sum <"$bt_mixed_out")
    run 120 "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_mixed" -o "$bt_mixed_out" "${BT_FLAGS[@]}"
    summary=$(bt_summary "$ERR")
    [ "$RC" -eq 0 ] && [ "$(sha256sum <"$bt_mixed_out")" = "$sum_before" ] &&
        [[ $summary == *" 0 answered, 0 refused (bad request), 0 not requests, $((bt_n_ok + bt_n_refused + bt_n_err)) already in"* ]]
    check $? "batch: rerunning the finished mixed job exits 0 and writes nothing ($(grep -m 1 'resuming' "$ERR" | sed 's/^ramp batch: //'))" \
        "$(last_run_details)" "summary: $summary"
fi

# --- (2) bad files -------------------------------------------------------------------------------
# bt_bad_input WHAT INPUT OUTPUT REASON_REGEX [RUNNER...]: exit 1, a message naming INPUT and why,
# OUTPUT untouched (or still missing).
bt_bad_input() {
    local what=$1 input=$2 output=$3 reason=$4 before after problems=()
    shift 4
    before=$( [ -e "$output" ] && sha256sum <"$output" || echo missing)
    run 60 "$@" "$RAMP_BIN" batch -m "$BT_MODEL" -i "$input" -o "$output" "${BT_FLAGS[@]}"
    after=$( [ -e "$output" ] && sha256sum <"$output" || echo missing)
    [ "$RC" -eq 1 ] || problems+=("exit status $RC, expected 1")
    has_sanitizer_report && problems+=("sanitizer report")
    grep -qF -- "$input" "$ERR" && grep -qE -- "$reason" "$ERR" ||
        problems+=("the message does not name the file and /$reason/: $(head -n 3 "$ERR" | tr '\n' ' ')")
    [ "$before" = "$after" ] || problems+=("the output changed ($before -> $after)")
    check ${#problems[@]} "batch: $what -> exit 1, '$(head -n 1 "$ERR")', output $([ "$before" = missing ] && echo "not created" || echo untouched)" \
        "${problems[@]}"
}
printf '%s\n' '{"id":"keep me"}' >"$bt_dir/kept.jsonl"
bt_bad_input "a missing input file" "$bt_dir/no-such.jsonl" "$bt_dir/kept.jsonl" 'No such file or directory'
bt_bad_input "a missing input file, no output yet" "$bt_dir/no-such.jsonl" "$bt_dir/never.jsonl" 'No such file or directory'
mkdir -p "$bt_dir/adir.jsonl"
bt_bad_input "a directory as input" "$bt_dir/adir.jsonl" "$bt_dir/kept.jsonl" '[Ii]s a directory|not a regular file'
# Unreadable: root reads any file, so as root the run is made as nobody, in a directory outside
# E2E_TMP (700) that nobody may enter.
bt_pub=$(mktemp -d "${TMPDIR:-/tmp}/ramp-batch-perm.XXXXXX")
chmod 755 "$bt_pub"
printf '%s\n' '{"custom_id": "a", "prompt": "x"}' >"$bt_pub/in.jsonl"
printf '%s\n' '{"id":"keep me"}' >"$bt_pub/out.jsonl"
chmod 000 "$bt_pub/in.jsonl"
chmod 666 "$bt_pub/out.jsonl"
if [ "$(id -u)" -ne 0 ]; then
    bt_bad_input "an unreadable input file (mode 000)" "$bt_pub/in.jsonl" "$bt_pub/out.jsonl" 'Permission denied'
elif command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$RAMP_BIN" 2>/dev/null; then
    bt_bad_input "an unreadable input file (mode 000, run as nobody)" "$bt_pub/in.jsonl" "$bt_pub/out.jsonl" 'Permission denied' \
        setpriv --reuid=65534 --regid=65534 --clear-groups
else
    skip "batch: an unreadable input file" "root, and no setpriv (or nobody cannot run $RAMP_BIN)"
fi
rm -rf "$bt_pub"
run 30 "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_mixed"
check "$([ "$RC" -eq 2 ] && grep -q -- '-o RESULTS.jsonl' "$ERR" && echo 0 || echo 1)" \
    "batch: no -o -> exit 2 with the usage ('$(grep -m 1 . "$ERR")')" "$(last_run_details)"
run 30 "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_mixed" -o "$bt_dir/x.out" --progress-seconds 0
check "$([ "$RC" -eq 2 ] && [ ! -e "$bt_dir/x.out" ] && echo 0 || echo 1)" \
    "batch: --progress-seconds 0 -> exit 2, no output file ('$(grep -m 1 . "$ERR")')" "$(last_run_details)"

# --- (3) resume ----------------------------------------------------------------------------------
BT_N=100
bt_in=$bt_dir/in.jsonl
trec_batch_requests 1 "$BT_N" >"$bt_in"
bt_ref=$bt_dir/ref.out
bt_ref_started=$(now)
run 180 "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_in" -o "$bt_ref" "${BT_FLAGS[@]}" --progress-seconds 1
cp "$ERR" "$bt_dir/ref.err"
bt_ref_seconds=$(elapsed_since "$bt_ref_started")
if [ "$RC" -ne 0 ] || [ "$(bt_lines "$bt_ref")" -ne "$BT_N" ] ||
    [ "$(jq -c 'select(.response.status_code == 200)' "$bt_ref" | wc -l)" -ne "$BT_N" ]; then
    fail "batch: the uninterrupted run of $BT_N requests answers each (200)" "$(last_run_details)" \
        "$(jq -r '.response.status_code // .error.code' "$bt_ref" 2>/dev/null | sort | uniq -c | paste -sd' ')"
    return 0 2>/dev/null || exit 0
fi
pass "batch: an uninterrupted run of $BT_N requests (${bt_ref_seconds} s): $BT_N x 200"

# (6) the progress lines of that run (stderr is a file: a line every --progress-seconds).
progress=$(grep -E "$BT_PROGRESS" "$bt_dir/ref.err")
n_progress=$(printf '%s\n' "$progress" | grep -c .)
ramp_seconds=$(bt_summary "$bt_dir/ref.err" | sed -n 's/.* in \([0-9.]*\) s.*/\1/p')
want_progress=1
awk -v s="${ramp_seconds:-0}" 'BEGIN { exit !(s >= 2.5) }' && want_progress=2
last_progress=$(printf '%s\n' "$progress" | tail -n 1)
[ "$n_progress" -ge "$want_progress" ] && [[ $last_progress == *"] $BT_N/$BT_N requests"* ]]
check $? "batch: --progress-seconds 1 prints $n_progress progress lines in a ${ramp_seconds:-?} s run, e.g. '$(printf '%s\n' "$progress" | sed -n "$(((n_progress + 1) / 2))p")'" \
    "progress lines: $n_progress (expected >= $want_progress)" "$(grep '^ramp batch' "$bt_dir/ref.err" | head -n 6)"

# bt_interrupt WHAT SIGNAL AFTER_LINES EXTRA_FLAGS_STRING RUNNER...: runs the job (RUNNER, e.g. an
# mpirun prefix; the runner gets SIGNAL), signals it once AFTER_LINES lines are written, expects
# exit 75 (137 for KILL), then reruns with the same runner and expects exit 0 and the reference.
bt_interrupt() {
    local what=$1 signal=$2 after=$3 extra=$4 out before stopped expect=75 problems=()
    shift 4
    out=$bt_dir/int.$RANDOM.out
    # shellcheck disable=SC2086
    bt_start "$out.err1" "$@" "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_in" -o "$out" "${BT_FLAGS[@]}" --max-in-flight 16 $extra
    local pid=$BT_PID
    if ! bt_wait_lines "$out" "$after" "$pid" 120; then
        fail "$what: the job writes $after lines before the signal" "$(bt_lines "$out") lines" "$(head -n 5 "$out.err1")"
        kill_session "$pid"
        wait "$pid" 2>/dev/null
        return
    fi
    # (bash would report a killed background job on stderr.)
    {
        kill -"$signal" "$pid"
        before=$(bt_lines "$out")
        bt_wait "$pid" 90
    } 2>/dev/null
    stopped=$(bt_lines "$out")
    [ "$signal" = KILL ] && expect=137
    [ "$BT_RC" -eq "$expect" ] || problems+=("first run: exit $BT_RC, expected $expect" "$(grep -v '^ramp:  ' "$out.err1" | tail -n 4)")
    [ "$stopped" -lt "$BT_N" ] || problems+=("the first run wrote all $BT_N lines: the signal came too late to test a resume")
    [ "$(tail -c 1 "$out" | od -An -c | tr -d ' ')" = '\n' ] || problems+=("the interrupted output ends in a torn line")
    # shellcheck disable=SC2086
    run 180 "$@" "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_in" -o "$out" "${BT_FLAGS[@]}"
    cp "$ERR" "$out.err2"
    [ "$RC" -eq 0 ] || problems+=("rerun: $(last_run_details | head -n 4)")
    grep -q "resuming: .* already answers $stopped requests" "$out.err2" ||
        problems+=("rerun: no 'resuming ... already answers $stopped requests': $(grep -m 1 resuming "$out.err2")")
    local p
    p=$(bt_problems "$out" "$bt_ref")
    [ -z "$p" ] || problems+=("$p")
    check ${#problems[@]} "$what: $before lines at the signal, $stopped when the job ended (exit $BT_RC), rerun exit 0: $(bt_lines "$out") lines, equal to the uninterrupted run, no custom_id twice" \
        "${problems[@]}"
}
bt_interrupt "batch: SIGTERM mid-run (drains in-flight requests)" TERM 20 ""
bt_interrupt "batch: SIGTERM mid-run with --grace 0.1 (in-flight requests cancelled, redone)" TERM 20 "--grace 0.1"
bt_interrupt "batch: SIGUSR1 mid-run" USR1 30 "--grace 0.3"
# Two requests in flight: kill -9 has no drain, and 16 at once wrote all 100 lines (0.4 s) before the
# signal on a fast run.
bt_interrupt "batch: kill -9 mid-run, then a rerun" KILL 25 "--max-in-flight 2"

# A torn last line, appended by hand: the first 40 lines of the finished output + half of line 41.
bt_torn=$bt_dir/torn.out
head -n 40 "$bt_ref" >"$bt_torn"
sed -n 41p "$bt_ref" | head -c 90 >>"$bt_torn"
torn_id=$(sed -n 41p "$bt_ref" | jq -r .custom_id)
run 180 "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_in" -o "$bt_torn" "${BT_FLAGS[@]}"
problems=()
[ "$RC" -eq 0 ] || problems+=("$(last_run_details)")
grep -q "line 41 was torn" "$ERR" || problems+=("no message about line 41: $(grep -v '^ramp:  ' "$ERR" | head -n 3)")
grep -q "already answers 40 requests" "$ERR" || problems+=("not resumed from 40 answers: $(grep -m 1 resuming "$ERR")")
p=$(bt_problems "$bt_torn" "$bt_ref")
[ -z "$p" ] || problems+=("$p")
[ "$(jq -r --arg id "$torn_id" 'select(.custom_id == $id) | .custom_id' "$bt_torn" | wc -l)" -eq 1 ] ||
    problems+=("$torn_id (the torn line's request) is not answered exactly once")
check ${#problems[@]} "batch: a torn last line (40 lines + 90 bytes of line 41, appended by hand) is cut ('$(grep -m 1 'was torn' "$ERR" | sed 's/^ramp batch: //')') and redone: valid JSONL equal to the uninterrupted run" \
    "${problems[@]}"

# --- (4) MPI ------------------------------------------------------------------------------------
if ! have_mpi; then
    skip "batch: mpirun -np 4" "no mpirun"
else
    bt_mpi=$bt_dir/mpi.out
    mpi_run 240 4 batch -m "$BT_MODEL" -i "$bt_in" -o "$bt_mpi" "${BT_FLAGS[@]}" --metrics-json "$bt_dir/mpi.json"
    p=$(bt_problems "$bt_mpi" "$bt_ref")
    [ "$RC" -eq 0 ] && grep -q "^ramp: 3 stages" "$ERR" && [ -z "$p" ]
    check $? "batch: mpirun -np 4 (3 stages) equals the one-process run ($BT_N lines, bodies identical)" "$(last_run_details)" "$p"
    jq -e --argjson n "$BT_N" '.stages_count == 3 and .job.time_series[-1].requests_done == $n and
        all(.job.time_series[]; (.stage_busy_seconds | length) == 3) and
        ([.exit_histogram[] | select(.outputs > 0) | .layer] == [16])' "$bt_dir/mpi.json" >/dev/null 2>&1
    check $? "batch: mpirun -np 4 --metrics-json: 3 stages in every sample of the time series ($(jq '.job.time_series | length' "$bt_dir/mpi.json" 2>/dev/null) samples), every output at layer 16 without exits" \
        "$(jq -c '{stages_count, job: (.job | del(.time_series)), exit_histogram}' "$bt_dir/mpi.json" 2>&1 | head -c 600)"

    bt_interrupt "batch: mpirun -np 4, SIGUSR1 to mpirun mid-run (forwarded; rank 0 drains), resumed under mpirun" USR1 20 "" \
        "${MPIRUN[@]}" -np 4
    # cluster/launch without Slurm: mpirun, to which it passes a SIGTERM as SIGUSR1.
    bt_interrupt "batch: cluster/launch --stages 3 (mpirun), SIGTERM to it mid-run, resumed" TERM 20 "" \
        env "ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0" "$BT_ROOT/cluster/launch" --stages 3 --
fi

# --- (5) --metrics-json: the time series and the exit histogram -----------------------------------
# LITE token-level exits (thresholds from exit-calibrate) make the histogram more than one bar. The
# run is one process with --stages 3 (three stages, per-stage busy/idle); the check after it runs
# the same exits under mpirun.
run 120 "$RAMP_BIN" exit-calibrate -m "$BT_MODEL" --ctx 256 --task sst2 --exit-layers 4,6,8,10,12,14 \
    --data "$RAMP_SHARED/data/sst2/stsa.binary.train" --limit 40 --target-agreement 0.9 -o "$bt_dir/conf.json" "${BT_FLAGS[@]}"
if [ "$RC" -ne 0 ]; then
    fail "batch: exit-calibrate for the metrics check" "$(last_run_details)"
else
    bt_ex=$bt_dir/exit.out
    stages=3
    run 240 "$RAMP_BIN" batch -m "$BT_MODEL" -i "$bt_in" -o "$bt_ex" "${BT_FLAGS[@]}" --stages "$stages" \
        --exit "conf:$bt_dir/conf.json" --exit-default conf --metrics-json "$bt_dir/exit.json"
    m=$bt_dir/exit.json
    problems=()
    [ "$RC" -eq 0 ] || problems+=("$(last_run_details)")
    # shellcheck disable=SC2016
    jq -e --argjson n "$BT_N" --argjson P "$stages" '
        .job.lines == $n and .job.answered == $n and .job.preempted == false and .stages_count == $P and
        (.job.time_series | length) >= 1 and
        ([.job.time_series[] | .t] | . == sort) and
        ([.job.time_series[] | .requests_done] | . == sort) and
        .job.time_series[-1].requests_done == $n and
        .job.time_series[-1].layer_evaluations == .layer_evaluations and
        all(.job.time_series[]; (.stage_busy_seconds | length) == $P and (.stage_idle_seconds | length) == $P and
            all(.stage_busy_seconds[], .stage_idle_seconds[]; . >= 0)) and
        ([.exit_histogram[] | .layer * .outputs] | add) == .layer_evaluations and
        ([.exit_histogram[] | .outputs] | add) * 16 == .layer_evaluations_possible and
        ([.exit_histogram[] | select(.outputs > 0)] | length) >= 2 and
        .job.time_series[-1].layer_evaluations_skipped == .layer_evaluations_possible - .layer_evaluations and
        .job.time_series[-1].layer_evaluations_skipped > 0' "$m" >/dev/null 2>&1 ||
        problems+=("metrics: $(jq -c '{job: (.job | del(.time_series)), samples: (.job.time_series | length), last: .job.time_series[-1], exit_histogram, layer_evaluations, layer_evaluations_possible, stages_count}' "$m" 2>&1 | head -c 1500)")
    # The bodies' own counts agree: layers executed, and outputs = tokens + the EOS of each "stop".
    bodies=$(jq -s -c '{executed: ([.[].response.body.ramp.layers_executed] | add),
        outputs: (([.[].response.body.usage.completion_tokens] | add) + ([.[].response.body.choices[0].finish_reason | select(. == "stop")] | length)),
        exits: ([.[].response.body.ramp.exit] | unique)}' "$bt_ex" 2>/dev/null)
    figures=$(jq -c '{executed: .layer_evaluations, outputs: ([.exit_histogram[] | .outputs] | add), exits: ["conf"]}' "$m" 2>/dev/null)
    [ -n "$bodies" ] && [ "$bodies" = "$figures" ] || problems+=("bodies $bodies vs metrics $figures")
    hist=$(jq -r '[.exit_histogram[] | select(.outputs > 0) | "\(.layer):\(.outputs)"] | join(" ")' "$m" 2>/dev/null)
    check ${#problems[@]} "batch --metrics-json (--stages $stages, --exit conf): $(jq '.job.time_series | length' "$m" 2>/dev/null) samples (t, requests done, tokens, per-stage busy/idle, layer evaluations skipped) ending at $BT_N, exit histogram {$hist} = the bodies' layers ($(jq .layer_evaluations "$m" 2>/dev/null) of $(jq .layer_evaluations_possible "$m" 2>/dev/null) evaluated)" \
        "${problems[@]}"

    if have_mpi; then
        # The same exits on a 3-rank pipeline, with more sequences than KV slots. This once failed at
        # random ("position P outside the K positions reserved for slot S": a Decision arriving
        # after its slot's RELEASE unfilled the reused slot); stages now record each slot's owner.
        mpi_run 240 4 batch -m "$BT_MODEL" -i "$bt_in" -o "$bt_dir/exit-mpi.out" "${BT_FLAGS[@]}" \
            --exit "conf:$bt_dir/conf.json" --exit-default conf
        p=$(bt_problems "$bt_dir/exit-mpi.out" "$bt_ex")
        [ "$RC" -eq 0 ] && [ -z "$p" ]
        check $? "batch: mpirun -np 4 with --exit conf equals the one-process exit run" \
            "exit status $RC" "$(grep -m 2 'failed' "$ERR")" "$p"
    fi
fi
