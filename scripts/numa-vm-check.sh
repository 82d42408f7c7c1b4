#!/usr/bin/env bash
# Boots a small Linux with two NUMA nodes under qemu (Debian's kernel, a busybox initramfs holding a
# ktask built with the Swift stdlib linked in) and checks, by reading the kernel back inside it, that a
# job placed on node 1 runs on node 1's CPUs (sched_getcpu) and puts its pages on node 1 (move_pages),
# also under `taskset -c 0,3,4` (no chunk may run outside the mask).
# scripts/vm-guest.sh makes the guest; scripts/vm-file-check.sh boots one on ktask-populated files.
# Prints the guest's `ktask info` and `ktask check-placement` output; exits 0 only if the check passed.
# Needs root for apt-get where qemu-system-x86, busybox-static or cpio are missing. Takes 1-5 minutes
# (most of it the release build; the guest boots in about 10 s under software emulation).
# Exit status: 0 passed, 1 the check failed, 77 this machine cannot run it (no packages, no kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
vm_name=numa-vm-check
. scripts/vm-guest.sh
vm_prepare

init="$work/numa-init"
cat > "$init" <<'INIT'
#!/bin/sh
. /bin/guest-lib.sh
mount_guest
echo "=== nodes: $(cat /sys/devices/system/node/online); node 2 access0 initiators: $(ls /sys/devices/system/node/node2/access0/initiators 2>/dev/null | grep node | tr '\n' ' ')"
echo "=== ktask info"
/bin/ktask info --format json
# Node 2 is memory only (HMAT names node 1 its initiator): a job placed there runs on node 1's CPUs
# and puts every page on node 2.
for node in 1 0 2; do
  echo "=== ktask check-placement --node $node"
  /bin/ktask check-placement --node $node --size 64M || status=1
done
# Under an affinity mask that holds two of node 1's three CPUs (a helper runs there too) and one of
# node 0's, helpers must stay inside it: every chunk's CPU (sched_getcpu) is read back, and one outside
# the mask (CPU 5, or 1-2) fails the check.
for node in 1 0; do
  echo "=== taskset -c 0,3,4 ktask check-placement --node $node"
  taskset -c 0,3,4 /bin/ktask check-placement --node $node --size 64M || status=1
done
# A VM's memory-backend-file on tmpfs, populated for node 1: every page on node 1, every chunk on node 1's
# CPUs (3-5).
echo "=== ktask populate /dev/shm/guest-ram --size 64M --write --nodes 1"
out=$(/bin/ktask populate /dev/shm/guest-ram --size 64M --write --nodes 1 --format json) || status=1
echo "$out"
echo "$out" | grep -q '"pages_per_node":{"1":16384}' || { echo "populate: pages not all on node 1"; status=1; }
echo "$out" | grep -Eq '"cpus_seen":\[[345](,[345])*\]' || { echo "populate: a chunk ran off node 1"; status=1; }
echo "=== exit status $status"
poweroff -f
INIT
vm_initramfs "$init" "$work/numa-initramfs.gz"

# Software emulation: the guest boots in seconds, and nested KVM is not dependable (here it hangs).
log="$work/guest.log"
# HMAT needs a latency and a bandwidth for every initiator and target.
hmat=()
for initiator in 0 1; do
  for target in 0 1 2; do
    near=$([ "$initiator" = "$target" ] || { [ "$initiator" = 1 ] && [ "$target" = 2 ]; } && echo 1 || echo 0)
    hmat+=(-numa "hmat-lb,initiator=$initiator,target=$target,hierarchy=memory,data-type=access-latency,latency=$((near ? 10 : 30))")
    hmat+=(-numa "hmat-lb,initiator=$initiator,target=$target,hierarchy=memory,data-type=access-bandwidth,bandwidth=$((near ? 200 : 100))M")
  done
done
timeout 300 qemu-system-x86_64 -machine q35,accel=tcg,hmat=on -m 2560M -smp 6 \
  -object memory-backend-ram,id=m0,size=1G -object memory-backend-ram,id=m1,size=1G \
  -object memory-backend-ram,id=m2,size=512M \
  -numa node,nodeid=0,cpus=0-2,memdev=m0,initiator=0 -numa node,nodeid=1,cpus=3-5,memdev=m1,initiator=1 \
  -numa node,nodeid=2,memdev=m2,initiator=1 "${hmat[@]}" \
  -kernel "$work/vmlinuz" -initrd "$work/numa-initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 rdinit=/init" -nographic -no-reboot > "$log" 2>&1 || true
vm_console "$log"
grep -q '=== exit status' "$log" || { echo "numa-vm-check: the guest did not finish; see $log" >&2; exit 1; }
grep -q '=== exit status 0' "$log"
