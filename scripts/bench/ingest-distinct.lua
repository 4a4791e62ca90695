-- wrk script: Uptime Kuma JSON DOWN webhooks, a new monitor for every request, so each one opens an
-- incident that the pipeline must drive (no inventory: it escalates to humans, with an email).
local counter = 0
local token = os.getenv("MEDIC_BENCH_TOKEN") or "bench-token-0123456789"
local run = os.getenv("MEDIC_BENCH_RUN") or "r"

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  requests = 0
end

function request()
  requests = requests + 1
  local monitor = string.format("%s-%d-%d", run, id, requests)
  local body = string.format(
    '{"heartbeat":{"status":0,"time":"2026-11-22 03:35:13.562","msg":"bench %s","important":true},' ..
    '"monitor":{"id":"%s","name":"bench-%s","type":"http","url":"http://127.0.0.1:9/health","tags":[]},' ..
    '"msg":"[bench] down"}', monitor, monitor, monitor)
  return wrk.format("POST", "/hooks/uptime-kuma", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
