#!/usr/bin/env bash
# Installs n8n 2.8.4 from npm into ~/.cache/medic-n8n (outside the clone; once) for tests/api/n8n.rs.
# n8n 2.8.4 depends on xlsx 0.20.2 from cdn.sheetjs.com, which is not a package registry; the install
# overrides it with xlsx 0.18.5 from npm (n8n's spreadsheet nodes, which medic's workflows do not use).
# Takes about 4 minutes and 2.3 GB the first time.
set -euo pipefail
dir="${MEDIC_N8N_DIR:-$HOME/.cache/medic-n8n}"
if [[ -x "$dir/node_modules/.bin/n8n" ]] && grep -q '"2.8.4"' "$dir/package.json" 2>/dev/null; then
  exit 0
fi
mkdir -p "$dir"
cat >"$dir/package.json" <<'JSON'
{
  "name": "medic-n8n-test",
  "private": true,
  "dependencies": { "n8n": "2.8.4" },
  "overrides": { "xlsx": "0.18.5" }
}
JSON
(cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
