#!/usr/bin/env bash
# Ingest benchmark: Uptime Kuma webhooks on loopback against a release build with the durable store
# (SQLite WAL, synchronous=FULL). Concurrency 1, 16 and 64 for DURATION each (default 20s), a DOWN/UP mix
# over 100 monitors; reports acknowledged requests/s, latency p50/p99, and medic's RSS idle and peak.
# Needs wrk (Debian package `wrk`; installed if missing).
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  echo "usage: scripts/bench-ingest.sh [DURATION]   e.g. scripts/bench-ingest.sh 20s"
  exit 0
fi
duration="${1:-20s}"
cd "$(dirname "$0")/.."
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medic-target}"
cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/medic"

work=$(mktemp -d)
token="bench-token-0123456789"
cat >"$work/medic.toml" <<TOML
[server]
bind = "127.0.0.1:0"
[auth]
token = "$token"
[store]
data_dir = "$work/data"
[log]
level = "warn"
TOML

"$bin" --config "$work/medic.toml" serve >"$work/stdout" 2>"$work/stderr" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q listening "$work/stdout" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*http:\/\///p' "$work/stdout" | head -n1)
sleep 1
rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

result_16=""
printf "%-12s %12s %10s %10s %10s\n" concurrency "acked req/s" p50 p99 non-2xx
for c in 1 16 64; do
  threads=$(( c < 2 ? 1 : 2 ))
  out=$(MEDIC_BENCH_TOKEN="$token" wrk -t"$threads" -c"$c" -d"$duration" --latency \
        -s scripts/bench/ingest.lua "http://$addr" 2>&1)
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  secs=$(awk '/requests in/ {gsub(/s,/,"",$5); print $5}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $5}' <<<"$out"); bad=${bad:-0}
  errs=$(awk '/Socket errors/ {print}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  rate=$(awk -v t="$total" -v b="$bad" -v s="$secs" 'BEGIN {printf "%.0f", (t-b)/s}')
  printf "%-12s %12s %10s %10s %10s %s\n" "$c" "$rate" "$p50" "$p99" "$bad" "$errs"
  if [[ "$c" == 16 ]]; then result_16="$rate acked/s, p99 $p99"; fi
done
rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
incidents=$(sqlite3 "$work/data/medic.db" "SELECT COUNT(*) FROM events" 2>/dev/null || echo "?")
echo "RSS idle: $((rss_idle / 1024)) MiB, peak: $((rss_peak / 1024)) MiB; events stored: $incidents"
echo "RESULT | ingest at concurrency 16 | ${result_16:-?} | >= 5000/s, p99 < 10 ms"
echo "RESULT | ingest RSS idle | $((rss_idle / 1024)) MiB | < 30 MB"
