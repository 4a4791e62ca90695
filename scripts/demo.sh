#!/usr/bin/env bash
# The whole loop on this machine, with a real local model, for people evaluating medic:
#
#   scripts/demo.sh            (needs sshd and nginx binaries: scripts/test-deps.sh installs them)
#
# It starts, all on 127.0.0.1 and under one temporary directory: a throwaway sshd (its own keys), an
# nginx on a free port, the real model (Qwen2.5-Coder-0.5B on CPU behind scripts/llm/ollama-front.mjs;
# scripts/test-model.sh fetches and verifies it), and medic itself. Then it stops nginx, sends the
# Uptime Kuma DOWN webhook medic would get, and shows what happens with the default settings: evidence
# over SSH, medic's evidence checks (nginx stopped, nothing else wrong: its allowed restart, no model
# needed; the model is level 1 for what the checks cannot settle), the gate, the fix, the verification,
# the email in the outbox, the audit chain verified.
#
# Environment: MEDIC_BIN (a built medic; default: cargo build --release), MEDIC_DEMO_KEEP=1 (keep the
# directory), MEDIC_TEST_MODEL_THREADS (default 2).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[[ -x /usr/sbin/sshd && -x /usr/sbin/nginx ]] || die "needs /usr/sbin/sshd and /usr/sbin/nginx: run scripts/test-deps.sh"
for tool in ssh-keygen curl python3 node; do command -v "$tool" >/dev/null || die "needs $tool"; done

say "Model: fetch and verify (cached after the first run)"
"$root/scripts/test-model.sh"
cache="${MEDIC_LLM_CACHE:-$HOME/.cache/medic/llm}"

if [[ -z "${MEDIC_BIN:-}" ]]; then
  say "Building medic (release)"
  (cd "$root" && cargo build --release --locked --quiet)
  MEDIC_BIN="${CARGO_TARGET_DIR:-$root/target}/release/medic"
fi
[[ -x "$MEDIC_BIN" ]] || die "no medic binary at $MEDIC_BIN"

work="$(mktemp -d /tmp/medic-demo.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -f "$work/nginx/nginx.pid" ]]; then kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true; fi
  if [[ "${MEDIC_DEMO_KEEP:-0}" == 1 ]]; then echo "demo: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  die "nothing listens on port $1 ($2)"
}
# Waits for `listening http://…` in a log file and prints the URL.
wait_listening() {
  for _ in $(seq 1 600); do
    url="$(grep -o 'listening \(on \)\{0,1\}http://[0-9.:]*' "$1" | head -n1 | grep -o 'http://[0-9.:]*' || true)"
    [[ -n "$url" ]] && { echo "$url"; return 0; }
    sleep 0.1
  done
  cat "$1" >&2
  die "$2 did not start"
}

say "Test host: sshd and nginx on 127.0.0.1 (in $work)"
user="$(id -un)"
mkdir -p "$work/ssh" "$work/nginx/logs" "$work/nginx/tmp" "$work/nginx/bin"
ssh-keygen -q -t ed25519 -N '' -C medic-demo -f "$work/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -C medic-demo -f "$work/ssh/client_key"
cp "$work/ssh/client_key.pub" "$work/ssh/authorized_keys"
[[ "$(id -u)" -eq 0 ]] && mkdir -p /run/sshd
ssh_port="$(free_port)"
cat >"$work/ssh/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $work/ssh/host_key
AuthorizedKeysFile $work/ssh/authorized_keys
PidFile $work/ssh/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel ERROR
# No ~/.bashrc for the demo's commands (bash skips it when SHLVL says it is not top-level): rc files
# that print (pyenv, banners) would end up in the evidence.
SetEnv SHLVL=1
EOF
/usr/sbin/sshd -D -e -f "$work/ssh/sshd_config" 2>"$work/ssh/sshd.log" &
pids+=($!)
wait_port "$ssh_port" sshd
echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$work/ssh/host_key.pub")" >"$work/ssh/known_hosts"

web_port="$(free_port)"
n="$work/nginx"
cat >"$n/nginx.conf" <<EOF
daemon on;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/logs/error.log notice;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $n/tmp/body; proxy_temp_path $n/tmp/proxy; fastcgi_temp_path $n/tmp/fastcgi;
  uwsgi_temp_path $n/tmp/uwsgi; scgi_temp_path $n/tmp/scgi;
  server { listen 127.0.0.1:$web_port; location /health { return 200 "ok\n"; } }
}
EOF
ctl="$n/bin/nginx-ctl"
cat >"$ctl" <<EOF
#!/bin/sh
# Controls the demo nginx (what systemctl would be on a real host).
set -eu
case "\$1" in
start) exec /usr/sbin/nginx -e $n/logs/error.log -c $n/nginx.conf -p $n ;;
stop) [ -f $n/nginx.pid ] && kill "\$(cat $n/nginx.pid)"; i=0; while [ -f $n/nginx.pid ] && [ \$i -lt 100 ]; do sleep 0.05; i=\$((i+1)); done ;;
restart) "\$0" stop || true; exec "\$0" start ;;
status) if [ -f $n/nginx.pid ] && kill -0 "\$(cat $n/nginx.pid)" 2>/dev/null; then echo "nginx is running (pid \$(cat $n/nginx.pid))"; else echo "nginx is not running"; exit 3; fi ;;
*) echo "usage: \$0 start|stop|restart|status" >&2; exit 2 ;;
esac
EOF
chmod +x "$ctl"
"$ctl" start
wait_port "$web_port" nginx
echo "nginx answers: $(curl -s "http://127.0.0.1:$web_port/health")"

say "Model server: Qwen2.5-Coder-0.5B on CPU"
MEDIC_FRONT_LOG="$work/model-requests.jsonl" node "$root/scripts/llm/ollama-front.mjs" \
  --model "$cache/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" --runtime "$cache/runtime" \
  --port 0 --threads "${MEDIC_TEST_MODEL_THREADS:-2}" >"$work/model.log" 2>&1 &
pids+=($!)
model_url="$(wait_listening "$work/model.log" "the model server")"
echo "model server: $model_url"

say "medic: configured for this host"
cat >"$work/safe_commands.json" <<EOF
{
  "safe_commands": {
    "service_control": { "mode": "auto", "allowed": ["$ctl start", "$ctl restart"] },
    "maintenance_scripts": { "mode": "approval", "allowed": ["/usr/local/lib/medic/clean_logs.sh {service}"] },
    "blocked_patterns": ["rm -rf", "rm -r", "shutdown", "reboot", "mkfs", "dd if=", "curl ", "wget ", "| sh"]
  },
  "placeholders": { "service": { "allowed": ["nginx"] }, "lines": { "range": [1, 5000] } },
  "diagnostics": { "allowed": ["$ctl status", "tail -n {lines} $n/logs/error.log", "uptime", "free -m", "df -h"] }
}
EOF
token="demo-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
cat >"$work/medic.toml" <<EOF
[server]
bind = "127.0.0.1:0"

[auth]
token = "$token"

[store]
data_dir = "$work/data"

[gate]
safe_commands = "$work/safe_commands.json"

[[inventory.hosts]]
name = "demo-web"
transport = "ssh"
address = "127.0.0.1"
port = $ssh_port
user = "$user"
identity_file = "$work/ssh/client_key"
known_hosts = "strict"
known_hosts_file = "$work/ssh/known_hosts"
services = ["nginx"]

[[inventory.monitors]]
monitor_id = "1"
host = "demo-web"
service = "nginx"

[verify]
deadline = "20s"
interval = "500ms"
check_command = ""

[diagnose.l1]
provider = "ollama"
url = "$model_url/"
model = "qwen2.5-coder:0.5b"
timeout = "3m"
max_retries = 0

[diagnose.l2]
url = ""
EOF
"$MEDIC_BIN" --config "$work/medic.toml" check-config >/dev/null
RUST_LOG="${RUST_LOG:-info}" "$MEDIC_BIN" --config "$work/medic.toml" serve >"$work/medic.log" 2>&1 &
pids+=($!)
medic_url="$(wait_listening "$work/medic.log" medic)"
echo "medic: $medic_url (log: $work/medic.log)"

say "Breaking nginx, then the Uptime Kuma DOWN webhook"
"$ctl" stop
curl -s -o /dev/null -w 'nginx now: %{http_code} (000 = refused)\n' "http://127.0.0.1:$web_port/health" || true
body="$(python3 - "$root/tests/fixtures/uptime-kuma/v2.5.3/down_json.json" "$web_port" <<'EOF'
import datetime, json, sys
body = json.load(open(sys.argv[1]))
port = sys.argv[2]
body["monitor"]["url"] = f"http://127.0.0.1:{port}/health"
body["heartbeat"]["msg"] = f"connect ECONNREFUSED 127.0.0.1:{port}"
body["heartbeat"]["time"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
print(json.dumps(body))
EOF
)"
started="$(date +%s.%N)"
reply="$(curl -sS -X POST "$medic_url/hooks/uptime-kuma" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' --data "$body")"
echo "medic answered: $reply"
id="$(printf '%s' "$reply" | python3 -c 'import json,sys; print(json.load(sys.stdin)["incident_id"])')"

say "Waiting for the incident to settle (the model takes a few seconds on CPU)"
state=""
for _ in $(seq 1 600); do
  state="$(curl -s -H "Authorization: Bearer $token" "$medic_url/api/v1/incidents/$id" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
  case "$state" in resolved | escalated | awaiting_approval | failed) break ;; esac
  sleep 0.5
done
elapsed="$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")"
echo "state: $state after ${elapsed} s"

say "Timeline"
curl -s -H "Authorization: Bearer $token" "$medic_url/api/v1/incidents/$id" | python3 -c '
import json, sys
i = json.load(sys.stdin)
for e in i["timeline"]:
    print("  %s  %-13s %s" % (e["at"][11:23], e["kind"], e["message"][:150]))
d = i.get("level_1_diagnosis")
if d:
    print("\n  model said:", json.dumps({k: d.get(k) for k in ("cause", "confidence", "action_command")}))
else:
    print("\n  no model was asked: the evidence checks found the fix (" + (i.get("checks") or {}).get("service_state", "?") + ")")'

say "nginx"
curl -s -w '  /health → %{http_code}\n' -o /dev/null "http://127.0.0.1:$web_port/health" || true

say "Email in the outbox ($work/data/outbox)"
for _ in $(seq 1 50); do compgen -G "$work/data/outbox/*.eml" >/dev/null && break; sleep 0.2; done
for eml in "$work"/data/outbox/*.eml; do
  [[ -f "$eml" ]] || { echo "  (none)"; break; }
  echo "  $(basename "$eml"): $(grep -m1 '^Subject:' "$eml")"
done

say "Audit chain"
"$MEDIC_BIN" --config "$work/medic.toml" audit verify

[[ "$state" == resolved ]] || die "the incident ended $state, not resolved"
say "Healed by the real model in ${elapsed} s"
