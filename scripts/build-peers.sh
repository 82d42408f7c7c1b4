#!/usr/bin/env bash
# Builds the C/C++ peers `ktask compare` runs against ktask, into .build/peers/:
#   ktask-peer-openmp (gcc -fopenmp, libgomp) and ktask-peer-tbb (oneTBB from Debian's libtbb-dev,
#   installed here where missing and this user may). The workloads' inner loops (Peers/peer_workloads.c)
#   are compiled by clang, the LLVM that Swift uses, so that only the threading differs between systems.
#   Also installs Debian's qemu-system-x86 where missing (as root), for the prefault comparison with QEMU.
#   A peer that cannot be built leaves NAME.missing with the reason, which `ktask compare` reports.
set -uo pipefail
cd "$(dirname "$0")/.."
out=.build/peers
mkdir -p "$out"
flags=(-O2 -Wall)

have_tbb() { echo '#include <tbb/parallel_for.h>' | g++ -x c++ -fsyntax-only - 2>/dev/null; }
if ! have_tbb && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "build-peers: installing libtbb-dev" >&2
    (apt-get install -y -q libtbb-dev || { apt-get update -q && apt-get install -y -q libtbb-dev; }) >"$out/apt.log" 2>&1
fi

# QEMU's guest-memory preallocation is the prefault workload's bar (`ktask compare --systems qemu`).
if ! command -v qemu-system-x86_64 >/dev/null && [ "$(uname -m)" = x86_64 ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "build-peers: installing qemu-system-x86" >&2
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86; }; } \
      >"$out/apt-qemu.log" 2>&1 || echo "build-peers: qemu-system-x86 could not be installed (see $out/apt-qemu.log)" >&2
fi

pick() { for compiler in "$@"; do command -v "$compiler" >/dev/null && { echo "$compiler"; return; }; done; }
cc_loops=$(pick clang gcc)
cxx_driver=$(pick clang++ g++)

missing() { # name, reason
    echo "$2" >"$out/$1.missing"
    echo "build-peers: $1 missing: $2" >&2
}
compile() { # name, log, command...
    local name=$1 log=$2
    shift 2
    "$@" 2>"$log" || { missing "$name" "$1 failed: $(grep -m1 -E 'error|fatal' "$log" || tail -n1 "$log")"; return 1; }
}
build() { # name, driver compiler, driver source, link flags...
    local name=$1 compiler=$2 source=$3
    shift 3
    rm -f "$out/$name" "$out/$name.missing"
    if [ -z "$cc_loops" ]; then missing "$name" "no C compiler (clang or gcc) is installed"; return; fi
    if [ -z "$compiler" ] || ! command -v "$compiler" >/dev/null; then missing "$name" "${compiler:-a C++ compiler} is not installed"; return; fi
    compile "$name" "$out/$name.log" "$cc_loops" "${flags[@]}" -c -o "$out/peer_workloads.o" Peers/peer_workloads.c || return
    compile "$name" "$out/$name.log" "$compiler" "${flags[@]}" -o "$out/$name" "Peers/$source" "$out/peer_workloads.o" "$@" || return
    echo "build-peers: built $out/$name (inner loops: $cc_loops, threading: $compiler $*)" >&2
}
build ktask-peer-openmp gcc peer_openmp.c -fopenmp
build ktask-peer-tbb "$cxx_driver" peer_tbb.cpp -ltbb
exit 0
