#!/usr/bin/env python3
# Three `ktask bench --workload compute --threads 2` processes at once, with machine-wide slots (a folder of
# their own) and without (KTASK_SLOTS=off): samples every 2 ms how many of their helper threads (ktask/N)
# are running (state R in two samples in a row) and prints the samples by that count and the wall time.
# Needs `swift build -c release --product ktask` first.
import subprocess, os, time, sys
def running(pids):
    n = 0
    for pid in pids:
        try: tids = os.listdir(f"/proc/{pid}/task")
        except: continue
        for t in tids:
            try: s = open(f"/proc/{pid}/task/{t}/stat").read()
            except: continue
            comm = s[s.index("(")+1:s.rindex(")")]; state = s[s.rindex(")")+2]
            if comm.startswith("ktask/") and state == "R": n += 1
    return n
def run(env, args):
    e = dict(os.environ); e.update(env)
    t0 = time.time()
    ps = [subprocess.Popen(args, env=e, stdout=subprocess.DEVNULL) for _ in range(3)]
    mx = prev = 0; hist = {}
    while any(p.poll() is None for p in ps):
        now = running([p.pid for p in ps]); v = min(now, prev); mx = max(mx, v); hist[v] = hist.get(v, 0) + 1; prev = now
        time.sleep(0.002)
    return mx, time.time() - t0, hist
import pathlib
ktask = str(pathlib.Path(__file__).resolve().parent.parent / ".build/release/ktask")
args = [ktask, "bench", "--workload", "compute", "--threads", "2", "--size", "50M", "--runs", "5"]
for env in [{"KTASK_SLOTS": "/tmp/kt-share-test"}, {"KTASK_SLOTS": "off"}]:
    os.makedirs("/tmp/kt-share-test", mode=0o700, exist_ok=True)  # a slots folder of its own
    mx, wall, hist = run(env, args)
    print(env, "max running helpers (2 samples in a row):", mx, "wall %.2f s" % wall, "samples by helpers running:", dict(sorted(hist.items())))
