#!/usr/bin/env bash
# check_disk.sh [PATH] — read-only disk report: usage per mount, then the largest directories under PATH
# (default /var) on the same filesystem. Changes nothing.
set -euo pipefail

usage() {
  cat <<'TXT'
usage: check_disk.sh [PATH]
  Prints disk and inode usage per mount and the 10 largest directories under PATH (default /var).
TXT
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  -*) echo "check_disk.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
esac
path="${1:-/var}"
if [[ ! -d "$path" ]]; then
  echo "check_disk.sh: $path is not a directory" >&2
  exit 2
fi

echo "== usage per mount"
df -hP -x tmpfs -x devtmpfs -x squashfs 2>/dev/null || df -hP
echo
echo "== inodes per mount"
df -iP -x tmpfs -x devtmpfs -x squashfs 2>/dev/null || df -iP
echo
echo "== largest directories under $path"
du -x -h -d 1 "$path" 2>/dev/null | sort -h -r | head -n 11 || true
