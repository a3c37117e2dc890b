-- Client-side rate limits: a call over a route's limits waits (yielding to the loop) instead of
-- being sent into a 429; a 429 with retry-after pauses the route's buckets for every call.
local imageroute = require("imageroute")
local core = require("imageroute.core")
local server = require("support.server")
local fx = require("support.fixtures")

describe("route limits", function()
  local s = server.for_block()

  it("holds the requests sent in a window to the limit, calls waiting instead of failing", function()
    local route = fx.route(s, {name = "limited-req", limits = {requests = 3, window = 1}})
    local jobs = {}
    for i = 1, 7 do jobs[i] = {route = route, params = {prompt = "p" .. i}} end
    local t0 = core.now()
    local results = imageroute.batch(jobs, {max_in_flight = 7})
    local wall = core.now() - t0
    for _, r in ipairs(results) do assert.is_true(r.ok, tostring(r.error)) end
    -- 7 requests at 3 per second: the server saw them in three waves, about a second apart
    local times = {}
    for _, rec in ipairs(s:requests()) do times[#times + 1] = rec.t_start end
    table.sort(times)
    assert.equal(7, #times)
    for i = 4, 7 do assert.is_true(times[i] - times[i - 3] >= 0.95, "window held: " .. (times[i] - times[i - 3])) end
    assert.is_true(wall >= 1.9 and wall < 5, "waited about two windows: " .. wall)
    local waited = 0
    for _, r in ipairs(results) do if r.result.limit_wait then waited = waited + 1 end end
    assert.equal(4, waited)
  end)

  it("counts images (n) and in-flight calls", function()
    local route = fx.behaving(s, {delay = 0.3},
      {name = "limited-img", limits = {images = 4, window = 1, max_in_flight = 2}})
    local jobs = {}
    for i = 1, 4 do jobs[i] = {route = route, params = {prompt = "p" .. i, n = 2}} end
    local results = imageroute.batch(jobs, {max_in_flight = 4})
    for _, r in ipairs(results) do assert.is_true(r.ok, tostring(r.error)) end
    local st = s:stats()
    assert.is_true(st.max_in_flight <= 2, "at most 2 in flight: " .. tostring(st.max_in_flight))
    local times = {}
    for _, rec in ipairs(s:requests()) do times[#times + 1] = rec.t_start end
    table.sort(times)
    assert.is_true(times[3] - times[1] >= 0.95, "4 images per second: the third call waited a window")
  end)

  it("never holds a call past its deadline: refused with deadline_exceeded, nothing sent", function()
    -- a window wait that would pass the deadline: refused at once
    local route = fx.route(s, {name = "limited-deadline", limits = {requests = 1, window = 5}})
    assert(imageroute.generate(route, {prompt = "first"}))
    local t0 = core.now()
    local res, err = imageroute.generate(route, {prompt = "second"}, {deadline = 1})
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.equal("deadline_exceeded", err.code)
    assert.is_true(core.now() - t0 < 0.5, "refused at once, not after waiting")
    assert.equal(1, #s:requests())
    -- a slot wait: held until the deadline, then refused
    local slot = fx.behaving(s, {delay = 1.5}, {name = "limited-slot", limits = {max_in_flight = 1}})
    local out = {}
    imageroute.spawn(function() return imageroute.generate(slot, {prompt = "holds the slot"}) end,
      function(_, r, e) out[1] = {r, e} end)
    imageroute.spawn(function() return imageroute.generate(slot, {prompt = "waits"}, {deadline = 0.5}) end,
      function(_, r, e) out[2] = {r, e, core.now()} end)
    t0 = core.now()
    while not (out[1] and out[2]) and core.now() - t0 < 10 do imageroute.step(0.05) end
    assert.truthy(out[1] and out[1][1], "the first call is served")
    assert.is_nil(out[2][1])
    assert.equal("deadline_exceeded", out[2][2].code)
    assert.is_true(out[2][3] - t0 >= 0.45 and out[2][3] - t0 < 1.4, "refused at its deadline")
    assert.equal(2, #s:requests())
  end)

  it("a 429 with retry-after pauses the route's bucket for the calls that share it", function()
    s:script({{status = 429, headers = {["retry-after"] = "1"}}})
    local route = fx.route(s, {name = "limited-429", max_retries = 0, limits = {requests_per_minute = 600}})
    local _, err = imageroute.generate(route, {prompt = "first"})
    assert.equal(429, err.status)
    local t0 = core.now()
    local res = assert(imageroute.generate(route, {prompt = "second"}))
    assert.is_true(core.now() - t0 >= 0.9, "the second call waited the pause")
    assert.truthy(res.limit_wait)
  end)

  it("waits without blocking other flows, and refuses bad limits when the route is built", function()
    local slow = fx.route(s, {name = "limited-flow", limits = {requests = 1, window = 1}})
    local free = fx.route(s, {name = "unlimited"})
    local order = {}
    imageroute.run(function()
      assert(imageroute.generate(slow, {prompt = "a"}))
      assert(imageroute.generate(slow, {prompt = "b"})) -- waits about a second
      order[#order + 1] = "slow done"
    end, function()
      for i = 1, 3 do assert(imageroute.generate(free, {prompt = "f" .. i})) end
      order[#order + 1] = "free done"
    end)
    assert.same({"free done", "slow done"}, order)
    local _, e = imageroute.route{name = "x", limits = {requests = 0}}
    assert.equal("limits", e.field)
    local _, e2 = imageroute.route{name = "x", limits = {rpm = 5}}
    assert.equal("limits", e2.field)
  end)
end)
