#!/bin/bash
# Quantized GGUF files side by side with llama.cpp (part of `make bench`; also runs alone).
#
#   RAMP_SHARED=../shared RAMP_BIN=build/release/bin/ramp scripts/bench-quant.sh
#
# For each file (synthetic dim-768 / 12-layer model in F32, Q8_0, Q4_0, Q4_K_M; a Llama-7B layer
# shape, dim 4096 / ffn 11008 / 2 layers, in Q4_0 and Q4_K_M; other llama-quantize types with
# BENCH_QUANT_TYPES_768 / BENCH_QUANT_TYPES_7B, e.g. "IQ4_XS") and each of BENCH_QUANT_ROUNDS
# rounds (default 8: a shared machine's speed swings from one minute to the next): ramp's prompt
# processing (a 128-token prompt timed after a warm-up copy of it, as llama-bench warms up too; -n 1)
# and decode (64 tokens), then llama.cpp's llama-bench on the same file (pp128, tg64, one
# repetition), interleaved so that both see the same machine load. Both engines keep an fp16 KV cache
# (llama-bench's default; ramp's --kv-type f16), and ramp's decode also runs with its default fp32
# cache (its own row in the table, against the same llama.cpp figure). Prints per file and engine min / median / max tokens/s, the
# ratio ramp / llama.cpp of each round (median, min, max), peak RSS, and both engines' decode
# bandwidth share: weight bytes read per token x tokens/s / the best read bandwidth measured
# (scripts/read-bandwidth.c, once before the rounds and once at the start of each), and the same
# per round against the read and the copy (STREAM) bandwidth measured right before that decode.
# Threads: BENCH_QUANT_THREADS (default 2) for both engines. Then the one-row kernels' two ceilings
# (scripts/kernel-bandwidth.c: each weight type's kernel with its weights in L2, and from memory
# next to a read loop of the same bytes), the memory alone read in the order of those kernels'
# transposes over sixteen and over eight rows, in four streams per thread and by a copy
# (scripts/read-order.c: what any read-only pass reaches of the copy figure), and decode after a long prompt
# (BENCH_DEEP_TOKENS, default 1536; 0 skips it) on the Q4_0 file: ramp with its fp32 and its fp16 KV
# cache against llama-bench's tg64 at that depth.
#
# Files are made once into BENCH_QUANT_CACHE (default build/bench-models, git-ignored; e.g.
# BENCH_QUANT_CACHE=/tmp/ramp-bench-models keeps them out of the tree): `ramp synth` writes F32/F16 models
# with random weights and llama.cpp's llama-quantize makes the quantized ones. Without the peer
# (../shared/peers/llama.cpp) the comparison is skipped with a message, and ramp's figures for the
# files ramp can write itself (F32, Q8_0, Q4_0) are printed alone.
set -u

cd "$(dirname "$0")/.."
SHARED=${RAMP_SHARED:-../shared}
RAMP_BIN=${RAMP_BIN:-build/release/bin/ramp}
ROUNDS=${BENCH_QUANT_ROUNDS:-8}
THREADS=${BENCH_QUANT_THREADS:-2}
PEER=${BENCH_PEER:-$SHARED/peers/llama.cpp}
SHAPES=${BENCH_QUANT_SHAPES:-768 7b}
# The quantized types made of each shape (llama-quantize names; the 768 shape also runs its F32 file).
TYPES_768=${BENCH_QUANT_TYPES_768:-Q8_0 Q4_0 Q4_K_M}
TYPES_7B=${BENCH_QUANT_TYPES_7B:-Q4_0 Q4_K_M}
CACHE=${BENCH_QUANT_CACHE:-build/bench-models}
TIMEOUT=${BENCH_RUN_TIMEOUT:-600}
FAILS=0
mkdir -p "$CACHE"
W=$(mktemp -d "$CACHE/quant.XXXXXX")
trap 'rm -rf "$W"' EXIT
BIN=$W/ramp
cp "$RAMP_BIN" "$BIN" || { echo "FAILED: no ramp binary at $RAMP_BIN (run make first)"; exit 1; }

. scripts/llama-peer.sh
have_peer=0
peer_usable "$PEER" llama-bench llama-quantize && have_peer=1

fail() { echo "FAILED: $1"; FAILS=$((FAILS + 1)); [ $# -ge 2 ] && [ -s "$2" ] && tail -n 3 "$2" | sed 's/^/  | /'; return 0; }
run() { local log=$1; shift; timeout -k 10 "$TIMEOUT" "$@" >"$log.out" 2>"$log.err"; }

printf '\n== quantized GGUF files: ramp and llama.cpp side by side ==\n'
printf '  %-46s %s\n' "threads (both engines)" "$THREADS" "rounds (interleaved)" "$ROUNDS"
if [ $have_peer -eq 1 ]; then
    printf '  %-46s %s\n' "peer" "$PEER/llama-bench"
else
    printf '  %-46s %s\n' "peer" "$PEER_PROBLEM: ramp's figures alone, files ramp can write only"
fi

# --- read bandwidth -----------------------------------------------------------------------------
BW=
if cc -O3 -march=native -fopenmp scripts/read-bandwidth.c -o "$W/read-bandwidth" 2>"$W/bw.err"; then
    BW=$("$W/read-bandwidth" "$THREADS" 1024 2>/dev/null)
    COPY_BW=$("$W/read-bandwidth" "$THREADS" 1024 copy 2>/dev/null)
fi
[ -n "$BW" ] || fail "measuring the read bandwidth" "$W/bw.err"

# --- files ------------------------------------------------------------------------------------
make_file() { # make_file OUT SOURCE TYPE: llama.cpp's llama-quantize SOURCE -> OUT as TYPE
    local out=$1 src=$2 type=$3
    [ -s "$out" ] && return 0
    run "$W/quantize" "$PEER/llama-quantize" "$src" "$out.tmp" "$type" || { rm -f "$out.tmp"; return 1; }
    mv "$out.tmp" "$out"
}
synth_file() { # synth_file OUT ARGS...
    local out=$1
    shift
    [ -s "$out" ] && return 0
    run "$W/synth" "$BIN" synth -o "$out.tmp" "$@" || { rm -f "$out.tmp"; return 1; }
    mv "$out.tmp" "$out"
}

FILES=()
S768=(--dim 768 --layers 12 --heads 12 --ffn 2048 --vocab 32000)
S7B=(--dim 4096 --layers 2 --heads 32 --ffn 11008 --vocab 32000)
for shape in $SHAPES; do
    case $shape in
    768)
        base=$CACHE/synth-768x12-v32000
        synth_file "$base-f32.gguf" "${S768[@]}" --type f32 || { fail "synth 768x12 f32" "$W/synth.err"; continue; }
        FILES+=("$base-f32.gguf")
        for t in $TYPES_768; do
            f=$base-$(echo "$t" | tr 'A-Z' 'a-z').gguf
            if [ $have_peer -eq 1 ]; then
                make_file "$f" "$base-f32.gguf" "$t" && FILES+=("$f") || fail "llama-quantize $t" "$W/quantize.err"
            elif [ "$t" = Q8_0 ] || [ "$t" = Q4_0 ]; then
                f=$base-$(echo "$t" | tr 'A-Z' 'a-z')-ramp.gguf
                synth_file "$f" "${S768[@]}" --type "$(echo "$t" | tr 'A-Z' 'a-z')" && FILES+=("$f")
            fi
        done
        ;;
    7b)
        base=$CACHE/synth-4096x2-ffn11008-v32000
        avail=$(df -Pm "$CACHE" | awk 'NR==2 {print $4}')
        if [ ! -s "$base-f16.gguf" ] && [ "${avail:-0}" -lt 4000 ]; then
            printf '  %-46s %s\n' "7B-layer shape" "SKIPPED (only ${avail} MB free on disk, need 4000)"
            continue
        fi
        synth_file "$base-f16.gguf" "${S7B[@]}" --type f16 || { fail "synth 7B-layer shape f16" "$W/synth.err"; continue; }
        for t in $TYPES_7B; do
            f=$base-$(echo "$t" | tr 'A-Z' 'a-z').gguf
            if [ $have_peer -eq 1 ]; then
                make_file "$f" "$base-f16.gguf" "$t" && FILES+=("$f") || fail "llama-quantize $t (7B shape)" "$W/quantize.err"
            elif [ "$t" = Q4_0 ]; then
                f=$base-q4_0-ramp.gguf
                synth_file "$f" "${S7B[@]}" --type q4_0 && FILES+=("$f")
            fi
        done
        ;;
    esac
done

# A prompt of 128 tokens for ramp (llama-bench makes its own 128 random tokens).
SENTENCE="The little dog ran to the park and played with a ball in the warm sun."
prompt_words() { python3 -c 'import sys; w=sys.argv[2].split(); n=int(sys.argv[1]); print(" ".join((w*(n//len(w)+1))[:n]))' "$1" "$SENTENCE"; }
prompt_tokens() { # prompt_tokens FILE WORDS
    run "$W/probe" "$BIN" generate -m "$1" -p "$(prompt_words "$2")" -n 1 --temp 0 --threads "$THREADS" \
        --metrics-json "$W/probe.json" || return 1
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prompt_tokens"])' "$W/probe.json"
}
WORDS=
if [ ${#FILES[@]} -gt 0 ]; then
    t=$(prompt_tokens "${FILES[0]}" 96) && WORDS=$((96 * 128 / t))
    for i in 1 2 3 4 5 6; do
        t=$(prompt_tokens "${FILES[0]}" "$WORDS") || break
        [ "$t" -eq 128 ] && break
        WORDS=$((WORDS + 128 - t))
    done
fi

# --- the rounds ---------------------------------------------------------------------------------
# One line per measurement into $W/results: FILE ENGINE KIND VALUE (tok/s) RSS_KB ROUND
record() { echo "$1 $2 $3 $4 $5 $round" >>"$W/results"; }
ramp_json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
llama_ts() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[0]["avg_ts"])' "$1"; }

larger() { python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$1" "$2"; }
for round in $(seq "$ROUNDS"); do
    # The bandwidth is measured again every round (the best is kept: another job on the machine
    # only lowers it), and the load average is recorded to show how busy the machine was.
    if [ -n "$BW" ]; then
        bw=$("$W/read-bandwidth" "$THREADS" 1024 2>/dev/null) && BW=$(larger "$BW" "$bw")
        bw=$("$W/read-bandwidth" "$THREADS" 1024 copy 2>/dev/null) && [ -n "$COPY_BW" ] && COPY_BW=$(larger "$COPY_BW" "$bw")
    fi
    cut -d' ' -f1 /proc/loadavg >>"$W/load"
    for f in "${FILES[@]}"; do
        tag=$W/$(basename "$f" .gguf)-$round
        # Two copies of the prompt, one after the other (--max-sequences 1): the first is the warm-up
        # (llama-bench also runs one before it measures), the second is timed from its first row sent
        # to its first token.
        prompt_words "$WORDS" >"$W/pp-prompts"
        prompt_words "$WORDS" >>"$W/pp-prompts"
        if run "$tag-pp" /usr/bin/time -f "rss %M" "$BIN" generate -m "$f" -f "$W/pp-prompts" -n 1 --temp 0 \
            --max-sequences 1 --threads "$THREADS" --kv-type f16 --metrics-json "$tag-pp.json"; then
            record "$f" ramp pp "$(ramp_json "$tag-pp.json" \
                "d['request_details'][1]['prompt_tokens'] / d['request_details'][1]['prompt_seconds']")" \
                "$(awk '/^rss/ {print $2}' "$tag-pp.err")"
        else
            fail "ramp prompt processing, $(basename "$f"), round $round" "$tag-pp.err"
        fi
        if [ $have_peer -eq 1 ]; then
            if run "$tag-lpp" /usr/bin/time -f "rss %M" "$PEER/llama-bench" -m "$f" -t "$THREADS" -p 128 -n 0 -r 1 -o json; then
                record "$f" llama pp "$(llama_ts "$tag-lpp.out")" "$(awk '/^rss/ {print $2}' "$tag-lpp.err")"
            else
                fail "llama-bench pp128, $(basename "$f"), round $round" "$tag-lpp.err"
            fi
        fi
        # The bandwidth right before the decode runs too: this machine's swings by 2x from one
        # minute to the next, so each round's decode is also compared with its own measurement.
        if [ -n "$BW" ]; then
            bw=$("$W/read-bandwidth" "$THREADS" 512 2>/dev/null) && record "$f" bandwidth tg "$bw" 0
            bw=$("$W/read-bandwidth" "$THREADS" 512 copy 2>/dev/null) && record "$f" copy_bandwidth tg "$bw" 0
        fi
        # decode with the fp16 cache llama-bench keeps (kind tg), then with ramp's default fp32 (tg32)
        for kv in f16 f32; do
            kind=tg
            [ "$kv" = f32 ] && kind=tg32
            if run "$tag-$kind" /usr/bin/time -f "rss %M" "$BIN" generate -m "$f" -p "Once upon a time" -n 65 \
                --temp 0 --threads "$THREADS" --kv-type "$kv" --metrics-json "$tag-$kind.json"; then
                record "$f" ramp "$kind" "$(ramp_json "$tag-$kind.json" \
                    "(d['generated_tokens'] - 1) / (d['seconds'] - d['time_to_first_token_seconds'])")" \
                    "$(awk '/^rss/ {print $2}' "$tag-$kind.err")"
            else
                fail "ramp decode (--kv-type $kv), $(basename "$f"), round $round" "$tag-$kind.err"
            fi
        done
        if [ $have_peer -eq 1 ]; then
            if run "$tag-ltg" /usr/bin/time -f "rss %M" "$PEER/llama-bench" -m "$f" -t "$THREADS" -p 0 -n 64 -r 1 -o json; then
                record "$f" llama tg "$(llama_ts "$tag-ltg.out")" "$(awk '/^rss/ {print $2}' "$tag-ltg.err")"
            else
                fail "llama-bench tg64, $(basename "$f"), round $round" "$tag-ltg.err"
            fi
        fi
    done
done

# --- the table ----------------------------------------------------------------------------------
if [ -n "$BW" ]; then
    printf '  %-46s %s GB/s\n' "read bandwidth, $THREADS threads (best of 7 x $((ROUNDS + 1)))" "$BW"
    [ -n "$COPY_BW" ] && printf '  %-46s %s GB/s\n' "copy bandwidth (STREAM: read + written bytes)" "$COPY_BW"
fi
[ -s "$W/load" ] && printf '  %-46s %s\n' "load average (1 min) at each round's start" "$(tr '\n' ' ' <"$W/load")"
# How much of each file's weights ramp held in 2 MiB pages (model/weight_pages.h), in the last round.
for f in "${FILES[@]}"; do
    j=$W/$(basename "$f" .gguf)-$ROUNDS-tg.json
    [ -s "$j" ] && printf '  %-46s %s\n' "ramp's weights in 2 MiB pages, $(basename "$f" .gguf)" \
        "$(ramp_json "$j" "'%.0f of %.0f MB' % (d['stages'][0]['weight_bytes_huge'] / 1e6, d['stages'][0]['weight_bytes'] / 1e6)")"
done
[ -s "$W/results" ] && python3 - "$W/results" "${BW:-0}" "${COPY_BW:-0}" "$have_peer" "${FILES[@]}" <<'PY'
import os, statistics, struct, sys

results, bandwidth, copy_bandwidth = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
have_peer, files = sys.argv[4] == "1", sys.argv[5:]

def read_tensor_bytes(path):
    """Bytes a decode step reads: every tensor but the token embedding (one row per token) --
    unless the head shares it."""
    blocks = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
              10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 20: (32, 18),
              23: (256, 136), 30: (1, 2)}
    with open(path, "rb") as f:
        data = f.read(1 << 24)
    pos = 4
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, pos); pos += 20
    def string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos); pos += 8
        s = data[pos:pos + n]; pos += n
        return s
    scalar = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def value(t):
        nonlocal pos
        if t == 8: string()
        elif t == 9:
            (et, n) = struct.unpack_from("<IQ", data, pos); pos += 12
            for _ in range(n): value(et)
        else: pos += scalar[t]
    for _ in range(n_kv):
        string(); (t,) = struct.unpack_from("<I", data, pos); pos += 4; value(t)
    total, names = 0, {}
    for _ in range(n_tensors):
        name = string().decode()
        (nd,) = struct.unpack_from("<I", data, pos); pos += 4
        dims = struct.unpack_from("<%dQ" % nd, data, pos); pos += 8 * nd
        (t, _off) = struct.unpack_from("<IQ", data, pos); pos += 12
        n = 1
        for d in dims: n *= d
        if t not in blocks:
            sys.exit(f"{path}: tensor {name} has type {t}, which this script cannot size")
        be, bb = blocks[t]
        names[name] = n // be * bb
    skip = names.get("token_embd.weight", 0) if "output.weight" in names else 0
    return sum(names.values()) - skip

rows = [line.split() for line in open(results)]
def measured_as(engine, kind):
    """The kind of row holding an engine's figure: ramp's fp32-cache decode (tg32) meets llama.cpp's
    one decode (tg), and the bandwidths are recorded with tg."""
    return "tg" if kind == "tg32" and engine != "ramp" else kind
def values(f, engine, kind, col=3):
    kind = measured_as(engine, kind)
    return [float(r[col]) for r in rows if r[0] == f and r[1] == engine and r[2] == kind and len(r) > col and r[col] != ""]
def by_round(f, kind):
    """{round: {engine: tok/s or bandwidth}} for one file and kind."""
    rounds = {}
    for r in rows:
        if r[0] == f and r[2] == measured_as(r[1], kind) and len(r) > 5 and r[3] != "":
            rounds.setdefault(r[5], {})[r[1]] = float(r[3])
    return rounds
def ratios(f, kind):
    """ramp / llama.cpp within each round (the two ran back to back, under the same load)."""
    return [v["ramp"] / v["llama"] for v in by_round(f, kind).values() if "ramp" in v and "llama" in v and v["llama"] > 0]
def fmt(v):
    if not v: return "-"
    return f"{statistics.median(v):7.1f} ({min(v):.1f}..{max(v):.1f})"

print()
print("  %-34s %-5s %-26s %-26s %-22s %-9s %-9s %s" % ("file", "", "ramp tok/s med (min..max)", "llama.cpp tok/s",
      "ratio med (min..max)", "ramp RSS", "llama RSS", "decode / read bw"))
for f in files:
    name = os.path.basename(f).replace("synth-", "").replace(".gguf", "")
    size = os.path.getsize(f) / 2**20
    for kind, label in (("pp", "pp128"), ("tg", "tg64"), ("tg32", "tg64*")):
        r, l = values(f, "ramp", kind), values(f, "llama", kind)
        q = ratios(f, kind)
        ratio = f"{statistics.median(q):.2f} ({min(q):.2f}..{max(q):.2f})" if q else "-"
        rr, lr = values(f, "ramp", kind, 4), values(f, "llama", kind, 4)
        rss = lambda v: f"{max(v) / 1024:.0f} MiB" if v else "-"
        roof = ""
        if kind in ("tg", "tg32") and r and bandwidth > 0:
            share = lambda v, bw: f"{read_tensor_bytes(f) * statistics.median(v) / 1e9 / bw:.2f}" if v and bw > 0 else "-"
            roof = f"ramp {share(r, bandwidth)}, llama {share(l, bandwidth)}" if have_peer else f"ramp {share(r, bandwidth)}"
            if copy_bandwidth > 0:
                roof += f" (copy bw: ramp {share(r, copy_bandwidth)}" + (f", llama {share(l, copy_bandwidth)})" if have_peer else ")")
            per_round = by_round(f, kind)
            def round_share(engine, measure):
                v = [x[engine] * read_tensor_bytes(f) / 1e9 / x[measure] for x in per_round.values()
                     if engine in x and x.get(measure, 0) > 0]
                return f"{statistics.median(v):.2f} ({min(v):.2f}..{max(v):.2f})" if v else "-"
            for measure, measure_name in (("bandwidth", "read bw"), ("copy_bandwidth", "copy bw")):
                if any(measure in x for x in per_round.values()):
                    roof += (f"; next to each run, {measure_name}: ramp {round_share('ramp', measure)}"
                             + (f", llama {round_share('llama', measure)}" if have_peer else ""))
        print("  %-34s %-5s %-26s %-26s %-22s %-9s %-9s %s" % (f"{name} ({size:.0f} MiB)" if kind == "pp" else "",
              label, fmt(r), fmt(l) if have_peer else "(no peer)", ratio, rss(rr), rss(lr), roof))
print()
print("  ratio = ramp / llama.cpp within each round (run back to back), median (min..max) over rounds;")
print("  KV cache: fp16 in both engines (llama-bench's default, ramp's --kv-type f16); tg64*: ramp with its default")
print("  fp32 cache (exact against the references), against the same llama.cpp decode;")
print("  RSS = peak resident set of the whole process (max over rounds);")
print("  decode / read bw = weight bytes read per token (all tensors but the embedding) x median tok/s / best read bandwidth;")
print("  (copy bw: the same against the best STREAM-style copy bandwidth, bytes read + written: the measure issue 10 names;")
print("  next to each run: each round's decode against the read and the copy bandwidth measured just before it,")
print("  median (min..max) over rounds: the machine is shared, and its bandwidth swings by 2x from one minute to the next)")
# A decode only reads, so the read loop itself bounds what any decode can reach of the copy figure
# (which also counts the written bytes, carried on the memory links' other direction).
pairs = {}
for row in rows:
    if row[1] in ("bandwidth", "copy_bandwidth") and len(row) > 5:
        pairs.setdefault((row[0], row[5]), {})[row[1]] = float(row[3])
ceiling = [p["bandwidth"] / p["copy_bandwidth"] for p in pairs.values() if p.get("copy_bandwidth", 0) > 0 and "bandwidth" in p]
if ceiling:
    print(f"  the read loop itself against the copy bandwidth measured right after it, before each decode: "
          f"{statistics.median(ceiling):.2f} ({min(ceiling):.2f}..{max(ceiling):.2f}):")
    print("  the most a read-only pass, decode included, could reach of the copy measure in those minutes")
PY

# --- the kernels' two ceilings ------------------------------------------------------------------
# A decode is as fast as the slower of its kernels' arithmetic and the memory. kernel-bandwidth
# (built against the library next to the ramp binary) measures both per weight type: each one-row
# kernel with its weights in L2, and from memory back to back with a plain read loop of the same
# bytes. The L2 figure as a share of the copy bandwidth is the most a decode of that type can reach
# of the roofline however well it overlaps its reads.
LIB=${RAMP_LIB:-$(dirname "$(readlink -f "$RAMP_BIN")")/../libramp.a}
printf '\n== one-row (decode) kernels: arithmetic against memory, %s threads ==\n' "$THREADS"
if [ -s "$LIB" ] && cc -O2 -march=native -fopenmp -Imodel scripts/kernel-bandwidth.c "$LIB" -lm \
    -o "$W/kernel-bandwidth" 2>"$W/kbw.err"; then
    copy_arg=()
    [ -n "${COPY_BW:-}" ] && copy_arg=(--copy "$COPY_BW")
    run "$W/kbw" "$W/kernel-bandwidth" "${copy_arg[@]}" "$THREADS" 512 && sed 's/^/  /' "$W/kbw.out" ||
        fail "kernel-bandwidth" "$W/kbw.err"
else
    fail "building scripts/kernel-bandwidth.c against $LIB (make first)" "$W/kbw.err"
fi

# --- the order the kernels read in ---------------------------------------------------------------
# The memory alone, no arithmetic (scripts/read-order.c): a plain read against the order of the
# one-row kernels' transposes over 768-value Q4_0 and Q8_0 rows, sixteen rows at a time (the K
# kernels') and eight (the Q4_0 and Q8_0 ones), and over 4,096-value Q4_K rows (the 7B-layer
# shape's), in the same minutes; a plain read through 4 KiB pages; a plain read paced as a
# kernel's arithmetic paces its loads (paced:4), the fastest read-only order found (four streams per
# thread) and a copy, so each pattern is also given as a share of the copy figure the decode
# roofline divides by: what any read-only pass could reach of it.
printf '\n== read orders: the same bytes, no arithmetic, 2 threads ==\n'
if cc -O2 -march=native -fopenmp scripts/read-order.c -o "$W/read-order" 2>"$W/order.err"; then
    run "$W/order" "$W/read-order" 512 linear tile-columns:16:432:144 tile-columns:8:432:144 \
        tile-columns:16:816:272 tile-columns:8:816:272 tile-columns:16:2304:144 linear@4k paced:4 streams:4:1024 \
        copy && sed 's/^/  /' "$W/order.out" ||
        fail "read-order" "$W/order.err"
else
    fail "building scripts/read-order.c" "$W/order.err"
fi

# --- decode after a long prompt ------------------------------------------------------------------
# A long context's decode reads every earlier position's keys and values at each step, as well as
# the weights: ramp with its default fp32 KV cache and with --kv-type f16, against llama-bench's
# tg64 at the same depth (-d, llama.cpp's default fp16 cache), interleaved. File: the first Q4_0 one.
DEEP=${BENCH_DEEP_TOKENS:-1536}
deep_file=
for f in "${FILES[@]}"; do case $f in *q4_0*) deep_file=$f; break ;; esac; done
depth=
if [ "$DEEP" -gt 0 ] && [ -n "$deep_file" ] && [ -n "$WORDS" ]; then
    deep_words=$((WORDS * DEEP / 128))
    prompt_words "$deep_words" >"$W/deep-prompt"
    depth=$(prompt_tokens "$deep_file" "$deep_words") || fail "ramp on the ${deep_words}-word prompt" "$W/probe.err"
fi
if [ -n "$depth" ]; then
    : >"$W/deep"
    for round in $(seq "$ROUNDS"); do
        for kv in f32 f16; do
            if run "$W/deep-$kv" "$BIN" generate -m "$deep_file" -f "$W/deep-prompt" -n 65 --temp 0 --threads "$THREADS" \
                --kv-type "$kv" --ctx $((depth + 80)) --metrics-json "$W/deep-$kv.json"; then
                echo "ramp-$kv $(ramp_json "$W/deep-$kv.json" \
                    "(d['generated_tokens'] - 1) / (d['seconds'] - d['time_to_first_token_seconds'])") $round" >>"$W/deep"
            else
                fail "ramp decode after $depth tokens (--kv-type $kv), round $round" "$W/deep-$kv.err"
            fi
        done
        if [ $have_peer -eq 1 ]; then
            if run "$W/deep-llama" "$PEER/llama-bench" -m "$deep_file" -t "$THREADS" -p 0 -n 64 -d "$depth" -r 1 -o json; then
                echo "llama $(llama_ts "$W/deep-llama.out") $round" >>"$W/deep"
            else
                fail "llama-bench tg64 -d $depth, round $round" "$W/deep-llama.err"
            fi
        fi
    done
    printf '\n  decode after a %s-token prompt, %s, %s rounds (tok/s, median (min..max); ratio to llama.cpp within each round)\n' \
        "$depth" "$(basename "$deep_file")" "$ROUNDS"
    python3 - "$W/deep" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if len(line.split()) == 3]
by_round = {}
for engine, value, rnd in rows:
    by_round.setdefault(rnd, {})[engine] = float(value)
for engine, label in (("ramp-f32", "ramp, fp32 KV (default)"), ("ramp-f16", "ramp, --kv-type f16"), ("llama", "llama.cpp (fp16 KV)")):
    v = [x[engine] for x in by_round.values() if engine in x]
    if not v:
        continue
    line = f"    {label:<28} {statistics.median(v):7.1f} ({min(v):.1f}..{max(v):.1f})"
    q = [x[engine] / x["llama"] for x in by_round.values() if engine in x and x.get("llama", 0) > 0]
    if q and engine != "llama":
        line += f"   ratio {statistics.median(q):.2f} ({min(q):.2f}..{max(q):.2f})"
    print(line)
PY
fi
[ "$FAILS" -eq 0 ]
