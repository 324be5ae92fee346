# llama-peer.sh: sourced by the benchmarks that run llama.cpp beside ramp. peer_usable DIR TOOL...
# succeeds when every TOOL in DIR exists and starts on this CPU; otherwise PEER_PROBLEM says why and
# what to do. The copies in ../shared/peers are built for one kind of machine: on a CPU without the
# instructions they were compiled for they die at once with SIGILL (exit 132).
peer_usable() {
    local dir=$1 tool rc
    shift
    PEER_PROBLEM=
    for tool in "$@"; do
        if [ ! -x "$dir/$tool" ]; then
            PEER_PROBLEM="no $tool at $dir"
            return 1
        fi
        bash -c '"$0" --help; exit $?' "$dir/$tool" >/dev/null 2>&1 </dev/null
        rc=$?
        if [ $rc -ge 128 ]; then
            PEER_PROBLEM="$dir/$tool does not start on this CPU (killed by signal $((rc - 128))$([ $rc -eq 132 ] && echo ': an instruction this CPU lacks')): build llama.cpp here (cmake -B build -DGGML_NATIVE=ON && cmake --build build --target llama-bench llama-quantize llama-simple llama-server) and set BENCH_PEER to its build/bin"
            return 1
        fi
    done
    return 0
}
