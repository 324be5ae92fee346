#!/usr/bin/env python3
"""Peak RSS of one-process runs against file size + KV cache + 15% (issue 10's memory goal).

    scripts/rss-vs-file.py build/release/bin/ramp FILE.gguf ...

For each file: `ramp generate -m FILE -p 'Once upon a time' -n 64 --temp 0 --threads 2` under
/usr/bin/time; prints the file size, the metrics' weight_bytes (stored bytes of the tensors held)
and kv_bytes_peak, the peak RSS, the budget (file + KV) x 1.15 and whether the RSS is within it.
A process has a floor of about 10 MiB (libraries: Open MPI, libc, ...), so files of a few MiB
exceed the budget by that floor."""
import json, os, subprocess, sys, tempfile

ramp, files = sys.argv[1], sys.argv[2:]
tmp = tempfile.mkdtemp(prefix="ramp-rss.")
metrics, timing = os.path.join(tmp, "m.json"), os.path.join(tmp, "t.txt")
M = 2**20
print("%-44s %9s %9s %9s %9s %9s %8s %s" % ("file", "file MiB", "weights", "KV peak", "peak RSS", "budget", "RSS/bud", "within"))
for f in files:
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", timing, ramp, "generate", "-m", f, "-p", "Once upon a time", "-n",
                    "64", "--temp", "0", "--threads", "2", "--metrics-json", metrics],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    stage = json.load(open(metrics))["stages"][0]
    rss = int(open(timing).read().split()[-1]) * 1024
    size, kv = os.path.getsize(f), stage["kv_bytes_peak"]
    budget = (size + kv) * 1.15
    name = os.path.basename(f)
    print("%-44s %9.1f %9.1f %9.2f %9.1f %9.1f %8.2f %s" % (name, size / M, stage["weight_bytes"] / M, kv / M, rss / M,
          budget / M, rss / budget, "yes" if rss <= budget else "NO"))
for p in (metrics, timing):
    if os.path.exists(p): os.remove(p)
os.rmdir(tmp)
