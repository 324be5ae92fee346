#!/usr/bin/env bash
# run-e2e.sh: end-to-end checks of the `ramp` binary on the shared models.
#
#   RAMP_SHARED=../shared RAMP_BIN=bin/ramp tests/run-e2e.sh [SECTION...]
#
# SECTION is any of: reference qwen2 qwen3 phi3 granite gemma gemma2 gemma3 head_size split_files corrupt untrusted multirank pairs stage_memory failure exit plots batch
# slurm slurm_batch serve fresh_build (default: all, in that order); each is tests/e2e/SECTION.sh, sourced in a subshell
# (helpers from tests/e2e/lib.sh), so a section that stops early is reported as a failure and the
# others still run. Every check prints one line, "ok - ..." or "not ok - ..." (with "#" detail
# lines), and the run ends with the line "N passed, M failed". Exits 0 when nothing failed, 1
# otherwise. E2E_TIMES=1 adds the seconds each check took.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RAMP_SHARED=${RAMP_SHARED:-../shared}
RAMP_BIN=${RAMP_BIN:-bin/ramp}

if [ ! -d "$RAMP_SHARED/models" ] || [ ! -d "$RAMP_SHARED/reference" ]; then
    cat >&2 <<EOF
run-e2e.sh: shared models not found at RAMP_SHARED=$RAMP_SHARED
  The end-to-end tests read the read-only shared folder (models/stories260K, models/base16,
  models/lite16 and reference/*.tsv) that sits at ../shared next to the project checkout; it is
  not part of this repository (see its README.md: stories260K is Karpathy's llama2.c model, also
  converted to GGUF with llama.cpp; base16 and lite16 were trained for this project; the
  reference continuations come from llama2.c and llama.cpp). Point RAMP_SHARED at it, e.g.
    RAMP_SHARED=/path/to/shared RAMP_BIN=bin/ramp tests/run-e2e.sh
EOF
    echo "0 passed, 1 failed"
    exit 1
fi
if [ ! -x "$RAMP_BIN" ]; then
    echo "run-e2e.sh: RAMP_BIN=$RAMP_BIN is not an executable (run make first)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
# Absolute paths: some checks run from other directories.
RAMP_SHARED=$(cd "$RAMP_SHARED" && pwd)
RAMP_BIN=$(cd "$(dirname "$RAMP_BIN")" && pwd)/$(basename "$RAMP_BIN")
export RAMP_SHARED RAMP_BIN

E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/ramp-e2e.XXXXXX")
# Anything still running from this shell: background jobs of the failure checks run in sessions of
# their own (mpirun and its ranks), so every process of those sessions is killed.
kill_background_jobs() {
    local pid member
    for pid in $(jobs -p); do
        for member in $(pgrep -s "$pid" 2>/dev/null) "$pid"; do kill -9 "$member" 2>/dev/null; done
    done
}
cleanup() {
    kill_background_jobs
    rm -rf "$E2E_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=e2e/lib.sh
. "$here/e2e/lib.sh"

sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(reference pretokenizers iq4 qwen2 qwen3 phi3 granite gemma gemma2 gemma3 head_size split_files corrupt untrusted multirank pairs stage_memory failure exit plots batch slurm slurm_batch serve fresh_build)

echo "# ramp end-to-end: RAMP_BIN=$RAMP_BIN RAMP_SHARED=$RAMP_SHARED"
started=$(now)
for name in "${sections[@]}"; do
    if [ ! -f "$here/e2e/$name.sh" ]; then
        fail "section $name exists" "no file $here/e2e/$name.sh"
        continue
    fi
    section "$name"
    rm -f "$E2E_TMP/section.counts" "$E2E_TMP/section.done"
    (
        trap 'kill_background_jobs; echo "$E2E_PASSED $E2E_FAILED $E2E_SKIPPED" >"$E2E_TMP/section.counts"' EXIT
        E2E_PASSED=0 E2E_FAILED=0 E2E_SKIPPED=0
        # shellcheck disable=SC1090
        . "$here/e2e/$name.sh"
        : >"$E2E_TMP/section.done"
    )
    if [ -f "$E2E_TMP/section.counts" ]; then
        read -r section_passed section_failed section_skipped <"$E2E_TMP/section.counts"
        E2E_PASSED=$((E2E_PASSED + section_passed))
        E2E_FAILED=$((E2E_FAILED + section_failed))
        E2E_SKIPPED=$((E2E_SKIPPED + section_skipped))
    fi
    [ -f "$E2E_TMP/section.done" ] ||
        fail "section $name ran to its end" "it stopped early (a shell error such as an unset variable?)"
done
section_end
echo "# total: $(elapsed_since "$started") s${E2E_SKIPPED:+, $E2E_SKIPPED skipped}"
echo "$E2E_PASSED passed, $E2E_FAILED failed"
[ "$E2E_FAILED" -eq 0 ]
