#!/usr/bin/env bash
# Runs every benchmark (ingest, store, gate, memory, ssh transport, pipeline, level 1) and prints one table
# of the headline figures. Each benchmark prints its full table first. Takes about 25 minutes on 2 cores
# (the ingest drains and the million-incident store take most of it).
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  echo "usage: scripts/bench-all.sh   (all benchmarks; headline table at the end)"
  exit 0
fi
cd "$(dirname "$0")/.."
scripts/test-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medic-target}"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

scripts/bench-ingest.sh 20s | tee -a "$out"
cargo bench --locked --bench gate -- --warm-up-time 1 --measurement-time 3 typical_mix 2>&1 | tee /dev/stderr \
  | awk '/thrpt:/ && !done {gsub(/\[|\]/, ""); print "RESULT | gate checks/s, typical mix, one core | " $4 " " $5 " | >= 1 M/s"; done = 1}' >> "$out"
cargo bench --locked --bench store 2>&1 | tee -a "$out"
cargo bench --locked --bench memory 2>&1 | tee -a "$out"
cargo bench --locked --bench transport 2>&1 | tee -a "$out"
cargo bench --locked --bench pipeline 2>&1 | tee -a "$out"
scripts/test-model.sh
MEDIC_TEST_MODEL_THREADS="${MEDIC_TEST_MODEL_THREADS:-2}" cargo bench --locked --bench l1 2>&1 | tee -a "$out"

echo
echo "| benchmark | measured | target |"
echo "|---|---|---|"
grep '^RESULT' "$out" | sed 's/^RESULT | /| /; s/$/ |/'
