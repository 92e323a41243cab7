#!/usr/bin/env bash
# Installs the Debian packages that building and testing need, when they are missing:
# libc-ares-dev + pkg-config (the c-ares resolver links the system library), curl (a real
# client in the end-to-end tests), systemd (systemd-analyze verifies the unit), wrk (the
# high-rate zero-loss scenarios), openssl (test certificates, s_client for mTLS), python3 (a
# peer running as another uid in the control-plane tests) with h11 and msgpack, Node.js (the origin
# parsers of the HTTP/1 differential test), nmap and iproute2 (the open-proxy scan from a test
# host in a network namespace), nftables (TPROXY rules for tcp_tproxy in namespaces), slapd
# (a real LDAP directory for ldap user groups; Debian does not start it, the test does),
# unbound (a real name server for the resolvers: UDP, TCP, DoT, DoH; the test starts its own),
# rsyslog (a real syslog server for task logs; the test starts its own on loopback UDP),
# debhelper and binutils (the package test builds the .deb with dpkg-buildpackage).
set -euo pipefail
need=()
dpkg -s libc-ares-dev >/dev/null 2>&1 || need+=(libc-ares-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v curl >/dev/null || need+=(curl)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
command -v node >/dev/null || need+=(nodejs)
command -v nmap >/dev/null || need+=(nmap)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need+=(nftables)
[ -x /usr/sbin/slapd ] || need+=(slapd)
[ -x /usr/sbin/unbound ] || need+=(unbound)
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
command -v dh >/dev/null || need+=(debhelper)
command -v strip >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Python packages for whichever python3 the tests will run: PyPI first, Debian's package as
# a fallback. h11 parses HTTP/1 in the differential test; msgpack speaks g3proxy's agent
# protocol in the route_query test's agent; aioquic serves DNS over QUIC and over HTTP/3 in
# front of unbound in the resolver test.
for module in h11 msgpack aioquic; do
    if ! python3 -c "import $module" 2>/dev/null; then
        python3 -m pip install -q "$module" 2>/dev/null \
            || python3 -m pip install -q --break-system-packages "$module" 2>/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "python3-$module" >/dev/null; }
        python3 -c "import $module" || { echo "ci/setup.sh: cannot install $module for $(command -v python3)" >&2; exit 1; }
    fi
done
