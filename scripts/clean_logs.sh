#!/usr/bin/env bash
# clean_logs.sh SERVICE — free disk space taken by a service's logs, safely and idempotently.
#
# Only under the allowed directory $MEDIC_LOG_ROOT/SERVICE (default /var/log/SERVICE):
#   - rotated archives (*.gz, *.[0-9], *.[0-9].gz, *.old) older than MEDIC_KEEP_DAYS days (default 7) are removed;
#   - active *.log files larger than MEDIC_MAX_LOG_MB (default 512) are truncated in place (the service
#     keeps its file handle; a note records the truncation).
# Then journald is vacuumed to MEDIC_JOURNAL_MAX (default 500M) when journalctl exists.
# Running it twice is harmless: the second run finds nothing left to do.
set -euo pipefail

usage() {
  cat <<'TXT'
usage: clean_logs.sh [--dry-run] SERVICE
  Removes old rotated logs and truncates oversized active logs under /var/log/SERVICE,
  then vacuums the systemd journal. Environment: MEDIC_LOG_ROOT (default /var/log),
  MEDIC_KEEP_DAYS (7), MEDIC_MAX_LOG_MB (512), MEDIC_JOURNAL_MAX (500M).
TXT
}

dry_run=0
service=""
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    -*) echo "clean_logs.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *) [[ -z "$service" ]] || { echo "clean_logs.sh: one service only" >&2; exit 2; }; service="$arg" ;;
  esac
done
if [[ ! "$service" =~ ^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$ ]]; then
  echo "clean_logs.sh: invalid or missing service name" >&2
  usage >&2
  exit 2
fi

root="${MEDIC_LOG_ROOT:-/var/log}"
keep_days="${MEDIC_KEEP_DAYS:-7}"
max_mb="${MEDIC_MAX_LOG_MB:-512}"
journal_max="${MEDIC_JOURNAL_MAX:-500M}"
dir="$root/$service"

run() {
  if ((dry_run)); then echo "would run: $*"; else "$@"; fi
}

freed=0
removed=0
truncated=0
if [[ -d "$dir" && ! -L "$dir" ]]; then
  while IFS= read -r -d '' file; do
    size=$(stat -c %s "$file")
    run rm -f -- "$file"
    freed=$((freed + size))
    removed=$((removed + 1))
  done < <(find "$dir" -xdev -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.[0-9].gz' -o -name '*.old' \) \
             -mtime +"$keep_days" -print0)
  while IFS= read -r -d '' file; do
    size=$(stat -c %s "$file")
    run truncate -s 0 -- "$file"
    freed=$((freed + size))
    truncated=$((truncated + 1))
  done < <(find "$dir" -xdev -type f -name '*.log' -size +"${max_mb}"M -print0)
else
  echo "clean_logs.sh: no log directory $dir (nothing to clean there)"
fi

if command -v journalctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  run journalctl --vacuum-size="$journal_max" >/dev/null 2>&1 || echo "clean_logs.sh: journal vacuum failed (continuing)" >&2
fi

echo "clean_logs.sh: $service: removed $removed rotated file(s), truncated $truncated log(s), freed $freed bytes"
