# Sourced by the qemu checks (numa-vm-check.sh, vm-file-check.sh), from the repository root: what their
# guests are made of. Debian's kernel, unpacked from its package (no install, no modules needed), a ktask
# built with the Swift stdlib linked in, and a busybox initramfs around an init script.
#   vm_prepare             installs qemu-system-x86, busybox-static, cpio where missing (apt-get, as root),
#                          fetches the kernel and builds ktask; sets work, binary
#   vm_initramfs INIT OUT  packs the init script INIT, ktask, busybox and scripts/guest-lib.sh (the init's
#                          helpers, at /bin/guest-lib.sh) into the initramfs OUT; vm_tools (more
#                          busybox applets) and vm_host_binaries (host programs, with their libraries) add to it
#   vm_console LOG         the guest's console from "=== nodes" (its init's first line) to "=== exit status",
#                          as plain text
#   vm_big_machine         sets vm_big_args: qemu options for 16 CPUs on 4 nodes of 4 CPUs and 512 MiB, and a
#                          memory-only node 4 whose initiator is node 2 (HMAT: near = own node, 2 -> 4)
#   vm_boot INITRAMFS LOG MEMORY ARGS...  boots the guest (TCG, at most 300 s), its console into LOG
#   vm_cannot WHY          says why this machine cannot run the check and exits 77
# Set vm_name (the messages' prefix) before sourcing.
vm_name=${vm_name:-$(basename "$0" .sh)}
work=.build-vm
binary=.build-static/release/ktask
mkdir -p "$work"

vm_cannot() { echo "$vm_name: skipped: $*" >&2; exit 77; }

vm_prepare() {
  local need=() image
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ldd /bin/busybox 2>&1 | grep -q "not a dynamic" || need+=(busybox-static)
  command -v cpio >/dev/null || need+=(cpio)
  if [ ${#need[@]} -gt 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } \
      || vm_cannot "could not install ${need[*]}"
  fi
  # The kernel: Debian's current one.
  if [ ! -f "$work/vmlinuz" ]; then
    image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$image" ] || vm_cannot "no linux-image-amd64 package known to apt"
    (cd "$work" && rm -f linux-image-*.deb && apt-get download "$image" >/dev/null 2>&1) || vm_cannot "could not download $image"
    rm -rf "$work/kernel" && dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
    cp "$work"/kernel/boot/vmlinuz-* "$work/vmlinuz"
  fi
  # ktask with the Swift runtime linked in: the guest has only glibc, copied below.
  swift build -c release --static-swift-stdlib --product ktask --scratch-path .build-static >/dev/null
}

vm_initramfs() {
  local init=$1 out=$2 root lib tool
  root="$out.d"
  rm -rf "$root" && mkdir -p "$root"/{bin,proc,sys,dev,tmp}
  cp "$binary" "$root/bin/ktask"
  cp /bin/busybox "$root/bin/busybox"
  for tool in sh mount poweroff cat echo taskset grep mkdir dd sha256sum touch ${vm_tools:-}; do ln -s busybox "$root/bin/$tool"; done
  for tool in ${vm_host_binaries:-}; do cp "$(command -v "$tool")" "$root/bin/$(basename "$tool")"; done
  # The shared libraries ktask (and the host programs) need, at the same paths, and the dynamic loader.
  for lib in $(for tool in "$binary" ${vm_host_binaries:-}; do ldd "$(command -v "$tool")"; done | grep -o '/[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
  done
  cp scripts/guest-lib.sh "$root/bin/guest-lib.sh"
  cp "$init" "$root/init" && chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
}

vm_console() {
  sed -n '/=== nodes/,/=== exit status/p' "$1" | tr -d '\r' | sed 's/\x1bc//g; s/\x1b\[[0-9;?]*[a-zA-Z]//g'
}

vm_big_machine() {
  local node initiator target near
  vm_big_args=()
  for node in 0 1 2 3; do
    vm_big_args+=(-object "memory-backend-ram,id=m$node,size=512M"
                  -numa "node,nodeid=$node,cpus=$((node * 4))-$((node * 4 + 3)),memdev=m$node,initiator=$node")
  done
  vm_big_args+=(-object memory-backend-ram,id=m4,size=512M -numa node,nodeid=4,memdev=m4,initiator=2)
  # HMAT needs a latency and a bandwidth for every initiator and target.
  for initiator in 0 1 2 3; do
    for target in 0 1 2 3 4; do
      near=$([ "$initiator" = "$target" ] || { [ "$initiator" = 2 ] && [ "$target" = 4 ]; } && echo 1 || echo 0)
      vm_big_args+=(-numa "hmat-lb,initiator=$initiator,target=$target,hierarchy=memory,data-type=access-latency,latency=$((near ? 10 : 30))")
      vm_big_args+=(-numa "hmat-lb,initiator=$initiator,target=$target,hierarchy=memory,data-type=access-bandwidth,bandwidth=$((near ? 200 : 100))M")
    done
  done
  vm_big_args+=(-smp 16)
}

# Software emulation, multi-threaded: nested KVM is not dependable here (it hangs).
vm_boot() {
  local initramfs=$1 log=$2 memory=$3
  shift 3
  timeout 300 qemu-system-x86_64 -machine q35,hmat=on -accel tcg,thread=multi -m "$memory" "$@" \
    -kernel "$work/vmlinuz" -initrd "$initramfs" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init" -nographic -no-reboot > "$log" 2>&1 || true
  vm_console "$log"
  grep -q '=== exit status' "$log" || { echo "$vm_name: the guest did not finish; see $log" >&2; exit 1; }
  grep -q '=== exit status 0' "$log"
}
