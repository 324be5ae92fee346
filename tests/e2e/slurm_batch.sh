# slurm_batch.sh: cluster/ramp-batch.sbatch under a real, private Slurm cluster that the test starts
# itself (tests/e2e/slurm_lib.sh: munged, slurmctld, slurmd as root, own temp dir and ports), on
# 300 requests through a 3-stage pipeline (lite16), every result compared with one process's
# `ramp batch` (bodies without their "created" time; every custom_id exactly once).
#
# One node (this machine, `sbatch -O -n 4`):
#   - the job completes: 300 lines equal to the one-process run
#   - preemption, twice in one job: `scancel --signal=USR1 JOB` mid-run, and in the requeued run
#     `scancel --full --signal=USR1 JOB` (the batch shell too) -> each time ramp drains and exits
#     75, the script runs `scontrol requeue`, the job goes back to PENDING (released with
#     StartTime=now+3 instead of Slurm's 120 s requeue hold), runs again and resumes; after
#     Restarts=2 the final output equals the uninterrupted run. The counts (lines at each signal,
#     at the end of each run) are in the check's line.
#   - killed outright mid-run, twice: `scancel --full --signal=KILL JOB`, then (after the same
#     sbatch again) kill -9 of every process of the job: each time the job ends, is not requeued,
#     leaves no process and no torn line; a third sbatch of the same command resumes it to the same
#     final output
# Three nodes in network + UTS namespaces (tests/e2e/slurm_netns.sh; skipped when namespaces
# cannot be made):
#   - `sbatch -N 3 -n 4` (Open MPI over TCP on the veths) equals the one-process run
#   - throughput with tc limits on every node's link: no limit, tbf 1 gbit, 100 mbit, 10 mbit (3
#     runs each on 100 requests, median requests/s and stage-1 token rows/s from ramp's own
#     --metrics-json time, and the job's wall time); netem delay rows are skipped with the reason
#     when the kernel has no netem. The table is printed as "#" lines.
#   - a 3-node job whose rank crashes inside Open MPI's MPI_Init before any output (an Open MPI
#     4.1.4 TCP BTL bug, see sb_run_job) is submitted again, once, with a "# note:" line
# Every wait is bounded; slurm_stop ends exactly the daemons slurm_start started (checked).
# SLURM_E2E_KEEP=1 keeps the clusters' dirs; SB_TABLE_RUNS (default 3) and SB_TABLE_N (default
# 100) size the throughput table, SB_TABLE_BUDGET (default 150 s) bounds it (settings not reached
# are reported as skipped). A job that does not end in time is cancelled.

# shellcheck source=slurm_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/slurm_lib.sh"
# shellcheck source=slurm_netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/slurm_netns.sh"

sb_model=$LITE16/model-f32.gguf
sb_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
sb_dir=$(mktemp -d "$E2E_TMP/slurm_batch.XXXXXX")
sb_in=$sb_dir/in.jsonl
sb_base=$sb_dir/base.out
SB_N=300
SB_TABLE_N=${SB_TABLE_N:-100}
SB_TABLE_RUNS=${SB_TABLE_RUNS:-3}
sb_job=

sb_lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
sb_problems() { batch_problems "$1" "$2" "one-process run"; }

# sb_submit WHAT OUT SBATCH_ARGS... -- BATCH_FLAGS...: submits cluster/ramp-batch.sbatch from the
# checkout (as documented) with the job's directory $sb_dir (its log: ramp-batch-JOB.log) -> $sb_job.
# Environment for the job: $sb_env (NAME=VALUE words).
sb_env=()
sb_submit() {
    local what=$1 out=$2 args=() answer
    shift 2
    while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    answer=$(cd "$sb_root" && slurm_client env "${sb_env[@]}" RAMP_PROGRESS_SECONDS=0.2 \
        "ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0" sbatch --parsable -D "$sb_dir" "${args[@]}" \
        cluster/ramp-batch.sbatch "$sb_model" "$sb_in_job" "$out" "$@" 2>&1)
    if [[ $answer =~ ^[0-9]+$ ]]; then
        sb_job=$answer
    else
        sb_job=
        fail "$what: sbatch accepted the job" "$answer"
        return 1
    fi
}
sb_in_job=$sb_in
sb_log() { echo "$sb_dir/ramp-batch-$1.log"; }
# sb_job_failed WHAT JOB: a failed check with the job's state and log; the job is cancelled (so
# that it holds no node for the next one).
sb_job_failed() {
    fail "$1" "job $2: state $(slurm_job_state "$2"), exit $(slurm_job_field "$2" ExitCode), Restarts=$(slurm_job_field "$2" Restarts)" \
        "$(grep -v '^ramp:  ' "$(sb_log "$2")" 2>/dev/null | grep -v 'ramp batch: \[' | head -n 12)" "$(SLURM_E2E_TAIL=6 slurm_logs_tail)"
    slurm_cancel "$2"
}
# sb_wait_lines FILE N JOB SECONDS: until FILE has N lines (0), or the job is no longer running or
# time ran out (1).
sb_wait_lines() {
    local file=$1 n=$2 job=$3 deadline=$(($(date +%s) + $4)) state
    while [ "$(sb_lines "$file")" -lt "$n" ]; do
        state=$(slurm_job_state "$job")
        case $state in PENDING | RUNNING | CONFIGURING) ;; *) return 1 ;; esac
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# sb_run_job WHAT OUT SECONDS SBATCH_ARGS... -- BATCH_FLAGS...: submits, waits (bounded) for the job
# to end; sets sb_job, sb_state and sb_t0 (the last submission's time). A start-up crash of Open
# MPI (slurm_startup_crash, before any output line) is cancelled at once and the job submitted
# again, once, with a "# note:" line; a second one, or any other failure, stays.
sb_state=
sb_t0=
sb_run_job() {
    local what=$1 out=$2 seconds=$3 attempt
    shift 3
    for attempt in 1 2; do
        sb_t0=$(now)
        sb_submit "$what" "$out" "$@" || return 1
        slurm_wait "$seconds" eval 'case " $slurm_final_states " in *" $(slurm_job_state "$sb_job") "*) true ;; *)
            [ "$(sb_lines "$out")" -eq 0 ] && slurm_startup_crash "$(sb_log "$sb_job")" ;; esac'
        sb_state=$(slurm_job_state "$sb_job")
        if [ "$sb_state" != COMPLETED ] && [ "$attempt" = 1 ] && [ "$(sb_lines "$out")" -eq 0 ] &&
            slurm_startup_crash "$(sb_log "$sb_job")"; then
            slurm_startup_crash_note "$what" "$sb_job" "$(sb_log "$sb_job")"
            slurm_cancel "$sb_job"
            rm -f "$out" "$out.metrics.json"
            continue
        fi
        return 0
    done
}

# --- one node ------------------------------------------------------------------------------------
sb_one_node() {
    local started state problems p job log
    started=$(now)
    if ! slurm_start 2>"$sb_dir/start.err"; then
        fail "slurm batch: cluster comes up" "$(cat "$sb_dir/start.err")"
        return
    fi
    pass "slurm batch: cluster up in $(elapsed_since "$started") s (node ${slurm_nodes[*]}, pids ${slurm_pids[*]})"

    # 1. The whole job, uninterrupted.
    started=$(now)
    sb_submit "slurm batch: sbatch -O -n 4 ramp-batch.sbatch" "$sb_dir/job.out" -O -n 4 -- || return
    job=$sb_job
    slurm_wait_state 150 "$job" $slurm_final_states
    state=$(slurm_job_state "$job")
    p=$(sb_problems "$sb_dir/job.out" "$sb_base")
    if [ "$state" != COMPLETED ]; then
        sb_job_failed "slurm batch: sbatch -O -n 4 cluster/ramp-batch.sbatch on $SB_N requests completes" "$job"
    elif ! grep -q "^ramp: 3 stages" "$(sb_log "$job")"; then
        fail "slurm batch: the job ran rank 0 + 3 stages" "$(grep '^ramp' "$(sb_log "$job")" | head -n 5)"
    else
        check "$([ -z "$p" ] && echo 0 || echo 1)" \
            "slurm batch: sbatch -O -n 4 cluster/ramp-batch.sbatch MODEL in.jsonl out.jsonl: $SB_N requests through 3 stages, each custom_id once, bodies equal to one process [$(elapsed_since "$started") s]" "$p"
        local progress
        progress=$(grep -E '^ramp batch: \[[#.]{20}\] ' "$(sb_log "$job")" | head -n 1)
        if [ -n "$progress" ]; then
            pass "slurm batch: the job's log has progress lines, e.g. '$progress'"
        else
            fail "slurm batch: the job's log has progress lines" "$(head -n 6 "$(sb_log "$job")")"
        fi
    fi

    # 2. Preemption, twice in one job: USR1 to the job's steps (`scancel --signal=USR1`, what
    #    --signal=USR1@120 does), then to the batch shell too (`scancel --full --signal=USR1`, as
    #    --signal=B:USR1@120 would; the script passes it on). Each time ramp drains and exits 75, the
    #    script requeues, the job is released from Slurm's requeue hold and resumes. At most 32
    #    requests in flight, so that the second signal still leaves work for a third run.
    started=$(now)
    local out=$sb_dir/preempt.out at_signal ended=() resumed restarts round how counts=()
    sb_submit "slurm batch: preemption job" "$out" -O -n 4 -- --max-in-flight 32 || return
    job=$sb_job
    log=$(sb_log "$job")
    for round in 1 2; do
        how="scancel --signal=USR1"
        [ $round = 2 ] && how="scancel --full --signal=USR1"
        local target=$(($(sb_lines "$out") + 40))
        if ! sb_wait_lines "$out" "$target" "$job" 120; then
            sb_job_failed "slurm batch: the preemption job (run $round) writes $target lines" "$job"
            return
        fi
        # shellcheck disable=SC2086
        slurm_client $how "$job"
        at_signal=$(sb_lines "$out")
        # ramp drains and exits 75; the script requeues: the job is PENDING again (BeginTime hold).
        if ! slurm_wait 120 eval '[ "$(grep -c "requeueing job" "$log")" -ge $round ] && [ "$(slurm_job_state "$job")" = PENDING ]'; then
            sb_job_failed "slurm batch: after $how the job exits 75 and requeues itself" "$job"
            return
        fi
        ended+=("$(sb_lines "$out")")
        counts+=("$how at $at_signal lines: ramp exited 75 at ${ended[-1]} lines, the job requeued")
        slurm_client scontrol update "JobId=$job" StartTime=now+3
    done
    slurm_wait_state 150 "$job" $slurm_final_states
    state=$(slurm_job_state "$job")
    restarts=$(slurm_job_field "$job" Restarts)
    problems=()
    [ "$state" = COMPLETED ] && [ "$restarts" = 2 ] || problems+=("state $state, Restarts=$restarts")
    [ "$(grep -c "srun: error: .*task 0: Exited with exit code 75" "$log")" -eq 2 ] ||
        problems+=("not twice 'task 0: Exited with exit code 75' in the log")
    [ "$(grep -c "stopped early: rerun the same command to resume" "$log")" -eq 2 ] || problems+=("ramp did not say twice that it stopped early")
    grep -q "^ramp-batch: job $job (restart 2)" "$log" || problems+=("no 'restart 2' run in the log")
    resumed=$(sed -n 's/^ramp batch: resuming: .* already answers \([0-9]*\) requests.*/\1/p' "$log" | paste -sd' ')
    [ "$resumed" = "${ended[*]}" ] || problems+=("the reruns resumed from '${resumed:-nothing}' answers, the runs ended with ${ended[*]} lines")
    [ "${ended[1]}" -lt "$SB_N" ] || problems+=("the second run answered everything: no third run to resume")
    p=$(sb_problems "$out" "$sb_base")
    [ -z "$p" ] || problems+=("$p")
    [ ${#problems[@]} -eq 0 ] || problems+=("$(grep -v '^ramp:  ' "$log" | grep -v 'ramp batch: \[' | tail -n 14)")
    check ${#problems[@]} "slurm batch: preempted twice ($(printf '%s; ' "${counts[@]}")each time released with StartTime=now+3), the third run resumed from ${ended[1]} and wrote the other $((SB_N - ended[1])): Restarts=$restarts, $(sb_lines "$out") lines equal to the uninterrupted run, none lost or twice [$(elapsed_since "$started") s]" \
        "${problems[@]}"

    # 3. Killed outright, twice, each time followed by the same sbatch again: first
    #    `scancel --full --signal=KILL` (batch shell and steps; Slurm turns a KILL of a whole job
    #    into its normal cancel: TERM, KillWait, KILL), then kill -9 of every process of the job
    #    (batch shell, srun, the four ranks; found by SLURM_JOB_ID in their environment), as a
    #    crash would. Then the third submission completes the job.
    started=$(now)
    out=$sb_dir/killed.out
    local counts=() why
    for why in scancel kill9; do
        local target=$(($(sb_lines "$out") + 40))
        # two sequences at a time: slow enough that the kill lands mid-run on a fast, idle machine
        sb_submit "slurm batch: $why job" "$out" -O -n 4 -- --max-sequences 2 --micro-batches 2 || return
        job=$sb_job
        if ! sb_wait_lines "$out" "$target" "$job" 120; then
            sb_job_failed "slurm batch: the $why job writes $target lines" "$job"
            return
        fi
        local pids=""
        if [ "$why" = scancel ]; then
            slurm_client scancel --full --signal=KILL "$job"
        else
            pids=$(slurm_job_procs "$job")
            # shellcheck disable=SC2086
            [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
        fi
        at_signal=$(sb_lines "$out")
        slurm_wait_state 60 "$job" $slurm_final_states
        state=$(slurm_job_state "$job")
        slurm_wait 20 eval '[ -z "$(slurm_job_procs "$job")" ]'
        local left kept
        left=$(slurm_job_procs "$job")
        kept=$(sb_lines "$out")
        problems=()
        case " $slurm_final_states " in *" $state "*) ;; *) problems+=("state after the kill: ${state:-unknown}") ;; esac
        [ "$(slurm_job_field "$job" Restarts)" = 0 ] || problems+=("the killed job was requeued")
        [ -z "$left" ] || problems+=("processes of the killed job left: $(ps -o pid,args -p "$(printf '%s\n' "$left" | paste -sd,)")")
        [ "$(tail -c 1 "$out" | od -An -c | tr -d ' ')" = '\n' ] || problems+=("the killed job left a torn last line")
        [ "$kept" -lt "$SB_N" ] || problems+=("the job finished before the kill")
        p=$(sb_problems "$out" "$sb_base" | grep 'twice\|not JSON\|newline')
        [ -z "$p" ] || problems+=("$p")
        if [ ${#problems[@]} -gt 0 ]; then
            fail "slurm batch: $why mid-run ends the job" "${problems[@]}" "$(grep -v '^ramp:  ' "$(sb_log "$job")" | tail -n 6)"
            return
        fi
        local drained=""
        grep -q "stopped early" "$(sb_log "$job")" && drained=", ramp got a TERM first and drained"
        if [ "$why" = scancel ]; then
            counts+=("scancel --full --signal=KILL at $at_signal lines: job $state, $kept lines kept$drained")
        else
            counts+=("kill -9 of the job's $(echo $pids | wc -w) processes at $at_signal lines: job $state, $kept lines kept$drained")
        fi
    done
    sb_submit "slurm batch: resubmission" "$out" -O -n 4 -- || return
    job=$sb_job
    slurm_wait_state 150 "$job" $slurm_final_states
    resumed=$(sed -n 's/^ramp batch: resuming: .* already answers \([0-9]*\) requests.*/\1/p' "$(sb_log "$job")" | head -n 1)
    p=$(sb_problems "$out" "$sb_base")
    if [ "$(slurm_job_state "$job")" != COMPLETED ]; then
        sb_job_failed "slurm batch: the resubmitted job completes" "$job"
    else
        [ "$resumed" = "$kept" ] && [ -z "$p" ]
        check $? "slurm batch: killed outright, resubmitted each time ($(printf '%s; ' "${counts[@]}")nothing left, no torn line, not requeued); the third sbatch resumed from $resumed: $(sb_lines "$out") lines equal to the uninterrupted run [$(elapsed_since "$started") s]" \
            "resumed from '${resumed:-nothing}', $kept lines before" "$p"
    fi
}

# sb_stop_check WHAT: slurm_stop, then none of the daemons it started is left.
sb_stop_check() {
    local what=$1 pids=("${slurm_pids[@]}") rc pid alive=()
    slurm_stop 2>"$sb_dir/stop.err"
    rc=$?
    for pid in "${pids[@]}"; do
        slurm_alive "$pid" && alive+=("$pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)")
    done
    if [ $rc -eq 0 ] && [ ${#alive[@]} -eq 0 ]; then
        pass "$what: slurm_stop ends exactly its daemons (pids ${pids[*]})"
    else
        fail "$what: slurm_stop ends its daemons" "slurm_stop returned $rc" "${alive[@]}" "$(cat "$sb_dir/stop.err")"
    fi
}

# --- three namespace nodes ------------------------------------------------------------------------
# sb_unshape: no qdisc on any node's eth0 (the kernel's default).
sb_unshape() {
    local i
    for ((i = 1; i <= ${#slurm_nodes[@]}; i++)); do
        tc -n "$slurm_netns_tag-n$i" qdisc del dev eth0 root 2>/dev/null
    done
    slurm_netns_qdisc=none
}
# sb_median V...: the median.
sb_median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

sb_netns_nodes() {
    local why started job state p n
    if ! why=$(slurm_netns_check); then
        skip "slurm batch netns: 3 nodes in network namespaces" "$why"
        return
    fi
    started=$(now)
    if ! slurm_netns_start 3 2>"$sb_dir/netns.err"; then
        fail "slurm batch netns: nodes n1..n3 come up" "$(cat "$sb_dir/netns.err")"
        return
    fi
    pass "slurm batch netns: nodes ${slurm_nodes[*]} idle in $(elapsed_since "$started") s"
    mapfile -t sb_env < <(slurm_netns_mpi_env)

    # 1. The whole job across three nodes.
    local before=() after=() traffic=() i
    for n in "${slurm_nodes[@]}"; do before+=("$(slurm_netns_bytes "$n")"); done
    started=$(now)
    sb_run_job "slurm batch netns: sbatch -N 3 -n 4" "$sb_dir/n3.out" 150 -N 3 -n 4 -- || return
    job=$sb_job
    state=$sb_state
    for n in "${slurm_nodes[@]}"; do after+=("$(slurm_netns_bytes "$n")"); done
    for i in "${!slurm_nodes[@]}"; do
        local b a
        read -r -a b <<<"${before[$i]:-0 0}"
        read -r -a a <<<"${after[$i]:-0 0}"
        traffic+=("${slurm_nodes[$i]} sent $(((a[1] - b[1]) / 1024)) KB")
    done
    p=$(sb_problems "$sb_dir/n3.out" "$sb_base")
    if [ "$state" != COMPLETED ]; then
        sb_job_failed "slurm batch netns: sbatch -N 3 -n 4 cluster/ramp-batch.sbatch completes" "$job"
    else
        [ -z "$p" ] && grep -q "^ramp-batch: job $job (restart 0) on n\[1-3\], 4 tasks" "$(sb_log "$job")"
        check $? "slurm batch netns: sbatch -N 3 -n 4 cluster/ramp-batch.sbatch ($(slurm_job_field "$job" NodeList), $(printf '%s\n' "${traffic[@]}" | paste -sd';' | sed 's/;/; /g')): $SB_N lines equal to one process [$(elapsed_since "$started") s]" \
            "$p" "$(head -n 2 "$(sb_log "$job")")"
    fi

    # 2. Throughput with rate limits on the links (tbf; netem delay when the kernel has it).
    sb_in_job=$sb_dir/table.jsonl
    head -n "$SB_TABLE_N" "$sb_in" >"$sb_in_job"
    jq -c --slurpfile ids <(jq -R . <(jq -r .custom_id "$sb_in_job")) 'select(.custom_id as $c | $ids | index($c))' \
        "$sb_base" >"$sb_dir/table.base"
    local shapes=("none" "rate 1gbit" "rate 100mbit" "rate 10mbit") netem_why=
    if tc -n "$slurm_netns_tag-n1" qdisc replace dev eth0 root netem delay 1ms 2>"$sb_dir/netem.err"; then
        shapes+=("delay 0.2ms rate 10gbit" "delay 2ms rate 1gbit")
    else
        netem_why=$(head -n 1 "$sb_dir/netem.err")
    fi
    sb_unshape
    local shape run rps=() trs=() walls=() applied table=() bad=() t0 m over=() table_started
    table_started=$(now)
    for shape in "${shapes[@]}"; do
        # A bounded section: settings left when the table has taken SB_TABLE_BUDGET seconds.
        if awk -v a="$table_started" -v b="$(now)" -v l="${SB_TABLE_BUDGET:-150}" 'BEGIN { exit !(b - a > l) }'; then
            over+=("$shape")
            continue
        fi
        if [ "$shape" = none ]; then
            sb_unshape
            applied="no qdisc"
        elif ! slurm_netns_shape "$shape" 2>"$sb_dir/shape.err"; then
            bad+=("tc $shape: $(cat "$sb_dir/shape.err")")
            continue
        else
            applied=${slurm_netns_qdisc%% (*}
        fi
        rps=() trs=() walls=()
        for ((run = 1; run <= SB_TABLE_RUNS; run++)); do
            local out=$sb_dir/table.$RANDOM$RANDOM.out
            sb_run_job "$shape run $run" "$out" 120 -N 3 -n 4 -- || return
            job=$sb_job
            state=$sb_state
            t0=$sb_t0
            walls+=("$(elapsed_since "$t0")")
            m=$out.metrics.json
            if [ "$state" != COMPLETED ]; then
                bad+=("$shape run $run: job $job $state after $(elapsed_since "$t0") s, exit $(slurm_job_field "$job" ExitCode):"
                    "$(grep -v '^ramp:  ' "$(sb_log "$job")" 2>/dev/null | grep -v 'ramp batch: \[' | head -n 10)")
                slurm_cancel "$job"
                continue
            fi
            p=$(sb_problems "$out" "$sb_dir/table.base")
            if [ -n "$p" ] || [ ! -s "$m" ]; then
                bad+=("$shape run $run: job $job: ${p:-no metrics file}")
                continue
            fi
            rps+=("$(jq -r '(.job.answered + .job.refused) / .job.seconds' "$m")")
            trs+=("$(jq -r '.stages[0].rows / .job.seconds' "$m")")
        done
        [ ${#rps[@]} -gt 0 ] || continue
        table+=("$(printf '%-26s %-44s %8.1f %10.0f %8.1f   %s' "$shape" "$applied" "$(sb_median "${rps[@]}")" \
            "$(sb_median "${trs[@]}")" "$(sb_median "${walls[@]}")" "$(printf '%.1f ' "${rps[@]}")")")
    done
    sb_unshape
    check ${#bad[@]} "slurm batch netns: throughput table, sbatch -N 3 -n 4 cluster/ramp-batch.sbatch on $SB_TABLE_N requests, $SB_TABLE_RUNS runs per link setting, every run equal to one process" "${bad[@]}"
    {
        echo "# requests/s across 3 namespace nodes (median of $SB_TABLE_RUNS; ramp's own time from --metrics-json; rows/s = token rows"
        echo "# through stage 1 per second; wall = sbatch to COMPLETED):"
        printf '# %-26s %-44s %8s %10s %8s   %s\n' "link (every node's eth0)" "qdisc applied" "req/s" "rows/s" "wall s" "req/s of each run"
        printf '# %s\n' "${table[@]}"
    }
    [ ${#over[@]} -eq 0 ] ||
        skip "slurm batch netns: table rows $(printf "'%s' " "${over[@]}")" "the table took more than SB_TABLE_BUDGET=${SB_TABLE_BUDGET:-150} s"
    if [ -n "$netem_why" ]; then
        skip "slurm batch netns: netem delay rows (0.2 ms / 10 gbit, 2 ms / 1 gbit)" "no netem in this kernel: $netem_why"
    fi

    local tag=$slurm_netns_tag left
    sb_stop_check "slurm batch netns"
    left=$(ip netns list 2>/dev/null | grep -F "$tag-")
    check "$([ -z "$left" ] && echo 0 || echo 1)" "slurm batch netns: the namespaces ($tag-*) are gone" "$left"
}

sb_run_section() {
    if [ "$(id -u)" -ne 0 ]; then
        skip "slurm batch: private cluster" "not root: this test runs munged, slurmctld and slurmd as root"
        return
    fi
    if ! slurm_install; then
        fail "slurm batch: Debian slurm-wlm, munge, libpmix2 installed" "slurm_install failed"
        return
    fi
    trec_batch_requests 1 "$SB_N" >"$sb_in"
    local started
    started=$(now)
    run 300 "$RAMP_BIN" batch -m "$sb_model" -i "$sb_in" -o "$sb_base" --threads 1
    if [ "$RC" -ne 0 ] || [ "$(sb_lines "$sb_base")" -ne "$SB_N" ]; then
        fail "slurm batch: the one-process run of $SB_N requests" "$(last_run_details)"
        return
    fi
    pass "slurm batch: one-process ramp batch of $SB_N requests (the reference): $(jq -c 'select(.response.status_code == 200)' "$sb_base" | wc -l) x 200 [$(elapsed_since "$started") s]"
    # A section that stops early still stops the daemons (run-e2e.sh's own EXIT trap is kept).
    slurm_trap_stop
    sb_one_node
    [ ${#slurm_pids[@]} -gt 0 ] && sb_stop_check "slurm batch"
    sb_netns_nodes
}

sb_run_section
