# fresh_build.sh: on a fresh machine the first `make` runs the dependency installer before it
# asks mpicc or pkg-config for compiler flags (issue 8: the Makefile used to run them while it was
# read, before the installer had put Open MPI there, and the first `make run` failed with
# "mpi.h: No such file or directory").
#
# Nothing is uninstalled. A copy of the sources (the checkout's tracked and new files; of build/
# only the SIMD kernel objects, see below) is built with PATH starting at a directory of stubs:
# mpicc and pkg-config append a line to a log and then run the real ones; the installer
# (scripts/install-deps.sh in the copy, and INSTALL_DEPS) appends "installer". The build must
# succeed and the installer must be logged, once, before the first mpicc or pkg-config call.
# Then: `make help` and `make clean` run no installer; with an mpicc or a pkg-config that fails,
# make stops with a message naming it instead of a compiler error.

fresh_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fresh_dir=$(mktemp -d "$E2E_TMP/fresh.XXXXXX")
fresh_src=$fresh_dir/src
fresh_stubs=$fresh_dir/stubs
fresh_log=$fresh_dir/calls.log

# The sources as a fresh clone would have them: what git tracks plus new files it does not ignore
# (so uncommitted work is tested too); without git, everything but build/ and bin/.
mkdir -p "$fresh_src" "$fresh_stubs"
if git -C "$fresh_root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$fresh_root" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 sh -c 'for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf -) | tar -xf - -C "$fresh_src"
else
    tar -C "$fresh_root" --exclude=./build --exclude=./bin -cf - . | tar -xf - -C "$fresh_src"
fi

# fresh_stub NAME REAL: a NAME in the stub directory that logs "NAME ARGS" and then runs REAL
# (or, with REAL "fail", exits 1).
fresh_stub() {
    local name=$1 real=$2
    {
        echo '#!/bin/sh'
        echo "echo \"$name \$*\" >>'$fresh_log'"
        if [ "$real" = fail ]; then echo 'exit 1'; else echo "exec '$real' \"\$@\""; fi
    } >"$fresh_stubs/$name"
    chmod +x "$fresh_stubs/$name"
}

# fresh_make SECONDS ARGS...: make ARGS in the copy with the stubs first on PATH. The make that
# runs these tests passes its own settings down (MAKEFLAGS, RAMP_DEPS_READY=1, SANITIZE=...); a
# user's first `make` has none of them.
fresh_make() {
    local seconds=$1
    shift
    run "$seconds" env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u RAMP_DEPS_READY \
        -u SANITIZE -u INSTALL_DEPS PATH="$fresh_stubs:$PATH" \
        make -C "$fresh_src" --no-print-directory INSTALL_DEPS="$fresh_stubs/install-deps" "$@"
}

# The SIMD kernel files take two thirds of a build's time and include no package header (only
# immintrin.h and ramp's own), so what this test is about cannot break them: their objects (and
# .d files) come from the release build `make test` has just brought up to date, with their
# times kept, and the copy's make finds them current. Every other file is compiled in the copy.
for fresh_kernel in kernels_avx2 kernels_avx512; do
    for fresh_ext in o d; do
        fresh_prebuilt=$fresh_root/build/release/obj/model/$fresh_kernel.$fresh_ext
        [ -f "$fresh_prebuilt" ] || continue
        mkdir -p "$fresh_src/build/release/obj/model"
        cp -p "$fresh_prebuilt" "$fresh_src/build/release/obj/model/"
    done
done

real_mpicc=$(command -v mpicc)
real_pkg_config=$(command -v pkg-config)
if [ -z "$real_mpicc" ] || [ -z "$real_pkg_config" ] || ! command -v make >/dev/null; then
    skip "fresh build: installer before flag discovery" "needs make, mpicc and pkg-config installed"
    return 0
fi
fresh_stub mpicc "$real_mpicc"
fresh_stub pkg-config "$real_pkg_config"
printf '#!/bin/sh\necho installer >>%s\n' "'$fresh_log'" >"$fresh_stubs/install-deps"
chmod +x "$fresh_stubs/install-deps"
cp "$fresh_stubs/install-deps" "$fresh_src/scripts/install-deps.sh"

# --- a first `make` -----------------------------------------------------------------------------
: >"$fresh_log"
fresh_make 900 -j2
if [ "$RC" -eq 0 ] && [ -x "$fresh_src/bin/ramp" ]; then
    pass "fresh build: make succeeds and links bin/ramp"
else
    fail "fresh build: make succeeds and links bin/ramp" "$(last_run_details)" \
        "stderr (last lines):" "$(tail -n 8 "$ERR" | cut -c1-300)"
fi
first_installer=$(grep -n -m 1 '^installer$' "$fresh_log" | cut -d: -f1)
first_discovery=$(grep -n -m 1 -E '^(mpicc|pkg-config) ' "$fresh_log" | cut -d: -f1)
installers=$(grep -c '^installer$' "$fresh_log")
log_head=$(head -n 6 "$fresh_log")
if [ -z "$first_installer" ]; then
    fail "fresh build: the installer runs" "the log has no installer line:" "$log_head"
elif [ -z "$first_discovery" ]; then
    fail "fresh build: mpicc and pkg-config are asked for flags" "the log has no mpicc or pkg-config line:" "$log_head"
elif [ "$first_installer" -gt "$first_discovery" ]; then
    fail "fresh build: the installer runs before mpicc/pkg-config flag discovery" \
        "installer is line $first_installer of the log, the first discovery line $first_discovery:" "$log_head"
else
    pass "fresh build: the installer runs before mpicc/pkg-config flag discovery"
fi
grep -q '^mpicc --showme:compile' "$fresh_log" && grep -q '^pkg-config --cflags' "$fresh_log"
check $? "fresh build: mpicc --showme:compile and pkg-config --cflags both ran" "$log_head"
check "$([ "$installers" -eq 1 ]; echo $?)" "fresh build: the installer runs once ($installers)" "$(cat "$fresh_log")"

# --- goals that need no packages ------------------------------------------------------------------
for goal in help clean; do
    : >"$fresh_log"
    fresh_make 60 "$goal"
    check "$([ "$RC" -eq 0 ] && ! grep -q installer "$fresh_log"; echo $?)" \
        "fresh build: make $goal runs no installer" "$(last_run_details)" "log: $(cat "$fresh_log")"
done

# --- discovery that fails stops with a message naming what is missing ---------------------------
# (after `make clean` above, so a make that does not stop would go on to compile)
fresh_stub mpicc fail
fresh_make 120 -j2
if [ "$RC" -ne 0 ] && grep -q 'mpicc' "$ERR" && grep -q 'Open MPI' "$ERR" && ! grep -q 'mpi\.h' "$ERR"; then
    pass "fresh build: a failing mpicc stops make with a message naming it and Open MPI"
else
    fail "fresh build: a failing mpicc stops make with a message naming it and Open MPI" "$(last_run_details)"
fi
fresh_stub mpicc "$real_mpicc"
fresh_stub pkg-config fail
fresh_make 120 -j2
if [ "$RC" -ne 0 ] && grep -q 'pkg-config' "$ERR" && grep -q 'openblas' "$ERR"; then
    pass "fresh build: a failing pkg-config stops make with a message naming the packages"
else
    fail "fresh build: a failing pkg-config stops make with a message naming the packages" "$(last_run_details)"
fi
rm -rf "$fresh_dir"
