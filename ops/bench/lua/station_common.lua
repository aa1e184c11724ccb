-- Shared helpers for the wrk scripts of ops/bench/station (loaded with dofile). Builds on
-- common.lua: a response counts as good only when it is HTTP 2xx AND carries
-- <outcome>OK</outcome>; anything else is counted in `bad` (first offender kept) and reported
-- by common.done() as BENCH_ERROR lines and in non2xx= of BENCH_RESULT.
--
-- Notices: the seeded positions have NAV 3 12 <base 13> <check 2> with base = 9 followed by the
-- 12-digit position index, check = (3 12 base) mod 93 (SPEC §7.1).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

local M = { setup = common.setup, done = common.done }

function M.response(status, headers, body)
  if status >= 200 and status < 300 and body and string.find(body, "<outcome>OK</outcome>", 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if bad_status == "" then
      bad_status = tostring(status)
      bad_body = string.sub(body or "", 1, 400)
    end
  end
end

function M.nav(i)
  local digits = string.format("312%s%012d", "9", i)
  local r = 0
  for k = 1, #digits do
    r = (r * 10 + string.byte(digits, k) - 48) % 93
  end
  return string.format("%s%02d", digits, r)
end

-- delay() support: BENCH_DELAY_MS > 0 spaces the requests of each connection by a random
-- 0..2*BENCH_DELAY_MS ms (mean BENCH_DELAY_MS; jittered so connections do not fire in bursts).
M.delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
function M.delay()
  return math.random(0, 2 * M.delay_ms)
end

return M
