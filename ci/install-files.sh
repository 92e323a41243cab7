#!/bin/sh
# Installs what the .deb and the .rpm hold into DESTDIR, so that both packages carry the same
# files: the binaries, the systemd template unit, man pages and bash / zsh / fish completions
# (made by the binaries from their own option definitions), the docs and the examples. Run
# from the source tree; debian/rules and rhel/g3proxy.spec call it with their own places.
#
#   ci/install-files.sh BIN_DIR DESTDIR UNIT_DIR ZSH_COMPLETION_DIR
set -eu
bins=$1
dest=$2
unit_dir=$3
zsh_dir=$4
doc=$dest/usr/share/doc/g3proxy

for bin in g3proxy g3proxy-worker g3proxy-ctl; do
    install -D -m 0755 "$bins/$bin" "$dest/usr/bin/$bin"
done
install -D -m 0644 systemd/g3proxy@.service "$dest$unit_dir/g3proxy@.service"

generated=$(mktemp -d)
trap 'rm -rf "$generated"' EXIT
for bin in g3proxy g3proxy-ctl; do
    "$bins/$bin" --manpage >"$generated/$bin.1"
    "$bins/$bin" --completion bash >"$generated/$bin.bash"
    "$bins/$bin" --completion zsh >"$generated/_$bin"
    "$bins/$bin" --completion fish >"$generated/$bin.fish"
    install -D -m 0644 "$generated/$bin.1" "$dest/usr/share/man/man1/$bin.1"
    install -D -m 0644 "$generated/$bin.bash" "$dest/usr/share/bash-completion/completions/$bin"
    install -D -m 0644 "$generated/_$bin" "$dest$zsh_dir/_$bin"
    install -D -m 0644 "$generated/$bin.fish" "$dest/usr/share/fish/vendor_completions.d/$bin.fish"
done
install -D -m 0644 docs/g3proxy-worker.1 "$dest/usr/share/man/man1/g3proxy-worker.1"

install -D -m 0644 etc/main.yml "$doc/examples/default/main.yml"
cp -r examples/. "$doc/examples/"
for file in README.md ARCHITECTURE.md docs/runbooks.md; do
    install -D -m 0644 "$file" "$doc/$(basename "$file")"
done
