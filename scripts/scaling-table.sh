#!/usr/bin/env bash
# The seed's scaling table on a big machine (issue 21): compute, init and prefault at 1-8, 12 and 16 threads,
# ktask against the peers that build there (OpenMP, oneTBB, GCD's concurrentPerform, TaskGroup, and QEMU for
# prefault where installed), alternating run by run (`ktask compare`), writing JSON and an SVG per workload.
#
#   scripts/scaling-table.sh [--threads 1,2,...] [--runs N] [--workloads compute,init,prefault] [--out DIR]
#       builds the bundle here and runs it (CI runs `--threads 1,2 --runs 1 --workloads compute` as a smoke test)
#   scripts/scaling-table.sh --bundle DIR
#       only builds the bundle: a folder to copy to a machine with nothing installed and run there as
#       DIR/run.sh [--threads ...] [--runs N] [--out DIR]
#
# The bundle is self-contained: ktask with the Swift runtime linked in (--static-swift-stdlib, stripped) and
# the C++ runtime beside it, the OpenMP peer linked statically (libgomp.a), the oneTBB peer beside the shared
# libraries it needs (Debian ships no static oneTBB), both found through $ORIGIN, and the run script; it needs
# only glibc (checked with ldd when it is made). Its whole run is sized to
# finish in about 8 minutes on a 16-core machine (1-thread runs of about 2 s at the workloads' default sizes
# on this VM, less on a faster machine; 3 runs per system and thread count).
set -euo pipefail
cd "$(dirname "$0")/.."

# --bundle DIR: only make the bundle; every other argument is run.sh's.
bundle_only= run=()
while [ $# -gt 0 ]; do
  case $1 in
    --bundle) bundle_only=1 bundle=$2; shift 2 ;;
    *) run+=("$1"); shift ;;
  esac
done
bundle=${bundle:-.build/scaling-bundle}

# --- the bundle
rm -rf "$bundle" && mkdir -p "$bundle/peers/lib"
swift build -c release --static-swift-stdlib --product ktask --scratch-path .build-static >&2
strip -o "$bundle/ktask" .build-static/release/ktask
# The C++ runtime the Swift runtime needs, beside ktask (its RUNPATH is $ORIGIN): glibc is all the machine needs.
for lib in $(ldd "$bundle/ktask" | awk '/=>/ {print $3}' | grep -E 'libstdc\+\+|libgcc_s'); do cp -L "$lib" "$bundle/"; done
scripts/build-peers.sh
peers=.build/peers
# OpenMP: rebuilt with libgomp linked in where the static library is there, else as built (needs libgomp).
if gcc -O2 -fopenmp -static -o "$bundle/peers/ktask-peer-openmp" Peers/peer_openmp.c "$peers/peer_workloads.o" 2>"$bundle/peers/openmp.log"; then
  rm "$bundle/peers/openmp.log"
elif [ -x "$peers/ktask-peer-openmp" ]; then
  cp "$peers/ktask-peer-openmp" "$bundle/peers/"
fi
# oneTBB: its shared libraries beside it, found through $ORIGIN/lib.
if [ -x "$peers/ktask-peer-tbb" ]; then
  cxx=$(command -v clang++ || command -v g++)
  "$cxx" -O2 -o "$bundle/peers/ktask-peer-tbb" Peers/peer_tbb.cpp "$peers/peer_workloads.o" -ltbb -Wl,-rpath,'$ORIGIN/lib' -Wl,-z,origin
  for lib in $(ldd "$bundle/peers/ktask-peer-tbb" | awk '/=>/ {print $3}' | grep -E 'libtbb|libstdc\+\+|libgcc_s'); do cp -L "$lib" "$bundle/peers/lib/"; done
fi
for missing in "$peers"/*.missing; do [ -e "$missing" ] && cp "$missing" "$bundle/peers/"; done
# Self-contained: nothing from the Swift toolchain, nothing missing, only glibc from the machine.
if ldd "$bundle/ktask" "$bundle"/peers/ktask-peer-* 2>/dev/null | grep -E 'swift|not found|libstdc|libgcc_s|libtbb|libgomp' | grep -v "$bundle"; then
  echo "scaling-table: the bundle needs the libraries above from this machine" >&2
  exit 1
fi
cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the scaling table from this bundle: ktask compare for compute, init and prefault.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
threads=1,2,3,4,5,6,7,8,12,16 runs=3 out=scaling workloads="compute init prefault"
while [ $# -gt 0 ]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --workloads) workloads=${2//,/ }; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "run.sh: unknown argument $1 (allowed: --threads n,n,..., --runs N, --workloads w,w, --out DIR)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
{ uname -a; nproc; grep -m1 'model name' /proc/cpuinfo || true; "$here/ktask" info; } > "$out/machine.txt"
for workload in $workloads; do
  echo "scaling-table: $workload at $threads threads, $runs run(s)" >&2
  "$here/ktask" compare --workload "$workload" --threads "$threads" --runs "$runs" --peers "$here/peers" \
    --format json --plot "$out/$workload.svg" > "$out/$workload.json"
done
echo "scaling-table: wrote $(for w in $workloads; do printf '%s ' "$out/$w.json" "$out/$w.svg"; done)$out/machine.txt" >&2
RUN
chmod +x "$bundle/run.sh"
echo "scaling-table: bundle in $bundle ($(du -sh "$bundle" | cut -f1)): ktask $(du -h "$bundle/ktask" | cut -f1), peers: $(ls "$bundle/peers" | grep -v -e lib -e '\.log' | tr '\n' ' ')" >&2
[ -z "$bundle_only" ] || exit 0

# --- the run
"$bundle/run.sh" --out .build/scaling "${run[@]}"
