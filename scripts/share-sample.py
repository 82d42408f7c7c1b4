#!/usr/bin/env python3
# Three `ktask bench --workload compute --threads 2` processes at once, with machine-wide slots (a folder of
# their own) and without (KTASK_SLOTS=off): samples every 2 ms how many of their helper threads (ktask/N)
# ran for more than half of the time since the previous sample (run time from /proc/PID/task/TID/schedstat;
# two helpers that both did ran at the same time), and prints the samples by that count and the wall time.
# State R in stat is not used: it also means waiting in the run queue.
# Usage: scripts/share-sample.py [KTASK_BINARY] [SIZE] [RUNS]; builds nothing: run
# `swift build -c release --product ktask` first for the default binary.
import os, pathlib, subprocess, sys, time

def helper_run_times(pids):
    times = {}
    for pid in pids:
        try: tids = os.listdir(f"/proc/{pid}/task")
        except OSError: continue
        for tid in tids:
            try:
                stat = open(f"/proc/{pid}/task/{tid}/stat").read()
                if not stat[stat.index("(") + 1:stat.rindex(")")].startswith("ktask/"): continue
                times[(pid, tid)] = int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
            except (OSError, ValueError): continue
    return times

def run(env, args):
    environment = dict(os.environ); environment.update(env)
    start = time.monotonic()
    processes = [subprocess.Popen(args, env=environment, stdout=subprocess.DEVNULL) for _ in range(3)]
    histogram, before, last = {}, {}, time.monotonic_ns()
    while any(p.poll() is None for p in processes):
        now_times, now = helper_run_times([p.pid for p in processes]), time.monotonic_ns()
        ran = sum(1 for key, ns in now_times.items() if key in before and ns - before[key] > (now - last) / 2)
        histogram[ran] = histogram.get(ran, 0) + 1
        before, last = now_times, now
        time.sleep(0.002)
    return time.monotonic() - start, dict(sorted(histogram.items()))

root = pathlib.Path(__file__).resolve().parent.parent
ktask = sys.argv[1] if len(sys.argv) > 1 else str(root / ".build/release/ktask")
size = sys.argv[2] if len(sys.argv) > 2 else "50M"
runs = sys.argv[3] if len(sys.argv) > 3 else "5"
args = [ktask, "bench", "--workload", "compute", "--threads", "2", "--size", size, "--runs", runs] + sys.argv[4:]
folder = f"/tmp/kt-share-sample-{os.getpid()}"  # a slots folder of this script's own
os.makedirs(folder, mode=0o700, exist_ok=True)
try:
    for env in [{"KTASK_SLOTS": folder}, {"KTASK_SLOTS": "off"}]:
        wall, histogram = run(env, args)
        print(env["KTASK_SLOTS"] if env["KTASK_SLOTS"] == "off" else "slots on",
              "wall %.2f s" % wall, "samples by helpers that ran > half the interval:", histogram)
finally:
    for name in os.listdir(folder): os.unlink(os.path.join(folder, name))
    os.rmdir(folder)
