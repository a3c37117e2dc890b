-- In-flight leases in Redis while the call runs inside a host's event loop (cqueues, luv): the
-- host loop alone drives the call, its timers renew the lease, so the slot stays held for as long
-- as the call runs (many TTLs), as seen by a second, independent store client, and comes free
-- when the call ends. And a call that waits for a shared window inside the host loop is woken by
-- the host's timer when the window moves on. Each case runs in a process of its own
-- (spec/support/hostloop_worker.lua) and is skipped, saying why, where its library is missing.
local redis = require("support.redis")
local server = require("support.server")

local ROOT = (function()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/[^/]*$") or "."
end)()
local WORKER = ROOT .. "/spec/support/hostloop_worker.lua"

local TTL = 0.5    -- the store's lease_ttl (s): renewed every TTL / 3 while the call runs
local HOLD = 2.0   -- how long the local server holds the call (s): four TTLs
local WINDOW = 0.4 -- the shared window of the window case (s)

-- runs the worker; its output lines (nil and why when the loop's library is missing)
local function worker(...)
  local q = {}
  for i, a in ipairs{...} do q[i] = "'" .. tostring(a) .. "'" end
  local p = assert(io.popen(("lua5.4 %s %s 2>&1"):format(WORKER, table.concat(q, " "))))
  local lines = {}
  for l in p:lines() do lines[#lines + 1] = l end
  p:close()
  local skip = lines[1] and lines[1]:match("^skip (.*)$")
  if skip then return nil, skip end
  return lines
end

-- What the samples say: the slot was held at every sample taken after the first TTL while the
-- call ran, there were such samples well past one TTL, and it was free once the call had ended.
local function check_lease(lines)
  local samples, call_end, free_after, status, msg = {}, nil, nil, nil, nil
  for _, l in ipairs(lines) do
    local t, free = l:match("^sample ([%d.]+) (%S+)$")
    if t then samples[#samples + 1] = {t = tonumber(t), free = tonumber(free)}
    else
      local et, fa, st, m = l:match("^end ([%d.]+) (%S+) (%S+) (.*)$")
      if et then call_end, free_after, status, msg = tonumber(et), tonumber(fa), st, m
      else error("the worker said: " .. l) end
    end
  end
  assert.equal("ok", status, msg)
  assert.is_true(call_end >= HOLD, "the server held the call for " .. HOLD .. " s: " .. call_end)
  local late, last = 0, 0
  for _, smp in ipairs(samples) do
    if smp.t > 1.2 * TTL and smp.t < call_end - 0.05 then
      late = late + 1
      assert.equal(0, smp.free, ("the slot was free %.2f s into the call (lease TTL %g s): not renewed")
        :format(smp.t, TTL))
      last = math.max(last, smp.t)
    end
  end
  assert.is_true(late >= 5, "samples taken while the call ran past its first TTL: " .. late)
  assert.is_true(last > 3 * TTL, ("the slot was last seen held %.2f s into the call"):format(last))
  assert.equal(1, free_after, "the slot is released when the call ends")
end

-- Two calls in a row on 1 request per WINDOW s: the second waited for the window, woken by the
-- host's timer (there is no socket event to wake it, and the guard is 10 s away). The route has an
-- in-flight slot too, with a lease TTL under 3 x WINDOW: the wake-up the first call asked for its
-- next renewal is still pending, and earlier, when the second starts waiting (the loop keeps one
-- wake-up time; once that one fired, the wait's own must be asked again).
local function check_window(lines)
  local wall, w1, w2, status, msg = (lines[1] or ""):match("^window ([%d.]+) (%S+) (%S+) (%S+) (.*)$")
  assert.truthy(wall, "the worker said: " .. table.concat(lines, " | "))
  assert.equal(1, #lines, table.concat(lines, " | "))
  assert.equal("ok", status, msg)
  assert.equal(0, tonumber(w1), "the first call did not wait")
  assert.is_true(tonumber(w2) >= WINDOW - 0.1, "the second call waited for the window: " .. w2)
  assert.is_true(tonumber(wall) < WINDOW + 1, "woken when the window moved on: both calls took " .. wall .. " s")
end

redis.describe("state stores inside host loops", function()
  local s = server.for_block()
  local r = redis.for_block()
  before_each(function() r:call("FLUSHDB") end)

  for _, loop in ipairs{"cqueues", "luv"} do
    -- asked of a lua5.4 of its own: this process does not load the library
    local present = os.execute(("lua5.4 -e 'require(%q)' >/dev/null 2>&1"):format(loop))
    local case = present and it or function(name) pending(name .. " (" .. loop .. " is not installed)") end
    case(loop .. ": the lease of a call held for 4 TTLs is renewed from the host loop's timers", function()
      local lines, skip = worker(loop, "lease", s.base_url, r.url, TTL, HOLD)
      assert.truthy(lines, skip)
      check_lease(lines)
      assert.equal(1, #s:requests(), "one call reached the server")
    end)

    case(loop .. ": a call waiting for a shared window is woken by the host loop's timer", function()
      local lines, skip = worker(loop, "window", s.base_url, r.url, WINDOW, WINDOW * 1.5)
      assert.truthy(lines, skip)
      check_window(lines)
      assert.equal(2, #s:requests())
    end)
  end
end)
