#!/usr/bin/env bash
# health_check.sh — read-only host health as one JSON object: CPU count, load, memory, disk per mount,
# failed systemd units, unhealthy containers. Changes nothing.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "usage: health_check.sh   (prints host health as JSON on stdout)"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "health_check.sh: takes no arguments" >&2
  exit 2
fi

json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  s=${s//$'\n'/ }
  s=${s//$'\r'/ }
  printf '"%s"' "$s"
}

json_list() {
  local first=1 item
  printf '['
  for item in "$@"; do
    ((first)) || printf ','
    json_string "$item"
    first=0
  done
  printf ']'
}

cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)
read -r load1 load5 load15 _ < /proc/loadavg
mem_total=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
mem_available=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
swap_total=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo)
swap_free=$(awk '/^SwapFree:/ {print $2}' /proc/meminfo)

disks=""
while read -r _ size used avail pct mount; do
  entry=$(printf '{"mount":%s,"size_kb":%s,"used_kb":%s,"available_kb":%s,"used_percent":%s}' \
    "$(json_string "$mount")" "$size" "$used" "$avail" "${pct%\%}")
  disks="${disks:+$disks,}$entry"
done < <(df -kP -x tmpfs -x devtmpfs -x squashfs -x overlay 2>/dev/null | tail -n +2 || true)

failed_units=()
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
  while read -r unit _; do
    [[ -n "$unit" ]] && failed_units+=("$unit")
  done < <(systemctl list-units --state=failed --no-legend --plain 2>/dev/null || true)
fi

unhealthy=()
if command -v docker >/dev/null 2>&1; then
  while read -r name; do
    [[ -n "$name" ]] && unhealthy+=("$name")
  done < <(docker ps --filter health=unhealthy --format '{{.Names}}' 2>/dev/null || true)
  while read -r name; do
    [[ -n "$name" ]] && unhealthy+=("$name")
  done < <(docker ps -a --filter status=restarting --format '{{.Names}}' 2>/dev/null || true)
fi

printf '{"hostname":%s,"cpus":%s,"load":[%s,%s,%s],' "$(json_string "$(hostname)")" "$cpus" "$load1" "$load5" "$load15"
printf '"memory_kb":{"total":%s,"available":%s,"swap_total":%s,"swap_free":%s},' \
  "${mem_total:-0}" "${mem_available:-0}" "${swap_total:-0}" "${swap_free:-0}"
printf '"disks":[%s],"failed_units":%s,"unhealthy_containers":%s}\n' \
  "$disks" "$(json_list "${failed_units[@]+"${failed_units[@]}"}")" "$(json_list "${unhealthy[@]+"${unhealthy[@]}"}")"
