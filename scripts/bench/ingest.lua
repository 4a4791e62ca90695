-- wrk script: Uptime Kuma JSON webhooks, a DOWN/UP mix over 100 monitors.
-- Each thread walks monitors in turn; every 4th request for a monitor is an UP, the rest are DOWNs,
-- so incidents open, join and recover all the time.
local counter = 0
local token = os.getenv("MEDIC_BENCH_TOKEN") or "bench-token-0123456789"

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  requests = 0
end

function request()
  requests = requests + 1
  local n = requests + id * 7919
  local monitor = n % 100
  local status = (math.floor(n / 100) % 4 == 3) and 1 or 0
  local body = string.format(
    '{"heartbeat":{"monitorID":%d,"status":%d,"time":"2026-11-22 03:35:13.562","msg":"bench %d","important":true},' ..
    '"monitor":{"id":%d,"name":"bench-%d","type":"http","url":"http://127.0.0.1:9/health","tags":[]},' ..
    '"msg":"[bench-%d] bench"}', monitor, status, n, monitor, monitor, monitor)
  return wrk.format("POST", "/hooks/uptime-kuma", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
