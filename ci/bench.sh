#!/usr/bin/env bash
# Benchmarks on loopback, in one interleaved run (direct, g3proxy, Squid for each round), and
# prints medians as ratios:
#   - CONNECT single-stream throughput (2 GiB from nginx through an HTTP CONNECT tunnel, read
#     by one small client with 1 MiB buffers, the same client for every path)
#   - SOCKS5 single-stream throughput (Squid has no SOCKS5 server: compared to Squid's CONNECT)
#   - HTTP forward small requests/s with keep-alive (wrk, absolute-URI requests)
#   - RSS of the supervisor, and of a worker and of Squid holding 2,000 idle tunnels
#   - TLS: new handshakes/s (wrk, `Connection: close`, one request per TLS connection) on a
#     plain_tls_port in front of http_proxy, and single-stream throughput through an HTTPS
#     proxy (TLS to the proxy, CONNECT inside), each beside HAProxy terminating the same TLS
#     (P-256 certificate, TCP mode to nginx)
#   - tcp_stream: single-stream throughput and keep-alive small requests/s through a
#     tcp_stream to nginx, beside HAProxy in TCP mode doing the same
#   - http_rproxy: keep-alive small requests/s through a reverse proxy to nginx, beside
#     HAProxy in HTTP mode and nginx as a reverse proxy (each with X-Forwarded-For and kept
#     upstream connections), in the default runtime and with a worker process per core
#   - HTTP forward keep-alive small requests/s with StatsD metrics and task logs (syslog over
#     UDP, and fluentd over TCP) on (groups whose only difference is their stat and log
#     sections), beside the same without; and the worker's CPU time per request in each
#   - HTTP forward keep-alive small requests/s with Basic auth (a user group of 100 static
#     users and 10,000 dynamic ones from a file; a static and a dynamic user logging in),
#     beside the same proxy without users
#   - chaining: keep-alive small requests/s through two of ours (an http_proxy whose
#     proxy_http escaper forwards to the first group's http_proxy), beside one of ours
#   - resolvers with a warm cache: keep-alive small requests/s to a name (each request a
#     cached lookup: c-ares, and hickory, asking Debian's unbound on loopback), beside the
#     same requests to the address
#   Where G3PROXY_BIN names a g3proxy binary, it runs the same forward, chain, name and logging
#   cases in the same run, and its figures are printed beside ours.
# Not part of the tests. Usage: ci/bench.sh [ROUNDS (default 5)]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
TUNNELS=${TUNNELS:-2000}

need=()
for tool in squid nginx wrk curl haproxy; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
    pkgs=()
    for tool in "${need[@]}"; do [ "$tool" = nginx ] && pkgs+=(nginx-light) || pkgs+=("$tool"); done
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
ci/setup.sh
cargo build --release --workspace --bins 2>&1 | tail -1
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/g3bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/run/bench.sock" ] && target/release/g3proxy-ctl -C "$work/run" -G bench force-quit-all >/dev/null 2>&1 || true
    [ -f "$work/run-w/bench-w.sock" ] && target/release/g3proxy-ctl -C "$work/run-w" -G bench-w force-quit-all >/dev/null 2>&1 || true
    pkill -f "g3proxy-worker" -P "$(cat "$work/g3.pid" 2>/dev/null || echo 0)" 2>/dev/null || true
    pkill -f "g3proxy-worker" -P "$(cat "$work/g3w.pid" 2>/dev/null || echo 0)" 2>/dev/null || true
    pkill -f "g3proxy-worker" -P "$(cat "$work/g3c.pid" 2>/dev/null || echo 0)" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Every port at once, held together while they are picked: distinct from one another.
read -r P_ORIGIN P_HTTP P_SOCKS P_SQUID P_ECHO P_TLSPORT P_HTTPS P_HAPROXY P_STREAM P_HAPROXY_TCP P_RPROXY P_HAPROXY_HTTP P_NGINX_PROXY P_RPROXY_W P_AUTH P_STAT P_STATSD P_DNS P_CHAIN P_NAMED P_NAMED_H P_G3_HTTP P_G3_CHAIN P_G3_NAMED P_FLUENT P_STAT_F P_G3_STAT P_G3_STAT_F < <(python3 - 28 <<'PY'
import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
)

# One P-256 certificate for every TLS endpoint.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/tls.key" -out "$work/tls.pem" 2>/dev/null
cat "$work/tls.pem" "$work/tls.key" > "$work/haproxy.pem"

# Origin: nginx with a small answer and a 2 GiB sparse file.
mkdir -p "$work/www"
truncate -s 2G "$work/www/big"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$P_ORIGIN backlog=4096;
        root $work/www;
        location = /small { return 200 "hello"; }
    }
}
CONF
nginx -c "$work/nginx.conf" & pids+=($!)

# nginx as a reverse proxy in front of the origin: a process of its own, one worker per core
# (as g3proxy has a thread per core), kept upstream connections.
mkdir -p "$work/nginx-proxy"
cat > "$work/nginx-proxy.conf" <<CONF
worker_processes $(nproc);
daemon off;
pid $work/nginx-proxy/nginx.pid;
error_log $work/nginx-proxy/error.log;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream origin { server 127.0.0.1:$P_ORIGIN; keepalive 64; }
    server {
        listen 127.0.0.1:$P_NGINX_PROXY backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_buffering off;
        }
    }
}
CONF
nginx -c "$work/nginx-proxy.conf" & pids+=($!)

# Echo server for idle tunnels.
python3 - "$P_ECHO" <<'PY' & pids+=($!)
import asyncio, sys
async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
asyncio.run(main())
PY

# Users for the auth case: 100 static, 10,000 dynamic, each with a salted md5+sha1 token of
# the password "bench" (g3's fast hash: hash(password || salt)).
python3 - "$work" <<'PY'
import hashlib, json, os, sys
work = sys.argv[1]
def token(i):
    salt = os.urandom(8)
    return {"salt": salt.hex(), "md5": hashlib.md5(b"bench" + salt).hexdigest(),
            "sha1": hashlib.sha1(b"bench" + salt).hexdigest()}
with open(f"{work}/static-users.yml", "w") as f:
    for i in range(100):
        t = token(i)
        f.write(f"      - name: static{i}\n        token: {{salt: {t['salt']}, md5: {t['md5']}, sha1: {t['sha1']}}}\n")
with open(f"{work}/dynamic-users.json", "w") as f:
    json.dump([{"name": f"dynamic{i}", "token": token(i)} for i in range(10000)], f)
PY

# g3proxy with its default runtime (one worker process, one thread per core).
modules="resolver:
  - {name: default, type: c-ares}
escaper:
  - name: default
    type: direct_fixed
    resolver: default
    egress_network_filter: {default: forbid, permit: 127.0.0.0/8}"
mkdir -p "$work/run"
cat > "$work/g3proxy.yml" <<CONF
$modules
server:
  - {name: http, type: http_proxy, escaper: default, listen: "127.0.0.1:$P_HTTP"}
  - {name: socks, type: socks_proxy, escaper: default, listen: "127.0.0.1:$P_SOCKS"}
  - name: tlsport
    type: plain_tls_port
    listen: "127.0.0.1:$P_TLSPORT"
    server: http
    tls_server: {certificate: tls.pem, private_key: tls.key}
  - name: https
    type: http_proxy
    escaper: default
    listen: "127.0.0.1:$P_HTTPS"
    tls_server: {certificate: tls.pem, private_key: tls.key}
  - name: stream
    type: tcp_stream
    escaper: default
    listen: "127.0.0.1:$P_STREAM"
    upstream: "127.0.0.1:$P_ORIGIN"
  - name: rproxy
    type: http_rproxy
    escaper: default
    listen: "127.0.0.1:$P_RPROXY"
    hosts: {upstream: "127.0.0.1:$P_ORIGIN"}
  - name: auth
    type: http_proxy
    escaper: default
    user_group: bench
    listen: "127.0.0.1:$P_AUTH"
user_group:
  - name: bench
    source: {type: file, path: dynamic-users.json}
    # Not read again during the run: the memory of idle tunnels is measured in this worker.
    refresh_interval: 1h
    static_users:
$(cat "$work/static-users.yml")
CONF
target/release/g3proxy -c "$work/g3proxy.yml" -G bench -C "$work/run" 2>"$work/g3proxy.log" & pids+=($!)
echo $! > "$work/g3.pid"

# The same forward proxy with metrics and task logs on (StatsD, and syslog over UDP), into a
# receiver that reads and drops every datagram (a port nobody reads would answer each one
# with an ICMP error, which a real syslog spares the proxy).
python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    s.recv(65536)
' "$P_STATSD" & pids+=($!)
# A forward proxy with metrics on and task logs through $3, listening on $2: the config
# $work/$1.yml, for ours and (with G3PROXY_BIN) for g3proxy.
logging_config() { # name port task_log_driver
    cat > "$work/$1.yml" <<CONF
stat: {target: {udp: "127.0.0.1:$P_STATSD"}, emit_interval: 200ms}
log: {task: $3}
$modules
server:
  - {name: http, type: http_proxy, escaper: default, listen: "127.0.0.1:$2"}
CONF
}
syslog_driver="{syslog: {target_udp: \"127.0.0.1:$P_STATSD\"}}"
fluentd_driver="{fluentd: {address: \"127.0.0.1:$P_FLUENT\"}}"
mkdir -p "$work/run-s"
logging_config g3proxy-s "$P_STAT" "$syslog_driver"
target/release/g3proxy -c "$work/g3proxy-s.yml" -G bench-s -C "$work/run-s" 2>"$work/g3proxy-s.log" & pids+=($!)

# The same with task logs to fluentd (the forward protocol over TCP, written in batches) into
# a receiver that reads and drops the stream.
python3 -c '
import socket, sys, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(8)
def drain(connection):
    while connection.recv(1 << 20):
        pass
while True:
    connection, _ = listener.accept()
    threading.Thread(target=drain, args=(connection,), daemon=True).start()
' "$P_FLUENT" & pids+=($!)
mkdir -p "$work/run-f"
logging_config g3proxy-f "$P_STAT_F" "$fluentd_driver"
target/release/g3proxy -c "$work/g3proxy-f.yml" -G bench-f -C "$work/run-f" 2>"$work/g3proxy-f.log" & pids+=($!)

# A name server for the resolver cases: unbound serving bench.test on loopback.
mkdir -p "$work/unbound"
cat > "$work/unbound/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$P_DNS
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$work/unbound"
  pidfile: ""
  use-syslog: no
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "test." static
  local-data: "bench.test. 300 IN A 127.0.0.1"
remote-control:
  control-enable: no
CONF
/usr/sbin/unbound -c "$work/unbound/unbound.conf" 2>"$work/unbound/stderr.log" & pids+=($!)

# Chaining and names, in a group of their own, in front of the first group's http_proxy.
# The same config serves g3proxy itself when G3PROXY_BIN is given (its own http_proxy
# first in the chain).
chain_config() { # chain_port named_port next_hop_port [http_port]
    cat <<CONF
resolver:
  - {name: dns, type: c-ares, server: "127.0.0.1:$P_DNS"}
  - {name: hickory, type: hickory, server: 127.0.0.1, server_port: $P_DNS}
escaper:
  - {name: chain, type: proxy_http, proxy_addr: "127.0.0.1:$3"}
  - {name: named, type: direct_fixed, resolver: dns, egress_network_filter: {default: forbid, permit: 127.0.0.0/8}}
  - {name: named_h, type: direct_fixed, resolver: hickory, egress_network_filter: {default: forbid, permit: 127.0.0.0/8}}
server:
  - {name: chain, type: http_proxy, escaper: chain, listen: "127.0.0.1:$1"}
  - {name: named, type: http_proxy, escaper: named, listen: "127.0.0.1:$2"}
CONF
    if [ -n "${4:-}" ]; then
        echo "  - {name: http, type: http_proxy, escaper: named, listen: \"127.0.0.1:$4\"}"
    fi
}
mkdir -p "$work/run-c"
{ chain_config "$P_CHAIN" "$P_NAMED" "$P_HTTP"
  echo "  - {name: named_h, type: http_proxy, escaper: named_h, listen: \"127.0.0.1:$P_NAMED_H\"}"
} > "$work/g3proxy-c.yml"
target/release/g3proxy -c "$work/g3proxy-c.yml" -G bench-c -C "$work/run-c" 2>"$work/g3proxy-c.log" & pids+=($!)
echo $! > "$work/g3c.pid"
if [ -n "${G3PROXY_BIN:-}" ]; then
    chain_config "$P_G3_CHAIN" "$P_G3_NAMED" "$P_G3_HTTP" "$P_G3_HTTP" > "$work/peer-g3proxy.yml"
    "$G3PROXY_BIN" -c "$work/peer-g3proxy.yml" 2>"$work/peer-g3proxy.log" & pids+=($!)
    peer_pid=$!
    # g3proxy with the same stat and log sections as ours, each in a process of its own.
    logging_config peer-g3proxy-s "$P_G3_STAT" "$syslog_driver"
    logging_config peer-g3proxy-f "$P_G3_STAT_F" "$fluentd_driver"
    "$G3PROXY_BIN" -c "$work/peer-g3proxy-s.yml" -G peer-s 2>"$work/peer-g3proxy-s.log" & pids+=($!)
    peer_s=$!
    "$G3PROXY_BIN" -c "$work/peer-g3proxy-f.yml" -G peer-f 2>"$work/peer-g3proxy-f.log" & pids+=($!)
    peer_f=$!
fi

# The same reverse proxy in the other layout: a single-threaded worker process per core.
mkdir -p "$work/run-w"
cat > "$work/g3proxy-w.yml" <<CONF
worker: {thread_number: $(nproc), thread_number_per_runtime: 1}
$modules
server:
  - name: rproxy
    type: http_rproxy
    escaper: default
    listen: "127.0.0.1:$P_RPROXY_W"
    hosts: {upstream: "127.0.0.1:$P_ORIGIN"}
CONF
target/release/g3proxy -c "$work/g3proxy-w.yml" -G bench-w -C "$work/run-w" 2>"$work/g3proxy-w.log" & pids+=($!)
echo $! > "$work/g3w.pid"

# Squid as Debian ships it, told to allow loopback clients, any port, no cache, no logs.
mkdir -p "$work/squid"
chown proxy:proxy "$work/squid" 2>/dev/null || true
cat > "$work/squid.conf" <<CONF
http_port 127.0.0.1:$P_SQUID
acl localhost src 127.0.0.1/32
http_access allow localhost
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_store_log none
cache_log $work/squid/cache.log
pid_filename $work/squid/squid.pid
coredump_dir $work/squid
shutdown_lifetime 0 seconds
max_filedescriptors 16384
CONF
/usr/sbin/squid -N -f "$work/squid.conf" 2>"$work/squid/stderr.log" & pids+=($!)
squid_pid=$!

# HAProxy terminating the same TLS in TCP mode in front of nginx.
cat > "$work/haproxy.cfg" <<CONF
global
    maxconn 8000
    nbthread $(nproc)
    tune.ssl.default-dh-param 2048
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls
    bind 127.0.0.1:$P_HAPROXY ssl crt $work/haproxy.pem
    default_backend origin
frontend tcp
    bind 127.0.0.1:$P_HAPROXY_TCP
    default_backend origin
backend origin
    server nginx 127.0.0.1:$P_ORIGIN
frontend http
    mode http
    bind 127.0.0.1:$P_HAPROXY_HTTP
    option forwardfor
    default_backend origin_http
backend origin_http
    mode http
    http-reuse always
    server nginx 127.0.0.1:$P_ORIGIN
CONF
haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" & pids+=($!)

wait_port() {
    for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; python3 -c 'import time; time.sleep(0.05)'; done
    echo "port $1 never opened; logs:" >&2
    tail -n 20 "$work"/*.log "$work"/squid/*.log >&2 || true
    exit 1
}
for p in "$P_ORIGIN" "$P_HTTP" "$P_SOCKS" "$P_SQUID" "$P_ECHO" "$P_TLSPORT" "$P_HTTPS" "$P_HAPROXY" "$P_STREAM" "$P_HAPROXY_TCP" "$P_RPROXY" "$P_HAPROXY_HTTP" "$P_NGINX_PROXY" "$P_RPROXY_W" "$P_AUTH" "$P_STAT" "$P_STAT_F" "$P_DNS" "$P_CHAIN" "$P_NAMED" "$P_NAMED_H"; do wait_port "$p"; done
[ -n "${G3PROXY_BIN:-}" ] && for p in "$P_G3_HTTP" "$P_G3_CHAIN" "$P_G3_NAMED" "$P_G3_STAT" "$P_G3_STAT_F"; do wait_port "$p"; done

small="http://127.0.0.1:$P_ORIGIN/small"
# One client for every path, reading with 1 MiB buffers, so the client is not what limits.
cat > "$work/tput.py" <<'PY'
import socket, sys, time
mode, port, origin = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
if mode.startswith("tls"):
    import ssl
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    s = context.wrap_socket(s, server_hostname="localhost")
    mode = mode[len("tls-"):]
if mode == "connect":
    s.sendall(f"CONNECT 127.0.0.1:{origin} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
elif mode == "socks":
    s.sendall(b"\x05\x01\x00")
    s.recv(2)
    s.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + origin.to_bytes(2, "big"))
    s.recv(10)
s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
buffer = bytearray(1 << 20)
view = memoryview(buffer)
total, started = 0, time.monotonic()
while (n := s.recv_into(view)) > 0:
    total += n
print(total / (time.monotonic() - started))
PY
speed() { python3 "$work/tput.py" "$1" "$2" "$P_ORIGIN"; }
cat > "$work/forward.lua" <<LUA
wrk.path = "$small"
LUA
for who in static57 dynamic5321; do
cat > "$work/forward-$who.lua" <<LUA
wrk.path = "$small"
wrk.headers["Proxy-Authorization"] = "Basic $(printf '%s:bench' "$who" | base64)"
LUA
done
cat > "$work/named.lua" <<LUA
wrk.path = "http://bench.test:$P_ORIGIN/small"
LUA
cat > "$work/handshake.lua" <<LUA
wrk.path = "$small"
wrk.headers["Connection"] = "close"
LUA
cat > "$work/handshake-direct.lua" <<LUA
wrk.path = "/small"
wrk.headers["Connection"] = "close"
LUA
# Every requests/s case: one wrk thread, 32 connections, 5 seconds.
load() { wrk -t1 -c32 -d5s "$@"; }
rps() { load "$@" | awk '/Requests\/sec/ {print $2}'; }
# A wrk run: its requests/s recorded as $1 (rps_NAME), and as cpu_NAME the CPU time (user
# and system, all threads) process $2 took per request meanwhile, in microseconds. That is
# what the proxy pays for a request, which depends less than its requests/s on what else the
# machine runs (wrk, nginx and the log readers share its cores).
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
record_cpu() { # key pid wrk-args...
    local key=$1 pid=$2 before after out r n
    shift 2
    before=$(cpu_ticks "$pid")
    out=$(load "$@" | awk '/ requests in / {n = $1} /Requests\/sec/ {r = $2} END {print r, n}') || out=""
    after=$(cpu_ticks "$pid")
    read -r r n <<<"$out" || true
    record "$key" "${r:-}"
    record "cpu_${key#rps_}" "$(awk -v t="$((after - before))" -v hz="$HZ" -v n="${n:-0}" 'BEGIN {if (n > 0) printf "%.2f", t / hz * 1e6 / n}')"
}
# The pid of the one worker of group $2 (control directory $1).
worker_of() { # control_dir group
    target/release/g3proxy-ctl -C "$1" -G "$2" --json fleet | python3 -c 'import json,sys; f=json.load(sys.stdin)["fleet"]; print(f["generations"][0]["workers"][0]["pid"])'
}
worker_pid=$(worker_of "$work/run" bench)
worker_s=$(worker_of "$work/run-s" bench-s)
worker_f=$(worker_of "$work/run-f" bench-f)

declare -A results
record() { results[$1]="${results[$1]:-} $2"; }
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    record tput_direct "$(speed direct "$P_ORIGIN")"
    record tput_connect "$(speed connect "$P_HTTP")"
    record tput_squid "$(speed connect "$P_SQUID")"
    record tput_socks "$(speed socks "$P_SOCKS")"
    record rps_direct "$(rps "$small")"
    # The cases compared with rps_forward run right after it, the logging one last: its
    # syslog reader is still draining when wrk stops, and the next case would pay for it.
    record_cpu rps_forward "$worker_pid" -s "$work/forward.lua" "http://127.0.0.1:$P_HTTP/"
    record rps_auth_static "$(rps -s "$work/forward-static57.lua" "http://127.0.0.1:$P_AUTH/")"
    record rps_auth_dynamic "$(rps -s "$work/forward-dynamic5321.lua" "http://127.0.0.1:$P_AUTH/")"
    record rps_squid "$(rps -s "$work/forward.lua" "http://127.0.0.1:$P_SQUID/")"
    record_cpu rps_stat_fluentd "$worker_f" -s "$work/forward.lua" "http://127.0.0.1:$P_STAT_F/"
    record_cpu rps_stat "$worker_s" -s "$work/forward.lua" "http://127.0.0.1:$P_STAT/"
    record hs_g3 "$(rps -s "$work/handshake.lua" "https://127.0.0.1:$P_TLSPORT/")"
    record hs_haproxy "$(rps -s "$work/handshake-direct.lua" "https://127.0.0.1:$P_HAPROXY/")"
    record tput_https "$(speed tls-connect "$P_HTTPS")"
    record tput_haproxy "$(speed tls-direct "$P_HAPROXY")"
    record tput_stream "$(speed direct "$P_STREAM")"
    record tput_haproxy_tcp "$(speed direct "$P_HAPROXY_TCP")"
    record rps_stream "$(rps "http://127.0.0.1:$P_STREAM/small")"
    record rps_haproxy_tcp "$(rps "http://127.0.0.1:$P_HAPROXY_TCP/small")"
    record rps_rproxy "$(rps "http://127.0.0.1:$P_RPROXY/small")"
    record rps_haproxy_http "$(rps "http://127.0.0.1:$P_HAPROXY_HTTP/small")"
    record rps_nginx_proxy "$(rps "http://127.0.0.1:$P_NGINX_PROXY/small")"
    record rps_rproxy_w "$(rps "http://127.0.0.1:$P_RPROXY_W/small")"
    record rps_chain "$(rps -s "$work/forward.lua" "http://127.0.0.1:$P_CHAIN/")"
    record rps_named "$(rps -s "$work/named.lua" "http://127.0.0.1:$P_NAMED/")"
    record rps_named_h "$(rps -s "$work/named.lua" "http://127.0.0.1:$P_NAMED_H/")"
    record rps_by_address "$(rps -s "$work/forward.lua" "http://127.0.0.1:$P_NAMED/")"
    if [ -n "${G3PROXY_BIN:-}" ]; then
        record_cpu rps_g3_forward "$peer_pid" -s "$work/forward.lua" "http://127.0.0.1:$P_G3_HTTP/"
        record rps_g3_chain "$(rps -s "$work/forward.lua" "http://127.0.0.1:$P_G3_CHAIN/")"
        record rps_g3_named "$(rps -s "$work/named.lua" "http://127.0.0.1:$P_G3_NAMED/")"
        record_cpu rps_g3_stat_fluentd "$peer_f" -s "$work/forward.lua" "http://127.0.0.1:$P_G3_STAT_F/"
        record_cpu rps_g3_stat "$peer_s" -s "$work/forward.lua" "http://127.0.0.1:$P_G3_STAT/"
    fi
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m() { echo "${results[$1]}" | median; }
mb() { awk -v a="$(m "$1")" 'BEGIN {printf "%.0f", a / 1e6}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
supervisor_pid=$(cat "$work/g3.pid")

# Idle tunnels: open them all, check each echoes, then hold them while RSS is read.
hold_tunnels() { # proxy_port pid_to_measure
    python3 - "$1" "$P_ECHO" "$TUNNELS" "$2" <<'PY'
import socket, sys
proxy, echo, count, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
before = rss()
tunnels = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", proxy))
    s.sendall(f"CONNECT 127.0.0.1:{echo} HTTP/1.1\r\nHost: 127.0.0.1:{echo}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("proxy closed a tunnel")
        head += chunk
    assert b" 200 " in head.split(b"\r\n")[0], head
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    tunnels.append(s)
after = rss()
print(before, after)
PY
}
read -r g3_before g3_after < <(hold_tunnels "$P_HTTP" "$worker_pid")
read -r squid_before squid_after < <(hold_tunnels "$P_SQUID" "$squid_pid")

echo
echo "g3proxy benchmark on loopback: $ROUNDS interleaved rounds, medians ($(nproc) cores)"
printf '%-34s %12s %12s %12s %10s %10s\n' "metric" "direct" "g3proxy" "squid" "/direct" "/squid"
printf '%-34s %12.0f %12.0f %12.0f %10s %10s\n' "CONNECT throughput (MB/s)" "$(mb tput_direct)" "$(mb tput_connect)" "$(mb tput_squid)" "$(ratio "$(m tput_connect)" "$(m tput_direct)")" "$(ratio "$(m tput_connect)" "$(m tput_squid)")"
printf '%-34s %12.0f %12.0f %12.0f %10s %10s\n' "SOCKS5 throughput (MB/s) [1]" "$(mb tput_direct)" "$(mb tput_socks)" "$(mb tput_squid)" "$(ratio "$(m tput_socks)" "$(m tput_direct)")" "$(ratio "$(m tput_socks)" "$(m tput_squid)")"
printf '%-34s %12.0f %12.0f %12.0f %10s %10s\n' "HTTP forward keep-alive (req/s)" "$(m rps_direct)" "$(m rps_forward)" "$(m rps_squid)" "$(ratio "$(m rps_forward)" "$(m rps_direct)")" "$(ratio "$(m rps_forward)" "$(m rps_squid)")"
g3_per=$(awk -v a="$g3_before" -v b="$g3_after" -v n="$TUNNELS" 'BEGIN {printf "%.1f", (b - a) / n}')
squid_per=$(awk -v a="$squid_before" -v b="$squid_after" -v n="$TUNNELS" 'BEGIN {printf "%.1f", (b - a) / n}')
echo
echo "RSS: supervisor $(rss_kib "$supervisor_pid") KiB; worker $g3_before KiB idle, $g3_after KiB with $TUNNELS idle tunnels ($g3_per KiB per tunnel)"
echo "RSS: squid $squid_before KiB idle, $squid_after KiB with $TUNNELS idle tunnels ($squid_per KiB per tunnel); g3proxy/squid per tunnel: $(ratio "$g3_per" "$squid_per")"
echo "[1] Squid has no SOCKS5 server; its column is its CONNECT tunnel."
echo
printf '%-44s %12s %12s %10s\n' "TLS metric" "g3proxy" "haproxy" "/haproxy"
printf '%-44s %12.0f %12.0f %10s\n' "new TLS handshakes/s (plain_tls_port) [2]" "$(m hs_g3)" "$(m hs_haproxy)" "$(ratio "$(m hs_g3)" "$(m hs_haproxy)")"
printf '%-44s %12.0f %12.0f %10s\n' "throughput through TLS (MB/s) [3]" "$(mb tput_https)" "$(mb tput_haproxy)" "$(ratio "$(m tput_https)" "$(m tput_haproxy)")"
echo "[2] wrk -t1 -c32, one request per TLS connection; ours also parses and forwards it as a proxy."
echo "[3] one stream: TLS to the HTTPS proxy and CONNECT inside it; HAProxy relays TLS to nginx directly."
echo
printf '%-44s %12s %12s %10s\n' "tcp_stream metric" "g3proxy" "haproxy" "/haproxy"
printf '%-44s %12.0f %12.0f %10s\n' "single-stream throughput (MB/s)" "$(mb tput_stream)" "$(mb tput_haproxy_tcp)" "$(ratio "$(m tput_stream)" "$(m tput_haproxy_tcp)")"
printf '%-44s %12.0f %12.0f %10s\n' "keep-alive small requests/s [4]" "$(m rps_stream)" "$(m rps_haproxy_tcp)" "$(ratio "$(m rps_stream)" "$(m rps_haproxy_tcp)")"
echo "[4] wrk -t1 -c32 to nginx through a tcp_stream, and through HAProxy in TCP mode."
echo
printf '%-44s %12s %12s %12s %10s %10s\n' "http_rproxy metric" "g3proxy" "haproxy" "nginx" "/haproxy" "/nginx"
printf '%-44s %12.0f %12.0f %12.0f %10s %10s\n' "keep-alive small requests/s [5]" "$(m rps_rproxy)" "$(m rps_haproxy_http)" "$(m rps_nginx_proxy)" "$(ratio "$(m rps_rproxy)" "$(m rps_haproxy_http)")" "$(ratio "$(m rps_rproxy)" "$(m rps_nginx_proxy)")"
printf '%-44s %12.0f %12.0f %12.0f %10s %10s\n' "  with a worker process per core [6]" "$(m rps_rproxy_w)" "$(m rps_haproxy_http)" "$(m rps_nginx_proxy)" "$(ratio "$(m rps_rproxy_w)" "$(m rps_haproxy_http)")" "$(ratio "$(m rps_rproxy_w)" "$(m rps_nginx_proxy)")"
echo "[5] wrk -t1 -c32 to nginx through each reverse proxy, each adding X-Forwarded-For and keeping upstream connections."
echo "[6] worker: {thread_number: $(nproc), thread_number_per_runtime: 1}: single-threaded worker processes instead of one runtime of $(nproc) threads."
echo
printf '%-44s %12s %12s %10s\n' "users metric" "with auth" "no users" "/no users"
printf '%-44s %12.0f %12.0f %10s\n' "forward keep-alive req/s, static user [7]" "$(m rps_auth_static)" "$(m rps_forward)" "$(ratio "$(m rps_auth_static)" "$(m rps_forward)")"
printf '%-44s %12.0f %12.0f %10s\n' "forward keep-alive req/s, dynamic user [7]" "$(m rps_auth_dynamic)" "$(m rps_forward)" "$(ratio "$(m rps_auth_dynamic)" "$(m rps_forward)")"
echo "[7] Basic auth on every request, a group of 100 static and 10,000 dynamic users (salted md5+sha1 tokens); the same http_proxy without a user group."
echo
printf '%-44s %12s %12s %10s\n' "metrics and task logs" "with both" "without" "/without"
printf '%-44s %12.0f %12.0f %10s\n' "forward keep-alive req/s, stat and log on [8]" "$(m rps_stat)" "$(m rps_forward)" "$(ratio "$(m rps_stat)" "$(m rps_forward)")"
printf '%-44s %12.0f %12.0f %10s\n' "forward keep-alive req/s, stat and fluentd [8]" "$(m rps_stat_fluentd)" "$(m rps_forward)" "$(ratio "$(m rps_stat_fluentd)" "$(m rps_forward)")"
printf '%-44s %12s %12s %10s\n' "worker CPU µs/request, stat and syslog [8]" "$(m cpu_stat)" "$(m cpu_forward)" "$(ratio "$(m cpu_stat)" "$(m cpu_forward)")"
printf '%-44s %12s %12s %10s\n' "worker CPU µs/request, stat and fluentd [8]" "$(m cpu_stat_fluentd)" "$(m cpu_forward)" "$(ratio "$(m cpu_stat_fluentd)" "$(m cpu_forward)")"
echo "[8] the same http_proxy in a group of its own with a stat section (200ms, UDP) and task logs to syslog (UDP: a datagram per event), or to fluentd (TCP, batched): an event per request."
echo
printf '%-44s %12s %12s %10s\n' "chaining and names" "ours" "beside" "/beside"
printf '%-44s %12.0f %12.0f %10s\n' "forward req/s through two of ours [9]" "$(m rps_chain)" "$(m rps_forward)" "$(ratio "$(m rps_chain)" "$(m rps_forward)")"
printf '%-44s %12.0f %12.0f %10s\n' "forward req/s to a name, c-ares [10]" "$(m rps_named)" "$(m rps_by_address)" "$(ratio "$(m rps_named)" "$(m rps_by_address)")"
printf '%-44s %12.0f %12.0f %10s\n' "forward req/s to a name, hickory [10]" "$(m rps_named_h)" "$(m rps_by_address)" "$(ratio "$(m rps_named_h)" "$(m rps_by_address)")"
echo "[9] a proxy_http escaper to the first group's http_proxy, beside that http_proxy alone."
echo "[10] each request resolves bench.test (A and AAAA) from the warm cache, beside the same proxy to 127.0.0.1."
if [ -n "${G3PROXY_BIN:-}" ]; then
    echo
    printf '%-44s %12s %12s %10s\n' "beside g3proxy ($G3PROXY_BIN)" "ours" "g3proxy" "/g3proxy"
    printf '%-44s %12.0f %12.0f %10s\n' "forward req/s" "$(m rps_forward)" "$(m rps_g3_forward)" "$(ratio "$(m rps_forward)" "$(m rps_g3_forward)")"
    printf '%-44s %12.0f %12.0f %10s\n' "forward req/s through two proxies" "$(m rps_chain)" "$(m rps_g3_chain)" "$(ratio "$(m rps_chain)" "$(m rps_g3_chain)")"
    printf '%-44s %12.0f %12.0f %10s\n' "forward req/s to a name (c-ares)" "$(m rps_named)" "$(m rps_g3_named)" "$(ratio "$(m rps_named)" "$(m rps_g3_named)")"
    printf '%-44s %12.0f %12.0f %10s\n' "forward req/s, stat and syslog [8]" "$(m rps_stat)" "$(m rps_g3_stat)" "$(ratio "$(m rps_stat)" "$(m rps_g3_stat)")"
    printf '%-44s %12.0f %12.0f %10s\n' "forward req/s, stat and fluentd [8]" "$(m rps_stat_fluentd)" "$(m rps_g3_stat_fluentd)" "$(ratio "$(m rps_stat_fluentd)" "$(m rps_g3_stat_fluentd)")"
    printf '%-44s %12s %12s\n' "  with syslog / without" "$(ratio "$(m rps_stat)" "$(m rps_forward)")" "$(ratio "$(m rps_g3_stat)" "$(m rps_g3_forward)")"
    printf '%-44s %12s %12s\n' "  with fluentd / without" "$(ratio "$(m rps_stat_fluentd)" "$(m rps_forward)")" "$(ratio "$(m rps_g3_stat_fluentd)" "$(m rps_g3_forward)")"
    printf '%-44s %12s %12s\n' "CPU per request (µs), forward" "$(m cpu_forward)" "$(m cpu_g3_forward)"
    printf '%-44s %12s %12s\n' "  with syslog / without" "$(ratio "$(m cpu_stat)" "$(m cpu_forward)")" "$(ratio "$(m cpu_g3_stat)" "$(m cpu_g3_forward)")"
    printf '%-44s %12s %12s\n' "  with fluentd / without" "$(ratio "$(m cpu_stat_fluentd)" "$(m cpu_forward)")" "$(ratio "$(m cpu_g3_stat_fluentd)" "$(m cpu_g3_forward)")"
fi
