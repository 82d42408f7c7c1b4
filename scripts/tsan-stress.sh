#!/usr/bin/env bash
# ThreadSanitizer on a random-job soak (Sources/ktask-stress): blocking and async jobs, map/reduce/update,
# nested, per node, adaptive, cancelled, failing with undo, populates, on pools whose caps change meanwhile,
# from several threads at once, with machine-wide slots on (in a private folder) and under `make -j4`'s
# jobserver. A user who runs their own tests under TSan must see nothing of ktask's: any report fails this
# script, as does a job with a wrong result. KTASK_STRESS_JOBS sets the number of jobs (default 100000).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${KTASK_STRESS_JOBS:-100000}
swift build -c release --sanitize=thread --product ktask-stress --scratch-path .build-tsan 2>&1 | tail -n 1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The slots folder is left for ktask to make (0755 as root, 0700 otherwise): one made here under a umask of 002
# would be group-writable and refused, and the soak would run with slots off (ktask-stress fails then).
mkdir "$work/reports"
# A `+` recipe gets make's jobserver: ktask takes a token per extra helper.
printf 'all:\n\t+@$(STRESS)\n' >"$work/Makefile"
status=0
TSAN_OPTIONS="halt_on_error=0 exitcode=0 log_path=$work/reports/tsan" KTASK_SLOTS="$work/slots" KTASK_STRESS_JOBS="$jobs" \
  make -s -j4 -f "$work/Makefile" STRESS="$PWD/.build-tsan/release/ktask-stress" || status=$?
reports=$(cat "$work"/reports/tsan* 2>/dev/null | grep -c "WARNING: ThreadSanitizer" || true)
echo "tsan-stress: $reports ThreadSanitizer report(s)"
if [ "$reports" -ne 0 ]; then
  # The first frames of each, to say where; the full reports follow.
  cat "$work"/reports/tsan* | grep -A3 "WARNING: ThreadSanitizer" | head -n 40
  exit 1
fi
exit "$status"
