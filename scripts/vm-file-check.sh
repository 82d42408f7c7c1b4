#!/usr/bin/env bash
# A real guest whose RAM is in files ktask populated (issue 20). Each node of a 2-node guest has its own
# tmpfs file in /dev/shm, filled on the host beforehand by `ktask populate FILE --size 512M --write --nodes H`
# on the host node H that guest node i maps to: the i-th of the host's nodes with memory, modulo their
# count. On a one-node host both files are on node 0; on a two-node host guest node 0 is on host node 0 and
# guest node 1 on host node 1. qemu boots on them with memory-backend-file,share=on,prealloc=off, so it
# allocates nothing itself (ktask's --nodes binding stays on the tmpfs file: qemu needs no host-nodes=).
# Checks:
#   - in the guest: it boots with both nodes, check-placement passes on each, and 16 MiB of random data it
#     wrote on each node before the host's populates below keeps its checksum; while the host populates,
#     each node's CPU copies its data over and over and every copy must match (guest writes racing them);
#   - on the host, after the populate, while the guest runs, while it is paused and after it exits: every
#     page of each file is resident (ktask populate --verify's resident_before, and fincore) and on its host
#     node (its pages_per_node, read with move_pages; while the guest runs, also qemu's own mapping
#     in /proc/PID/numa_maps, which holds the pages the guest touched);
#   - ktask populate changes no byte of a file a running guest uses: with the guest paused (monitor `stop`),
#     `ktask populate FILE` and `ktask populate FILE --write --nodes H` leave each file's checksum (b2sum) as
#     it was; with it running, both again, round after round for 5 s, while the guest's copies are checked.
# Exit status: 0 passed, 1 a check failed, 77 this machine cannot run it (no packages, no kernel, /dev/shm
# not a tmpfs). Takes about 30 s once numa-vm-check.sh has built the kernel and ktask (2 vCPUs, TCG). The
# files are removed however the script ends (but SIGKILL), and qemu is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
vm_name=vm-file-check
. scripts/vm-guest.sh
vm_prepare
started=$SECONDS

node_mib=512                       # each guest node's RAM, one file each
pages=$((node_mib * 256))          # 4 KiB pages per file
shm=/dev/shm
[ "$(stat -f -c %T "$shm" 2>/dev/null)" = tmpfs ] || vm_cannot "$shm is not a tmpfs"
for tool in fincore b2sum mkfifo; do command -v $tool >/dev/null || vm_cannot "no $tool"; done

# Host nodes with memory ("0", "0-1", "0,2-3"); guest node i is on host_nodes[i % count].
expand() { local part out=(); for part in ${1//,/ }; do out+=($(seq "${part%-*}" "${part#*-}")); done; echo "${out[@]}"; }
host_nodes=($(expand "$(cat /sys/devices/system/node/has_memory 2>/dev/null || echo 0)"))
files=() hosts=()
for i in 0 1; do
  files+=("$shm/ktask-vm-file-check.$$.node$i")
  hosts+=("${host_nodes[i % ${#host_nodes[@]}]}")
done

log="$work/file-guest.log" fifos=$(mktemp -d)
monitor="$fifos/monitor" console="$fifos/console" pidfile="$fifos/qemu.pid"
qemu= drain= quiet=
cleanup() {
  set +e
  rm -f "${files[@]}"
  [ -n "$qemu" ] && kill "$qemu" 2>/dev/null && wait "$qemu" 2>/dev/null
  [ -n "$drain" ] && kill "$drain" 2>/dev/null
  rm -rf "$fifos"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

status=0
fail() { echo "FAILED: $*"; status=1; }

# A field of ktask's one-line JSON: a number, a string or a flat object.
field() { sed -n "s/.*\"$1\":\({[^}]*}\|[^,}]*\).*/\1/p" <<<"$2"; }

# `ktask populate --verify` (read by default) on file i, as JSON; then checks that every page was resident
# before it ran and is on host node hosts[i]. --verify measures both (mincore, move_pages) whatever the
# populate says. A read populate allocates nothing where every page is there already.
resident_on_node() {
  local i=$1 when=$2 out; shift 2
  out=$("$binary" populate "${files[i]}" --verify --format json "$@") || { fail "$when: ktask populate ${files[i]} $*"; return; }
  local before after perNode
  before=$(field resident_before "$out") after=$(field resident_after "$out") perNode=$(field pages_per_node "$out")
  [ -n "$quiet" ] || echo "$when: file $i: populate ${*:-(read)}: resident before $before, after $after, pages per node $perNode"
  [ "$before" = $((pages * 4096)) ] || fail "$when: file $i: $before of $((pages * 4096)) bytes resident"
  [ "$perNode" = "{\"${hosts[i]}\":$pages}" ] || fail "$when: file $i: pages not all on host node ${hosts[i]}: $perNode"
  local res
  res=$(fincore -b -n -o RES "${files[i]}")
  [ "$res" = $((pages * 4096)) ] || fail "$when: file $i: fincore says $res bytes resident"
}

echo "=== host: guest node 0 on host node ${hosts[0]}, guest node 1 on host node ${hosts[1]} (host nodes with memory: ${host_nodes[*]})"
for i in 0 1; do
  out=$("$binary" populate "${files[i]}" --size "${node_mib}M" --write --nodes "${hosts[i]}" --format json) \
    || { echo "vm-file-check: ktask populate ${files[i]} failed" >&2; exit 1; }
  echo "ktask populate ${files[i]} --size ${node_mib}M --write --nodes ${hosts[i]}: $(field seconds "$out") s on $(field threads_used "$out") threads, pages per node $(field pages_per_node "$out")"
  resident_on_node "$i" "before boot"
done

init="$work/file-init"
cat > "$init" <<'INIT'
#!/bin/sh
. /bin/guest-lib.sh
mount_guest
echo "=== nodes: $(cat /sys/devices/system/node/online); $(grep MemTotal /proc/meminfo)"
# Data on each node (written from its CPU, so its pages are there: in the host's file for that node).
for node in 0 1; do
  taskset -c $((node * 2)) dd if=/dev/urandom of=/dev/shm/data$node bs=1M count=16 2>/dev/null
done
sha256sum /dev/shm/data0 /dev/shm/data1 > /tmp/sums
# While the host populates, each node's first CPU copies its data over and over and checks each copy, so
# guest writes race the host's populates (a populate that rewrote a page could lose some). The host is
# told to go on once each has made its first copy.
for node in 0 1; do
  taskset -c $((node * 2)) sh -c 'want=$(grep data$1 /tmp/sums); want=${want%% *}; n=0; bad=0
    while [ ! -e /tmp/stop ]; do
      cat /dev/shm/data$1 > /dev/shm/copy$1
      got=$(sha256sum /dev/shm/copy$1)
      [ "${got%% *}" = "$want" ] || bad=$((bad + 1))
      n=$((n + 1))
      [ $n = 1 ] && touch /tmp/copied$1
    done
    echo "$n $bad" > /tmp/copies$1' sh $node &
done
while [ ! -e /tmp/copied0 ] || [ ! -e /tmp/copied1 ]; do sleep 0.1; done
echo "=== data written, copying; waiting for the host"
read -t 120 line
echo "=== the host says: $line"
touch /tmp/stop
wait
sha256sum -c /tmp/sums || { echo "the guest's data changed"; status=1; }
for node in 0 1; do
  read n bad < /tmp/copies$node
  echo "node $node: $n copies of its data made while the host populated, $bad of them wrong"
  [ "$n" -gt 1 ] && [ "$bad" = 0 ] || status=1
done
for node in 1 0; do
  echo "=== ktask check-placement --node $node"
  /bin/ktask check-placement --node $node --size 64M || status=1
done
echo "=== exit status $status"
poweroff -f
INIT
vm_initramfs "$init" "$work/file-initramfs.gz"

# The console on a FIFO the script writes to (qemu's stdin), the monitor on two more; read-write opens,
# which do not wait for the other end.
rm -f "$log"
mkfifo "$monitor.in" "$monitor.out" "$console"
exec 3<>"$console" 4<>"$monitor.in" 5<>"$monitor.out"
cat <&5 > "$work/file-monitor.log" &
drain=$!
monitor() { echo "$1" >&4; }
# Waits until the file holds the pattern (grep -E), at most $3 seconds, while qemu runs.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -Eq "$2" "$1" 2>/dev/null; do
    kill -0 "$qemu" 2>/dev/null || { echo "vm-file-check: qemu ended early; see $log" >&2; vm_console "$log"; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "vm-file-check: no \"$2\" in $1 after $3 s; see $log" >&2; vm_console "$log"; exit 1; }
    sleep 0.2
  done
}

memory=()
for i in 0 1; do
  memory+=(-object "memory-backend-file,id=m$i,mem-path=${files[i]},size=${node_mib}M,share=on,prealloc=off")
done
qemu-system-x86_64 -machine q35,accel=tcg -m $((2 * node_mib))M -smp 4 "${memory[@]}" \
  -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,cpus=2-3,memdev=m1 \
  -kernel "$work/vmlinuz" -initrd "$work/file-initramfs.gz" \
  -append "console=ttyS0 quiet panic=-1 rdinit=/init" -display none -serial stdio \
  -monitor "pipe:$monitor" -pidfile "$pidfile" -no-reboot <&3 > "$log" 2>&1 &
qemu=$!
wait_for "$log" "=== data written, copying" 100
pid=$(cat "$pidfile")

echo "=== host: the guest is running (qemu pid $pid)"
for i in 0 1; do
  resident_on_node "$i" "guest running"
  # qemu's mapping of the file: the pages the guest touched, each on the host node (N<node>=<pages>).
  maps=$(grep -F "file=${files[i]} " "/proc/$pid/numa_maps" || true)
  onNodes=$(grep -o ' N[0-9]*=[0-9]*' <<<"$maps" | tr -d ' ' | tr '\n' ' ')
  echo "guest running: file $i: qemu's numa_maps: ${onNodes:-nothing mapped}"
  [ -n "$maps" ] || fail "guest running: file $i not in /proc/$pid/numa_maps"
  for entry in $onNodes; do
    node=${entry%%=*}
    [ "${node#N}" = "${hosts[i]}" ] || fail "guest running: file $i: qemu maps ${entry#*=} pages on host node ${node#N}"
  done
done

echo "=== host: the guest paused: checksums before and after populate, read and --write"
monitor stop
monitor "info status"
wait_for "$work/file-monitor.log" "VM status: paused" 20
for i in 0 1; do
  before=$(b2sum < "${files[i]}")
  resident_on_node "$i" "guest paused"
  resident_on_node "$i" "guest paused" --write --nodes "${hosts[i]}"
  after=$(b2sum < "${files[i]}")
  if [ "$before" = "$after" ]; then echo "guest paused: file $i: checksum unchanged (${before:0:16}...)"
  else fail "guest paused: file $i: checksum ${before:0:16}... became ${after:0:16}..."; fi
done
monitor cont

# While the guest copies: populate each file, read and --write, round after round for 5 s.
echo "=== host: the guest running again: populate read and --write, round after round for 5 s"
rounds=0 quiet=1 end=$((SECONDS + 5))
while [ $SECONDS -lt $end ] || [ $rounds = 0 ]; do
  for i in 0 1; do
    resident_on_node "$i" "guest running, round $((rounds + 1))"
    resident_on_node "$i" "guest running, round $((rounds + 1))" --write --nodes "${hosts[i]}"
  done
  rounds=$((rounds + 1))
done
quiet=
echo "guest running: $rounds rounds of populate read and --write on each file; every page resident and on its node before each"
echo "populated $rounds rounds while running" >&3

wait_for "$log" "=== exit status" 60
echo "=== guest"
if wait "$qemu"; then :; else echo "qemu exited with status $?"; fi
qemu=
vm_console "$log"
grep -q '=== exit status' "$log" || fail "the guest did not finish; see $log"
grep -q '=== exit status 0' "$log" || fail "the guest's checks failed"

echo "=== host: the guest has exited"
for i in 0 1; do resident_on_node "$i" "guest exited"; done

echo "=== vm-file-check: $([ $status = 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s (after the build)"
exit $status
