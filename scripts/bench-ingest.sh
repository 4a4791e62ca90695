#!/usr/bin/env bash
# Ingest benchmark: Uptime Kuma webhooks on loopback against a release build with the durable store
# (SQLite WAL, synchronous=FULL, group commit). Two workloads, each at concurrency 1, 16 and 64 for
# DURATION (default 20s):
#   mix       a DOWN/UP mix over 100 monitors (open, join, recover; little pipeline work)
#   distinct  a new monitor per request: every webhook opens an incident the pipeline must drive
#             (no inventory, so each escalates with an email to the .eml outbox) while load continues
# Reports wrk's own Requests/sec and latency, the non-2xx count, the backlog left when load stops and
# how fast the pipeline drains it, and medic's RSS idle and peak. Needs wrk and sqlite3 (installed if
# missing).
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  echo "usage: scripts/bench-ingest.sh [DURATION]   e.g. scripts/bench-ingest.sh 20s"
  exit 0
fi
duration="${1:-20s}"
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
if ((${#need[@]})); then apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; fi
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
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do grep -q listening "$work/stdout" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*http:\/\///p' "$work/stdout" | head -n1)
sleep 1
rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
db="$work/data/medic.db"
runnable() {
  sqlite3 "$db" "SELECT COUNT(*) FROM incidents WHERE state NOT IN ('resolved','rejected','recovered_by_monitor','failed','awaiting_approval') AND parked_reason IS NULL" 2>/dev/null || echo 0
}

printf "%-9s %-5s %14s %10s %10s %8s %s\n" workload c "wrk req/s" p50 p99 non-2xx "backlog at end → drain"
for workload in mix distinct; do
  script=scripts/bench/ingest.lua
  [[ "$workload" == distinct ]] && script=scripts/bench/ingest-distinct.lua
  for c in 1 16 64; do
    threads=$(( c < 2 ? 1 : 2 ))
    out=$(MEDIC_BENCH_TOKEN="$token" MEDIC_BENCH_RUN="$workload$c" wrk -t"$threads" -c"$c" -d"$duration" \
          --latency -s "$script" "http://$addr" 2>&1)
    rate=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $5}' <<<"$out"); bad=${bad:-0}
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    drain="-"
    if [[ "$workload" == distinct ]]; then
      left=$(runnable)
      start=$(date +%s.%N)
      for _ in $(seq 1 1200); do [[ "$(runnable)" == 0 ]] && break; sleep 0.25; done
      took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e-s}')
      drain=$(awk -v n="$left" -v t="$took" 'BEGIN {if (t > 0.05) printf "%d left, drained in %ss (%.0f incidents/s)", n, t, n/t; else printf "%d left", n}')
    fi
    printf "%-9s %-5s %14s %10s %10s %8s %s\n" "$workload" "$c" "$rate" "$p50" "$p99" "$bad" "$drain"
    eval "rate_${workload}_${c}=$rate"
  done
done
rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
incidents=$(sqlite3 "$db" "SELECT COUNT(*) FROM incidents" 2>/dev/null || echo "?")
echo "RSS idle: $((rss_idle / 1024)) MiB, peak: $((rss_peak / 1024)) MiB; incidents stored: $incidents"

# The durability trade-off at low concurrency: synchronous = "normal" (WAL synced at checkpoints only:
# survives a crash of medic, may lose the last commits on power loss) against "full" above.
kill "$pid"; wait "$pid" 2>/dev/null || true
sed -i 's/^\[store\]$/[store]\nsynchronous = "normal"/' "$work/medic.toml"
rm -rf "$work/data"; : >"$work/stdout"
"$bin" --config "$work/medic.toml" serve >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 100); do grep -q listening "$work/stdout" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*http:\/\///p' "$work/stdout" | head -n1)
sleep 1
for c in 1 16; do
  threads=$(( c < 2 ? 1 : 2 ))
  out=$(MEDIC_BENCH_TOKEN="$token" wrk -t"$threads" -c"$c" -d"$duration" --latency -s scripts/bench/ingest.lua "http://$addr" 2>&1)
  rate=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf "%-9s %-5s %14s %10s %10s\n" "mix/normal" "$c" "$rate" "-" "$p99"
  eval "rate_normal_${c}=$rate"
done
# shellcheck disable=SC2154
echo "RESULT | ingest mix at concurrency 16 (wrk req/s) | ${rate_mix_16} | >= 5000/s"
# shellcheck disable=SC2154
echo "RESULT | ingest distinct vs mix at concurrency 64 | ${rate_distinct_64} vs ${rate_mix_64} | within 80 %"
echo "RESULT | ingest RSS idle | $((rss_idle / 1024)) MiB | < 30 MB"
# shellcheck disable=SC2154
echo "RESULT | ingest mix at concurrency 1, synchronous full vs normal | ${rate_mix_1} vs ${rate_normal_1} |"
