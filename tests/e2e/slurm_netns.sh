# slurm_netns.sh: a private Slurm cluster whose nodes are network + UTS namespaces of this
# machine, so that `sbatch -N 3` runs ranks on different "nodes" that talk over TCP through veth
# pairs (bash; source slurm_lib.sh first).
#
#   . tests/e2e/slurm_lib.sh; . tests/e2e/slurm_netns.sh
#   slurm_netns_check || exit    # root, ip, unshare, netns + veth + bridge creatable
#   slurm_netns_start 3          # munged, slurmctld in the hub namespace, slurmd n1..n3
#   slurm_netns_shape "delay 2ms rate 1gbit"   # on every node's eth0 (netem, else tbf rate)
#   slurm_client sbatch -N 3 -n 4 ...          # clients run in the hub namespace
#   slurm_stop                   # daemons, then the namespaces (slurm_netns_cleanup)
#
# Layout (names carry the tag ramp<PID of the shell>, so concurrent runs never collide; a run
# killed with SIGKILL leaves its ramp<PID>-* namespaces: `ip netns del` them):
#   ramp<PID>-hub   bridge br0 with 10.77.0.254/24; slurmctld runs here, and so do client
#                   commands (slurm_client = nsenter --net=/run/netns/ramp<PID>-hub CMD), since
#                   the root namespace gets no address or route
#   ramp<PID>-nI    eth0 = 10.77.0.I/24 (veth, peer vI on br0 in the hub), lo; slurmd -N nI runs
#                   here in a UTS namespace of its own with hostname nI, so its jobs do too
# Every address and link lives in namespaces made here; the root namespace is not touched except
# for the namespace names under /run/netns that `ip netns add` creates. munged stays in the root
# namespace: its socket is a file, reachable from every network namespace.
#
# For Open MPI between the nodes: slurm_netns_mpi_env prints the OMPI_MCA_* settings (btl tcp
# over the veth subnet only, and self; no shared memory, so even two ranks on one "node" talk
# over TCP). The Slurm PMIx plugin's stepd-to-stepd traffic (wire-up, fences) goes to each
# node's NodeAddr, i.e. over the subnet too; rank-to-local-stepd PMIx stays inside the node.
#
# Pitfalls found (Debian 12, Slurm 22.05.8, this machine's 6.18 kernel):
#   - this kernel has no sch_netem (CONFIG_NET_SCH_NETEM unset, no modules): `tc qdisc add dev
#     eth0 root netem delay 2ms rate 1gbit` fails with "Error: Specified qdisc kind is unknown.";
#     tbf and htb exist, so the rate limit still works (tbf rate 1gbit), the delay does not.
#   - not `ip netns exec`: it also makes a mount namespace with a fresh /sys for the netns, where
#     /sys/fs/cgroup is not mounted, and slurmd 22.05 then stops ("error: No filesystem mounted
#     on /sys/fs/cgroup", "Unable to initialize cgroup plugin", "slurmd initialization failed";
#     hwloc fails too). `nsenter --net=/run/netns/NS` enters only the network namespace.
#   - `nsenter --net=...` and `unshare --uts` exec CMD in place (no fork), so $! of
#     `nsenter --net=/run/netns/NS unshare --uts sh -c 'hostname nI; exec slurmd ...' &` is
#     slurmd's PID.
#   - slurmctld checks that SlurmctldHost names its own host; the hub has no UTS namespace of
#     its own, so SlurmctldHost=<this machine's hostname>(<bridge address>).

SLURM_NETNS_SUBNET=${SLURM_NETNS_SUBNET:-10.77.0}
slurm_netns_tag=
slurm_netns_hub=
slurm_netns_list=()
slurm_netns_qdisc=

# slurm_netns_check: prints why namespaces cannot be used and returns 1, or returns 0.
slurm_netns_check() {
    local t="ramp$$-probe"
    [ "$(id -u)" -eq 0 ] || { echo "not root"; return 1; }
    command -v ip >/dev/null 2>&1 || { echo "no ip command (Debian iproute2)"; return 1; }
    command -v unshare >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 ||
        { echo "no unshare/nsenter command (util-linux)"; return 1; }
    command -v tc >/dev/null 2>&1 || { echo "no tc command (Debian iproute2)"; return 1; }
    local err
    if ! err=$(ip netns add "$t" 2>&1); then
        echo "ip netns add: $err"
        return 1
    fi
    if ! err=$({ ip -n "$t" link add br0 type bridge && ip -n "$t" link add v0 type veth peer name v1 &&
        nsenter "--net=/run/netns/$t" unshare --uts hostname probe; } 2>&1); then
        ip netns del "$t" 2>/dev/null
        echo "bridge/veth/UTS namespace: $err"
        return 1
    fi
    ip netns del "$t"
}

# slurm_netns_ip ARGS...: ip ARGS, logging the command and its error when it fails.
slurm_netns_ip() {
    local err
    err=$(ip "$@" 2>&1) || { slurm_log "ip $*: $err"; return 1; }
}

# slurm_netns_setup N: the hub and N node namespaces, bridge, veths, addresses.
slurm_netns_setup() {
    local n=$1 i ns hub
    slurm_netns_tag=ramp$$
    hub=$slurm_netns_tag-hub
    slurm_netns_hub=$hub
    slurm_netns_ip netns add "$hub" || return 1
    slurm_netns_list+=("$hub")
    slurm_netns_ip -n "$hub" link set lo up &&
        slurm_netns_ip -n "$hub" link add br0 type bridge &&
        slurm_netns_ip -n "$hub" addr add "$SLURM_NETNS_SUBNET.254/24" dev br0 &&
        slurm_netns_ip -n "$hub" link set br0 up || return 1
    for ((i = 1; i <= n; i++)); do
        ns=$slurm_netns_tag-n$i
        slurm_netns_ip netns add "$ns" || return 1
        slurm_netns_list+=("$ns")
        slurm_netns_ip -n "$hub" link add "v$i" type veth peer name eth0 netns "$ns" &&
            slurm_netns_ip -n "$hub" link set "v$i" master br0 &&
            slurm_netns_ip -n "$hub" link set "v$i" up &&
            slurm_netns_ip -n "$ns" link set lo up &&
            slurm_netns_ip -n "$ns" addr add "$SLURM_NETNS_SUBNET.$i/24" dev eth0 &&
            slurm_netns_ip -n "$ns" link set eth0 up || return 1
    done
}

# slurm_netns_shape SPEC: a root qdisc on every node's eth0 (egress, so each direction of a
# node-to-node path is shaped once). SPEC is netem's, e.g. "delay 2ms rate 1gbit". Without
# netem in the kernel, the rate part alone goes to tbf. Sets slurm_netns_qdisc to what was
# applied ("netem ...", "tbf ...") and returns 1 if nothing could be applied.
slurm_netns_shape() {
    local spec=$1 i ns err err2 rate tbf
    slurm_netns_qdisc=
    for ((i = 1; i <= ${#slurm_nodes[@]}; i++)); do
        ns=$slurm_netns_tag-n$i
        if err=$(tc -n "$ns" qdisc replace dev eth0 root netem $spec 2>&1); then
            slurm_netns_qdisc="netem $spec"
            continue
        fi
        rate=$(printf '%s\n' "$spec" | sed -n 's/.*rate \([^ ]*\).*/\1/p')
        if [ -z "$rate" ]; then
            slurm_log "tc netem $spec: $err (and no rate for tbf)"
            return 1
        fi
        tbf="rate $rate burst 256kb latency 50ms"
        # shellcheck disable=SC2086
        if ! err2=$(tc -n "$ns" qdisc replace dev eth0 root tbf $tbf 2>&1); then
            slurm_log "tc netem $spec: $err; tbf $tbf: $err2"
            return 1
        fi
        slurm_netns_qdisc="tbf $tbf (netem: $err)"
    done
}

# slurm_netns_mpi_env: Open MPI settings for ranks on different namespace nodes (NAME=VALUE
# lines, for `env` or sbatch --export).
slurm_netns_mpi_env() {
    echo "OMPI_MCA_btl=tcp,self"
    echo "OMPI_MCA_btl_tcp_if_include=$SLURM_NETNS_SUBNET.0/24"
    # Unused under srun (ranks get their wire-up from PMIx, not from an orted), but mpirun
    # inside an allocation would use it.
    echo "OMPI_MCA_oob_tcp_if_include=$SLURM_NETNS_SUBNET.0/24"
}

# slurm_netns_bytes NODE: "RX TX" byte counters of eth0 in node NODE's namespace (nI).
slurm_netns_bytes() {
    nsenter "--net=/run/netns/$slurm_netns_tag-$1" cat /proc/net/dev 2>/dev/null |
        awk -F'[: ]+' '$2 == "eth0" { print $3, $11 }'
}

# slurm_netns_start N: munged (root namespace), slurmctld (hub), slurmd n1..nN (each in its
# namespace with its own hostname); returns once every node is idle. Client commands go through
# slurm_client (nsenter --net=/run/netns/HUB).
slurm_netns_start() {
    local n=${1:-3} i cpus nodelines=() why
    local missing
    missing=$(slurm_missing_packages)
    if [ -n "$missing" ]; then
        slurm_log "not installed: $missing (run slurm_install)"
        return 1
    fi
    why=$(slurm_netns_check) || { slurm_log "network namespaces unusable: $why"; return 1; }
    slurm_prepare || { slurm_stop; return 1; }
    slurm_netns_setup "$n" || { slurm_stop; return 1; }
    cpus=$(nproc)
    slurm_nodes=()
    for ((i = 1; i <= n; i++)); do
        slurm_nodes+=("n$i")
        nodelines+=("NodeName=n$i NodeAddr=$SLURM_NETNS_SUBNET.$i NodeHostname=n$i CPUs=$cpus State=UNKNOWN")
    done
    # slurmctld checks that SlurmctldHost names its own host ("error: This host (vm/vm) not a
    # valid controller" otherwise): the hub keeps the machine's hostname, with the bridge address.
    slurm_write_conf "$SLURM_CONF" "$(hostname -s)" "$SLURM_NETNS_SUBNET.254" "${nodelines[@]}"
    slurm_client_prefix=(nsenter "--net=/run/netns/$slurm_netns_hub")
    slurm_ctld_prefix=(nsenter "--net=/run/netns/$slurm_netns_hub")
    slurm_start_ctld || { slurm_stop; return 1; }
    for ((i = 1; i <= n; i++)); do
        # shellcheck disable=SC2016
        slurm_spawn "slurmd n$i" "$slurm_dir/slurmd-n$i.log" \
            nsenter "--net=/run/netns/$slurm_netns_tag-n$i" unshare --uts \
            sh -c 'hostname "$1" && exec slurmd -D -f "$2" -N "$1"' sh "n$i" "$SLURM_CONF"
    done
    slurm_wait_idle || { slurm_stop; return 1; }
}

# slurm_netns_cleanup: deletes the namespaces made here (their veths and bridge go with them)
# and forgets the hub. Called by slurm_stop after the daemons are gone.
slurm_netns_cleanup() {
    local ns
    for ns in "${slurm_netns_list[@]}"; do
        ip netns del "$ns" 2>/dev/null || slurm_log "ip netns del $ns failed"
    done
    slurm_netns_list=()
    slurm_netns_hub=
    slurm_client_prefix=()
    slurm_ctld_prefix=()
}
