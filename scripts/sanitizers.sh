#!/usr/bin/env bash
# Runs the tests under AddressSanitizer and ThreadSanitizer (each in a build folder of its own) and sorts
# TSan's reports: a "Swift access race" whose two accesses are both inside a Synchronization.Mutex
# withLock body (the closure with an `inout sending` parameter, mangled `...zYuYTXEfU_` or for Mutex<Void>
# `...ytz_tYTXEfU_`, or a closure inside it) is this
# toolchain's known false positive, shown by the 20-line program in scripts/tsan-mutex-false-positive;
# any other report fails the script. Takes about 10 minutes on 2 CPUs.
#   ASan: leak detection is off (LeakSanitizer reports Foundation's Process and XCTest's own objects).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0

echo "== AddressSanitizer"
ASAN_OPTIONS=detect_leaks=0 swift test --sanitize=address --scratch-path .build-asan >.build-asan.log 2>&1 \
  && echo "asan: tests passed, no report" || { echo "asan: FAILED (see .build-asan.log)"; status=1; }
grep -a -c "ERROR: AddressSanitizer" .build-asan.log | sed 's/^/asan: reports: /'

echo "== ThreadSanitizer"
reports=$(mktemp -d)
# Reports of every process (the test runner and the ktask processes the CLI tests start) go to files.
TSAN_OPTIONS="halt_on_error=0 exitcode=0 log_path=$reports/tsan" \
  swift test --sanitize=thread --scratch-path .build-tsan >.build-tsan.log 2>&1 \
  && echo "tsan: tests passed" || { echo "tsan: tests FAILED (see .build-tsan.log)"; status=1; }
python3 - "$reports" <<'PY' || status=1
import glob, re, sys
known, other = 0, []
for path in glob.glob(sys.argv[1] + "/tsan*"):
    for report in open(path, errors="replace").read().split("WARNING: ThreadSanitizer:")[1:]:
        frames = re.findall(r"^\s+#0 (\S+)", report, re.M)[:2]
        if report.startswith(" Swift access race") and len(frames) == 2 and all(re.search(r"(zYu|ytz_t)YTXEfU_", f) for f in frames):
            known += 1
        else:
            other.append(report.splitlines()[0] + " | " + " / ".join(frames))
print(f"tsan: {known} report(s) of the known Mutex.withLock false positive, {len(other)} other(s)")
for line in other: print("tsan: OTHER:", line)
sys.exit(1 if other else 0)
PY

echo "== The false positive on its own (expect one report)"
(cd scripts/tsan-mutex-false-positive && swift build --sanitize=thread -q 2>/dev/null \
  && TSAN_OPTIONS=exitcode=0 ./.build/debug/tsan-mutex-false-positive 2>&1 | grep -a -m1 "WARNING: ThreadSanitizer")
exit $status
