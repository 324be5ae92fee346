# slurm.sh: ramp under a real, private Slurm cluster that the test starts itself (munged,
# slurmctld, slurmd from tests/e2e/slurm_lib.sh: own temp dir, own munge socket, free ports).
#
# One node (this machine):
#   - the cluster comes up, node idle; srun offers the pmix MPI plugin
#   - `sbatch -O -n 4 --wrap 'srun --mpi=pmix ramp generate ...'` (rank 0 + 3 pipeline stages,
#     overcommitted on this machine's cores) prints exactly what one process prints
#   - `scontrol requeue` of a running job (during a 4-task pmix step) sends it back to PENDING;
#     it runs again (Restarts=1), its output is right, no process of the first run is left
#   - slurm_stop ends exactly the daemons it started
# Three nodes in network + UTS namespaces (tests/e2e/slurm_netns.sh; skipped when namespaces
# cannot be made):
#   - n1..n3 come up idle; tc shapes each node's link (netem delay 2ms rate 1gbit, or only the
#     rate with tbf when the kernel has no netem: then the delay is reported as skipped)
#   - `sbatch -N 3 -n 4` runs the ranks on three hostnames, Open MPI over TCP on the veths
#     (bytes counted on them), output equal to one process
#   - after slurm_stop the daemons and the namespaces are gone
# Needs root (apt-get for slurm-wlm/munge, daemons as root); otherwise skipped with the command
# to run. SLURM_E2E_KEEP=1 keeps the clusters' dirs (config, logs, job output).

# shellcheck source=slurm_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/slurm_lib.sh"
# shellcheck source=slurm_netns.sh
. "$(dirname "${BASH_SOURCE[0]}")/slurm_netns.sh"

sl_model=$LITE16/model-f32.gguf
sl_tokens=24
sl_dir=$(mktemp -d "$E2E_TMP/slurm.XXXXXX")
sl_prompts=$sl_dir/prompts.txt
sl_baseline=$sl_dir/single.out
# Open MPI's own allocations show up as leaks under LeakSanitizer (SANITIZE=1 builds), as in
# lib.sh's mpi_run.
sl_gen="env ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0 srun --mpi=pmix $RAMP_BIN generate -m $sl_model -f $sl_prompts -n $sl_tokens --temp 0 --threads 1 --timeout 60"
sl_job=

# sl_submit WHAT SBATCH_ARGS...: sbatch (job dir of this cluster, %j.out/%j.err) -> $sl_job.
sl_submit() {
    local what=$1 out
    shift
    out=$(slurm_client sbatch --parsable -D "$slurm_dir/jobs" -o "%j.out" -e "%j.err" "$@" 2>&1)
    if [[ $out =~ ^[0-9]+$ ]]; then
        sl_job=$out
    else
        sl_job=
        fail "$what: sbatch accepted the job" "$out"
        return 1
    fi
}

# sl_check_pipeline_job WHAT STARTED: waits for $sl_job; passes when it COMPLETED, ran 3 stages
# and printed exactly the one-process output.
sl_check_pipeline_job() {
    local what=$1 started=$2 state out=$slurm_dir/jobs/$sl_job.out err=$slurm_dir/jobs/$sl_job.err
    slurm_wait_state 120 "$sl_job" $slurm_final_states
    state=$(slurm_job_state "$sl_job")
    if [ "$state" != COMPLETED ]; then
        fail "$what" "job $sl_job: state ${state:-unknown}, exit $(slurm_job_field "$sl_job" ExitCode)" \
            "$(head -n 12 "$err" 2>/dev/null)" "$(SLURM_E2E_TAIL=8 slurm_logs_tail)"
    elif grep -qE "$SANITIZER_PATTERN" "$err"; then
        fail "$what: no sanitizer report" "$(grep -E -m 3 "$SANITIZER_PATTERN" "$err")"
    elif ! grep -q "^ramp: 3 stages" "$err"; then
        fail "$what: rank 0 + 3 stages" "$(head -n 8 "$err")"
    elif ! cmp -s "$out" "$sl_baseline"; then
        fail "$what: stdout equals one process" "$(cmp "$out" "$sl_baseline" 2>&1 | head -n 1)" \
            "$(diff "$sl_baseline" "$out" | head -n 6)"
    else
        pass "$what [$(elapsed_since "$started") s]"
    fi
}

# sl_stop_check WHAT: slurm_stop, then none of the daemons it started is left.
sl_stop_check() {
    local what=$1 pids=("${slurm_pids[@]}") started rc pid alive=()
    started=$(now)
    slurm_stop 2>"$sl_dir/stop.err"
    rc=$?
    for pid in "${pids[@]}"; do
        slurm_alive "$pid" && alive+=("$pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)")
    done
    if [ $rc -eq 0 ] && [ ${#alive[@]} -eq 0 ]; then
        pass "$what: slurm_stop ends exactly its daemons (pids ${pids[*]}) with TERM in $(elapsed_since "$started") s"
    else
        fail "$what: slurm_stop ends its daemons" "slurm_stop returned $rc" "${alive[@]}" "$(cat "$sl_dir/stop.err")"
    fi
}

# sl_submit_3nodes: submits the 3-node pipeline job (sets sl_job). A start-up crash of Open MPI
# (slurm_startup_crash, before any output) is cancelled and the job submitted again, once; a
# second one, or any other failure, is left to sl_check_pipeline_job.
sl_submit_3nodes() {
    local attempt out err
    for attempt in 1 2; do
        # shellcheck disable=SC2046
        slurm_client env $(slurm_netns_mpi_env) sbatch --parsable -D "$slurm_dir/jobs" -o "%j.out" \
            -e "%j.err" -N 3 -n 4 -J ramp-3nodes \
            --wrap "srun --mpi=pmix -l hostname >&2 && $sl_gen" >"$sl_dir/sbatch.out" 2>&1 &&
            [[ $(cat "$sl_dir/sbatch.out") =~ ^[0-9]+$ ]] || return 1
        sl_job=$(cat "$sl_dir/sbatch.out")
        out=$slurm_dir/jobs/$sl_job.out err=$slurm_dir/jobs/$sl_job.err
        slurm_wait 120 eval 'case " $slurm_final_states " in *" $(slurm_job_state "$sl_job") "*) true ;; *)
            [ ! -s "$out" ] && slurm_startup_crash "$err" ;; esac'
        if [ "$attempt" = 1 ] && [ "$(slurm_job_state "$sl_job")" != COMPLETED ] && [ ! -s "$out" ] &&
            slurm_startup_crash "$err"; then
            slurm_startup_crash_note "slurm netns" "$sl_job" "$err"
            slurm_cancel "$sl_job"
            continue
        fi
        return 0
    done
}

# --- one node ------------------------------------------------------------------------------------
sl_one_node() {
    local started
    started=$(now)
    if ! slurm_start 2>"$sl_dir/start.err"; then
        fail "slurm: cluster comes up (munged, slurmctld, slurmd; node idle)" "$(cat "$sl_dir/start.err")"
        return
    fi
    pass "slurm: cluster comes up in $(elapsed_since "$started") s (node ${slurm_nodes[*]} idle, $(nproc) CPUs, ports $slurm_ctld_port/$slurm_slurmd_port, pids ${slurm_pids[*]})"

    if srun --mpi=list 2>&1 | grep -qw pmix; then
        pass "slurm: srun --mpi=list offers pmix"
    else
        fail "slurm: srun --mpi=list offers pmix" "$(srun --mpi=list 2>&1 | head -n 8)"
    fi

    started=$(now)
    sl_submit "slurm: sbatch -O -n 4" -O -n 4 -J ramp-e2e --wrap "$sl_gen" &&
        sl_check_pipeline_job "slurm: sbatch -O -n 4 'srun --mpi=pmix ramp generate' (3 stages) equals one process" "$started"

    # scontrol requeue of a running job. First run: a 4-task pmix step that would sleep for
    # minutes, which the requeue kills; the rerun (SLURM_RESTART_COUNT=1) runs the pipeline.
    # Slurm holds a requeued job for 120 s (EligibleTime; Reason=BeginTime). StartTime=now+3
    # releases it sooner; not StartTime=now: slurmd revoked the job's credential at the requeue
    # (1 s resolution), and a restart within that second fails ("Killing non-startable batch
    # JobId=N: Job credential revoked", state FAILED).
    local script=$slurm_dir/jobs/requeue.sh
    cat >"$script" <<EOF
#!/bin/bash
echo "run \${SLURM_RESTART_COUNT:-0} on \$(hostname)" >&2
if [ "\${SLURM_RESTART_COUNT:-0}" -eq 0 ]; then
    srun --mpi=pmix sleep 300
fi
$sl_gen
EOF
    started=$(now)
    sl_submit "slurm: requeue test" -O -n 4 -J ramp-requeue --requeue "$script" || return
    local job=$sl_job err=$slurm_dir/jobs/$sl_job.err
    # Requeue once all 4 tasks of step 0 run (squeue shows the step before its tasks start).
    if ! slurm_wait_state 30 "$job" RUNNING ||
        ! slurm_wait 30 eval '[ "$(slurm_job_procs "$job" SLURM_STEP_ID=0 | wc -l)" -eq 4 ]'; then
        fail "slurm: requeue test job runs its 4-task pmix step" "state $(slurm_job_state "$job")" \
            "tasks of step 0: $(slurm_job_procs "$job" SLURM_STEP_ID=0 | wc -l)" "$(head -n 8 "$err" 2>/dev/null)"
        return
    fi
    local first_procs
    first_procs=$(slurm_job_procs "$job" | wc -l)
    if ! slurm_client scontrol requeue "$job" 2>"$sl_dir/requeue.err"; then
        fail "slurm: scontrol requeue $job" "$(cat "$sl_dir/requeue.err")"
        return
    fi
    if slurm_wait_state 20 "$job" PENDING; then
        pass "slurm: scontrol requeue of a running job (4-task pmix step; $first_procs processes of the job) puts it back to PENDING (reason $(slurm_job_field "$job" Reason))"
    else
        fail "slurm: scontrol requeue puts the running job back to PENDING" "state $(slurm_job_state "$job")"
        return
    fi
    slurm_client scontrol update "JobId=$job" StartTime=now+3
    slurm_wait_state 120 "$job" $slurm_final_states
    local state restarts leftovers
    state=$(slurm_job_state "$job")
    restarts=$(slurm_job_field "$job" Restarts)
    leftovers=$(slurm_job_procs "$job")
    if [ "$state" != COMPLETED ] || [ "$restarts" != 1 ]; then
        fail "slurm: the requeued job runs again and completes" "job $job: state ${state:-unknown}, Restarts=$restarts" \
            "$(head -n 12 "$err" 2>/dev/null)" "$(SLURM_E2E_TAIL=8 slurm_logs_tail)"
    elif ! grep -q "^run 1 on" "$err"; then
        fail "slurm: the requeued job runs again (SLURM_RESTART_COUNT=1)" "$(head -n 8 "$err")"
    elif [ -n "$leftovers" ]; then
        fail "slurm: no process of the requeued job is left" "$(ps -o pid,args -p "$(printf '%s\n' "$leftovers" | paste -sd,)")"
    elif ! cmp -s "$slurm_dir/jobs/$job.out" "$sl_baseline"; then
        fail "slurm: the requeued job's rerun equals one process" "$(diff "$sl_baseline" "$slurm_dir/jobs/$job.out" | head -n 6)"
    else
        pass "slurm: the requeued job runs again (Restarts=1), equals one process, nothing of the first run left [$(elapsed_since "$started") s]"
    fi
}

# --- three namespace nodes ----------------------------------------------------------------------
sl_netns_nodes() {
    local why started n
    if ! why=$(slurm_netns_check); then
        skip "slurm netns: 3 nodes in network namespaces" "$why"
        return
    fi
    started=$(now)
    if ! slurm_netns_start 3 2>"$sl_dir/start.err"; then
        fail "slurm netns: nodes n1..n3 in network + UTS namespaces come up" "$(cat "$sl_dir/start.err")"
        return
    fi
    pass "slurm netns: nodes ${slurm_nodes[*]} ($SLURM_NETNS_SUBNET.1-${#slurm_nodes[@]}, own hostnames, slurmctld in $slurm_netns_hub) idle in $(elapsed_since "$started") s"

    if ! slurm_netns_shape "delay 2ms rate 1gbit" 2>"$sl_dir/shape.err"; then
        fail "slurm netns: tc shapes every node's eth0" "$(cat "$sl_dir/shape.err")"
    elif [[ $slurm_netns_qdisc == netem* ]]; then
        pass "slurm netns: tc qdisc $slurm_netns_qdisc on every node's eth0"
    else
        pass "slurm netns: tc qdisc ${slurm_netns_qdisc%% (*} on every node's eth0 (rate only)"
        skip "slurm netns: tc netem delay 2ms" "no netem in this kernel: $(printf '%s' "${slurm_netns_qdisc#* (netem: }" | sed 's/)$//')"
    fi

    local before=() after=() i
    for n in "${slurm_nodes[@]}"; do before+=("$(slurm_netns_bytes "$n")"); done
    started=$(now)
    if sl_submit_3nodes; then
        sl_check_pipeline_job "slurm netns: sbatch -N 3 -n 4 'srun --mpi=pmix ramp generate' (btl tcp over the veths) equals one process" "$started"
        local hosts
        hosts=$(sed -n 's/^\([0-9]*\): \(n[0-9]*\)$/\1:\2/p' "$slurm_dir/jobs/$sl_job.err" | sort -n | paste -sd' ')
        for n in "${slurm_nodes[@]}"; do after+=("$(slurm_netns_bytes "$n")"); done
        local traffic=() moved=0
        for i in "${!slurm_nodes[@]}"; do
            local b=(${before[$i]:-0 0}) a=(${after[$i]:-0 0}) kb
            kb=$(((a[1] - b[1]) / 1024))
            traffic+=("${slurm_nodes[$i]} sent ${kb} KB")
            [ "$kb" -ge 8 ] && moved=$((moved + 1))
        done
        if [ "$(printf '%s\n' $hosts | cut -d: -f2 | sort -u | wc -l)" -eq 3 ] && [ $moved -eq 3 ]; then
            pass "slurm netns: ranks on three hostnames ($hosts); every node's eth0 carried the job ($(printf '%s\n' "${traffic[@]}" | paste -sd';' | sed 's/;/; /g'))"
        else
            fail "slurm netns: ranks on three hostnames, talking over the veths" "ranks: ${hosts:-none}" "${traffic[*]}"
        fi
    else
        fail "slurm netns: sbatch -N 3 -n 4 accepted" "$(cat "$sl_dir/sbatch.out")"
    fi

    local tag=$slurm_netns_tag left
    sl_stop_check "slurm netns"
    left=$(ip netns list 2>/dev/null | grep -F "$tag-")
    if [ -z "$left" ]; then
        pass "slurm netns: the namespaces ($tag-hub, $tag-n1..n3) are gone"
    else
        fail "slurm netns: the namespaces are gone" "$left"
    fi
}

sl_run_section() {
    if [ "$(id -u)" -ne 0 ]; then
        slurm_install
        skip "slurm: private cluster" "not root: this test runs munged, slurmctld and slurmd as root"
        return
    fi
    local rc
    slurm_install
    rc=$?
    if [ $rc -ne 0 ]; then
        fail "slurm: Debian slurm-wlm, munge, libpmix2 installed" "slurm_install returned $rc"
        return
    fi
    pass "slurm: Debian slurm-wlm, munge, libpmix2 installed ($(slurmctld -V 2>/dev/null))"

    # The one-process baseline both clusters are compared with.
    cut -f1 "$REF/lite16.greedy48.tsv" | awk 'NF && !seen[$0]++' >"$sl_prompts"
    echo "The little bird sang a song and" >>"$sl_prompts"
    ramp generate -m "$sl_model" -f "$sl_prompts" -n "$sl_tokens" --temp 0
    cp "$OUT" "$sl_baseline"
    if [ "$RC" -ne 0 ] || [ ! -s "$sl_baseline" ]; then
        fail "slurm: one-process baseline ($(wc -l <"$sl_prompts") prompts)" "$(last_run_details)"
        return
    fi

    # A section that stops early still stops the daemons (run-e2e.sh's own EXIT trap is kept).
    slurm_trap_stop
    sl_one_node
    [ ${#slurm_pids[@]} -gt 0 ] && sl_stop_check "slurm"
    sl_netns_nodes
}

sl_run_section
