# Sourced by the qemu guests' init scripts (busybox sh), from /bin/guest-lib.sh: the checks' shared helpers.
status=0
fail() { echo "FAILED: $*"; status=1; }
# A field of one-line JSON: a number, a string or a flat object.
field() { echo "$2" | sed -n "s/.*\"$1\":\({[^}]*}\|[^,}]*\).*/\1/p"; }
# A JSON array field: [1,2,3].
list() { echo "$2" | sed -n "s/.*\"$1\":\(\[[^]]*\]\).*/\1/p"; }
# ktask bench's JSON row for N threads (rows start with their first key, "chunks").
row() { echo "$2" | sed 's/{"chunks"/\n{"chunks"/g' | grep "\"threads\":$1,"; }
# {"0":3,"1":4} -> "3 4" (the values, in node order).
values() { echo "$1" | tr -d '{}"' | tr ',' '\n' | cut -d: -f2 | tr '\n' ' '; }
sum() { s=0; for v in $1; do s=$((s + v)); done; echo $s; }
# The guest's file systems.
mount_guest() {
  mount -t proc proc /proc
  mount -t sysfs sys /sys
  mount -t devtmpfs dev /dev 2>/dev/null
  mkdir -p /dev/shm /run /tmp && mount -t tmpfs tmpfs /dev/shm && mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /tmp
}
