#!/usr/bin/env bash
# Checks the package scripts/package.sh makes (issue 23), as an operator would meet it:
#   - on a system without Swift: the tarball unpacked into an empty root that holds only glibc, libstdc++,
#     libgcc_s (the package's Depends) and a static busybox, chrooted into in a private mount namespace:
#     `ktask --version` is the package's version, `ktask info`, a short bench and a populate of a tmpfs file
#     there work;
#   - the manual page: groff reports no warnings, `man -l` renders every subcommand; the bash completion
#     script parses;
#   - dpkg -i installs it (where no ktask package is installed already: an existing one is never touched),
#     dpkg -L lists the man page, completions and docs, the example unit passes `systemd-analyze verify`,
#     and dpkg --purge leaves none of its files behind.
# Exit status: 0 passed, 1 a check failed, 77 this machine cannot run it (not root, no dpkg-deb, unshare).
set -euo pipefail
cd "$(dirname "$0")/.."
cannot() { echo "package-check: skipped: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || cannot "needs root (chroot, mounts, dpkg -i)"
for tool in dpkg-deb dpkg unshare chroot groff man; do command -v $tool >/dev/null || cannot "no $tool"; done
[ -x /bin/busybox ] && { ldd /bin/busybox 2>&1 || true; } | grep -q "not a dynamic" || cannot "no static busybox (busybox-static)"

mapfile -t made < <(scripts/package.sh)
deb=${made[0]} tarball=${made[1]}
version=$(dpkg-deb -f "$deb" Version)
status=0
fail() { echo "FAILED: $*"; status=1; }
root=$(mktemp -d) unit=$(mktemp -d)
cleanup() { rm -rf "$root" "$unit"; }
trap cleanup EXIT

echo "=== a root without Swift: $tarball"
tar -xzf "$tarball" -C "$root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/busybox"
for tool in sh cat grep; do ln -s busybox "$root/bin/$tool"; done
for lib in $(ldd "$root/usr/bin/ktask" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"
done
[ -z "$(find "$root" -name 'libswift*' -o -name 'libFoundation*' | head -1)" ] || fail "Swift libraries in the root"
echo "root holds: $(cd "$root" && find . -type f | grep -v '^./usr/share' | sort | tr '\n' ' ')"
# A private mount namespace: /proc, /sys and a tmpfs /dev/shm inside the root go away with it.
unshare -m sh -c '
  root=$1 version=$2
  mount -t proc proc "$root/proc" && mount -t sysfs sys "$root/sys" && mount -t tmpfs tmpfs "$root/dev"
  mknod "$root/dev/null" c 1 3 && chmod 666 "$root/dev/null" && mkdir "$root/dev/shm"
  run() { echo "\$ ktask $*"; chroot "$root" /usr/bin/ktask "$@"; }
  [ "$(chroot "$root" /usr/bin/ktask --version)" = "$version" ] || { echo "FAILED: ktask --version is not $version"; exit 1; }
  echo "ktask --version: $version"
  run info | head -12 || exit 1
  run bench --workload compute --threads 1,2 --runs 1 --size 1M 2>/dev/null || exit 1
  run populate /dev/shm/guest-ram --size 16M --write || exit 1
' sh "$root" "$version" || fail "ktask in a root without Swift"

echo "=== the manual page and completions"
page="$root/usr/share/man/man1/ktask.1.gz"
warnings=$(zcat "$page" | groff -mandoc -ww -z 2>&1)
[ -z "$warnings" ] || fail "groff warns: $warnings"
rendered=$(MANWIDTH=100 man -l "$page" 2>/dev/null)
for command in bench compare tune populate info check-placement; do
  echo "$rendered" | grep -q "^ *$command" || fail "the manual page has no $command"
done
echo "man -l: $(echo "$rendered" | wc -l) lines, every subcommand"
bash -n "$root/usr/share/bash-completion/completions/ktask" || fail "the bash completion does not parse"

echo "=== dpkg -i, -L, --purge"
if dpkg -s ktask >/dev/null 2>&1; then
  echo "a ktask package is installed here already: not touched, install test skipped"
else
  dpkg -i "$deb" >/dev/null || fail "dpkg -i"
  files=$(dpkg -L ktask)
  for path in /usr/bin/ktask /usr/share/man/man1/ktask.1.gz /usr/share/bash-completion/completions/ktask \
      /usr/share/zsh/vendor-completions/_ktask /usr/share/fish/vendor_completions.d/ktask.fish \
      /usr/share/doc/ktask/README.md /usr/share/doc/ktask/CHANGELOG.md /usr/share/doc/ktask/LICENSE; do
    echo "$files" | grep -qx "$path" || fail "dpkg -L has no $path"
  done
  [ "$(/usr/bin/ktask --version)" = "$version" ] || fail "installed ktask --version"
  cp /usr/share/doc/ktask/examples/ktask-populate@.service "$unit/ktask-populate@check.service"
  verify=$(systemd-analyze verify "$unit/ktask-populate@check.service" 2>&1) || fail "systemd-analyze verify: $verify"
  echo "systemd-analyze verify: ${verify:-no complaint}"
  dpkg --purge ktask >/dev/null || fail "dpkg --purge"
  for path in $files; do
    [ -d "$path" ] || [ ! -e "$path" ] || fail "left behind: $path"
  done
  [ ! -e /usr/share/doc/ktask ] || fail "left behind: /usr/share/doc/ktask"
  echo "installed $(echo "$files" | wc -l) paths, removed every file"
fi
echo "=== package-check: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
