# slurm_lib.sh: a private, single-machine Slurm cluster for tests (sourceable by e2e sections and
# by scripts; bash).
#
#   . tests/e2e/slurm_lib.sh
#   slurm_install || exit        # Debian slurm-wlm + munge + PMIx, when missing (root only)
#   slurm_start || exit          # munged + slurmctld + slurmd in a fresh temp dir, node idle
#   slurm_trap_stop              # optional: slurm_stop on exit too (keeps the EXIT trap there)
#   slurm_client sbatch -O -n 4 --wrap 'srun --mpi=pmix ...'   # plain sbatch works too here
#   slurm_wait_state 60 "$job" COMPLETED FAILED; slurm_job_state "$job"
#   slurm_stop                   # cancels our jobs, stops exactly the daemons slurm_start started
#
# The daemons are background jobs of the calling shell (so $! is each daemon's exact PID, and
# Ctrl-C, which background jobs ignore, does not take them down before slurm_stop): a bare
# `wait` in that shell blocks until slurm_stop. Wait for specific PIDs instead.
#
# Nothing outside the temp dir is touched: munged gets its own key, socket, pid, log and seed
# files; slurm.conf points every state, spool, log and pid file into the dir; slurmctld and
# slurmd listen on free ports picked at random in 20000-40000; no systemd, no /etc changes
# (except what apt-get does when installing). Client commands find the cluster through the
# exported SLURM_CONF, and the munge socket through AuthInfo=socket=... in that slurm.conf.
#
# After slurm_start:
#   SLURM_CONF          the generated slurm.conf (exported; every sbatch/srun/squeue uses it)
#   slurm_dir           the temp dir (logs: munged.log slurmctld.log slurmd-NODE.log)
#   slurm_munge_socket  our munged's socket
#   slurm_nodes         node names (one here; slurm_netns.sh adds namespaced nodes)
#   slurm_pids          PIDs of exactly the daemons started (munged slurmctld slurmd...)
#
# Settings (environment, before slurm_start):
#   SLURM_E2E_BASE      parent of the temp dir (default $E2E_TMP, else $TMPDIR or /tmp; one
#                       that is not executable by all, like run-e2e.sh's 700 E2E_TMP, is
#                       replaced by $TMPDIR or /tmp: see munged below)
#   SLURM_E2E_WAIT      seconds to wait for the node(s) to come up idle (default 30)
#   SLURM_E2E_KEEP=1    slurm_stop keeps the temp dir (for debugging)
#
# Pitfalls this handles (Debian 12, Slurm 22.05.8, munge 0.5.15, Open MPI 4.1.4, PMIx 4.2.2):
#   - munged refuses a socket below any directory that is not executable by all ("Socket is
#     inaccessible: execute permissions for all required on DIR"), so the temp dir is chmod 755
#     (mktemp gives 700) and must not sit below a 700 dir.
#   - the key must be owned by the daemon user and mode 600 (mungekey -c creates it so).
#   - where services may start, munge's postinst starts the system munged; we neither use it
#     (private socket) nor stop it.
#   - `scontrol requeue` holds the job for 120 s (EligibleTime, Reason=BeginTime) before it may
#     run again; `scontrol update JobId=N StartTime=now+3` releases it sooner. StartTime=now
#     races slurmd's credential revocation (1 s resolution): "Killing non-startable batch
#     JobId=N: Job credential revoked", and the job ends FAILED.
#   - two clusters running at once both numbered their first job 1, and Open MPI (which names
#     shared-memory segments after the PMIx namespace slurm.pmix.JOB.STEP) crashed the ranks:
#     FirstJobId is random.
#   - Slurm variables of an enclosing job would leak into our sbatch/srun: they are unset.

slurm_dir=
slurm_ctld_port=
slurm_slurmd_port=
slurm_first_job_id=
slurm_munge_socket=
slurm_nodes=()
slurm_pids=()
# Commands that run client commands and slurmctld (empty here; slurm_netns.sh sets
# "nsenter --net=/run/netns/HUB", the namespace that can reach every node).
slurm_client_prefix=()
slurm_ctld_prefix=()
slurm_daemon_names=()

slurm_log() { printf '# slurm: %s\n' "$*" >&2; }

# slurm_tail FILE...: the last lines of each (for error messages).
slurm_tail() {
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        echo "--- tail $f"
        tail -n "${SLURM_E2E_TAIL:-15}" "$f"
    done
}

# slurm_logs_tail: tails of every log in the cluster dir.
slurm_logs_tail() {
    [ -n "$slurm_dir" ] || return 0
    slurm_tail "$slurm_dir"/munged.log "$slurm_dir"/slurmctld.log "$slurm_dir"/slurmd-*.log
}

# --- install -------------------------------------------------------------------------------------

# slurm_missing_packages: prints the Debian packages this library needs that are not installed.
slurm_missing_packages() {
    local p missing=()
    # slurm-wlm pulls slurmctld, slurmd and slurm-client; slurm-wlm-basic-plugins holds
    # mpi_pmix_v4.so (srun --mpi=pmix), linked against libpmix2, which Debian's Open MPI uses too.
    for p in slurm-wlm slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge libpmix2 iproute2; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] || echo "${missing[*]}"
}

# slurm_install: installs what is missing. Returns 0 when everything is there afterwards,
# 2 when not root (the command to run is printed), 1 when apt-get failed.
slurm_install() {
    local missing
    missing=$(slurm_missing_packages)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        slurm_log "needs Debian packages: $missing"
        slurm_log "install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing"
        return 2
    fi
    slurm_log "installing: $missing"
    # shellcheck disable=SC2086
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } \
        >"${TMPDIR:-/tmp}/slurm-install.$$.log" 2>&1; then
        slurm_log "apt-get failed:"
        tail -n 20 "${TMPDIR:-/tmp}/slurm-install.$$.log" >&2
        rm -f "${TMPDIR:-/tmp}/slurm-install.$$.log"
        return 1
    fi
    rm -f "${TMPDIR:-/tmp}/slurm-install.$$.log"
    missing=$(slurm_missing_packages)
    [ -z "$missing" ] || { slurm_log "still missing after apt-get: $missing"; return 1; }
}

# --- helpers -------------------------------------------------------------------------------------

# slurm_port_free PORT: nothing listens on TCP PORT (any address).
slurm_port_free() {
    local port=$1 hex
    if command -v ss >/dev/null 2>&1; then
        [ -z "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]
    else
        hex=$(printf '%04X' "$port")
        ! awk -v h=":$hex" 'NR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
            /proc/net/tcp /proc/net/tcp6 2>/dev/null
    fi
}

# slurm_free_port [EXCLUDE...]: a random free TCP port in 20000-40000 not in EXCLUDE.
slurm_free_port() {
    local port tries=0 e taken
    while [ $tries -lt 200 ]; do
        tries=$((tries + 1))
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 20001))
        taken=0
        for e in "$@"; do [ "$e" = "$port" ] && taken=1; done
        [ $taken -eq 0 ] && slurm_port_free "$port" && { echo "$port"; return 0; }
    done
    return 1
}

# slurm_alive PID: the process exists and is not a zombie.
slurm_alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# slurm_spawn NAME LOG CMD...: starts CMD in the background (its own foreground mode), records
# its PID. The daemon's stdout/stderr go to LOG.stdio (never to the caller's pipes).
slurm_spawn() {
    local name=$1 log=$2
    shift 2
    "$@" </dev/null >>"$log.stdio" 2>&1 &
    slurm_pids+=($!)
    slurm_daemon_names+=("$name")
}

# slurm_wait SECONDS CMD...: retries CMD every 0.2 s until it succeeds or SECONDS pass.
slurm_wait() {
    local seconds=$1 deadline
    shift
    deadline=$(($(date +%s) + seconds))
    while :; do
        "$@" && return 0
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

# slurm_client CMD ARGS...: a Slurm client command (sbatch, squeue, scontrol, sinfo, scancel,
# srun, ...) for our cluster, with a time limit (SLURM_E2E_CLIENT_TIMEOUT, default 60 s).
# Needed with slurm_netns.sh, where only the hub namespace reaches slurmctld; harmless otherwise.
slurm_client() {
    timeout -k 2 "${SLURM_E2E_CLIENT_TIMEOUT:-60}" "${slurm_client_prefix[@]}" "$@"
}

# slurm_traversable DIR: DIR and every directory above it are executable by all.
slurm_traversable() {
    local d
    d=$(cd "$1" 2>/dev/null && pwd -P) || return 1
    while :; do
        [ -n "$(find "$d" -maxdepth 0 -perm -o+x 2>/dev/null)" ] || return 1
        [ "$d" = / ] && return 0
        d=$(dirname "$d")
    done
}

# slurm_wait_up SECONDS CMD...: like slurm_wait, but gives up at once when a daemon died.
slurm_wait_up() {
    local seconds=$1 deadline
    shift
    deadline=$(($(date +%s) + seconds))
    while :; do
        slurm_daemons_alive || return 1
        "$@" && return 0
        [ "$(date +%s)" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

# slurm_daemons_alive: every daemon we started is still running (else says which is not).
slurm_daemons_alive() {
    local i
    for i in "${!slurm_pids[@]}"; do
        if ! slurm_alive "${slurm_pids[$i]}"; then
            slurm_log "${slurm_daemon_names[$i]} (pid ${slurm_pids[$i]}) is not running"
            return 1
        fi
    done
}

# slurm_nodes_idle: sinfo shows every node of slurm_nodes idle.
slurm_nodes_idle() {
    local states n
    states=$(slurm_client sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
    for n in "${slurm_nodes[@]}"; do
        printf '%s\n' "$states" | grep -qx "$n idle" || return 1
    done
}

# slurm_clean_env: Slurm/PMIx variables of an enclosing job (the tests may themselves run inside
# a Slurm allocation) would be taken by our sbatch/srun as options; drop them.
slurm_clean_env() {
    local v
    for v in $(compgen -e); do
        case $v in
        SLURM_E2E_*) ;;
        SLURM_* | SBATCH_* | SRUN_* | SALLOC_* | SQUEUE_* | PMIX_* | PMI_* | OMPI_MCA_orte_* | OMPI_COMM_WORLD_*)
            unset "$v" ;;
        esac
    done
}

# --- start ---------------------------------------------------------------------------------------

# slurm_write_conf FILE NODE_LINES...: slurm.conf with our paths and ports, and one partition
# "e2e" over every node in slurm_nodes. Extra lines: $SLURM_E2E_EXTRA_CONF.
slurm_write_conf() {
    local conf=$1 ctl_host=$2 ctl_addr=$3
    shift 3
    local d=$slurm_dir n
    for n in "${slurm_nodes[@]}"; do mkdir -p "$d/spool/$n" "$d/tmp/$n" || return 1; done
    {
        cat <<EOF
# Generated by tests/e2e/slurm_lib.sh: a private test cluster (everything under $d).
ClusterName=rampe2e
SlurmctldHost=$ctl_host${ctl_addr:+($ctl_addr)}
SlurmctldPort=$slurm_ctld_port
SlurmdPort=$slurm_slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$slurm_munge_socket
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool/%n
# Also the base of the PMIx plugin's per-step client dirs (spmix_appdir_UID_JOB.STEP): under /tmp
# they collide when several slurmd "nodes" share one file system (slurm_netns.sh).
TmpFS=$d/tmp/%n
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd-%n.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
# Job ids unique to this cluster: Open MPI names its shared-memory segments and session dirs
# after the PMIx namespace slurm.pmix.JOB.STEP, so two test clusters that both ran "job 1" at
# once made each other's ranks crash (SIGSEGV) or hang.
FirstJobId=$slurm_first_job_id
# Fast tests: short timeouts, scheduling right away, finished jobs stay visible for 5 minutes.
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=5
KillWait=2
InactiveLimit=0
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
EOF
        printf '%s\n' "$@"
        echo "PartitionName=e2e Nodes=$(IFS=,; echo "${slurm_nodes[*]}") Default=YES MaxTime=INFINITE State=UP"
        [ -n "${SLURM_E2E_EXTRA_CONF:-}" ] && printf '%s\n' "$SLURM_E2E_EXTRA_CONF"
    } >"$conf"
}

# slurm_start_munge: key + munged with every path in slurm_dir.
slurm_start_munge() {
    local d=$slurm_dir
    slurm_munge_socket=$d/munge/munge.socket
    mkdir -p "$d/munge" && chmod 755 "$d/munge" || return 1
    if command -v mungekey >/dev/null 2>&1; then
        mungekey -c -b 1024 -k "$d/munge/munge.key" || return 1
    else
        (umask 077 && dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 2>/dev/null) || return 1
    fi
    chmod 600 "$d/munge/munge.key"
    # -F: stay in the foreground, so $! is munged itself; -f (force) is not needed (dirs are ours).
    slurm_spawn munged "$d/munged.log" munged -F --socket="$slurm_munge_socket" \
        --key-file="$d/munge/munge.key" --pid-file="$d/munge/munged.pid" \
        --log-file="$d/munged.log" --seed-file="$d/munge/munged.seed"
    if ! slurm_wait_up 10 eval 'munge -S "$slurm_munge_socket" -n 2>/dev/null | unmunge -S "$slurm_munge_socket" >/dev/null 2>&1'; then
        slurm_log "munged did not answer on $slurm_munge_socket (10 s)"
        slurm_tail "$d/munged.log" "$d/munged.log.stdio" >&2
        return 1
    fi
}

# slurm_start_ctld: slurmctld, then a bounded wait until it answers.
slurm_start_ctld() {
    local d=$slurm_dir
    mkdir -p "$d/state"
    slurm_spawn slurmctld "$d/slurmctld.log" "${slurm_ctld_prefix[@]}" slurmctld -D -i -f "$SLURM_CONF"
    if ! slurm_wait_up 20 eval 'slurm_client scontrol ping 2>/dev/null | grep -q "is UP"'; then
        slurm_log "slurmctld did not answer scontrol ping (20 s)"
        slurm_tail "$d/slurmctld.log" "$d/slurmctld.log.stdio" >&2
        return 1
    fi
}

# slurm_wait_idle: bounded wait for every node idle.
slurm_wait_idle() {
    local wait=${SLURM_E2E_WAIT:-30}
    if ! slurm_wait_up "$wait" slurm_nodes_idle; then
        slurm_log "nodes not idle after $wait s: $(slurm_client sinfo -h -N -o '%N %t %E' 2>&1 | tr '\n' ';')"
        slurm_logs_tail >&2
        return 1
    fi
}

# slurm_prepare: fresh temp dir, clean env, munged, ports. Shared by slurm_start and
# slurm_netns_start.
slurm_prepare() {
    if [ ${#slurm_pids[@]} -gt 0 ]; then
        slurm_log "a cluster is already running here (pids ${slurm_pids[*]}); slurm_stop first"
        return 1
    fi
    local base=${SLURM_E2E_BASE:-${E2E_TMP:-${TMPDIR:-/tmp}}}
    # munged refuses a socket below a directory that is not executable by all (E2E_TMP is 700).
    slurm_traversable "$base" || base=${TMPDIR:-/tmp}
    slurm_traversable "$base" || base=/tmp
    slurm_dir=$(mktemp -d "$base/ramp-slurm.XXXXXX") || return 1
    # munged needs every directory on the way to its socket executable by all.
    chmod 755 "$slurm_dir"
    mkdir -p "$slurm_dir/spool" "$slurm_dir/jobs"
    slurm_clean_env
    export SLURM_CONF=$slurm_dir/slurm.conf
    slurm_first_job_id=$((100000 + (RANDOM * 32768 + RANDOM) % 50000000))
    slurm_ctld_port=$(slurm_free_port) && slurm_slurmd_port=$(slurm_free_port "$slurm_ctld_port") || {
        slurm_log "no free port found in 20000-40000"
        return 1
    }
    slurm_start_munge
}

# slurm_start: one node (this machine, CPUs = nproc) in partition e2e; returns when it is idle.
# On failure it prints why (with the logs' tails), stops what it started and returns 1.
slurm_start() {
    local missing host cpus
    missing=$(slurm_missing_packages)
    if [ -n "$missing" ]; then
        slurm_log "not installed: $missing (run slurm_install)"
        return 1
    fi
    slurm_prepare || { slurm_stop; return 1; }
    host=$(hostname -s)
    cpus=$(nproc)
    slurm_nodes=("$host")
    slurm_write_conf "$SLURM_CONF" "$host" 127.0.0.1 "NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN"
    slurm_start_ctld || { slurm_stop; return 1; }
    slurm_spawn "slurmd $host" "$slurm_dir/slurmd-$host.log" slurmd -D -f "$SLURM_CONF" -N "$host"
    slurm_wait_idle || { slurm_stop; return 1; }
}

# --- stop ----------------------------------------------------------------------------------------

# slurm_our_stepds: PIDs of slurmstepd processes of our cluster (they inherit SLURM_CONF from
# our slurmd, which is how they are told apart from any other Slurm on the machine).
slurm_our_stepds() {
    local p
    [ -n "${SLURM_CONF:-}" ] || return 0
    for p in $(pgrep -x slurmstepd 2>/dev/null); do
        slurm_alive "$p" || continue
        grep -qzxF -- "SLURM_CONF=$SLURM_CONF" "/proc/$p/environ" 2>/dev/null && echo "$p"
    done
}

# slurm_env_pids REGEX...: PIDs of live processes (other than this shell) with SLURM_CONF=ours
# in their environment and, for each REGEX, an entry that matches it whole (grep -x), e.g.
# 'SLURM_JOB_ID=.*'. One grep over /proc finds the candidates (a busy machine has hundreds of
# processes).
slurm_env_pids() {
    local f p m ok
    [ -n "${SLURM_CONF:-}" ] || return 0
    for f in $(grep -lzxF -- "SLURM_CONF=$SLURM_CONF" /proc/[0-9]*/environ 2>/dev/null); do
        p=${f#/proc/}
        p=${p%/environ}
        [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] && continue
        slurm_alive "$p" || continue
        ok=1
        for m in "$@"; do
            grep -qzx -- "$m" "$f" 2>/dev/null || { ok=0; break; }
        done
        [ $ok -eq 1 ] && echo "$p"
    done
}

# slurm_orphans: PIDs of live processes of our cluster's jobs (some SLURM_JOB_ID).
slurm_orphans() { slurm_env_pids 'SLURM_JOB_ID=.*'; }

# slurm_stop: cancels our jobs, then TERM to exactly our daemons (slurmd, slurmctld, munged),
# KILL after 10 s; removes the temp dir unless SLURM_E2E_KEEP=1. Safe to call twice, after a
# failed start, and from a trap. Returns 1 if some daemon had to be killed with KILL or
# survived.
slurm_stop() {
    local rc=0 i pid deadline left
    # slurm_pids: munged, slurmctld, slurmd...; cancelling needs the first two.
    if [ ${#slurm_pids[@]} -ge 2 ] && [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ] &&
        slurm_alive "${slurm_pids[0]}" && slurm_alive "${slurm_pids[1]}"; then
        # Jobs first, while slurmctld and slurmd can still clean them up.
        if SLURM_E2E_CLIENT_TIMEOUT=10 slurm_client squeue -h -o %i 2>/dev/null | grep -q .; then
            SLURM_E2E_CLIENT_TIMEOUT=10 slurm_client scancel --full --quiet --partition=e2e 2>/dev/null
            slurm_wait 15 eval '! SLURM_E2E_CLIENT_TIMEOUT=5 slurm_client squeue -h -o %i 2>/dev/null | grep -q .'
        fi
    fi
    # Any step daemon or task of ours still there (e.g. slurmd died first) would outlive
    # everything.
    for pid in $(slurm_our_stepds) $(slurm_orphans); do kill -KILL "$pid" 2>/dev/null; done
    # Reverse order: slurmd(s), slurmctld, munged.
    for ((i = ${#slurm_pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${slurm_pids[$i]}" 2>/dev/null
    done
    deadline=$(($(date +%s) + 10))
    while :; do
        left=()
        for pid in "${slurm_pids[@]}"; do slurm_alive "$pid" && left+=("$pid"); done
        [ ${#left[@]} -eq 0 ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            slurm_log "still running after TERM + 10 s, killing: ${left[*]}"
            for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null; done
            rc=1
            break
        fi
        sleep 0.2
    done
    # Reap them (they are our children) so no zombie lingers.
    for pid in "${slurm_pids[@]}"; do wait "$pid" 2>/dev/null; done
    [ "$(type -t slurm_netns_cleanup)" = function ] && slurm_netns_cleanup
    if [ -n "$slurm_dir" ] && [ -d "$slurm_dir" ] && [ "${SLURM_E2E_KEEP:-0}" != 1 ]; then
        rm -rf "$slurm_dir"
    fi
    slurm_pids=()
    slurm_daemon_names=()
    return $rc
}

# slurm_trap_stop: adds slurm_stop to the shell's EXIT trap (keeps what is there already, such
# as run-e2e.sh's per-section trap).
slurm_trap_stop() {
    local old
    old=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//" -e "s/'\\\\''/'/g")
    # shellcheck disable=SC2064
    trap "slurm_stop; $old" EXIT
}

# --- jobs ----------------------------------------------------------------------------------------

# slurm_job_state JOBID: PENDING, RUNNING, COMPLETED, ... (empty if unknown).
slurm_job_state() {
    slurm_client scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1
}

# slurm_job_field JOBID FIELD: a field of scontrol show job (e.g. Restarts, ExitCode, NodeList).
slurm_job_field() {
    slurm_client scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# slurm_wait_state SECONDS JOBID STATE...: waits until the job is in one of STATEs.
slurm_wait_state() {
    local seconds=$1 job=$2
    shift 2
    local want="$*"
    slurm_wait "$seconds" eval 'case " $want " in *" $(slurm_job_state "$job") "*) true ;; *) false ;; esac'
}

# The states a job does not leave.
slurm_final_states="COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY BOOT_FAIL PREEMPTED DEADLINE"

# slurm_cancel JOBID: scancel, then a bounded wait for its end.
slurm_cancel() {
    slurm_client scancel "$1" 2>/dev/null
    slurm_wait_state 30 "$1" $slurm_final_states
}

# slurm_startup_crash LOG: a task's "Segmentation fault" in the job's log. Open MPI 4.1.4's TCP
# BTL segfaults now and then inside MPI_Init_thread (a NULL active-message callback called from
# its receive handler: 4 of about 170 3-node jobs here), and the other ranks then wait in MPI_Init
# until srun ends the step. A caller that sees it before any output cancels the job and submits it
# again, once, printing slurm_startup_crash_note WHAT JOBID LOG.
slurm_startup_crash_line="task [0-9]*: Segmentation fault"
slurm_startup_crash() { grep -q "$slurm_startup_crash_line" "$1" 2>/dev/null; }
slurm_startup_crash_note() {
    echo "# note: $1: job $2: '$(grep -m 1 "$slurm_startup_crash_line" "$3")' before any output (Open MPI start-up crash); cancelled and submitted again"
}

# slurm_job_procs JOBID [VAR=VALUE]: PIDs of live processes of that job of our cluster (batch
# script, srun, tasks), found by SLURM_CONF and SLURM_JOB_ID in their environment (and VAR=VALUE
# too if given, e.g. SLURM_STEP_ID=0 for the tasks of step 0). Empty once the job is cleaned up.
slurm_job_procs() {
    if [ -n "${2:-}" ]; then
        slurm_env_pids "SLURM_JOB_ID=$1" "$2"
    else
        slurm_env_pids "SLURM_JOB_ID=$1"
    fi
}
