#!/usr/bin/env python3
"""BPF cost table for the macro benchmarks: run_cnt/run_time_ns of the daemon's programs
before and after a measured run (bench/lib/measure.sh bpf_sample), per program, per
bpf/ source and per request.

  bpf_table.py <before.jsonl> <after.jsonl> <requests> <what the run was> <repo> [daemon ns/req]

With the daemon's user-space ns per request given, the last line adds both: the cost
per request that issue targets are stated in."""
import glob, json, os, re, sys

b0, b1, nreq, what, src = sys.argv[1:6]
daemon_ns = float(sys.argv[6]) if len(sys.argv) > 6 else None
req = max(int(nreq), 1)
# Which bpf/ source defines each program, and where it attaches: bpftool shows the full
# function name when the program has BTF, else the kernel's first 15 characters.
origin = {}
for path in sorted(glob.glob(f"{src}/bpf/*.bpf.[ch]")):
    text = open(path).read()
    for sec, fn in re.findall(r'SEC\("([^"]+)"\)\s*\n\s*int\s+(?:BPF_(?:PROG|KPROBE|KRETPROBE)\(\s*)?(\w+)', text):
        origin[fn] = origin[fn[:15]] = (os.path.basename(path), sec.split("/")[-1])

before = {p["id"]: p for p in map(json.loads, open(b0))}
after = [json.loads(l) for l in open(b1)]
rows = []
for p in after:
    b = before.get(p["id"], {"run_time_ns": 0, "run_cnt": 0})
    cnt = p["run_cnt"] - b["run_cnt"]
    ns = p["run_time_ns"] - b["run_time_ns"]
    file, hook = origin.get(p["name"], ("?", "?"))
    rows.append((file, p["name"], hook, cnt, ns))
rows.sort(key=lambda r: (r[0], -r[4]))
print()
print(f"BPF programs of the daemon, kernel.bpf_stats_enabled=1, {what}; "
      f"calls include every other process on the machine:")
print(f"  {'source':13}{'program':20}{'hook':22}{'calls':>10}{'calls/req':>10}{'ns/call':>9}{'ns/req':>9}")
per_file = {}
for file, name, hook, cnt, ns in rows:
    if cnt == 0:
        continue
    tot = per_file.setdefault(file, [0, 0])
    tot[0] += cnt
    tot[1] += ns
    print(f"  {file:13}{name[:19]:20}{hook[:21]:22}{cnt:>10}{cnt / req:>10.2f}{ns / cnt:>9.0f}{ns / req:>9.0f}")
idle = [r[1] for r in rows if r[3] == 0]
if idle:
    print(f"  not run: {', '.join(idle)}")
for file, (cnt, ns) in per_file.items():
    print(f"  {'total ' + file:55}{cnt:>10}{cnt / req:>10.2f}{ns / max(cnt, 1):>9.0f}{ns / req:>9.0f}")
all_ns = sum(ns for _, ns in per_file.values())
print(f"  {'all programs':55}{'':10}{'':10}{'':9}{all_ns / req:>9.0f}  ns of BPF per request")
if daemon_ns is not None:
    print(f"  {'BPF + daemon user space':55}{'':10}{'':10}{'':9}{all_ns / req + daemon_ns:>9.0f}  ns per request")
