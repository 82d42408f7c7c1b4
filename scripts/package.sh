#!/usr/bin/env bash
# Packages the `ktask` tool for a machine without Swift (issue 23), from a checkout, with no network:
#   .build/package/ktask-VERSION-linux-ARCH.tar.gz  the files below under usr/, to unpack into / or /usr/local/..
#   .build/package/ktask_VERSION_DEBARCH.deb        the same files as a Debian package (dpkg-deb)
# Files: usr/bin/ktask (Swift runtime linked in with --static-swift-stdlib, stripped; needs glibc, libstdc++
# and libgcc_s, which Debian has everywhere), the manual page usr/share/man/man1/ktask.1.gz (from
# swift-argument-parser's generate-manual plugin: every subcommand), bash, zsh and fish completions where
# Debian puts them, and usr/share/doc/ktask/{README.md,CHANGELOG.md,LICENSE,copyright} with
# examples/ktask-populate@.service (a guest's RAM file populated before its VM starts).
# The version is the one `ktask --version` prints (Sources/ktask/KTaskCommand.swift: its only source).
# Prints the two paths. scripts/package-check.sh installs and tests them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/package
swift build -c release --static-swift-stdlib --product ktask --scratch-path .build-static >&2
binary=.build-static/release/ktask
version=$("$binary" --version)
debarch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
arch=$(uname -m)
stage="$out/ktask_${version}_$debarch"
rm -rf "$stage" && mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/share/man/man1" \
  "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/doc/ktask/examples"

strip -o "$stage/usr/bin/ktask" "$binary"
# The manual page: one page covering every subcommand; empty lines of the help text become paragraphs
# (mdoc warns about empty lines). Dated by the last commit, so that a rebuild is the same file.
swift package plugin generate-manual --date "$(git log -1 --format=%cs 2>/dev/null || date +%F)" >&2
sed 's/^$/.Pp/' .build/plugins/GenerateManual/outputs/ktask/ktask.1 | gzip -9n > "$stage/usr/share/man/man1/ktask.1.gz"
"$stage/usr/bin/ktask" --generate-completion-script bash > "$stage/usr/share/bash-completion/completions/ktask"
"$stage/usr/bin/ktask" --generate-completion-script zsh > "$stage/usr/share/zsh/vendor-completions/_ktask"
"$stage/usr/bin/ktask" --generate-completion-script fish > "$stage/usr/share/fish/vendor_completions.d/ktask.fish"
cp README.md CHANGELOG.md LICENSE "$stage/usr/share/doc/ktask/"
cp scripts/ktask-populate@.service "$stage/usr/share/doc/ktask/examples/"
cat > "$stage/usr/share/doc/ktask/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ktask
Files: *
License: Apache-2.0
 The full text is in /usr/share/doc/ktask/LICENSE.
EOF
chmod -R u+rwX,go+rX,go-w "$stage/usr"
size=$(du -k "$stage/usr" | tail -n 1 | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: ktask
Version: $version
Architecture: $debarch
Maintainer: ktask developers <ktask@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.31), libstdc++6, libgcc-s1
Section: utils
Priority: optional
Homepage: https://github.com/ktask/ktask
Description: multithread big CPU-intensive jobs the way the kernel's ktask did
 ktask populate allocates a VM's RAM file (tmpfs, hugetlbfs) or reads a file into
 the page cache on every CPU, at the lowest priority; ktask bench and compare
 measure the scaling table; ktask info shows the CPUs, nodes and limits it sees.
EOF
deb="$out/ktask_${version}_$debarch.deb"
dpkg-deb --build --root-owner-group -Zgzip "$stage" "$deb" >&2
tarball="$out/ktask-$version-linux-$arch.tar.gz"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$tarball" usr
echo "package: ktask $version: $(du -h "$stage/usr/bin/ktask" | cut -f1) binary; $deb; $tarball" >&2
echo "$deb"
echo "$tarball"
