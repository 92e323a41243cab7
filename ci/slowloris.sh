#!/usr/bin/env bash
# Slow clients against http_proxy: slowhttptest (Debian) holds many connections open through
# the proxy with slow headers (slowloris), slow bodies (R-U-Dead-Yet) and slow reads, while
# wrk measures an ordinary client's requests/s through the same proxy. Prints each attack's
# requests/s as a ratio to the same client's rate without the attack, measured in the same
# run (goal: within 10%), how many tasks the proxy held during the attack, and when
# slowhttptest saw its last connection closed (the header timeout and the idle rule close slow
# connections, so the attack cannot hold them). Not part of the tests.
# On a small machine the attacker, the load generator, the origin and the proxy share the
# cores: the first row aims the same slowloris at nginx instead, as the control of what the
# attacker alone costs. Medians over ROUNDS.
# Usage: ci/slowloris.sh [CONNECTIONS (default 2000)] [SECONDS (default 30)] [ROUNDS (default 3)]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${1:-2000}
SECONDS_PER_ATTACK=${2:-30}
ROUNDS=${3:-3}

need=()
for tool in slowhttptest nginx wrk; do
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

work=$(mktemp -d /tmp/g3slow.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -S "$work/run/slow.sock" ] && target/release/g3proxy-ctl -C "$work/run" -G slow force-quit-all >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_ORIGIN=$(port); P_HTTP=$(port)

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_timeout 5s;
    server {
        listen 127.0.0.1:$P_ORIGIN backlog=4096;
        location / { return 200 "hello"; }
    }
}
CONF
nginx -c "$work/nginx.conf" & pids+=($!)

# The proxy with g3proxy's default header timeout cut to 5s, so the run shows it working.
mkdir -p "$work/run"
cat > "$work/g3proxy.yml" <<CONF
resolver:
  - {name: default, type: c-ares}
escaper:
  - name: default
    type: direct_fixed
    resolver: default
    egress_network_filter: {default: forbid, permit: 127.0.0.0/8}
server:
  - name: http
    type: http_proxy
    escaper: default
    listen: "127.0.0.1:$P_HTTP"
    req_header_recv_timeout: 5s
    task_idle_check_interval: 2s
    task_idle_max_count: 3
CONF
target/release/g3proxy -c "$work/g3proxy.yml" -G slow -C "$work/run" 2>"$work/g3proxy.log" & pids+=($!)
for _ in $(seq 50); do curl -s -x "http://127.0.0.1:$P_HTTP" "http://127.0.0.1:$P_ORIGIN/" >/dev/null && break; sleep 0.2; done

cat > "$work/forward.lua" <<LUA
wrk.path = "http://127.0.0.1:$P_ORIGIN/"
LUA
rps() { wrk -t1 -c8 -d4s -s "$work/forward.lua" "http://127.0.0.1:$P_HTTP/" | awk '/Requests\/sec/ {print $2}'; }
held() { target/release/g3proxy-ctl -C "$work/run" -G slow server http status | awk '/alive tasks/ {print $3}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }

declare -A ratios helds endeds
names=()
attack() { # mode name [target options...]
    local mode=$1 name=$2
    shift 2
    local extra=()
    [ "$mode" = X ] && extra=(-k 100 -n 2 -w 1 -y 16 -z 8)
    local baseline
    baseline=$(rps)
    slowhttptest "-$mode" -c "$CONNECTIONS" -r 500 -i 3 -l "$SECONDS_PER_ATTACK" -p 3 "$@" \
        "${extra[@]}" >"$work/slow-$mode.log" 2>&1 &
    local pid=$!
    # The proxy closes slow connections at its timeouts, and slowhttptest stops once none
    # is left open: measure in the attack's first seconds, while it ramps up and holds.
    sleep 1
    (sleep 2; held >"$work/held") &
    local under
    under=$(rps)
    wait "$pid" || true
    [[ " ${names[*]} " == *" $mode:$name "* ]] || names+=("$mode:$name")
    ratios[$name]="${ratios[$name]:-} $(ratio "$under" "$baseline")"
    helds[$name]="${helds[$name]:-} $(cat "$work/held")"
    endeds[$name]="${endeds[$name]:-} $(grep -ao 'Test ended on [0-9]*' "$work/slow-$mode.log" | tail -1 | awk '{print $4}' || true)"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR == 0) ? "?" : (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
through=(-u "http://127.0.0.1:$P_ORIGIN/" -d "127.0.0.1:$P_HTTP")
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    attack H "control: slowloris at nginx" -u "http://127.0.0.1:$P_ORIGIN/"
    attack H "slow headers (slowloris)" "${through[@]}"
    attack B "slow body (R-U-Dead-Yet)" "${through[@]}"
    attack X "slow read" "${through[@]}"
done
printf '%-34s %16s %12s %18s\n' "attack (medians)" "req/s / before" "tasks held" "attack ended (s)"
for entry in "${names[@]}"; do
    name=${entry#*:}
    printf '%-34s %16s %12s %18s\n' "$name" "$(echo "${ratios[$name]}" | median)" \
        "$(echo "${helds[$name]}" | median)" "$(echo "${endeds[$name]}" | median)"
done
echo "($CONNECTIONS attack connections at 500/s for ${SECONDS_PER_ATTACK}s each; wrk -c8 keep-alive forward requests; req_header_recv_timeout 5s, idle 2s x 3)"
