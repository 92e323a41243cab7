#!/usr/bin/env bash
# Builds the packages into dist/: the .deb with Debian's own tools (dpkg-buildpackage, then
# lintian) and the .rpm with rpmbuild (Debian's rpm package), from one release build of the
# working tree. Not part of the test run; tests/tests/package.rs builds and installs the
# .deb the same way from the test build's binaries.
#
#   ci/package.sh            # dist/g3proxy_VERSION_ARCH.deb, dist/g3proxy-VERSION-1.ARCH.rpm
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

missing=()
command -v dh >/dev/null || missing+=(debhelper)
command -v lintian >/dev/null || missing+=(lintian)
command -v rpmbuild >/dev/null || missing+=(rpm)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# One version in three places: the crates', the Debian changelog's (a native package) and
# the spec's.
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb_version=$(sed -n '1s/^g3proxy (\(.*\)).*/\1/p' debian/changelog)
rpm_version=$(sed -n 's/^Version: *//p' rhel/g3proxy.spec)
if [ "$deb_version" != "$version" ] || [ "$rpm_version" != "$version" ]; then
    echo "versions differ: Cargo.toml $version, debian/changelog $deb_version, rhel/g3proxy.spec $rpm_version" >&2
    exit 1
fi
cargo build --release --workspace --bins
bins=$root/target/release

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The tracked and new files of the working tree (not target/ or dist/), as a source tree.
src=$work/g3proxy-$version
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | grep -zv '^dist/' \
    | tar --null -T - -cf - | tar -xf - -C "$src"
mkdir -p "$root/dist"

# .deb: dpkg-buildpackage writes its results beside the source tree. Build-Depends name
# Debian's cargo and rustc, which this machine has from rustup instead: -d.
(cd "$src" && G3PROXY_BIN_DIR=$bins dpkg-buildpackage -b -us -uc -d >"$work/deb.log" 2>&1) \
    || { tail -n 40 "$work/deb.log"; exit 1; }
deb=$(ls "$work"/g3proxy_"$version"_*.deb)
cp "$deb" "$root/dist/"
deb=$root/dist/$(basename "$deb")
echo "built $deb"
lintian --fail-on error,warning "$deb"

# .rpm: the same tree as Source0; BuildRequires are Fedora's names, so --nodeps.
tar -czf "$work/g3proxy-$version.tar.gz" -C "$work" "g3proxy-$version"
mkdir -p "$work/rpm/SOURCES"
cp "$work/g3proxy-$version.tar.gz" "$work/rpm/SOURCES/"
rpmbuild -bb --nodeps --define "_topdir $work/rpm" --define "g3proxy_bin_dir $bins" \
    rhel/g3proxy.spec >"$work/rpm.log" 2>&1 || { tail -n 40 "$work/rpm.log"; exit 1; }
find "$work/rpm/RPMS" -name '*.rpm' -exec cp {} "$root/dist/" \;
for rpm in "$root"/dist/*.rpm; do
    echo "built $rpm"
    rpm -qlp "$rpm"
done
