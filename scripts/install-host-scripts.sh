#!/usr/bin/env bash
# install-host-scripts.sh [USER@]HOST [PORT] — copy medic's host scripts to /usr/local/lib/medic/ on a
# host (the path the gate's templates use). Run it as an operator; medic itself never writes to hosts.
# For the host medic runs on: sudo install -D -m 0755 scripts/{clean_logs,restart_service,check_disk,health_check}.sh -t /usr/local/lib/medic/
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" || $# -lt 1 ]]; then
  echo "usage: scripts/install-host-scripts.sh [USER@]HOST [PORT]"
  exit 0
fi
dest="$1"
port="${2:-22}"
here="$(cd "$(dirname "$0")" && pwd)"
files=("$here/clean_logs.sh" "$here/restart_service.sh" "$here/check_disk.sh" "$here/health_check.sh")

# shellcheck disable=SC2029 # the remote command is fixed text.
ssh -p "$port" "$dest" 'sudo install -d -m 0755 /usr/local/lib/medic && mkdir -p /tmp/medic-install'
scp -P "$port" "${files[@]}" "$dest:/tmp/medic-install/"
ssh -p "$port" "$dest" 'sudo install -m 0755 /tmp/medic-install/*.sh /usr/local/lib/medic/ && rm -rf /tmp/medic-install'
echo "installed into $dest:/usr/local/lib/medic/"
