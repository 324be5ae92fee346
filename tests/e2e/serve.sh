# serve.sh: `ramp serve` against live servers on 127.0.0.1, in one process and under mpirun -np 4.
#
# (1) curl: completions, chat, streaming (SSE framing; deltas join to the non-streamed text),
#     stream usage, stop strings, logprobs, /v1/models, /health, /metrics (families, and exact
#     counter deltas for one request).
# (2) the official `openai` npm client (tests/serve/client.mjs; installed by npm into
#     tests/serve/node_modules; skipped with a note when npm cannot reach the registry).
# (3) greedy text through HTTP equals `ramp generate` for the same prompts (lite16 and stories260K
#     in one process, lite16 under mpirun -np 4).
# (4) a load test (tests/serve/load.mjs): 200 requests from 32 clients in one process, 60 from 16
#     under mpirun; mixed prompts and budgets, a third streamed, a tenth cancelled mid-stream;
#     every answer equals its sequential answer, no 5xx, KV back to 0, still answering. Then a soak
#     (tests/serve/soak.mjs; 15 s from 8 clients in one process, 10 s under mpirun): good requests
#     mixed with mutated fields, bodies cut short or too large, and clients that go away mid-body or
#     mid-answer; no 5xx, errors in the OpenAI shape, idle afterwards with the same greedy answer.
# (5) a bad-input table (tests/serve/badinput.mjs) against a server with --api-key, a small
#     --max-body and --max-queue 1 --max-sequences 1 --micro-batches 1 (400/401/404/405/413/429).
# (6) faults: a client that disconnects (mid-stream, and while waiting for a whole answer) cancels
#     its request; SIGTERM with requests running and queued (a server of 2 sequences, 6 long
#     requests) lets them all finish with their full text, refuses new ones and exits 0 within
#     --grace (one process, and rank 0 under mpirun); kill -9 of a worker rank ends the mpirun
#     server non-zero within 30 s naming the rank, and no request is left hanging. No process of
#     any server's session is left behind.
# Servers run with --threads 1 in sessions of their own (setsid), found and killed by session id.

sv_dir=$(mktemp -d "$E2E_TMP/serve.XXXXXX")
SV_JS=$here/serve
LITE=$LITE16/model-f32.gguf
STORIES_GGUF=$STORIES/stories260K-f32.gguf
SV_GRACE=10
SV_FLAGS=(--port 0 --threads 1 --grace "$SV_GRACE")
# A long greedy request (lite16's context is 128): the one that is in flight in the fault checks.
long='{"prompt":"The film","max_tokens":110,"temperature":0}'
long_stream='{"prompt":"The film","max_tokens":110,"temperature":0,"stream":true}'

# --- servers in sessions of their own -------------------------------------------------------------
SV_PID=        # the session (setsid'd process: ramp itself, or mpirun)
SV_URL=
SV_RC=
SV_TOOK=
SV_NAME=
# sv_start NAME CMD...: starts a server; waits (60 s) for "ready on http://127.0.0.1:PORT" on its
# stderr and sets SV_PID and SV_URL. On failure prints a failed check and returns 1.
sv_start() {
    SV_NAME=$1
    shift
    setsid "$@" </dev/null >"$sv_dir/$SV_NAME.out" 2>"$sv_dir/$SV_NAME.err" &
    SV_PID=$!
    SV_URL=
    local i
    for i in $(seq 1 600); do
        SV_URL=$(grep -o -m 1 'ready on http://127\.0\.0\.1:[0-9]*' "$sv_dir/$SV_NAME.err" | sed 's/^ready on //')
        [ -n "$SV_URL" ] && return 0
        process_alive "$SV_PID" || break
        sleep 0.1
    done
    fail "$SV_NAME: the server starts and prints 'ready on http://127.0.0.1:PORT'" \
        "$(process_alive "$SV_PID" && echo "not ready after 60 s" || echo "it exited")" "$(head -n 8 "$sv_dir/$SV_NAME.err")"
    kill_session "$SV_PID"
    wait "$SV_PID" 2>/dev/null
    return 1
}
# sv_wait PID SECONDS: waits for the server to exit; SV_RC is its status (124 after an overrun, when
# its whole session is killed), SV_TOOK the seconds waited.
sv_wait() {
    local pid=$1 limit=$2 t0
    t0=$(now)
    while process_alive "$pid"; do
        if awk -v a="$t0" -v b="$(now)" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
            kill_session "$pid"
            wait "$pid" 2>/dev/null
            SV_RC=124
            SV_TOOK=$(elapsed_since "$t0")
            return
        fi
        sleep 0.05
    done
    wait "$pid"
    SV_RC=$?
    SV_TOOK=$(elapsed_since "$t0")
}
# sv_no_leftovers WHAT SID: no process of the session survives (10 s of grace).
sv_no_leftovers() {
    local what=$1 sid=$2 left i
    for i in $(seq 1 50); do
        left=$(pgrep -s "$sid" 2>/dev/null)
        [ -z "$left" ] && break
        sleep 0.2
    done
    if [ -z "$left" ]; then
        pass "$what: no process of its session is left behind"
    else
        fail "$what: no process of its session is left behind" "$(ps -o pid,stat,etime,args -p "$(echo $left | tr ' ' ,)")"
        kill_session "$sid"
    fi
}
# sv_stop WHAT: SIGTERM to an idle single-process server: exit 0 within the grace, nothing left.
sv_stop() {
    local what=$1 pid=${2:-$SV_PID}
    kill -TERM "$pid" 2>/dev/null
    sv_wait "$SV_PID" $((SV_GRACE + 20))
    check "$([ "$SV_RC" -eq 0 ] && echo 0 || echo 1)" "$what: SIGTERM when idle: exit 0 ($SV_TOOK s)" \
        "status $SV_RC after $SV_TOOK s" "$(tail -n 5 "$sv_dir/$SV_NAME.err")"
    sv_no_leftovers "$what" "$SV_PID"
}

# --- HTTP ------------------------------------------------------------------------------------------
SV_STATUS=
# sv_post URL PATH JSON [OUT]: the body goes to OUT (default $sv_dir/body), the status to SV_STATUS.
sv_post() {
    SV_STATUS=$(curl -s -m 60 -o "${4:-$sv_dir/body}" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$3" "$1$2")
}
# sv_stream URL PATH JSON OUT: the raw SSE body to OUT, headers to OUT.headers.
sv_stream() {
    SV_STATUS=$(curl -sN -m 60 -D "$4.headers" -o "$4" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$3" "$1$2")
}
# sv_jq FILE [JQ OPTIONS...] EXPR: 0 when the jq expression is true on the file, else 1 (for check).
sv_jq() {
    local file=$1
    shift
    jq -e "$@" "$file" >/dev/null 2>&1 && echo 0 || echo 1
}
sv_show() { head -c "${2:-400}" "$1" 2>/dev/null | tr '\n' ' '; }
# sv_metric URL NAME{LABELS}: the sample's value.
sv_metric() { curl -s -m 10 "$1/metrics" | awk -v n="$2" '$1 == n { print $2; found = 1 } END { if (!found) print "missing" }'; }
# sv_wait_metric URL NAME VALUE SECONDS: polls until the sample equals VALUE; 0 when it does.
sv_wait_metric() {
    local i
    for i in $(seq 1 $(($4 * 10))); do
        [ "$(sv_metric "$1" "$2")" = "$3" ] && return 0
        sleep 0.1
    done
    return 1
}
# sv_sse_check SSE TEXT_OUT KIND: checks an SSE body: "data: X" lines each followed by a blank
# line, X JSON objects of KIND except a final [DONE]; writes the joined deltas to TEXT_OUT.
# Prints what is wrong (nothing when it is well formed).
sv_sse_check() {
    local sse=$1 out=$2 kind=$3
    awk 'NR % 2 == 1 && !/^data: / { print "line " NR " is not \"data: ...\": " substr($0, 1, 80); exit }
         NR % 2 == 0 && $0 != "" { print "line " NR " is not the blank line ending an event"; exit }' "$sse"
    [ "$(tail -n 2 "$sse" | head -n 1)" = "data: [DONE]" ] || echo "the last event is not data: [DONE]"
    [ "$(grep -c '^data: \[DONE\]$' "$sse")" -eq 1 ] || echo "not exactly one [DONE]"
    grep '^data: ' "$sse" | grep -v '^data: \[DONE\]$' | sed 's/^data: //' >"$sse.json"
    if ! jq -s -e --arg kind "$kind" 'length > 0 and all(.[]; .object == $kind and (.choices | length) == 1)
            and ([.[].id] | unique | length) == 1' "$sse.json" >/dev/null 2>&1; then
        echo "chunks are not all JSON $kind objects with one choice and one id"
        return
    fi
    jq -s -e '[.[] | .choices[0].finish_reason | select(. != null)] | length == 1' "$sse.json" >/dev/null ||
        echo "not exactly one chunk carries a finish_reason"
    jq -s -e '.[-1].choices[0].finish_reason != null' "$sse.json" >/dev/null || echo "the last chunk has no finish_reason"
    jq -j '.choices[0] | (.text // .delta.content // "")' "$sse.json" >"$out"
}

# --- node scripts ----------------------------------------------------------------------------------
SV_NODE=0
command -v node >/dev/null 2>&1 && node -e 'process.exit(typeof fetch === "function" ? 0 : 1)' 2>/dev/null && SV_NODE=1
# sv_node WHAT SECONDS SCRIPT ARGS...: runs tests/serve/SCRIPT; its pass/fail/skip/info lines
# become checks (info lines are comments). A script that dies is a failed check.
sv_node() {
    local what=$1 limit=$2 script=$3
    shift 3
    timeout -k 5 "$limit" node "$SV_JS/$script" "$@" >"$sv_dir/node.out" 2>"$sv_dir/node.err"
    local rc=$? kind description rest details
    while IFS=$'\t' read -r kind description rest; do
        case $kind in
        pass) pass "$description" ;;
        fail)
            IFS=$'\t' read -r -a details <<<"$rest"
            fail "$description" "${details[@]}"
            ;;
        skip) skip "$description" "$rest" ;;
        info) echo "# $description" ;;
        esac
    done <"$sv_dir/node.out"
    [ "$rc" -eq 0 ] || fail "$what: $script ran to its end" "exit status $rc$([ "$rc" -eq 124 ] && echo " (over $limit s)")" \
        "$(tail -n 8 "$sv_dir/node.err")"
}

# npm install runs while the first checks do.
SV_NPM_PID=
if [ "$SV_NODE" = 1 ] && command -v npm >/dev/null 2>&1; then
    # Few retries: without a registry the checks are skipped within seconds rather than minutes.
    (cd "$SV_JS" && timeout -k 5 90 npm install --no-audit --no-fund --loglevel=error --fetch-retries=1 \
        --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 --fetch-timeout=30000) >"$sv_dir/npm.log" 2>&1 &
    SV_NPM_PID=$!
fi

# --- greedy references from `ramp generate` ---------------------------------------------------------
# prompt|tokens: mixed lengths (1 to ~40 words) and budgets.
sv_prompts=(
    "Once upon a time|24"
    "The|16"
    "The movie was|32"
    "Tom|48"
    "A gripping, funny and moving film about a girl and her dog|20"
    "Question: what is the capital of France? Answer:|8"
    "Review: the plot was thin, the acting was wooden, and the jokes fell flat, but the music was|12"
    "She went to the park and saw a big red ball. She wanted to play with it, but her mom said no. She was sad and|40"
    "Lily and Ben are friends. They like to play in the park. One day, they see a big tree with a swing.|30"
    "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals, when it was checked by a violent gust of wind which swept up the streets|10"
)
# sv_references MODEL LABEL: $sv_dir/LABEL.ref.I = the continuation `ramp generate -p` prints.
sv_references() {
    local model=$1 label=$2 i=0 entry prompt n length problems=()
    for entry in "${sv_prompts[@]}"; do
        prompt=${entry%|*}
        n=${entry##*|}
        run 60 "$RAMP_BIN" generate -m "$model" -p "$prompt" -n "$n" --temp 0 --threads 1
        length=$(printf '%s' "$prompt" | wc -c)
        if [ "$RC" -ne 0 ] || [ "$(head -c "$length" "$OUT")" != "$prompt" ]; then
            problems+=("generate -p '$prompt': $(last_run_details | head -n 3 | tr '\n' ' ')")
        fi
        tail -c +$((length + 1)) "$OUT" | head -c -1 >"$sv_dir/$label.ref.$i"
        i=$((i + 1))
    done
    check "${#problems[@]}" "$label: ramp generate -p gives the ${#sv_prompts[@]} greedy references" "${problems[@]}"
}
# sv_greedy_equal URL LABEL WHAT: each prompt through /v1/completions (temperature 0) equals the
# reference continuation.
sv_greedy_equal() {
    local url=$1 label=$2 what=$3 i=0 entry prompt n diffs=()
    for entry in "${sv_prompts[@]}"; do
        prompt=${entry%|*}
        n=${entry##*|}
        sv_post "$url" /v1/completions "$(jq -cn --arg p "$prompt" --argjson n "$n" '{prompt: $p, max_tokens: $n, temperature: 0}')" \
            "$sv_dir/greedy.json"
        jq -j '.choices[0].text' "$sv_dir/greedy.json" >"$sv_dir/greedy.text" 2>/dev/null
        if [ "$SV_STATUS" != 200 ]; then
            diffs+=("'$prompt' -n $n: status $SV_STATUS $(sv_show "$sv_dir/greedy.json" 200)")
        elif ! cmp -s "$sv_dir/greedy.text" "$sv_dir/$label.ref.$i"; then
            diffs+=("'$prompt' -n $n: HTTP $(sv_show "$sv_dir/greedy.text" 120 | od -An -c | tr -s ' ' | head -c 200)"
                "    generate $(sv_show "$sv_dir/$label.ref.$i" 120 | od -An -c | tr -s ' ' | head -c 200)")
        fi
        i=$((i + 1))
    done
    check "${#diffs[@]}" "$what: greedy text through HTTP equals ramp generate for ${#sv_prompts[@]} prompts" "${diffs[@]}"
}

sv_references "$LITE" lite16
sv_references "$STORIES_GGUF" stories

# SIGTERM while requests run: they finish (queued ones too), new ones are refused, exit 0 within
# the grace. Done on the main server (32 sequences: the 6 requests end together with the drain) and
# on servers of 2 sequences (6 long requests take long enough to be caught running and queued).
SV_DRAIN_FLAGS=(--max-sequences 2 --micro-batches 2)
SV_DRAIN_N=6
# sv_term_in_flight WHAT URL SIGNALLED_PID: 3 whole and 3 streamed long requests in flight.
sv_term_in_flight() {
    local what=$1 url=$2 victim=$3 i pids=() late ok=() bad=() t_kill took m running=0 queued=0 ended ended0 problems
    sv_post "$url" /v1/completions "$long" "$sv_dir/long.json"
    jq -j '.choices[0].text' "$sv_dir/long.json" >"$sv_dir/long.text" 2>/dev/null
    ended0=$(curl -s -m 10 "$url/metrics" | awk '/^ramp_requests_total\{/ { s += $2 } END { print s + 0 }')
    for i in $(seq 1 $((SV_DRAIN_N / 2))); do
        : >"$sv_dir/term.$i.json"
        : >"$sv_dir/term.$i.sse"
        (curl -s -m 60 -o "$sv_dir/term.$i.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$long" \
            "$url/v1/completions" >"$sv_dir/term.$i.code"; echo $? >"$sv_dir/term.$i.rc") &
        pids+=($!)
        (curl -sN -m 60 -o "$sv_dir/term.$i.sse" -w '%{http_code}' -H 'Content-Type: application/json' \
            -d "$long_stream" "$url/v1/completions" >"$sv_dir/term.$i.sse.code"
            echo $? >"$sv_dir/term.$i.sse.rc") &
        pids+=($!)
    done
    # Every request submitted (running + queued + ended), and some still running or queued.
    for i in $(seq 1 200); do
        m=$(curl -s -m 10 "$url/metrics")
        running=$(awk '$1 == "ramp_running_requests" { print $2 + 0 }' <<<"$m")
        queued=$(awk '$1 == "ramp_queue_depth" { print $2 + 0 }' <<<"$m")
        ended=$(($(awk '/^ramp_requests_total\{/ { s += $2 } END { print s + 0 }' <<<"$m") - ended0))
        [ $((running + queued)) -ge 2 ] && [ $((running + queued + ended)) -ge "$SV_DRAIN_N" ] && break
        sleep 0.02
    done
    kill -TERM "$victim"
    t_kill=$(now)
    # The late request goes in once the server says it is stopping (/health 503) or is gone: a fixed
    # pause raced the signal's delivery on a loaded machine.
    for i in $(seq 1 100); do
        [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] || break
        sleep 0.05
    done
    late=$(curl -s -m 10 -o "$sv_dir/late.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$long" "$url/v1/completions")
    sv_wait "$SV_PID" $((SV_GRACE + 15))
    took=$(elapsed_since "$t_kill")
    wait "${pids[@]}"
    if [ "$SV_RC" -eq 0 ] && awk -v t="$took" -v g="$SV_GRACE" 'BEGIN { exit !(t <= g + 5) }'; then
        pass "$what: SIGTERM with $running requests running and $queued queued: exit 0 after $took s (grace $SV_GRACE s)"
    else
        fail "$what: SIGTERM with $running requests running and $queued queued: exit 0 within the grace ($SV_GRACE s)" \
            "status $SV_RC after $took s" "$(grep -E '^(ramp|MPI_ABORT|mpirun)' "$sv_dir/$SV_NAME.err" | tail -n 6)"
    fi
    for i in $(seq 1 $((SV_DRAIN_N / 2))); do
        jq -j '.choices[0].text' "$sv_dir/term.$i.json" >"$sv_dir/term.$i.text" 2>/dev/null
        if [ "$(cat "$sv_dir/term.$i.code")" = 200 ] && cmp -s "$sv_dir/term.$i.text" "$sv_dir/long.text"; then
            ok+=("whole $i")
        else
            bad+=("whole request $i: HTTP status $(cat "$sv_dir/term.$i.code"), curl status $(cat "$sv_dir/term.$i.rc"): $(sv_show "$sv_dir/term.$i.json" 200)")
        fi
        problems=$(sv_sse_check "$sv_dir/term.$i.sse" "$sv_dir/term.$i.sse.text" text_completion)
        cmp -s "$sv_dir/term.$i.sse.text" "$sv_dir/long.text" || problems+=" the text is not the full answer ($(wc -c <"$sv_dir/term.$i.sse.text") of $(wc -c <"$sv_dir/long.text") bytes, $(grep -c '^data: {' "$sv_dir/term.$i.sse") chunks)"
        if [ -z "$problems" ]; then
            ok+=("stream $i")
        else
            bad+=("streamed request $i: HTTP status $(cat "$sv_dir/term.$i.sse.code"), curl status $(cat "$sv_dir/term.$i.sse.rc"): $(echo $problems | cut -c1-200)")
        fi
    done
    check "${#bad[@]}" "$what: the $SV_DRAIN_N requests in flight at SIGTERM complete with their full text (${ok[*]:-none})" "${bad[@]}"
    check "$([ "$late" != 200 ] && echo 0 || echo 1)" \
        "$what: a request after SIGTERM is refused ($([ "$late" = 000 ] && echo "connection refused" || echo "status $late"))" \
        "status $late: $(sv_show "$sv_dir/late.json" 300)"
    sv_no_leftovers "$what" "$SV_PID"
}
# === one process: lite16 ===========================================================================
if sv_start "serve-1p" "$RAMP_BIN" serve -m "$LITE" "${SV_FLAGS[@]}"; then
    B=$SV_URL
    S1=$SV_PID
    echo "# serve-1p listening on $B"

    # --- (1) curl ---------------------------------------------------------------------------------
    code=$(curl -s -m 10 -o "$sv_dir/health.json" -w '%{http_code}' "$B/health")
    check "$([ "$code" = 200 ] && [ "$(sv_jq "$sv_dir/health.json" '.status == "ok"')" = 0 ] && echo 0 || echo 1)" \
        "curl: GET /health is 200 {\"status\":\"ok\"}" "status $code: $(sv_show "$sv_dir/health.json")"
    code=$(curl -s -m 10 -o "$sv_dir/models.json" -w '%{http_code}' "$B/v1/models")
    model_id=$(jq -r '.data[0].id' "$sv_dir/models.json" 2>/dev/null)
    context=$(jq -r '.data[0].ramp.context_length' "$sv_dir/models.json" 2>/dev/null)
    check "$([ "$code" = 200 ] && [ "$(sv_jq "$sv_dir/models.json" '.object == "list" and (.data | length) == 1
            and .data[0].object == "model" and (.data[0].id | type) == "string"
            and (.data[0].ramp.chat_template | IN("fallback", "llama2", "llama3", "chatml", "zephyr", "mistral", "gemma"))
            and .data[0].ramp.context_length == 128 and .data[0].ramp.layers == 16 and .data[0].ramp.stages == 1')" = 0 ] &&
            echo 0 || echo 1)" \
        "curl: GET /v1/models names the model ($model_id), its chat template ($(jq -r '.data[0].ramp.chat_template' "$sv_dir/models.json" 2>/dev/null)) and context ($context)" \
        "status $code: $(sv_show "$sv_dir/models.json")"

    # One completion, with the exact metric deltas it must cause.
    curl -s -m 10 "$B/metrics" >"$sv_dir/metrics.0"
    completion='{"prompt":"The movie was","max_tokens":16,"temperature":0}'
    sv_post "$B" /v1/completions "$completion" "$sv_dir/c.json"
    curl -s -m 10 "$B/metrics" >"$sv_dir/metrics.1"
    jq -j '.choices[0].text' "$sv_dir/c.json" >"$sv_dir/c.text" 2>/dev/null
    check "$([ "$SV_STATUS" = 200 ] && [ "$(sv_jq "$sv_dir/c.json" --arg m "$model_id" '.object == "text_completion"
            and (.id | startswith("cmpl-")) and .model == $m and (.created | type) == "number" and (.choices | length) == 1
            and .choices[0].index == 0 and (.choices[0].text | type == "string" and length > 0)
            and .choices[0].finish_reason == "length" and .choices[0].logprobs == null
            and .usage.completion_tokens == 16 and .usage.prompt_tokens > 0
            and .usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens
            and .ramp.exit == "none" and (.ramp.exit_layers | length) == 16 and .ramp.total_layers == 16
            and .ramp.layers_executed == 256 and .ramp.layers_skipped == 0')" = 0 ] && echo 0 || echo 1)" \
        "curl: POST /v1/completions: a text_completion, finish_reason length, usage $(jq -c .usage "$sv_dir/c.json" 2>/dev/null) consistent, ramp extension" \
        "status $SV_STATUS: $(sv_show "$sv_dir/c.json" 600)"
    # metric NAME FILE: a sample's value (0 when absent).
    metric() { awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }' "$2"; }
    delta() { awk -v a="$(metric "$1" "$sv_dir/metrics.0")" -v b="$(metric "$1" "$sv_dir/metrics.1")" 'BEGIN { print b - a }'; }
    prompt_tokens=$(jq '.usage.prompt_tokens' "$sv_dir/c.json" 2>/dev/null)
    expected_deltas="ramp_requests_total{finish=\"length\"}=1 ramp_prompt_tokens_total=$prompt_tokens ramp_generated_tokens_total=16
        ramp_time_to_first_token_seconds_count=1 ramp_time_to_first_token_seconds_bucket{le=\"+Inf\"}=1
        ramp_time_per_output_token_seconds_count=15 ramp_exit_tokens_total{layer=\"16\"}=16
        ramp_layer_evaluations_total=256 ramp_layer_evaluations_skipped_total=0 ramp_requests_total{finish=\"cancelled\"}=0"
    wrong=()
    for pair in $expected_deltas; do
        got=$(delta "${pair%=*}")
        [ "$got" = "${pair##*=}" ] || wrong+=("${pair%=*}: +$got, expected +${pair##*=}")
    done
    check "${#wrong[@]}" "curl: /metrics moves by exactly one request's worth (requests, tokens, TTFT, per-token, exit layers, layer evaluations)" \
        "${wrong[@]}"
    families="ramp_requests_total:counter ramp_prompt_tokens_total:counter ramp_generated_tokens_total:counter
        ramp_time_to_first_token_seconds:histogram ramp_time_per_output_token_seconds:histogram
        ramp_queue_depth:gauge ramp_running_requests:gauge ramp_kv_bytes_in_use:gauge ramp_stage_busy_seconds:counter
        ramp_exit_tokens_total:counter ramp_layer_evaluations_skipped_total:counter ramp_http_responses_total:counter
        process_cpu_seconds_total:counter"
    missing=()
    for family in $families; do
        name=${family%:*}
        grep -q "^# TYPE $name ${family#*:}\$" "$sv_dir/metrics.1" || missing+=("no '# TYPE $name ${family#*:}'")
        grep -qE "^$name(_bucket|_sum|_count)?(\{[^}]*\})? [0-9.e+-]+\$" "$sv_dir/metrics.1" || missing+=("no sample of $name")
        if [ "${family#*:}" = histogram ]; then
            for part in '_bucket{le="+Inf"}' _sum _count; do
                grep -qF "$name$part " "$sv_dir/metrics.1" || missing+=("no $name$part")
            done
            awk -v n="${name}_bucket" 'index($1, n "{") == 1 { if ($2 < last) bad = 1; last = $2 } END { exit bad }' \
                "$sv_dir/metrics.1" || missing+=("$name buckets are not cumulative")
        fi
    done
    grep -qE '^ramp_stage_busy_seconds\{stage="1",layers="0-15"\} ' "$sv_dir/metrics.1" || missing+=("no busy seconds of stage 1 (layers 0-15)")
    check "${#missing[@]}" "curl: GET /metrics is Prometheus text with every metric family (histograms with cumulative buckets)" \
        "${missing[@]}"

    chat='{"messages":[{"role":"system","content":"You are a film critic."},{"role":"user","content":"How was the movie?"}],"max_tokens":12,"temperature":0}'
    sv_post "$B" /v1/chat/completions "$chat" "$sv_dir/chat.json"
    jq -j '.choices[0].message.content' "$sv_dir/chat.json" >"$sv_dir/chat.text" 2>/dev/null
    check "$([ "$SV_STATUS" = 200 ] && [ "$(sv_jq "$sv_dir/chat.json" '.object == "chat.completion"
            and (.id | startswith("chatcmpl-")) and (.choices | length) == 1 and .choices[0].message.role == "assistant"
            and (.choices[0].message.content | type) == "string" and .choices[0].finish_reason == "length"
            and .usage.completion_tokens == 12 and .usage.total_tokens == .usage.prompt_tokens + .usage.completion_tokens')" = 0 ] &&
            echo 0 || echo 1)" \
        "curl: POST /v1/chat/completions: an assistant message, finish_reason length, usage $(jq -c .usage "$sv_dir/chat.json" 2>/dev/null) consistent" \
        "status $SV_STATUS: $(sv_show "$sv_dir/chat.json" 600)"

    # Streaming: SSE framing, and the deltas join to the non-streamed text.
    sv_stream "$B" /v1/completions "$(jq -c '. + {stream: true}' <<<"$completion")" "$sv_dir/c.sse"
    problems=$(sv_sse_check "$sv_dir/c.sse" "$sv_dir/c.sse.text" text_completion)
    grep -qi '^content-type: text/event-stream' "$sv_dir/c.sse.headers" || problems+=" content-type is not text/event-stream"
    cmp -s "$sv_dir/c.sse.text" "$sv_dir/c.text" || problems+=" deltas '$(sv_show "$sv_dir/c.sse.text" 200)' != text '$(sv_show "$sv_dir/c.text" 200)'"
    check "$([ "$SV_STATUS" = 200 ] && [ -z "$problems" ] && echo 0 || echo 1)" \
        "curl: stream: true on /v1/completions: $(grep -c '^data: {' "$sv_dir/c.sse") 'data: {json}' chunks and data: [DONE]; the texts join to the non-streamed text" \
        "status $SV_STATUS: $problems" "$(head -c 300 "$sv_dir/c.sse")"
    sv_stream "$B" /v1/chat/completions "$(jq -c '. + {stream: true}' <<<"$chat")" "$sv_dir/chat.sse"
    problems=$(sv_sse_check "$sv_dir/chat.sse" "$sv_dir/chat.sse.text" chat.completion.chunk)
    [ "$(sv_jq "$sv_dir/chat.sse.json" -s '.[0].choices[0].delta.role == "assistant"')" = 0 ] || problems+=" the first chunk has no delta.role assistant"
    cmp -s "$sv_dir/chat.sse.text" "$sv_dir/chat.text" || problems+=" deltas '$(sv_show "$sv_dir/chat.sse.text" 200)' != content '$(sv_show "$sv_dir/chat.text" 200)'"
    check "$([ "$SV_STATUS" = 200 ] && [ -z "$problems" ] && echo 0 || echo 1)" \
        "curl: stream: true on /v1/chat/completions: chat.completion.chunk deltas join to the non-streamed message" \
        "status $SV_STATUS: $problems" "$(head -c 300 "$sv_dir/chat.sse")"
    sv_stream "$B" /v1/completions "$(jq -c '. + {stream: true, stream_options: {include_usage: true}}' <<<"$completion")" "$sv_dir/u.sse"
    problems=$(sv_sse_check "$sv_dir/u.sse" "$sv_dir/u.sse.text" text_completion)
    check "$([ "$SV_STATUS" = 200 ] && [ -z "$problems" ] && [ "$(sv_jq "$sv_dir/u.sse.json" -s --argjson u "$(jq -c .usage "$sv_dir/c.json")" \
        '.[-1].usage == $u and all(.[:-1][]; .usage == null)')" = 0 ] && echo 0 || echo 1)" \
        "curl: stream_options.include_usage: the last chunk carries the same usage as the non-streamed answer" \
        "status $SV_STATUS: $problems" "last chunk: $(tail -n 1 "$sv_dir/u.sse.json" | head -c 300)"

    # Stop strings: the greedy text ends before the first occurrence.
    text=$(cat "$sv_dir/c.text")
    stop=${text:6:3}
    before=${text%%"$stop"*}
    sv_post "$B" /v1/completions "$(jq -c --arg s "$stop" '. + {stop: [$s, "zzzz"]}' <<<"$completion")" "$sv_dir/stop.json"
    check "$([ "$SV_STATUS" = 200 ] && [ "$(sv_jq "$sv_dir/stop.json" --arg t "$before" '.choices[0].text == $t and .choices[0].finish_reason == "stop"')" = 0 ] &&
            echo 0 || echo 1)" \
        "curl: stop [\"$stop\"] ends the text before it (finish_reason stop)" \
        "expected text '$before'; got status $SV_STATUS: $(sv_show "$sv_dir/stop.json")"
    sv_stream "$B" /v1/completions "$(jq -c --arg s "$stop" '. + {stop: $s, stream: true}' <<<"$completion")" "$sv_dir/stop.sse"
    problems=$(sv_sse_check "$sv_dir/stop.sse" "$sv_dir/stop.sse.text" text_completion)
    check "$([ -z "$problems" ] && [ "$(cat "$sv_dir/stop.sse.text")" = "$before" ] &&
            [ "$(sv_jq "$sv_dir/stop.sse.json" -s '.[-1].choices[0].finish_reason == "stop"')" = 0 ] && echo 0 || echo 1)" \
        "curl: a streamed stop string: the deltas join to the same cut text" \
        "$problems" "expected '$before', got '$(cat "$sv_dir/stop.sse.text")'"

    # logprobs
    sv_post "$B" /v1/completions "$(jq -c '. + {logprobs: 2, max_tokens: 8}' <<<"$completion")" "$sv_dir/lp.json"
    check "$([ "$SV_STATUS" = 200 ] && [ "$(sv_jq "$sv_dir/lp.json" --arg t "$text" '.choices[0] as $c | $c.logprobs as $l
            | ($t | startswith($c.text)) and ($l.tokens | length) == 8 and ($l.token_logprobs | length) == 8
            and all($l.token_logprobs[]; type == "number" and . <= 0) and ($l.tokens | join("")) == $c.text
            and ($l.text_offset | length) == 8 and $l.text_offset[0] == 0
            and ([range(1; 8) as $i | $l.text_offset[$i] == $l.text_offset[$i - 1] + ($l.tokens[$i - 1] | length)] | all)
            and ($l.top_logprobs | length) == 8 and all($l.top_logprobs[]; type == "object")')" = 0 ] && echo 0 || echo 1)" \
        "curl: logprobs: 2 on completions: 8 tokens with logprobs <= 0, offsets, top_logprobs; tokens join to the text" \
        "status $SV_STATUS: $(sv_show "$sv_dir/lp.json" 600)"
    sv_post "$B" /v1/chat/completions "$(jq -c '. + {logprobs: true, top_logprobs: 1}' <<<"$chat")" "$sv_dir/lpc.json"
    check "$([ "$SV_STATUS" = 200 ] && [ "$(sv_jq "$sv_dir/lpc.json" '.choices[0] as $c | ($c.logprobs.content | length) == .usage.completion_tokens
            and all($c.logprobs.content[]; (.token | type) == "string" and (.logprob | type) == "number" and .logprob <= 0
                and (.bytes | type) == "array" and (.top_logprobs | type) == "array")
            and ([$c.logprobs.content[].token] | join("")) == $c.message.content')" = 0 ] && echo 0 || echo 1)" \
        "curl: logprobs: true on chat: one entry per token (token, logprob <= 0, bytes, top_logprobs)" \
        "status $SV_STATUS: $(sv_show "$sv_dir/lpc.json" 600)"
    sv_stream "$B" /v1/completions "$(jq -c '. + {logprobs: 0, stream: true}' <<<"$completion")" "$sv_dir/lps.sse"
    problems=$(sv_sse_check "$sv_dir/lps.sse" "$sv_dir/lps.sse.text" text_completion)
    check "$([ -z "$problems" ] && [ "$(sv_jq "$sv_dir/lps.sse.json" -s --slurpfile l "$sv_dir/lp.json" \
            '[.[] | .choices[0].logprobs | select(. != null) | .token_logprobs[]] as $s | ($s | length) == 16 and $s[:8] == $l[0].choices[0].logprobs.token_logprobs')" = 0 ] &&
            echo 0 || echo 1)" \
        "curl: logprobs in a stream: one per token, the same values as the non-streamed answer" \
        "$problems" "$(head -c 400 "$sv_dir/lps.sse")"

    # --- (3) greedy text equals ramp generate ------------------------------------------------------
    sv_greedy_equal "$B" lite16 "lite16, 1 process"

    # --- (2) the openai npm client -----------------------------------------------------------------
    if [ "$SV_NODE" != 1 ]; then
        skip "openai npm client checks" "node (>= 18, with fetch) not found"
    elif [ -z "$SV_NPM_PID" ]; then
        skip "openai npm client checks" "npm not found"
    else
        wait "$SV_NPM_PID"
        npm_rc=$?
        if [ "$npm_rc" -eq 0 ] && [ -f "$SV_JS/node_modules/openai/package.json" ]; then
            sv_node "openai client" 60 client.mjs --base "$B/v1"
        else
            skip "openai npm client checks" "npm install failed (status $npm_rc; registry unreachable?): $(grep -E 'npm (error|ERR!) (code|FetchError|network)' "$sv_dir/npm.log" | head -n 2 | tr '\n' ' ' | cut -c1-240)"
        fi
    fi

    # --- (4) load test --------------------------------------------------------------------------------
    if [ "$SV_NODE" = 1 ]; then
        t0=$(now)
        sv_node "load, 1 process" 150 load.mjs --base "$B" --requests 200 --clients 32 --label "load, 1 process"
        echo "# load, 1 process: $(elapsed_since "$t0") s including the sequential answers"
        sv_node "soak, 1 process" 90 soak.mjs --base "$B" --seconds 15 --clients 8 --label "1 process"
    else
        skip "load test and soak, 1 process" "node (>= 18, with fetch) not found"
    fi

    # --- (6) faults -----------------------------------------------------------------------------------
    # Clients that go away, while 15 other long requests keep the engine busy (so that the request
    # cannot finish before its client has gone): one mid-stream, one waiting for a whole answer.
    cancelled=$(sv_metric "$B" 'ramp_requests_total{finish="cancelled"}')
    busy=()
    for i in $(seq 1 15); do
        curl -s -m 60 -o "$sv_dir/busy.$i" -H 'Content-Type: application/json' -d "$long" "$B/v1/completions" &
        busy+=($!)
    done
    curl -sN -m 30 -H 'Content-Type: application/json' -d "$(jq -c '. + {stream: true}' <<<"$long")" "$B/v1/completions" |
        head -n 3 >"$sv_dir/cut.sse"
    if sv_wait_metric "$B" 'ramp_requests_total{finish="cancelled"}' $((cancelled + 1)) 10 && grep -q '^data: {' "$sv_dir/cut.sse"; then
        pass "a client that disconnects mid-stream (after its first chunk): its request is cancelled (cancelled +1)"
    else
        fail "a client that disconnects mid-stream (after its first chunk): its request is cancelled (cancelled +1)" \
            "cancelled $cancelled -> $(sv_metric "$B" 'ramp_requests_total{finish="cancelled"}')" \
            "stream head: $(sv_show "$sv_dir/cut.sse" 200)"
    fi
    # Fresh busy requests (the first ones may be done already on a fast machine), then a client that
    # gives up after 0.3 s. A machine fast enough to answer it within 0.3 s anyway (a Zen 5 here did,
    # with 15 busy) gets a second and third try with more busy requests than KV slots (32), so
    # that it waits in the queue as well.
    cut_rc=0
    for more in 15 40 60; do
        for i in $(seq 1 "$more"); do
            curl -s -m 60 -o /dev/null -H 'Content-Type: application/json' -d "$long" "$B/v1/completions" &
            busy+=($!)
        done
        curl -s -m 0.3 -o "$sv_dir/cut.whole" -H 'Content-Type: application/json' -d "$long" "$B/v1/completions"
        cut_rc=$?
        [ "$cut_rc" -ne 0 ] && break
        echo "# the non-streamed request was answered within 0.3 s beside $more busy ones: again with more"
    done
    busy_running=$(sv_metric "$B" ramp_running_requests)
    wait "${busy[@]}"
    if [ "$cut_rc" -eq 28 ] && sv_wait_metric "$B" 'ramp_requests_total{finish="cancelled"}' $((cancelled + 2)) 10; then
        pass "a client that disconnects while waiting for a non-streamed answer: its request is cancelled (cancelled +1)"
    else
        fail "a client that disconnects while waiting for a non-streamed answer: its request is cancelled (cancelled +1)" \
            "curl status $cut_rc (28 = gave up after 0.3 s as planned; $busy_running requests were still running then); cancelled $cancelled -> $(sv_metric "$B" 'ramp_requests_total{finish="cancelled"}') (+2 expected over both checks)" \
            "what curl received: $(head -c 300 "$sv_dir/cut.whole" 2>/dev/null)"
    fi
    sv_wait_metric "$B" ramp_kv_bytes_in_use 0 10
    check $? "after the disconnects, ramp_kv_bytes_in_use returns to 0 (and running requests $(sv_metric "$B" ramp_running_requests))" \
        "kv $(sv_metric "$B" ramp_kv_bytes_in_use), running $(sv_metric "$B" ramp_running_requests)"

    sv_term_in_flight "1 process, 32 sequences" "$B" "$S1"
fi

if sv_start "serve-drain" "$RAMP_BIN" serve -m "$LITE" "${SV_FLAGS[@]}" "${SV_DRAIN_FLAGS[@]}"; then
    sv_term_in_flight "1 process, 2 sequences" "$SV_URL" "$SV_PID"
fi

# === stories260K: greedy equality on a second model =================================================
if sv_start "serve-stories" "$RAMP_BIN" serve -m "$STORIES_GGUF" "${SV_FLAGS[@]}"; then
    sv_greedy_equal "$SV_URL" stories "stories260K, 1 process"
    sv_stop "stories260K server"
fi

# === (5) the bad-input table ========================================================================
SV_KEY=sk-ramp-e2e-$$
if [ "$SV_NODE" != 1 ]; then
    skip "bad-input table" "node (>= 18, with fetch) not found"
elif sv_start "serve-strict" "$RAMP_BIN" serve -m "$LITE" "${SV_FLAGS[@]}" --api-key "$SV_KEY" --max-body 16384 \
    --max-queue 1 --max-sequences 1 --micro-batches 1; then
    sv_node "bad input" 120 badinput.mjs --base "$SV_URL" --key "$SV_KEY" --max-body 16384
    sv_stop "strict server (--api-key, --max-body, --max-queue 1)"
fi

# === mpirun -np 4: rank 0 + 3 stages ================================================================
if ! have_mpi; then
    skip "serve under mpirun" "mpirun not found"
else
    if sv_start "serve-mpi" "${MPIRUN[@]}" -np 4 "$RAMP_BIN" serve -m "$LITE" "${SV_FLAGS[@]}"; then
        B=$SV_URL
        rank0=$(session_rank_pid "$SV_PID" 0)
        code=$(curl -s -m 10 -o "$sv_dir/models.json" -w '%{http_code}' "$B/v1/models")
        check "$([ "$code" = 200 ] && [ "$(sv_jq "$sv_dir/models.json" '.data[0].ramp.stages == 3')" = 0 ] && [ -n "$rank0" ] && echo 0 || echo 1)" \
            "mpirun -np 4: the server runs 3 stages (rank 0 is pid ${rank0:-?})" "status $code: $(sv_show "$sv_dir/models.json")"
        sv_greedy_equal "$B" lite16 "lite16, mpirun -np 4"
        if [ "$SV_NODE" = 1 ]; then
            t0=$(now)
            sv_node "load, mpirun -np 4" 150 load.mjs --base "$B" --requests 60 --clients 16 --label "load, mpirun -np 4"
            echo "# load, mpirun -np 4: $(elapsed_since "$t0") s including the sequential answers"
            sv_node "soak, mpirun -np 4" 90 soak.mjs --base "$B" --seconds 10 --clients 8 --label "mpirun -np 4"
        else
            skip "load test and soak, mpirun -np 4" "node (>= 18, with fetch) not found"
        fi

        # An idle pipeline sleeps: its ranks wait in the kernel for a doorbell instead of polling
        # (polling, they took 1.1 s of CPU per 2 s between them here; sleeping, 0.06 s).
        sleep 1
        idle_ticks() {
            local r total=0
            for r in 0 1 2 3; do
                local p; p=$(session_rank_pid "$SV_PID" "$r")
                [ -n "$p" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
            done
            echo "$total"
        }
        ticks0=$(idle_ticks)
        sleep 2
        idle_cpu=$(awk -v a="$ticks0" -v b="$(idle_ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')
        check "$(awk -v c="$idle_cpu" 'BEGIN { print (c < 0.3) ? 0 : 1 }')" \
            "mpirun -np 4: an idle server's four ranks take under 0.3 s of CPU in 2 s (took $idle_cpu s)" \
            "the ranks poll instead of sleeping"

        # kill -9 of a worker rank while requests run.
        victim=$(session_rank_pid "$SV_PID" 2)
        what="mpirun -np 4: kill -9 of rank 2 while requests run"
        pids=()
        for i in 1 2 3; do
            : >"$sv_dir/kill.$i.json"
            (curl -s -m 40 -o "$sv_dir/kill.$i.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$long" \
                "$B/v1/completions" >"$sv_dir/kill.$i.code"; echo $? >"$sv_dir/kill.$i.rc") &
            pids+=($!)
        done
        (curl -sN -m 40 -o "$sv_dir/kill.sse" -H 'Content-Type: application/json' -d "$long_stream" \
            "$B/v1/completions"; echo $? >"$sv_dir/kill.sse.rc") &
        pids+=($!)
        running=0
        for i in $(seq 1 200); do
            running=$(sv_metric "$B" ramp_running_requests)
            [ "$running" -ge 1 ] 2>/dev/null && break
            sleep 0.02
        done
        if [ -z "$victim" ]; then
            fail "$what: rank 2 found" "no process with OMPI_COMM_WORLD_RANK=2 in session $SV_PID"
            kill_session "$SV_PID"
        else
            kill -9 "$victim"
            sv_wait "$SV_PID" 30
            if [ "$SV_RC" -ne 0 ] && [ "$SV_RC" -ne 124 ]; then
                pass "$what: the server exits (status $SV_RC) $SV_TOOK s after the kill ($running running then)"
            else
                fail "$what: the server exits non-zero within 30 s" "status $SV_RC after $SV_TOOK s" \
                    "$(grep -v 'Failed to send' "$sv_dir/$SV_NAME.err" | tail -n 6)"
            fi
            grep -v 'Failed to send' "$sv_dir/$SV_NAME.err" "$sv_dir/$SV_NAME.out" >"$sv_dir/kill.messages"
            check "$(grep -qw 'rank 2' "$sv_dir/kill.messages"; echo $?)" \
                "$what: the output names rank 2: $(grep -m 1 -w 'rank 2' "$sv_dir/kill.messages" | sed 's/^[^:]*://' | cut -c1-100)" \
                "$(tail -n 8 "$sv_dir/kill.messages")"
        fi
        wait "${pids[@]}"
        outcomes=()
        for i in 1 2 3; do outcomes+=("$(cat "$sv_dir/kill.$i.code" 2>/dev/null)/rc$(cat "$sv_dir/kill.$i.rc" 2>/dev/null)"); done
        outcomes+=("stream/rc$(cat "$sv_dir/kill.sse.rc" 2>/dev/null)")
        # curl's status 28 is its own 40 s limit: a request left hanging.
        check "$(grep -qx 28 "$sv_dir"/kill.*.rc && echo 1 || echo 0)" \
            "$what: no request in flight is left hanging (status/curl rc: ${outcomes[*]})" \
            "$(for i in 1 2 3; do sv_show "$sv_dir/kill.$i.json" 200; echo; done)"
        sv_no_leftovers "$what" "$SV_PID"
    fi

    if sv_start "serve-mpi-drain" "${MPIRUN[@]}" -np 4 "$RAMP_BIN" serve -m "$LITE" "${SV_FLAGS[@]}" "${SV_DRAIN_FLAGS[@]}"; then
        rank0=$(session_rank_pid "$SV_PID" 0)
        if [ -n "$rank0" ]; then
            sv_term_in_flight "mpirun -np 4 (SIGTERM to rank 0)" "$SV_URL" "$rank0"
        else
            fail "mpirun -np 4: rank 0 found" "no process with OMPI_COMM_WORLD_RANK=0 in session $SV_PID"
            kill_session "$SV_PID"
        fi
    fi
fi
