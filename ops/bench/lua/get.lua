-- wrk script: reads random existing debt positions.
--
--   wrk -s get.lua URL -- PATH_PREFIX KEY SEEDS
--
-- PATH_PREFIX is the path the iupd is appended to (e.g.
-- /api/v1/organizations/80001234568/debtpositions/ or /get/ for the baseline), KEY the API
-- key, SEEDS what create.lua reported: "t:n,t:n,..." meaning BENCH-t-2 .. BENCH-t-n exist.
-- (n = 1 is skipped: wrk calls request() once in thread 0 to check it, so BENCH-t-1 of the
-- first thread of each create run is generated but never sent.)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(dir .. "common.lua")

setup = common.setup
response = common.response
done = function(summary, latency, requests) common.done(summary, latency, requests) end

local prefix, ranges, total = "/", {}, 0

function init(args)
  prefix = args[1] or prefix
  wrk.headers["Ocp-Apim-Subscription-Key"] = args[2] or ""
  for t, n in string.gmatch(args[3] or "", "(%d+):(%d+)") do
    n = tonumber(n)
    if n > 1 then
      table.insert(ranges, { t = tonumber(t), n = n - 1 })
      total = total + n - 1
    end
  end
  if total == 0 then
    ranges, total = { { t = 0, n = 1 } }, 1 -- nothing seeded: BENCH-0-2 (404 unless it exists)
  end
  math.randomseed(os.time() + 7919 * (id or 0))
end

function request()
  -- uniform over all seeded positions
  local k = math.random(total)
  for _, r in ipairs(ranges) do
    if k <= r.n then
      return wrk.format("GET", prefix .. string.format("BENCH-%d-%d", r.t, k + 1))
    end
    k = k - r.n
  end
end
