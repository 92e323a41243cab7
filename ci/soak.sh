#!/usr/bin/env bash
# A bounded soak on loopback: while wrk opens a new connection per request through the HTTP
# proxy and a set of CONNECT tunnels stays open, run RELOADS reloads, UPGRADES worker upgrades,
# HANDOFFS supervisor handoffs (offline + a new g3proxy) and one supervisor `kill -9` followed
# by a new g3proxy. Prints every failed request (target 0), whether every tunnel still echoes,
# and RSS and open descriptors of the supervisor and workers before and after.
# Not part of the tests. Usage: RELOADS=100 UPGRADES=10 HANDOFFS=5 TUNNELS=200 ci/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RELOADS=${RELOADS:-100}
UPGRADES=${UPGRADES:-10}
HANDOFFS=${HANDOFFS:-5}
TUNNELS=${TUNNELS:-200}

for tool in nginx wrk; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk nginx-light >/dev/null
    }
done
ci/setup.sh
cargo build --release --workspace --bins 2>&1 | tail -1
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/g3soak.XXXXXX)
chmod 755 "$work"
pids=()
ctl() { target/release/g3proxy-ctl -C "$work/run" -G soak "$@"; }
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    ctl force-quit-all >/dev/null 2>&1 || true
    pkill -f "G soak -C $work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_ORIGIN=$(port); P_HTTP=$(port); P_ECHO=$(port)
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 16384; }
http {
    access_log off;
    server { listen 127.0.0.1:$P_ORIGIN backlog=4096; location / { return 200 "hello"; } }
}
CONF
nginx -c "$work/nginx.conf" & pids+=($!)
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
mkdir -p "$work/run"
chmod 700 "$work/run"
cat > "$work/main.yml" <<CONF
runtime: {server_offline_delay: 10s}
worker: {thread_number: 2}
resolver: [{name: default, type: c-ares}]
escaper:
  - {name: default, type: direct_fixed, resolver: default, egress_network_filter: {default: forbid, permit: 127.0.0.0/8}}
server:
  # The held tunnels stay idle for the whole run: an idle rule longer than it.
  - {name: http, type: http_proxy, escaper: default, listen: "127.0.0.1:$P_HTTP", task_idle_max_count: 120}
CONF
start_supervisor() {
    target/release/g3proxy -c "$work/main.yml" -G soak -C "$work/run" >/dev/null 2>>"$work/g3proxy.log" &
    echo $!
}
supervisor=$(start_supervisor)
# Waits until supervisor $1 itself serves (its own socket, not the group's, which a
# predecessor may still answer during a handoff).
wait_serving() {
    for _ in $(seq 1 400); do
        ctl -p "$1" fleet 2>/dev/null | grep -q "current" && return 0
        python3 -c 'import time; time.sleep(0.05)'
    done
    echo "supervisor $1 never served" >&2
    exit 1
}
wait_serving "$supervisor"

# What every process of the group holds: pid, RSS KiB, open descriptors.
census() {
    for pid in $(pgrep -f "G soak -C $work") $(ctl --json fleet | python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for g in json.load(sys.stdin)["fleet"]["generations"] for w in g["workers"]))'); do
        printf '  pid %-8s rss %6s KiB  fds %5s  %s\n' "$pid" "$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)" \
            "$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)" "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-60)"
    done
}
echo "before:"; census

# Tunnels held open through everything, checked at the end.
python3 - "$P_HTTP" "$P_ECHO" "$TUNNELS" "$work/tunnels.done" > "$work/tunnels.out" <<'PY' & tunnel_pid=$!
import os, socket, sys, time
proxy, echo, count, done = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
tunnels = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", proxy))
    s.sendall(f"CONNECT 127.0.0.1:{echo} HTTP/1.1\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    tunnels.append(s)
print("open", len(tunnels), flush=True)
deadline = time.time() + 3600
while not os.path.exists(done) and time.time() < deadline:
    time.sleep(0.2)
alive = 0
for s in tunnels:
    try:
        s.settimeout(5)
        s.sendall(b"ping")
        if s.recv(4) == b"ping":
            alive += 1
    except OSError:
        pass
print("alive", alive, "of", len(tunnels), flush=True)
PY

cat > "$work/close.lua" <<LUA
wrk.path = "http://127.0.0.1:$P_ORIGIN/"
wrk.headers["Connection"] = "close"
LUA
wrk -t2 -c32 -d3600s -s "$work/close.lua" "http://127.0.0.1:$P_HTTP/" > "$work/wrk.out" 2>&1 & wrk_pid=$!

for i in $(seq 1 "$RELOADS"); do ctl reload >/dev/null || echo "reload $i refused"; done
echo "$RELOADS reloads done"
for i in $(seq 1 "$UPGRADES"); do ctl upgrade >/dev/null || echo "upgrade $i refused"; done
echo "$UPGRADES upgrades done"
for i in $(seq 1 "$HANDOFFS"); do
    ctl -p "$supervisor" offline >/dev/null
    supervisor=$(start_supervisor)
    wait_serving "$supervisor"
done
echo "$HANDOFFS handoffs done"
kill -9 "$supervisor"
supervisor=$(start_supervisor)
wait_serving "$supervisor"
echo "kill -9 and a new supervisor done"
python3 -c 'import time; time.sleep(2)'

kill -INT "$wrk_pid"; wait "$wrk_pid" || true
touch "$work/tunnels.done"; wait "$tunnel_pid" || true
echo "after:"; census
echo
grep -E "requests in|Socket errors|Non-2xx" "$work/wrk.out" || true
cat "$work/tunnels.out"
failed=$(awk '/Socket errors/ {gsub(",", ""); sum += $4 + $6 + $8 + $10} /Non-2xx/ {sum += $5} END {print sum + 0}' "$work/wrk.out")
echo "failed requests: $failed"
echo
echo "supervisor log (last lines):"
tail -n 15 "$work/g3proxy.log"
