#!/usr/bin/env python3
# A load that comes and goes: one process per CPU (or N), each busy for 1-20 ms, then asleep for 1-20 ms, for
# SECONDS. Timing tests meet this under the suite's own parallel tests; run it beside one to see whether the
# test holds: scripts/bursty-load.py 120 & swift test --skip-build --filter AdaptiveTests
import multiprocessing, os, random, sys, time

def burst(until):
    while time.monotonic() < until:
        busy_until = time.monotonic() + random.uniform(0.001, 0.02)
        while time.monotonic() < busy_until: pass
        time.sleep(random.uniform(0.001, 0.02))

if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
    until = time.monotonic() + seconds
    processes = [multiprocessing.Process(target=burst, args=(until,)) for _ in range(workers)]
    for process in processes: process.start()
    for process in processes: process.join()
