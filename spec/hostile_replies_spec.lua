-- Hostile replies: what a provider gateway can send back in a 2xx, against the real local server
-- (raw bodies and event streams queued with s:script) and a one-connection drip server
-- (spec/support/drip_stream.lua). Every case ends in a typed error or a correct result.
local imageroute = require("imageroute")
local core = require("imageroute.core")
local dispatch = require("imageroute.dispatch")
local socket = require("socket")
local server = require("support.server")
local fx = require("support.fixtures")
local drip = require("support.drip_stream")

local PNG_1x1 = fx.PNG_1x1
local GIF_1x1 = "GIF89a\1\0\1\0\128\0\0\255\255\255\0\0\0!\249\4\1\0\0\0\0,\0\0\0\0\1\0\1\0\0\2\2D\1\0;"

local function dataurl(bytes, mime) return "data:" .. (mime or "image/png") .. ";base64," .. core.b64encode(bytes) end
local json = require("imageroute.json").encode

-- a chat completion whose message.content is `content`
local function chat_body(content)
  return json{id = "chatcmpl-1", object = "chat.completion", model = "gpt-image-2",
    choices = {{index = 0, message = {role = "assistant", content = content}, finish_reason = "stop"}}}
end

local function sse(events)
  local out = {}
  for _, e in ipairs(events) do
    out[#out + 1] = (e[1] and ("event: " .. e[1] .. "\n") or "") .. "data: " ..
      (type(e[2]) == "table" and json(e[2]) or e[2]) .. "\n\n"
  end
  return table.concat(out)
end

describe("hostile replies", function()
  local s = server.for_block()
  local served_png, served_url
  setup(function()
    local r = assert(imageroute.generate(fx.behaving(s, {b64_mode = "url"}), {prompt = "served"}))
    served_png, served_url = r.images[1].bytes, r.images[1].url
    assert.truthy(served_url:find("^http://127%.0%.0%.1:%d+/files/"))
  end)

  local function chat_route(extra)
    local cfg = fx.with({shape = "chat", lane = "provider", provider = "local-gateway", model = "gpt-image-2",
      accepted = "the bundled local server, for tests", max_retries = 0}, extra)
    return fx.route(s, cfg)
  end
  local function responses_route(extra)
    return fx.responses_route(s, fx.with({max_retries = 0}, extra))
  end

  describe("chat content given as a list of parts", function()
    it("keeps every image, image_url parts and Markdown links in document order (long texts)", function()
      local long = ("A long paragraph of gateway chatter. "):rep(200) -- > the luaL_Buffer's stack box
      s:script{{body = chat_body{
        {type = "text", text = long .. "\n\n![first](" .. served_url .. ")\n\n" .. long},
        {type = "image_url", image_url = {url = dataurl(PNG_1x1)}},
        {type = "text", text = long},
        {type = "image_url", image_url = dataurl(GIF_1x1, "image/gif")}, -- image_url as a plain string
        {type = "text", text = "and last ![fourth](" .. dataurl(PNG_1x1) .. ")"},
      }}}
      local res = assert(imageroute.generate(chat_route(), {prompt = "four images"}))
      assert.equal(4, #res.images)
      assert.is_true(served_png == res.images[1].bytes)       -- the Markdown link, downloaded
      assert.is_true(PNG_1x1 == res.images[2].bytes)          -- the first image_url part
      assert.equal("gif", res.images[3].format)           -- the string-form image_url part
      assert.is_true(PNG_1x1 == res.images[4].bytes)          -- the last Markdown link (a data URL)
      local order = {}
      for i, img in ipairs(res.images) do order[i] = img.index end
      assert.same({1, 2, 3, 4}, order)
      assert.same({nil, "image_url", "image_url", nil}, {res.links[1].type, res.links[2].type, res.links[3].type,
        res.links[4].type})
      assert.equal("first", res.links[1].alt)
      assert.equal(long .. "\n\n![first](" .. served_url .. ")\n\n" .. long .. "\n" .. long ..
        "\nand last ![fourth](" .. dataurl(PNG_1x1) .. ")\n", res.content)          -- the text, without the image parts
    end)

    it("does not lose the image with short texts", function()
      s:script{{body = chat_body{{type = "text", text = "a"}, {type = "image_url", image_url = {url = served_url}},
        {type = "text", text = "b"}}}}
      local res = assert(imageroute.generate(chat_route(), {prompt = "short"}))
      assert.equal(1, #res.images)
      assert.is_true(served_png == res.images[1].bytes)
      assert.equal("a\nb\n", res.content)
    end)

    it("skips junk parts and ends in a decode error when no image is left", function()
      s:script{{body = chat_body{5, true, {type = "text", text = {nested = {1, 2}}},
        {type = "image_url", image_url = {url = 5}}, {type = "image_url"}, {{{"deep"}}},
        {type = "audio", text = "not text either"}, "a bare string part"}}}
      local res, err = imageroute.generate(chat_route(), {prompt = "junk"})
      assert.is_nil(res)
      assert.equal("decode", err.kind)
      assert.equal("no_image_link", err.code)
      assert.equal("a bare string part\n", err.content)
      assert.truthy(err.message:find("a bare string part", 1, true))
      assert.equal(200, err.status)
    end)

    it("ignores stand-ins forged in the text; a part hidden behind an open code fence still counts", function()
      s:script{{body = chat_body{{type = "text", text = "![](imageroute-part:1) ![](imageroute-part:7)\n```"},
        {type = "image_url", image_url = {url = dataurl(PNG_1x1)}}}}}
      local res = assert(imageroute.generate(chat_route(), {prompt = "forged"}))
      assert.equal(1, #res.images) -- part 1 once (the forged stand-in outside the fence), 7 does not exist
      assert.is_true(PNG_1x1 == res.images[1].bytes)
    end)

    it("types every value: content as a number, an empty list, a huge list, choices that are not a list", function()
      local cases = {
        {json{choices = {{message = {content = 12}}}}, "decode", "empty_content"},
        {'{"choices":[{"message":{"content":[]}}]}', "decode", "empty_content"},
        {'{"choices":[{"message":{"content":{"text":"x"}}}]}', "decode", "empty_content"},
        {'{"choices":"nope"}', "decode", nil},
        {'{"choices":[{"message":"nope"}]}', "decode", nil},
        {'{"choices":[{"message":{"content":null,"refusal":"I will not."}}]}', "api", "refusal"},
      }
      for _, c in ipairs(cases) do
        s:script{{body = c[1]}}
        local res, err = imageroute.generate(chat_route(), {prompt = "typed"})
        assert.is_nil(res, c[1])
        assert.equal(c[2], err.kind, c[1])
        assert.equal(c[3], err.code, c[1])
        assert.equal(200, err.status, c[1])
        assert.equal(1, #err.attempt_log, c[1])
      end
      local parts = {}
      for i = 1, 20000 do parts[i] = {type = "text", text = "x"} end
      parts[#parts + 1] = {type = "image_url", image_url = {url = dataurl(PNG_1x1)}}
      s:script{{body = chat_body(parts)}}
      local res = assert(imageroute.generate(chat_route(), {prompt = "huge"}))
      assert.equal(1, #res.images)
      assert.equal(40000, #res.content)
    end)
  end)

  describe("a 2xx with text and no image", function()
    local text = "I can't draw that, but here is a poem instead."
    local text_only = json{id = "resp_text", object = "response", status = "completed", model = "gpt-5",
      output = {{type = "message", id = "msg_1", role = "assistant", content = {{type = "output_text", text = text}}}}}

    it("is a decode error carrying the text for generate and edit on a responses route", function()
      for _, call in ipairs{"generate", "edit"} do
        s:script{{body = text_only}}
        local params = {prompt = "a fox"}
        if call == "edit" then params.image = PNG_1x1 end
        local res, err = imageroute[call](responses_route(), params)
        assert.is_nil(res, call)
        assert.equal("decode", err.kind, call)
        assert.equal("no_image", err.code, call)
        assert.equal(text, err.output_text, call)
        assert.truthy(err.message:find(text, 1, true), call)
        assert.equal("resp_text", err.response_id, call)
        assert.equal(200, err.status, call)
        assert.truthy(err.request_id, call)
      end
    end)

    it("is a success for respond, which may end with text only", function()
      s:script{{body = text_only}}
      local res = assert(imageroute.respond(responses_route(), {input = "a poem please"}))
      assert.equal(0, #res.images)
      assert.equal(text, res.output_text)
      assert.equal("resp_text", res.response_id)
    end)

    it("is a decode error carrying the text for generate and edit on a chat route", function()
      for _, call in ipairs{"generate", "edit"} do
        s:script{{body = chat_body(text)}}
        local params = {prompt = "a fox"}
        if call == "edit" then params.image = PNG_1x1 end
        local res, err = imageroute[call](chat_route(), params)
        assert.is_nil(res, call)
        assert.equal("decode", err.kind, call)
        assert.equal(text, err.content, call)
        assert.truthy(err.message:find(text, 1, true), call)
      end
    end)

    it("is a decode error for generate on an images route, quoting what came back", function()
      s:script{{body = '{"created": 1, "data": [], "note": "no images today"}'}}
      local res, err = imageroute.generate(fx.route(s, {max_retries = 0}), {prompt = "a fox"})
      assert.is_nil(res)
      assert.equal("decode", err.kind)
      assert.truthy(err.message:find("no images today", 1, true))
      assert.equal(200, err.status)
    end)
  end)

  describe("images in document order", function()
    it("keeps data[] order when a url entry (downloaded) comes before a b64_json one", function()
      s:script{{body = json{created = 1, data = {{url = served_url}, {b64_json = core.b64encode(PNG_1x1)}}}}}
      local res = assert(imageroute.generate(fx.route(s), {prompt = "mixed"}))
      assert.equal(2, #res.images)
      assert.same({1, 2}, {res.images[1].index, res.images[2].index})
      assert.is_true(served_png == res.images[1].bytes)
      assert.is_true(PNG_1x1 == res.images[2].bytes)
    end)
  end)

  describe("errors raised mid-stream", function()
    local partial = {type = "response.image_generation_call.partial_image", item_id = "ig_1", output_index = 0,
      partial_image_index = 0, partial_image_b64 = core.b64encode(PNG_1x1)}
    -- long enough that the stream is still running when the bad event arrives (dripped)
    local padding = (": padding\n"):rep(400)

    it("an error event carries request_id, status, response_id and the attempt log", function()
      local body = sse{
        {"response.created", {type = "response.created", response = {id = "resp_mid", status = "in_progress"}}},
        {"response.image_generation_call.partial_image", partial},
        {"error", {type = "error",
          error = {type = "server_error", code = "overloaded", message = "the model is busy"}}},
      } .. padding
      s:script{{body = body, content_type = "text/event-stream", drip = {bytes = 200, interval = 0.02}}}
      local partials = 0
      local t0 = socket.gettime()
      local res, err = imageroute.respond(responses_route(), {input = "draw", stream = true, partial_images = 1},
        {on_partial = function() partials = partials + 1 end})
      local elapsed = socket.gettime() - t0
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("overloaded", err.code)
      assert.truthy(err.message:find("the model is busy", 1, true))
      assert.equal(200, err.status)
      assert.equal(s:requests()[1].request_id or err.request_id, err.request_id)
      assert.truthy(err.request_id:find("^req_"))
      assert.equal("resp_mid", err.response_id)
      assert.equal(1, #err.attempt_log)
      assert.equal("api", err.attempt_log[1].error_kind)
      assert.equal(200, err.attempt_log[1].status)
      assert.equal(err.request_id, err.attempt_log[1].request_id)
      assert.equal(1, partials)
      assert.is_true(elapsed < (#body / 200) * 0.02, "ended at the error event, not at the end of the body")
    end)

    it("a decode failure inside a stream is a decode error with the same fields", function()
      local body = sse{
        {"image_generation.partial_image", {type = "image_generation.partial_image", partial_image_index = 0,
          b64_json = core.b64encode(PNG_1x1)}},
        {"image_generation.partial_image", "{this is not json"},
      } .. padding
      s:script{{body = body, content_type = "text/event-stream", drip = {bytes = 200, interval = 0.02}}}
      local res, err = imageroute.generate(fx.route(s, {max_retries = 0}), {prompt = "x", stream = true,
        partial_images = 1})
      assert.is_nil(res)
      assert.equal("decode", err.kind)
      assert.equal(200, err.status)
      assert.truthy(err.request_id:find("^req_"))
      assert.equal(1, #err.attempt_log)
      assert.equal("decode", err.attempt_log[1].error_kind)
    end)

    it("an error event in a stream that already ended is reported the same way", function()
      s:script{{body = sse{{"error", {type = "error", error = {message = "late", code = {not_a = "string"}}}}},
        content_type = "text/event-stream"}}
      local res, err = imageroute.generate(fx.route(s, {max_retries = 0}), {prompt = "x", stream = true})
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.is_nil(err.code) -- a table there is not taken
      assert.equal(200, err.status)
      assert.truthy(err.request_id)
      assert.equal("api", err.attempt_log[#err.attempt_log].error_kind)
      assert.truthy(tostring(err):find("late", 1, true))
    end)
  end)

  describe("callbacks and handles", function()
    local head = sse{{"image_generation.partial_image", {type = "image_generation.partial_image",
      partial_image_index = 0, b64_json = core.b64encode(PNG_1x1)}}}

    -- a server dripping head (stopped after the test), and a route to it
    local function dripping()
      local d = drip.start{head = head, seconds = 8}
      finally(function() d:stop() end)
      return d, assert(imageroute.route{name = "drip", base_url = d.base_url, model = "gpt-image-1",
        api_key_env = fx.KEY_ENV, timeout = 20, max_retries = 0})
    end

    it("an on_partial that raises stops the transfer at once and drops the connection", function()
      local d, route = dripping()
      local logfile = os.tmpname()
      finally(function() os.remove(logfile) end)
      local t0 = socket.gettime()
      local ok, e = pcall(imageroute.generate, route, {prompt = "x", stream = true, partial_images = 1},
        {on_partial = function() error("the caller had enough") end, log = logfile})
      local elapsed = socket.gettime() - t0
      assert.is_false(ok)
      assert.truthy(tostring(e):find("the caller had enough", 1, true))
      assert.is_true(elapsed < 3, "took " .. elapsed .. " s of a 20 s timeout")
      local how, after = d:outcome(3)
      assert.equal("dropped", how)
      assert.is_true(after < 3)
      assert.equal(0, core.pending())
      -- the call was still priced and logged, as a cancelled one
      local recs = imageroute.log.read(logfile)
      local last = recs[#recs]
      assert.equal("cancelled", last.error_kind)
      assert.equal("req_drip", last.request_id)
      assert.equal(200, last.status)
    end)

    it("inside the scheduler, the error reaches the coroutine's caller and the transfer stops", function()
      local d, route = dripping()
      local t0 = socket.gettime()
      local ok, e = pcall(imageroute.run, function()
        return imageroute.generate(route, {prompt = "x", stream = true, partial_images = 1},
          {on_partial = function() error("stop from a coroutine") end})
      end)
      assert.is_false(ok)
      assert.truthy(tostring(e):find("stop from a coroutine", 1, true))
      assert.is_true(socket.gettime() - t0 < 3)
      assert.equal("dropped", (d:outcome(3)))
      assert.equal(0, imageroute.pending())
    end)

    it("transfer:cancel ends it with a cancelled error, and drops the connection", function()
      local d, route = dripping()
      local x = assert(dispatch.start("generate", route, {prompt = "x", stream = true, partial_images = 1}))
      local deadline = socket.gettime() + 5
      while #x:take_partials() == 0 and socket.gettime() < deadline do core.step(0.05) end
      assert.is_true(x:cancel("enough"))
      assert.is_true(x:done())
      local res, err = x:wait()
      assert.is_nil(res)
      assert.equal("cancelled", err.kind)
      assert.equal("cancelled", err.code)
      assert.truthy(err.message:find("enough", 1, true))
      assert.equal(200, err.status)
      assert.equal("req_drip", err.request_id)
      assert.equal("cancelled", err.attempt_log[1].error_kind)
      assert.is_false(x:cancel()) -- already done: the outcome is kept
      assert.equal("dropped", (d:outcome(3)))
    end)

    it("close then wait returns a closed error at once, never spins", function()
      local x = assert(dispatch.start("generate", fx.behaving(s, {delay = 5}), {prompt = "slow"}))
      core.step(0.05)
      -- `<close>` is Lua 5.4 syntax (a 5.3 parser rejects the whole file): compiled only there; 5.3
      -- calls the metamethod a to-be-closed variable would call
      if _VERSION == "Lua 5.3" then getmetatable(x).__close(x)
      else assert(load("do local closing <close> = ... end", "=close", "t"))(x) end
      assert.is_true(x:done())
      local t0 = socket.gettime()
      local res, err = x:wait()
      assert.is_true(socket.gettime() - t0 < 0.5)
      assert.is_nil(res)
      assert.equal("cancelled", err.kind)
      assert.equal("closed", err.code)
      local res2, err2 = x:result()
      assert.is_nil(res2)
      assert.equal("closed", err2.code)
      assert.equal(0, core.pending())
    end)

    it("close on a finished transfer keeps its result", function()
      local x = assert(dispatch.start("generate", fx.route(s), {prompt = "quick"}))
      assert(x:wait())
      x:close()
      local res = assert(x:result())
      assert.equal(1, #res.images)
    end)
  end)
end)
