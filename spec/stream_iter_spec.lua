-- imageroute.stream: streaming as an iterator, on the local server.
local imageroute = require("imageroute")
local socket = require("socket")
local server = require("support.server")
local fx = require("support.fixtures")

-- Every (kind, value) of one stream, with the time each arrived.
local function collect(route, params, opts)
  local got = {}
  for kind, value in imageroute.stream(route, params, opts) do
    got[#got + 1] = {kind = kind, value = value, t = socket.gettime()}
  end
  return got
end

local function kinds(got)
  local k = {}
  for i, g in ipairs(got) do k[i] = g.kind end
  return table.concat(k, ",")
end

describe("imageroute.stream", function()
  local s, dir = server.for_block{dir = true}

  it("generate on an images route: the partials as they arrive, then the result", function()
    local params = {prompt = "streamed", partial_images = 2}
    local got = collect(fx.behaving(s, {pace = 0.15}), params)
    assert.equal("partial,partial,result", kinds(got))
    assert.is_nil(params.stream) -- the caller's table is not changed
    assert.is_true(s:requests()[1].json.stream)
    assert.equal(0, got[1].value.partial_image_index)
    assert.equal(1, got[2].value.partial_image_index)
    assert.equal("image/png", got[1].value.mime)
    -- the first partial reached the loop body while the server was still pacing the events
    assert.truthy(got[2].t - got[1].t >= 0.1, got[2].t - got[1].t)
    local res = got[3].value
    assert.equal(1, #res.images)
    assert.equal(2, res.partial_images_received)
    assert.is_table(res.cost)
    assert.equal(0, imageroute.pending())
  end)

  it("edit on an images route", function()
    local src = assert(imageroute.generate(fx.route(s), {prompt = "src"})).images[1]
    local got = collect(fx.route(s), {prompt = "e", image = src, partial_images = 3})
    assert.equal("partial,partial,partial,result", kinds(got))
    assert.equal("/v1/images/edits", s:requests()[2].path)
    assert.equal(2, got[3].value.partial_image_index)
  end)

  it("respond on a responses route (kind chosen from params.input)", function()
    local r = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-1"})
    local got = collect(r, {input = "draw a cat", partial_images = 2, tool_choice = "image_generation"})
    assert.equal("partial,partial,result", kinds(got))
    assert.equal("/v1/responses", s:requests()[1].path)
    assert.is_true(s:requests()[1].json.stream)
    assert.equal(got[3].value.images[1].call_id, got[1].value.call_id)
    assert.equal("completed", got[3].value.status)
  end)

  it("a chat route: no partial images, the result alone", function()
    local r = fx.route(s, {shape = "chat", lane = "provider", provider = "gw", model = "gpt-image-2",
      accepted = "local test server"})
    local got = collect(r, {prompt = "dog"})
    assert.equal("result", kinds(got))
    assert.equal(1, #got[1].value.images)
  end)

  it("an error mid-stream: the partials that came, then the error last", function()
    local got = collect(fx.behaving(s, {truncate = true}, {max_retries = 0}), {prompt = "p", partial_images = 2})
    assert.equal("partial,error", kinds(got))
    local err = got[2].value
    assert.is_string(err.kind)
    assert.truthy(tostring(err):find("imageroute", 1, true))
    assert.equal(0, imageroute.pending())
  end)

  it("a refusal before sending is the one value, and nothing is sent", function()
    local r = fx.route(s, {shape = "responses", model = "gpt-image-1"}) -- an image model at the top level
    local got = collect(r, {input = "x", partial_images = 1})
    assert.equal("error", kinds(got))
    assert.equal("validation", got[1].value.kind)
    assert.equal(0, #s:requests())
  end)

  it("breaking out of the loop early stops the transfer and logs the call as closed", function()
    local log = dir .. "/closed.jsonl"
    local n, t0 = 0, socket.gettime()
    local route = fx.behaving(s, {pace = 1}, {log = log})
    local iter, st, ctl, closing = imageroute.stream(route, {prompt = "p", partial_images = 3})
    for kind in iter, st, ctl, closing do -- luacheck: ignore 512
      n = n + 1
      assert.equal("partial", kind)
      break
    end
    -- Lua 5.4 closed the stream on the break (its 4th value); 5.3 has no to-be-closed values
    if _VERSION == "Lua 5.3" then st:close() end
    assert.equal(1, n)
    -- the transfer is gone from the loop at once, not after the server's remaining 3 s of events
    assert.equal(0, imageroute.pending())
    assert.truthy(socket.gettime() - t0 < 2.5)
    local lines = assert(imageroute.log.read(log))
    local last = lines[#lines]
    assert.equal("stream_closed", last.error_code)
    assert.equal("connection", last.error_kind)
    assert.is_false(last.ok)
    -- the server saw its connection go away: its write of the next event failed
    local deadline = socket.gettime() + 5
    while s:stats().in_flight > 0 and socket.gettime() < deadline do socket.sleep(0.05) end
    assert.equal(0, s:stats().in_flight)
  end)

  it("inside flows, two streams progress at once (the iterator yields to the scheduler)", function()
    local order = {}
    local function flow(name)
      return function()
        for kind in imageroute.stream(fx.behaving(s, {pace = 0.3}), {prompt = name, partial_images = 2}) do
          order[#order + 1] = name .. ":" .. kind
        end
      end
    end
    local t0 = socket.gettime()
    imageroute.run(flow("a"), flow("b"))
    local took = socket.gettime() - t0
    assert.equal(6, #order)
    -- both streams' events interleave: b's first partial comes before a's result
    local first_b, last_a
    for i, e in ipairs(order) do
      if e == "b:partial" and not first_b then first_b = i end
      if e == "a:result" then last_a = i end
    end
    assert.truthy(first_b < last_a, table.concat(order, " "))
    -- paced 0.3 s between 3 events each: run one after the other they would take >= 1.2 s
    assert.truthy(took < 1.1, took)
    assert.equal(2, s:stats().max_in_flight)
  end)

  it("in a host's coroutine (cqueues adapter) it waits through the host: other coroutines keep running", function()
    local ok_cq, cqueues = pcall(require, "cqueues")
    if not ok_cq then pending("lua-cqueues is not installed") return end
    local cq = cqueues.new()
    local handle = require("imageroute.loop.cqueues").attach(cq)
    local got, ticks = {}, 0
    local done = false
    cq:wrap(function()
      for kind, v in imageroute.stream(fx.behaving(s, {pace = 0.2}), {prompt = "cq", partial_images = 2}) do
        got[#got + 1] = kind .. (kind == "partial" and v.partial_image_index or "")
      end
      done = true
      handle:detach() -- the adapter's watcher ends: cq:loop returns
    end)
    cq:wrap(function()
      while not done do
        ticks = ticks + 1
        cqueues.sleep(0.05)
      end
    end)
    local t0 = socket.gettime()
    assert(cq:loop(10))
    assert.truthy(socket.gettime() - t0 < 5)
    assert.equal("partial0,partial1,result", table.concat(got, ","))
    -- the other coroutine ran all along: 0.4 s of paced events, a tick every 0.05 s
    assert.truthy(ticks >= 5, ticks)
  end)

  it("close() by hand, without a for loop, is idempotent", function()
    local next_value, st = imageroute.stream(fx.behaving(s, {pace = 1}), {prompt = "p", partial_images = 3})
    assert.equal("partial", (next_value()))
    st:close()
    st:close()
    assert.is_nil(next_value())
    assert.equal(0, imageroute.pending())
  end)
end)
