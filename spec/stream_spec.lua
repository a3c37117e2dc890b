local imageroute = require("imageroute")
local core = require("imageroute.core")
local socket = require("socket")
local server = require("support.server")
local fx = require("support.fixtures")

local PNG_1x1 = fx.PNG_1x1

describe("streaming partial images", function()
  local s = server.for_block()

  it("delivers Images API partials as they arrive and returns the final image (generate)", function()
    local seen, times = {}, {}
    local res = assert(imageroute.generate(fx.behaving(s, {pace = 0.15}),
      {prompt = "streamed", stream = true, partial_images = 2},
      {on_partial = function(img, index)
        seen[#seen + 1] = {index = index, mime = img.mime, bytes = img.bytes}
        times[#times + 1] = socket.gettime()
      end}))
    assert.same(true, s:requests()[1].json.stream)
    assert.equal(2, #seen)
    assert.same({0, 1}, {seen[1].index, seen[2].index})
    assert.equal("image/png", seen[1].mime)
    assert.are_not.equal(seen[1].bytes, seen[2].bytes)
    -- the first partial reached Lua while the stream was still going (the server paces events)
    assert.truthy(times[2] - times[1] >= 0.1, times[2] - times[1])
    assert.equal(1, #res.images)
    assert.equal(2, res.partial_images_received)
    assert.is_true(res.stream)
    assert.truthy(res.usage.total_tokens > 0)
    -- the final image is the same picture as without streaming
    local plain = assert(imageroute.generate(fx.route(s), {prompt = "streamed"}))
    assert.equal(plain.images[1].bytes, res.images[1].bytes)
  end)

  it("streams edits (image_edit.* events)", function()
    local src = assert(imageroute.generate(fx.route(s), {prompt = "src"})).images[1]
    local n = 0
    local res = assert(imageroute.edit(fx.route(s), {prompt = "e", image = src, stream = true, partial_images = 3},
      {on_partial = function() n = n + 1 end}))
    assert.equal(3, n)
    assert.equal(1, #res.images)
    assert.equal("stream=true", (function()
      for _, p in ipairs(s:requests()[2].parts) do if p.name == "stream" then return "stream=" .. p.value end end
    end)())
  end)

  it("streams the Responses tool: partial_image events, final image from output_item.done", function()
    local r = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-1"})
    local idx = {}
    local res = assert(imageroute.respond(r, {input = "draw a cat", stream = true, partial_images = 3,
      tool_choice = "image_generation"}, {on_partial = function(img, i) idx[#idx + 1] = i .. ":" .. img.call_id end}))
    assert.equal(3, #idx)
    local call = res.images[1].call_id
    assert.same({"0:" .. call, "1:" .. call, "2:" .. call}, idx)
    assert.equal(1, #res.images)
    assert.equal("completed", res.status)
    assert.truthy(#res.output_text > 0)
    assert.equal(3, res.partial_images_received)
    assert.same({{id = call, status = "completed"}}, res.image_calls)
  end)

  it("streams Chat Completions chunks and still finds the image link", function()
    local r = fx.route(s, {shape = "chat", lane = "provider", provider = "gw", model = "gpt-image-2",
      accepted = "local test server"})
    local res = assert(imageroute.generate(r, {prompt = "dog", chat = {stream = true}}))
    assert.equal(1, #res.images)
    assert.truthy(res.content:find("![image](", 1, true))
  end)

  it("turns a failed streamed response into an error, keeping its partial images count", function()
    s:script{{response_status = "failed"}}
    local r = fx.route(s, {shape = "responses", model = "gpt-5"})
    local _, err = imageroute.respond(r, {input = "draw", stream = true, partial_images = 1,
      tool_choice = "image_generation"})
    assert.equal("api", err.kind)
  end)

  it("reports progress in bytes and seconds", function()
    local calls, last = 0, 0
    assert(imageroute.generate(fx.route(s), {prompt = "p"}, {on_progress = function(bytes, elapsed)
      calls = calls + 1
      assert.truthy(bytes >= last)
      assert.truthy(elapsed >= 0)
      last = bytes
    end}))
    assert.truthy(calls >= 1)
    assert.truthy(last > 10000)
  end)
end)

describe("the SSE parser", function()
  local IMG = PNG_1x1 .. "\255\255\255\191" -- trailing bytes whose base64 holds '/'
  local b64 = core.b64encode(PNG_1x1)
  local b64_slash = core.b64encode(IMG)
  assert(b64_slash:find("/", 1, true))
  local stream = table.concat{
    ": a comment line\r\n",
    "event: image_generation.partial_image\r\n",
    'data: {"type":"image_generation.partial_image","b64_json":"', b64, '","partial_image_index":0}\r\n\r\n',
    "event: image_generation.completed\n",
    'data: {"type":"image_generation.completed",\n',
    'data: "b64_json":"data:image/png;base64,', b64_slash:gsub("/", "\\/"), '","usage":{"total_tokens":5}}\n\n',
    "id: 7\nretry: 100\nevent: something.unknown\ndata: {\"x\":1}\n\n",
    "data: [DONE]\n\n",
  }
  local function check(events)
    assert.equal(3, #events)
    assert.equal("image_generation.partial_image", events[1].type)
    assert.equal(PNG_1x1, events[1].images[1])
    assert.equal("", events[1].bad[1])
    assert.truthy(events[1].data:find('"partial_image_index":0', 1, true))
    assert.falsy(events[1].data:find(b64, 1, true)) -- the base64 never lands in the JSON text
    assert.equal("image_generation.completed", events[2].type)
    assert.equal("\n", events[2].data:match("completed\",(\n)\"b64_json"))
    assert.equal(IMG, events[2].images[1]) -- JSON's escaped "\/" decoded as '/'
    assert.equal("something.unknown", events[3].type)
    assert.equal('{"x":1}', events[3].data)
    assert.is_true(events.done)
  end

  it("parses a whole stream", function()
    check(assert(core._sse_parse({stream})))
  end)

  it("gives the same events for a split at every byte boundary", function()
    for k = 1, #stream - 1 do
      check(assert(core._sse_parse({stream:sub(1, k), stream:sub(k + 1)})))
    end
  end)

  it("gives the same events fed one byte at a time", function()
    local bytes = {}
    for i = 1, #stream do bytes[i] = stream:sub(i, i) end
    check(assert(core._sse_parse(bytes)))
  end)

  it("handles a recorded multi-MB server stream byte-chunked at random places", function()
    local srv = server.start()
    local st, body = srv:request("POST", "/v1/images/generations",
      {prompt = "big", stream = true, partial_images = 2}, {["x-imageroute-test"] = '{"png_bytes": 3000000}'})
    srv:stop()
    assert.equal(200, st)
    assert.truthy(#body > 4000000, #body)
    local whole = assert(core._sse_parse({body}))
    math.randomseed(7)
    for _ = 1, 5 do
      local chunks, i = {}, 1
      while i <= #body do
        local n = math.random(1, 5000)
        chunks[#chunks + 1] = body:sub(i, i + n - 1)
        i = i + n
      end
      local ev = assert(core._sse_parse(chunks))
      assert.equal(#whole, #ev)
      for j = 1, #whole do
        assert.equal(whole[j].data, ev[j].data)
        assert.same(whole[j].images, ev[j].images)
      end
    end
  end)

  it("marks invalid base64 instead of decoding garbage", function()
    local ev = assert(core._sse_parse({'data: {"b64_json":"!!!!"}\n\n'}))
    assert.truthy(ev[1].bad[1]:find("alphabet", 1, true))
  end)

  it("enforces the per-event cap", function()
    local big = 'data: {"b64_json":"' .. ("A"):rep(5000) .. '"}\n\n'
    local ev, err = core._sse_parse({big}, 1000)
    assert.is_nil(ev)
    assert.truthy(err:find("cap", 1, true))
    assert.truthy(core._sse_parse({big}, 10000))
  end)
end)
