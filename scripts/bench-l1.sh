#!/usr/bin/env bash
# Level-1 decisions on the project's corpus (tests/fixtures/decisions/corpus.json) with a real model:
# the previous prompt and confidence ("before"), the new prompt with sampled agreement ("model-only"),
# and medic's full decision path with its evidence checks ("medic"). Prints, per configuration, right
# on fixable, right "none", wrong automatic actions, model calls and latency (benches/decisions.rs).
#
#   scripts/bench-l1.sh                 the 0.5B model (the tests' model)
#   scripts/bench-l1.sh --model 1.5b    Qwen2.5-Coder-1.5B-Instruct (fetched once, ~1.1 GB, pinned sha256)
#   MEDIC_BENCH_CONFIGS=medic scripts/bench-l1.sh    only some configurations (before,model-only,medic)
#
# Threads for the model: MEDIC_TEST_MODEL_THREADS (default: all cores here).
set -euo pipefail

cd "$(dirname "$0")/.."
size="0.5b"
if [[ "${1:-}" == "--model" ]]; then
    size="${2:?--model needs 0.5b or 1.5b}"
fi
scripts/test-model.sh "$size"
export MEDIC_BENCH_MODEL="$size"
export MEDIC_TEST_MODEL_THREADS="${MEDIC_TEST_MODEL_THREADS:-$(nproc)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/medic-target}"
cargo bench --locked --bench decisions
