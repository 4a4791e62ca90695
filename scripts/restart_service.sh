#!/usr/bin/env bash
# restart_service.sh SERVICE — restart a service with whatever manages it (systemd, SysV `service`, or
# docker), then check that it runs. Exit 0 only when the status check passes. Safe to run twice.
set -euo pipefail

usage() {
  cat <<'TXT'
usage: restart_service.sh [--dry-run] SERVICE
  Restarts SERVICE via systemd (systemctl), SysV init (service), or docker (a container of that name),
  whichever manages it, then checks it is running. --dry-run prints the method without acting.
TXT
}

dry_run=0
service=""
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    -*) echo "restart_service.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) [[ -z "$service" ]] || { echo "restart_service.sh: one service only" >&2; exit 2; }; service="$arg" ;;
  esac
done
if [[ ! "$service" =~ ^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$ ]]; then
  echo "restart_service.sh: invalid or missing service name" >&2
  usage >&2
  exit 2
fi

method=""
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]] \
   && systemctl list-unit-files --no-legend "$service.service" 2>/dev/null | grep -q .; then
  method="systemd"
elif command -v service >/dev/null 2>&1 && [[ -x "/etc/init.d/$service" ]]; then
  method="sysv"
elif command -v docker >/dev/null 2>&1 && docker container inspect "$service" >/dev/null 2>&1; then
  method="docker"
fi

if [[ -z "$method" ]]; then
  echo "restart_service.sh: nothing manages '$service' here (no systemd unit, init script or container)" >&2
  exit 3
fi
if ((dry_run)); then
  echo "restart_service.sh: would restart $service with $method"
  exit 0
fi

case "$method" in
  systemd) systemctl restart "$service" ;;
  sysv) service "$service" restart ;;
  docker) docker restart "$service" >/dev/null ;;
esac

sleep 1
case "$method" in
  systemd) status=$(systemctl is-active "$service" || true) ;;
  sysv) if service "$service" status >/dev/null 2>&1; then status=active; else status=inactive; fi ;;
  docker) status=$(docker container inspect --format '{{.State.Status}}' "$service" 2>/dev/null || echo missing) ;;
esac

if [[ "$status" == "active" || "$status" == "running" ]]; then
  echo "restart_service.sh: $service restarted with $method and is $status"
else
  echo "restart_service.sh: $service restarted with $method but is $status" >&2
  exit 1
fi
