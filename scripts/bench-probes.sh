#!/usr/bin/env bash
# Probe benchmark: N HTTP probes (default 1000) at a 10 s interval against nginx on loopback, plus one
# local host sampled for health every second, on a release build. After a warm-up, reports what medic
# measured over the window: checks stored per second (expected N/10), medic's CPU (utime+stime from
# /proc) and RSS, and the history's size per probe and per host per day (dbstat: bytes per stored row
# times rows a day at these intervals). Needs nginx and sqlite3 (installed if missing).
#
#   scripts/bench-probes.sh [N] [WINDOW_SECONDS]      e.g. scripts/bench-probes.sh 1000 60
set -euo pipefail

n="${1:-1000}"
window="${2:-60}"
cd "$(dirname "$0")/.."
need=()
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
[[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medic-target}"
cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/medic"

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
cat >"$work/nginx/nginx.conf" <<NGINX
daemon on; worker_processes 1; pid $work/nginx/nginx.pid; error_log $work/nginx/logs/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $work/nginx/tmp;
  server { listen 127.0.0.1:$port; location / { return 200 "ok\n"; } } }
NGINX
/usr/sbin/nginx -e "$work/nginx/logs/error.log" -c "$work/nginx/nginx.conf" -p "$work/nginx"

cat >"$work/rules.json" <<'JSON'
{"safe_commands": {"none": {"mode": "approval", "allowed": ["true"]}, "blocked_patterns": ["rm -rf"]},
 "diagnostics": {"allowed": ["cat /proc/stat", "cat /proc/meminfo", "cat /proc/loadavg", "cat /proc/uptime", "df -P -k"]}}
JSON
{
  cat <<TOML
[server]
bind = "127.0.0.1:0"
[auth]
token = "bench-token-0123456789"
[store]
data_dir = "$work/data"
[log]
level = "warn"
[gate]
safe_commands = "$work/rules.json"
[health]
interval = "1s"
[[inventory.hosts]]
name = "local"
transport = "local"
TOML
  for i in $(seq 1 "$n"); do
    printf '[[probes]]\nname = "p%d"\nurl = "http://127.0.0.1:%d/p%d"\ninterval = "10s"\ntimeout = "5s"\n' "$i" "$port" "$i"
  done
} >"$work/medic.toml"

"$bin" --config "$work/medic.toml" serve >"$work/medic.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

sleep 2
if ! kill -0 "$pid" 2>/dev/null; then
  echo "medic did not start:" >&2
  cat "$work/medic.log" >&2
  exit 1
fi
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
hz=$(getconf CLK_TCK)
db="$work/data/medic.db"
sleep 20   # every probe has started (jitter within one interval) and run at least once
t0=$(ticks); s0=$(sqlite3 "$db" "SELECT COUNT(*) FROM probe_samples"); start=$(date +%s.%N)
sleep "$window"
t1=$(ticks); s1=$(sqlite3 "$db" "SELECT COUNT(*) FROM probe_samples"); end=$(date +%s.%N)
rss_kb=$(rss); hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
elapsed=$(python3 -c "print($end - $start)")
failed=$(sqlite3 "$db" "SELECT COUNT(*) FROM probe_samples WHERE ok = 0")
read -r probe_bytes probe_rows < <(sqlite3 -separator ' ' "$db" \
  "SELECT (SELECT SUM(pgsize) FROM dbstat WHERE name IN ('probe_samples','probe_samples_probe_at','probe_samples_at')), (SELECT COUNT(*) FROM probe_samples)")
read -r host_bytes host_rows < <(sqlite3 -separator ' ' "$db" \
  "SELECT (SELECT SUM(pgsize) FROM dbstat WHERE name IN ('host_samples','host_samples_host_at','host_samples_at')), (SELECT COUNT(*) FROM host_samples)")
python3 - "$n" "$elapsed" "$s0" "$s1" "$t0" "$t1" "$hz" "$rss_kb" "$hwm_kb" "$failed" "$probe_bytes" "$probe_rows" "$host_bytes" "$host_rows" <<'PY'
import sys
n, elapsed, s0, s1, t0, t1, hz, rss, hwm, failed, pb, pr, hb, hr = sys.argv[1:]
n, elapsed = int(n), float(elapsed)
checks = (int(s1) - int(s0)) / elapsed
cpu = (int(t1) - int(t0)) / int(hz) / elapsed * 100
print(f"probes: {n} at 10 s; window {elapsed:.1f} s")
print(f"checks stored: {checks:.1f}/s (expected {n/10:.1f}/s); failed checks: {failed}")
print(f"medic CPU: {cpu:.1f} % of one core; RSS {int(rss)/1024:.1f} MiB (peak {int(hwm)/1024:.1f} MiB)")
per_probe = int(pb) / max(int(pr), 1)
print(f"probe history: {per_probe:.0f} bytes per raw sample -> {per_probe*8640/1024:.0f} KiB per probe per day at 10 s (raw, kept 2 days)")
per_host = int(hb) / max(int(hr), 1)
print(f"host history: {per_host:.0f} bytes per host sample -> {per_host*1440/1024/1024:.2f} MiB per host per day at the default 1 min")
PY
