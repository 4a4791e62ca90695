#!/usr/bin/env bash
# Installs the real components the test suite runs against, from Debian's packages:
# openssh-server (sshd on 127.0.0.1), nginx (a service to break and heal), sqlite3 (audit tamper test),
# postgresql (the replicas' shared store),
# the linter for scripts/, openssl (a test CA for the HTTPS probe), chromium and chromium-driver (the confirm page is tested in a real headless
# browser over WebDriver), and curl, python3 and Node.js for the real-model tests
# (scripts/test-model.sh fetches the model itself). Services are not started by the install: the tests
# start their own.
set -euo pipefail

usage() {
  echo "usage: scripts/test-deps.sh   (installs test dependencies with apt-get; needs root or sudo)"
}
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then usage; exit 0; fi

need=()
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
[[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v curl >/dev/null 2>&1 || need+=(curl)
# A test CA and a short-lived server certificate for the HTTPS probe (certificate expiry).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The disk scenario mounts a small tmpfs.
command -v mount >/dev/null 2>&1 || need+=(mount)
# A throwaway PostgreSQL cluster per test run (initdb + postgres on a free loopback port; tests/api/postgres.rs).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
# node-llama-cpp needs Node.js 20+; Debian 12's nodejs is 18, so this only helps on newer releases.
command -v node >/dev/null 2>&1 || need+=(nodejs npm)

if ((${#need[@]} == 0)); then
  exit 0
fi

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then sudo_cmd=(sudo); fi

# Keep package scripts from starting system services (sshd on :22, nginx on :80) during the install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
  "${sudo_cmd[@]}" chmod +x "$policy"
  created_policy=1
fi
cleanup() { if ((created_policy)); then "${sudo_cmd[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

echo "test-deps: installing ${need[*]}" >&2
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
