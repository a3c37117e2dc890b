local imageroute = require("imageroute")
local socket = require("socket")
local flow = require("imageroute.flow")
local server = require("support.server")
local fx = require("support.fixtures")

describe("many calls in flight on one thread", function()
  local s = server.for_block()

  it("batch returns results in input order and isolates failures", function()
    local r = fx.route(s, {max_retries = 0})
    local bad = fx.behaving(s, {status = 400, error = {message = "nope", type = "invalid_request_error"}},
      {max_retries = 0})
    local jobs = {}
    for i = 1, 9 do
      jobs[i] = {route = (i % 3 == 0) and bad or r, params = {prompt = "job " .. i}}
    end
    jobs[10] = {call = "edit", route = r, params = {prompt = "no image"}}           -- refused before sending
    jobs[11] = {route = "not a route", params = {prompt = "x"}}                   -- raises inside: isolated
    jobs[12] = {call = "paint", route = r, params = {prompt = "x"}}
    local done = {}
    local results = imageroute.batch(jobs, {max_in_flight = 3, on_done = function(i, res, err)
      done[#done + 1] = i
      assert.truthy(res or err)
    end})
    assert.equal(12, #results)
    assert.equal(12, #done)
    local plain = assert(imageroute.generate(r, {prompt = "job 4"}))
    for i = 1, 9 do
      if i % 3 == 0 then
        assert.is_false(results[i].ok)
        assert.equal(400, results[i].error.status)
      else
        assert.is_true(results[i].ok, tostring(results[i].error))
        assert.equal(1, #results[i].result.images)
      end
    end
    assert.equal(plain.images[1].bytes, results[4].result.images[1].bytes) -- order kept
    assert.equal("validation", results[10].error.kind)
    assert.equal("validation", results[11].error.kind)
    assert.equal("call", results[12].error.field)
  end)

  it("drops results after on_done when asked, so a long batch holds only what is in flight", function()
    local seen = 0
    local results = imageroute.batch({{route = fx.route(s), params = {prompt = "a"}},
      {route = fx.route(s), params = {prompt = "b"}}}, {keep_results = false, on_done = function(_, res)
        seen = seen + #res.images
      end})
    assert.equal(2, seen)
    assert.is_true(results[1].ok)
    assert.is_nil(results[1].result)
  end)

  it("keeps at most max_in_flight requests open (the server counts them)", function()
    local r = fx.behaving(s, {delay = 0.2})
    local jobs = {}
    for i = 1, 12 do jobs[i] = {route = r, params = {prompt = "p" .. i}} end
    local t0 = socket.gettime()
    local results = imageroute.batch(jobs, {max_in_flight = 4})
    local wall = socket.gettime() - t0
    for i = 1, 12 do assert.is_true(results[i].ok) end
    local st = s:stats()
    assert.equal(4, st.max_in_flight)
    assert.equal(12, st.requests)
    assert.truthy(wall >= 0.6 and wall < 2.0, wall) -- 3 waves of 0.2 s, not 12 in a row
  end)

  it("runs multi-step flows as coroutines that overlap on the server", function()
    local assistant = fx.behaving(s, {delay = 0.3}, {shape = "responses", model = "gpt-5"})
    local images = fx.behaving(s, {delay = 0.3})
    local function one_flow(name)
      return function()
        local f = flow.new{name = name}
        local concept = assert(f:step("concept", imageroute.respond, assistant, {input = name, tool = false}))
        local image = assert(f:step("image", imageroute.respond, assistant, {input = concept.output_text,
          previous_response_id = concept.id, tool_choice = "image_generation"}))
        assert(f:step("edit", imageroute.edit, images, {prompt = "more", image = image.images[1]}))
        return f
      end
    end
    local t0 = socket.gettime()
    local a, b, c = imageroute.run(one_flow("a"), one_flow("b"), one_flow("c"))
    local wall = socket.gettime() - t0
    assert.is_true(a:ok() and b:ok() and c:ok())
    local reqs = s:requests()
    assert.equal(9, #reqs)
    -- the first steps of the three flows were in flight together
    local overlap = 0
    for i = 1, #reqs do
      for j = i + 1, #reqs do
        if reqs[i].t_start < reqs[j].t_end and reqs[j].t_start < reqs[i].t_end then overlap = overlap + 1 end
      end
    end
    assert.truthy(overlap >= 9, overlap)
    assert.truthy(wall < 2.0, wall) -- 3 steps of 0.3 s each, not 9
    assert.equal(3, s:stats().max_in_flight)
  end)

  it("re-raises an error from a coroutine after the others end", function()
    local ended = false
    assert.has_error(function()
      imageroute.run(function() error("boom") end, function()
        imageroute.generate(fx.route(s), {prompt = "p"})
        ended = true
      end)
    end, "boom")
    assert.is_true(ended)
  end)

  it("can be driven step by step from another event loop", function()
    local results = {}
    imageroute.spawn(function()
      results[1] = imageroute.generate(fx.behaving(s, {delay = 0.1}), {prompt = "embedded"})
    end)
    local guard = 0
    while imageroute.pending() > 0 do
      local r, w, timeout = imageroute.fds()
      assert.is_table(r)
      assert.is_table(w)
      local rs, ws = {}, {}
      for _, fd in ipairs(r) do rs[#rs + 1] = {getfd = function() return fd end} end
      for _, fd in ipairs(w) do ws[#ws + 1] = {getfd = function() return fd end} end
      socket.select(rs, ws, math.min(timeout or 0.1, 0.1))
      imageroute.step(0)
      guard = guard + 1
      assert.truthy(guard < 1000)
    end
    assert.equal(1, #results[1].images)
  end)
end)
