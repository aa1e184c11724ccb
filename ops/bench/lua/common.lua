-- Shared helpers for the wrk scripts of ops/bench/rest (loaded with dofile by create.lua and
-- get.lua; wrk gives each thread its own Lua state, so everything here exists once per thread).
--
-- Every thread counts its responses: 2xx in `ok`, anything else in `bad` (with the first
-- offending status and body kept in `bad_status` / `bad_body` so a failing run shows why).
-- done() prints one machine-readable line that ops/bench/rest parses:
--   BENCH_RESULT requests=N duration_s=S rps=R p50_ms=A p99_ms=B non2xx=C sockerr=D
-- plus a human-readable report of the errors, if any.

local M = {}

local threads = {}
-- BENCH_ID_BASE lets several create runs against one server use disjoint iupds.
local next_id = tonumber(os.getenv("BENCH_ID_BASE") or "0") or 0

-- setup runs in the main Lua state once per thread, before the threads start: hand each
-- thread a distinct id (it becomes the global `id` in that thread's state).
function M.setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

ok, bad, sent = 0, 0, 0
bad_status, bad_body = "", ""

function M.response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad = bad + 1
    if bad_status == "" then
      bad_status = tostring(status)
      bad_body = string.sub(body or "", 1, 300)
    end
  end
end

-- done runs in the main state after the run; `extra(thread)` may add per-thread output.
function M.done(summary, latency, requests, extra)
  local non2xx, oks = 0, 0
  for _, t in ipairs(threads) do
    local b = t:get("bad") or 0
    non2xx = non2xx + b
    oks = oks + (t:get("ok") or 0)
    if b > 0 then
      io.write(string.format("BENCH_ERROR thread %d: %d non-2xx responses, first: %s %s\n",
        t:get("id"), b, t:get("bad_status"), t:get("bad_body")))
    end
  end
  local e = summary.errors
  local sockerr = e.connect + e.read + e.write + e.timeout
  if sockerr > 0 then
    io.write(string.format("BENCH_ERROR socket errors: connect %d, read %d, write %d, timeout %d\n",
      e.connect, e.read, e.write, e.timeout))
  end
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.2f p99_ms=%.2f non2xx=%d sockerr=%d ok=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, non2xx, sockerr, oks))
  if extra then
    for _, t in ipairs(threads) do extra(t) end
  end
end

return M
