-- Mixed traffic for tastebud: 50% GET /users/{id}/recommendations, 30% POST /recommendations
-- (a five-item history), 20% POST /events (unique idempotency keys). Configure with env vars:
-- TASTEBUD_TOKEN (bearer token for /events), TB_USERS, TB_ITEMS (ids are u<n> / i<n>), TB_RUN.
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token = os.getenv("TASTEBUD_TOKEN") or ""
  n_users = tonumber(os.getenv("TB_USERS") or "1000")
  n_items = tonumber(os.getenv("TB_ITEMS") or "500")
  run = os.getenv("TB_RUN") or "run"
  n, bad, events, recs, hist = 0, 0, 0, 0, 0
  json = { ["Content-Type"] = "application/json" }
  auth = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }
end

function request()
  n = n + 1
  local r = n % 10
  if r < 5 then
    recs = recs + 1
    return wrk.format("GET", "/users/u" .. ((n * 7919) % n_users) .. "/recommendations?k=10", nil, nil)
  elseif r < 8 then
    hist = hist + 1
    local a = (n * 31) % (n_items - 5)
    local body = string.format('{"items":["i%d","i%d","i%d","i%d","i%d"],"k":10}', a, a + 1, a + 2, a + 3, a + 4)
    return wrk.format("POST", "/recommendations", json, body)
  else
    events = events + 1
    local body = string.format('{"user":"load-%d-%d","item":"i%d","event_id":"%s-%d-%d"}',
      tid, n % 97, n % n_items, run, tid, n)
    return wrk.format("POST", "/events", auth, body)
  end
end

function response(status, headers, body)
  if status >= 300 then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local bad_total, ev, rc, hi = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    ev = ev + t:get("events")
    rc = rc + t:get("recs")
    hi = hi + t:get("hist")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"timeouts":%d,"non2xx":%d,"status_errors":%d,"events_requested":%d,"user_requested":%d,"history_requested":%d,' ..
    '"p50_ms":%.3f,"p95_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, bad_total, e.status, ev, rc, hi,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
