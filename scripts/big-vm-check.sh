#!/usr/bin/env bash
# A big machine's decisions on a real kernel (issue 21): a 16-CPU guest with 4 NUMA nodes of 4 CPUs and
# 512 MiB each, plus a memory-only node 4 whose initiator (HMAT) is node 2, booted under qemu from the
# guest of scripts/vm-guest.sh. Inside, ktask's decisions are read back from the kernel and its reports:
#   - a default 16-thread job has helpers on all 4 nodes, the caller's node full first (3 helpers there, the
#     caller on its 4th CPU), 15 in all; an 8-thread one fills the caller's node, then 4 elsewhere;
#     --placement caller-only keeps to the caller's node; --placement nodes:1,2 to nodes 1 and 2;
#   - KTASK_NODE_MAX_THREADS=2: 2 helpers per node in the report, and never more than 2 of a node's
#     helpers ran at once (scripts/helper-sampler.c: schedstat run time grew in two 20 ms windows in a
#     row; the node from the thread's last CPU);
#   - a per-node job (check-placement --node 0,1,2,3, KTask.run(perNode:) in the library's populate): each
#     range's pages on its node (move_pages), and each thread pinned to a node started on that node's range;
#   - populate --nodes 0,1,2,3 puts a quarter of the pages on each node; a job on node 4 runs on CPUs 8-11
#     and puts its pages on node 4;
#   - three concurrent processes of 16 threads never hold more than 15 machine slots (flocks in
#     /proc/locks, exact), nor run more than 15 helpers at once (sampled, one hand-over allowed: see below);
#   - make -j4 with three `+` recipes of 16 threads: never more helpers at once than make's free tokens (4
#     less one per recipe still running).
# Not checked here: `ktask tune`'s knee. Its answer is a speed, and 16 emulated CPUs on this 2-core host run
# no faster than 2 (scripts/scaling-table.sh measures scaling where there are cores).
# Exit status: 0 passed, 1 a check failed, 77 this machine cannot run it. About a minute under software
# emulation once numa-vm-check.sh has built the kernel and ktask.
set -euo pipefail
cd "$(dirname "$0")/.."
vm_name=big-vm-check
vm_tools="awk sleep ls sed seq date wc tr cut kill head env"
. scripts/vm-guest.sh
command -v make >/dev/null || vm_cannot "no make on this machine"
gcc -O2 -static -o "$work/helper-sampler" scripts/helper-sampler.c 2>/dev/null || vm_cannot "gcc cannot build a static program here"
vm_host_binaries="make $work/helper-sampler"
vm_prepare

init="$work/big-init"
cat > "$init" <<'INIT'
#!/bin/sh
. /bin/guest-lib.sh
mount_guest
echo "=== nodes: $(cat /sys/devices/system/node/online), CPUs $(cat /sys/devices/system/cpu/online); node 4 access0 initiators: $(ls /sys/devices/system/node/node4/access0/initiators 2>/dev/null | grep node | tr '\n' ' ')"
bench() { /bin/ktask bench --workload compute --runs 1 --size 2M --format json "$@" 2>/dev/null; }

# scripts/helper-sampler.c: "running R node N slots S over O windows W" for the processes given, until they end.
sampled() { /bin/helper-sampler "$@"; }
running() { echo $2; }
node() { echo $4; }
slots() { echo $6; }
over() { echo $8; }
# A sample that saw no helper run proves nothing.
observed() { [ "$(echo $1 | cut -d' ' -f10)" -gt 0 ] && [ "$(running $1)" -gt 0 ] || fail "$2: the sampler saw no helper run ($1)"; }

echo "=== ktask info"
/bin/ktask info | head -20

echo "=== default placement: 16 and 8 threads"
for threads in 16 8; do
  r=$(row $threads "$(bench --threads $threads)")
  perNode=$(field helpers_per_node "$r")
  echo "$threads threads: used $(field threads_used "$r"), limited by $(field thread_limit "$r"), helpers per node $perNode"
  counts=$(values "$perNode")
  [ "$(sum "$counts")" = $((threads - 1)) ] || fail "$threads threads: $(sum "$counts") helpers, not $((threads - 1))"
  # The caller's node is the one with 3 helpers (the caller on its 4th CPU); at 16 every node takes part.
  echo " $counts " | grep -q " 3 " || fail "$threads threads: no node filled with 3 helpers beside the caller: $perNode"
  [ $threads != 16 ] || [ "$(echo $counts | wc -w)" = 4 ] || fail "16 threads: not on all 4 nodes: $perNode"
done

echo "=== --placement caller-only, --placement nodes:1,2"
r=$(row 16 "$(bench --threads 16 --placement caller-only)")
perNode=$(field helpers_per_node "$r")
echo "caller-only: used $(field threads_used "$r"), limited by $(field thread_limit "$r"), helpers per node $perNode"
echo "$perNode" | grep -Eq '^\{"[0-3]":3\}$' || fail "caller-only: helpers not 3 on one node: $perNode"
r=$(row 16 "$(bench --threads 16 --placement nodes:1,2)")
perNode=$(field helpers_per_node "$r")
echo "nodes:1,2: used $(field threads_used "$r"), helpers per node $perNode"
echo "$perNode" | grep -Eq '^\{"1":[34],"2":[34]\}$' || fail "nodes:1,2: helpers outside nodes 1 and 2: $perNode"

echo "=== KTASK_NODE_MAX_THREADS=2: sampled"
KTASK_NODE_MAX_THREADS=2 /bin/ktask bench --workload compute --threads 16 --runs 2 --size 8M --format json > /tmp/capped.json 2>/dev/null &
seen=$(sampled $!)
wait $! || fail "capped bench failed"
r=$(row 16 "$(cat /tmp/capped.json)")
echo "report: used $(field threads_used "$r"), limited by $(field thread_limit "$r"), helpers per node $(field helpers_per_node "$r"); sampled: at most $(running $seen) helpers running at once, $(node $seen) on one node"
[ "$(field helpers_per_node "$r")" = '{"0":2,"1":2,"2":2,"3":2}' ] || fail "per-node cap 2: report $(field helpers_per_node "$r")"
observed "$seen" "per-node cap 2"
# Sampled under emulation: a vCPU the host deschedules keeps its guest clock running, so a helper of the job
# before, spinning 50 us for its next job, can look busy for a window; one such hand-over is allowed here
# (CI saw 3 once). The report's 2 per node above is the decision, and must be exact.
[ "$(node $seen)" -le 3 ] || fail "per-node cap 2: $(node $seen) helpers ran on one node at once"

echo "=== check-placement --node 0,1,2,3 (one range per node)"
/bin/ktask check-placement --node 0,1,2,3 --size 64M || fail "per-node job off its nodes"
echo "=== check-placement --node 4 (memory only, served by node 2's CPUs)"
/bin/ktask check-placement --node 4 --size 32M || fail "node-4 job off node 2's CPUs or node 4's memory"

echo "=== populate --nodes 0,1,2,3"
out=$(/bin/ktask populate /dev/shm/guest-ram --size 256M --write --nodes 0,1,2,3 --format json) || fail "populate --nodes 0,1,2,3"
perNode=$(field pages_per_node "$out")
echo "pages per node $perNode, chunks on CPUs $(list cpus_seen "$out")"
[ "$perNode" = '{"0":16384,"1":16384,"2":16384,"3":16384}' ] || fail "populate: not a quarter on each node: $perNode"
rm -f /dev/shm/guest-ram

echo "=== three processes at once: machine slots"
pids=
for i in 1 2 3; do
  /bin/ktask bench --workload compute --threads 16 --runs 2 --size 8M --format json > /tmp/three.$i.json 2>/dev/null & pids="$pids $!"
done
seen=$(sampled $pids)
for pid in $pids; do wait $pid || fail "a concurrent bench failed"; done
for i in 1 2 3; do r=$(row 16 "$(cat /tmp/three.$i.json)"); echo "process $i: used $(field threads_used "$r"), limited by $(field thread_limit "$r")"; done
echo "sampled: at most $(running $seen) helpers running at once in the three, $(slots $seen) machine slots held at once"
observed "$seen" "three processes"
[ "$(running $seen)" -le 16 ] || fail "three processes: $(running $seen) helpers ran at once, more than 15 slots and a hand-over"
[ "$(slots $seen)" -le 15 ] && [ "$(slots $seen)" -gt 0 ] || fail "three processes: $(slots $seen) machine slots held at once"

echo "=== make -j4, three + recipes"
cd /tmp
printf 'all: a b c\na b c:\n\t+/bin/ktask bench --workload compute --threads 16 --runs 2 --size 8M --format json > $@.json 2>/dev/null\n' > Makefile
make -j4 -s > make.log 2>&1 &
make=$!
pids=
for tries in $(seq 100); do
  pids=$(for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = ktask ] && echo ${p#/proc/}; done | tr '\n' ' ')
  [ "$(echo $pids | wc -w)" -lt 3 ] || break
  sleep 0.1
done
seen=$(sampled --tokens 4 $pids)
wait $make || fail "make failed: $(cat make.log)"
for t in a b c; do r=$(row 16 "$(cat $t.json)"); echo "recipe $t: used $(field threads_used "$r"), limited by $(field thread_limit "$r")"; done
echo "sampled: at most $(running $seen) helpers running at once, $(over $seen) beyond make's free tokens (4 less one per recipe running)"
observed "$seen" "make -j4"
[ "$(over $seen)" -le 1 ] || fail "make -j4: $(over $seen) helpers ran beyond make's free tokens and a hand-over"

echo "=== exit status $status"
poweroff -f
INIT
vm_initramfs "$init" "$work/big-initramfs.gz"

vm_big_machine
vm_boot "$work/big-initramfs.gz" "$work/big-guest.log" 2560M "${vm_big_args[@]}"
