#!/usr/bin/env bash
# cgroup v2 on a real kernel (issue 22): the guest of scripts/big-vm-check.sh (16 CPUs on 4 nodes and a
# memory-only node) mounts cgroup2 and runs ktask inside cgroups, reading its decisions back:
#   - a service cgroup "svc a" (a space in its path) with cpuset.cpus 4-7, cpuset.mems 1 and cpu.max
#     "200000 100000", and ktask in a child three levels down that asks for cpus 0-15 and cpu.max "max" (the
#     parent is stricter): usable CPUs 4-7 (cpuset.cpus.effective), budget 2, memory on node 1 only;
#     a 16-thread bench uses 2 threads; populate --nodes 0 is refused, --nodes 1 puts every page on node 1;
#     check-placement --node 1 runs on CPUs 4-7;
#   - cpu.max "150000 100000" (1.5 CPUs) gives a budget of 2, "50000 100000" gives 1, "max" 4;
#   - cpu.max lowered while a bench runs: its later runs use the new budget (ktask re-reads the limits at
#     most 100 ms old);
#   - two sibling cgroups of equal cpu.weight on CPUs 0-3: 4 nice-0 spinners in one, a ktask job in the
#     other (populate --write of a 512 MiB tmpfs file: CPU work, the kernel zeroing pages, and one job
#     without bench's 1-thread baseline runs); the spinners' share of the two groups' CPU time (cpu.stat usage_usec) with a 4-thread job at
#     ktask's defaults must be at least their share beside the same job on 1 thread minus 3 points; the
#     share beside a 4-thread job with --helper-priority caller (`.inheritCaller`) is reported (what it
#     costs a neighbour); medians of three rounds.
# Exit status: 0 passed, 1 a check failed, 77 this machine cannot run it. About a minute under emulation.
set -euo pipefail
cd "$(dirname "$0")/.."
vm_name=cgroup-v2-check
vm_tools="sleep ls sed cut tr wc seq kill head awk timeout"
. scripts/vm-guest.sh
vm_prepare

init="$work/cgroup-v2-init"
cat > "$init" <<'INIT'
#!/bin/sh
. /bin/guest-lib.sh
mount_guest
echo "=== nodes: $(cat /sys/devices/system/node/online), CPUs $(cat /sys/devices/system/cpu/online)"
cg=/sys/fs/cgroup
mount -t cgroup2 none $cg || { echo "no cgroup2"; echo "=== exit status 1"; poweroff -f; }
echo "+cpu +cpuset" > $cg/cgroup.subtree_control

# In cgroup $1 (a folder), run the rest of the arguments.
inside() { group=$1; shift; sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$group" "$@"; }
info_line() { echo "$1" | grep "$2"; }

echo "=== a service cgroup with a space in its path; ktask three levels down"
svc="$cg/svc a"
mkdir "$svc"
echo 4-7 > "$svc/cpuset.cpus"; echo 1 > "$svc/cpuset.mems"; echo "200000 100000" > "$svc/cpu.max"
leaf="$svc"
for level in one two three; do
  echo "+cpu +cpuset" > "$leaf/cgroup.subtree_control"
  leaf="$leaf/$level"; mkdir "$leaf"
done
echo 0-15 > "$leaf/cpuset.cpus"; echo max > "$leaf/cpu.max"   # asks for more than its parent allows
echo "leaf cpuset.cpus.effective $(cat "$leaf/cpuset.cpus.effective"), cpuset.mems.effective $(cat "$leaf/cpuset.mems.effective")"
info=$(inside "$leaf" /bin/ktask info)
info_line "$info" "usable CPUs"; info_line "$info" "CPU budget"; info_line "$info" "node 0:"
info_line "$info" "usable CPUs: 4-7 (4)" >/dev/null || fail "usable CPUs not 4-7"
info_line "$info" "CPU budget: 2 thread" >/dev/null || fail "budget not 2 from the parent's cpu.max"
info_line "$info" "helper isolation" || true
r=$(row 16 "$(inside "$leaf" /bin/ktask bench --workload compute --threads 16 --runs 1 --size 2M --format json 2>/dev/null)")
echo "bench 16 threads: used $(field threads_used "$r"), limited by $(field thread_limit "$r")"
[ "$(field threads_used "$r")" = 2 ] || fail "16-thread bench used $(field threads_used "$r") threads, not 2"
if inside "$leaf" /bin/ktask populate /dev/shm/n0 --size 16M --write --nodes 0 > /tmp/refused 2>&1; then
  fail "populate --nodes 0 was not refused"
else
  echo "populate --nodes 0 refused: $(cat /tmp/refused)"
  grep -q "memory" /tmp/refused || fail "populate --nodes 0: refused for another reason than its memory"
fi
[ ! -e /dev/shm/n0 ] || fail "a refused populate left /dev/shm/n0"
out=$(inside "$leaf" /bin/ktask populate /dev/shm/n1 --size 16M --write --nodes 1 --format json 2>/dev/null) || fail "populate --nodes 1"
echo "populate --nodes 1: pages per node $(field pages_per_node "$out"), chunks on CPUs $(list cpus_seen "$out")"
[ "$(field pages_per_node "$out")" = '{"1":4096}' ] || fail "populate --nodes 1: pages not all on node 1"
list cpus_seen "$out" | grep -Eq '^\[[4-7](,[4-7])*\]$' || fail "populate --nodes 1: a chunk ran outside CPUs 4-7"
rm -f /dev/shm/n1
inside "$leaf" /bin/ktask check-placement --node 1 --size 16M || fail "check-placement --node 1 inside the cpuset"

echo "=== cpu.max: fractional, smaller, none"
for quota in "150000 100000:2" "50000 100000:1" "max 100000:4"; do
  echo "${quota%:*}" > "$svc/cpu.max"
  budget=$(inside "$leaf" /bin/ktask info | sed -n 's/^CPU budget: \([0-9]*\) thread.*/\1/p')
  echo "cpu.max ${quota%:*}: budget $budget"
  [ "$budget" = "${quota#*:}" ] || fail "cpu.max ${quota%:*}: budget $budget, not ${quota#*:}"
done

echo "=== cpu.max lowered while a bench runs"
# Bounded: under emulation a throttled job is slow, and a stuck one must fail this check, not the guest.
inside "$leaf" timeout 90 /bin/ktask bench --workload compute --threads 4 --runs 8 --size 2M --format json > /tmp/changed.json 2>/dev/null &
bench=$!
sleep 1
echo "100000 100000" > "$svc/cpu.max"
wait $bench || fail "bench failed or took over 90 s (status $?)"
r=$(row 4 "$(cat /tmp/changed.json)")
echo "4-thread runs: fewest threads used $(field threads_used "$r"), limited by $(field thread_limit "$r")"
[ "$(field threads_used "$r")" = 1 ] || fail "the lowered cpu.max was not seen by a later run"
echo max > "$svc/cpu.max"

echo "=== sibling services of equal weight on CPUs 0-3: 4 spinners in one, ktask in the other"
for group in load job; do
  mkdir "$cg/$group"; echo 0-3 > "$cg/$group/cpuset.cpus"; echo 100 > "$cg/$group/cpu.weight"
done
usage() { sed -n 's/^usage_usec //p' "$cg/$1/cpu.stat"; }
# The spinners' percent of both groups' CPU time while the job runs.
share() {
  inside $cg/load /bin/ktask foreground-load --threads 4 --seconds 60 > /dev/null &
  sleep 1
  l0=$(usage load); j0=$(usage job)
  inside $cg/job timeout 90 /bin/ktask populate /dev/shm/job-ram --size 512M --write "$@" > /dev/null 2>&1 || fail "populate $*"
  l1=$(usage load); j1=$(usage job)
  rm -f /dev/shm/job-ram
  # Every process of the load group (a function run with & is a subshell: $! would not be the spinner).
  for pid in $(cat $cg/load/cgroup.procs); do kill -9 $pid; done
  while [ -n "$(cat $cg/load/cgroup.procs)" ]; do sleep 0.1; done
  echo $(( 100 * (l1 - l0) / (l1 - l0 + j1 - j0) ))
}
# Three rounds, each trio back to back; medians (a job's tail, where a starved helper may be lent the
# caller's priority, moves one round by several points).
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
ones= defaults= callers=
for round in 1 2 3; do
  ones="$ones $(share --threads 1)"
  defaults="$defaults $(share --threads 4)"
  callers="$callers $(share --threads 4 --helper-priority caller)"
done
echo "spinners' share by round: beside a 1-thread job$ones, a 4-thread job at defaults$defaults, with --helper-priority caller$callers"
one=$(median $ones) defaults=$(median $defaults) caller=$(median $callers)
echo "spinners' share (medians): beside a 1-thread job $one%, a 4-thread job at defaults $defaults%, with --helper-priority caller $caller%"
[ "$defaults" -ge $((one - 3)) ] || fail "a 4-thread job at defaults took more than 3 points from the sibling service"

echo "=== exit status $status"
poweroff -f
INIT
vm_initramfs "$init" "$work/cgroup-v2-initramfs.gz"

vm_big_machine
vm_boot "$work/cgroup-v2-initramfs.gz" "$work/cgroup-v2-guest.log" 2560M "${vm_big_args[@]}"
