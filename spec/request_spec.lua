local imageroute = require("imageroute")
local core = require("imageroute.core")
local json = require("imageroute.json")
local request = require("imageroute.request")
local responses = require("imageroute.shapes.responses")
local server = require("support.server")
local fx = require("support.fixtures")

describe("the normalised request (imageroute.request)", function()
  local s = server.for_block()

  it("says once what an Images API call asks", function()
    local req = request.normalise("generate", fx.route(s), {prompt = "p", n = 3, size = "1024x1536", quality = "low"})
    assert.same({"images", "gpt-image-1", "gpt-image-1", 3, 3, "1024x1536", "low", "p", true},
      {req.shape, req.model, req.top_model, req.n, req.n_asked, req.size, req.quality, req.prompt, req.need_image})
    local edit = request.normalise("edit", fx.route(s), {prompt = "p", image = {"a.png", "b.png"}, mask = "m.png"})
    assert.same({"a.png", "b.png"}, edit.images)
    assert.equal("m.png", edit.mask)
  end)

  it("says once what a Responses call asks: the text model on top, the merged tool, the fields sent", function()
    local r = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-2"})
    local params = {prompt = "a fox", size = "1536x1024", tool = {quality = "high"}}
    local req = request.normalise("generate", r, params)
    assert.equal("responses", req.shape)
    assert.equal("gpt-5", req.top_model)
    assert.equal("gpt-image-2", req.model)
    assert.equal("gpt-image-2", req.tool_model)
    assert.equal("1536x1024", req.size) -- the flat option, in the tool
    assert.equal("high", req.quality)
    assert.equal(1, req.n)
    assert.same({model = "gpt-5", input = "a fox", tool_choice = {type = "image_generation"},
      tools = {{type = "image_generation", model = "gpt-image-2", size = "1536x1024", quality = "high"}}}, req.send)
    assert.same({prompt = "a fox", size = "1536x1024", tool = {quality = "high"}}, params)
    -- the same option flat and in params.tool: a problem naming both places (nothing dropped)
    local both = request.normalise("generate", r, {prompt = "a fox", size = "1024x1024", tool = {size = "1536x1024"}})
    assert.equal("size", both.problem.field)
    assert.matches("params.tool.size", both.problem.message, 1, true)
    assert.is_nil(request.normalise("respond", r, {input = "x", tool = false}).tool)
    assert.equal("prompt", request.normalise("generate", r, {}).problem.field)
  end)

  it("is built once per call: rules, cost and log share one table", function()
    local params = {prompt = "p"}
    local a = request.of("generate", fx.route(s), params)
    local route = fx.route(s)
    assert.equal(request.of("generate", route, params), request.of("generate", route, params))
    assert.are_not.equal(a, request.of("edit", route, params))
  end)

  it("the Responses body is JSON built in Lua, and the core sends it as it is", function()
    local r = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-2"})
    local png = assert(imageroute.generate(fx.route(s), {prompt = "input"})).images[1]
    s:reset()
    local req = request.normalise("respond", r, {input = {"make it blue", png}, input_image_mask = png,
      tool_choice = "image_generation"})
    local body = assert(responses.build(req))
    local decoded = json.decode(body)
    assert.truthy(decoded.input[1].content[2].image_url:find("^data:image/png;base64,"))
    assert.truthy(decoded.tools[1].input_image_mask.image_url:find("^data:image/png;base64,"))
    local res = assert(core.respond(r, {body = body}))
    assert.same(decoded, s:requests()[1].json)
    assert.is_table(res.reply) -- the core's result: the reply for the shape to read
    assert.is_string(res.reply.text)
    assert.truthy(res.reply.text:find("@imageroute-image:0", 1, true))
    assert.truthy(res.reply.images[1].sha256)
  end)

  it("the C core enforces no stop rule: an image model on top is sent when the caller skips the rule", function()
    local r = fx.route(s, {shape = "responses", model = "gpt-image-1"})
    local _, err = imageroute.respond(r, {input = "x"})
    assert.equal("image_model_on_top", err.rule)
    assert.equal(0, #s:requests())
    imageroute.respond(r, {input = "x"}, {skip_rules = {"image_model_on_top"}})
    assert.equal(1, #s:requests())
    assert.equal("gpt-image-1", s:requests()[1].json.model)
  end)

  it("core.respond refuses a body that is not JSON text", function()
    local _, err = core.respond(fx.route(s, {shape = "responses"}), {body = {model = "x"}})
    assert.equal("validation", err.kind)
    assert.equal("body", err.field)
    local _, e2 = core.generate(fx.route(s), {prompt = "x"}) -- params are not a shaped request
    assert.equal("endpoint", e2.field)
    assert.equal(0, #s:requests())
  end)
end)

describe("the core's contract for shaped requests (src/api.c)", function()
  local s = server.for_block()

  local PNG
  setup(function() PNG = assert(imageroute.generate(fx.route(s), {prompt = "input"})).images[1] end)

  it("start_edit builds the multipart form from the parts, in their order, and sends nothing else", function()
    s:reset()
    local x = assert(core.start_edit(fx.route(s), {endpoint = "/images/edits", parts = {
      {name = "model", value = "gpt-image-1"},
      {name = "prompt", value = "make it blue"},
      {name = "image[]", image = PNG, filename = "a.png", type = "image/png"},
      {name = "image[]", data = PNG.bytes, filename = "b.png", type = "image/png"},
    }}))
    local res = assert(x:wait())
    local parts = s:requests()[1].parts
    assert.same({"model", "prompt", "image[]", "image[]"}, {parts[1].name, parts[2].name, parts[3].name, parts[4].name})
    assert.equal("make it blue", parts[2].value)
    assert.same({"a.png", "b.png"}, {parts[3].filename, parts[4].filename})
    assert.equal(PNG.length, parts[3].size)
    assert.is_table(res.reply) -- no reader: the reply as the core read it
  end)

  it("keeps no policy: an edit with 17 images is sent when the caller waives the rule", function()
    local list = {}
    for i = 1, 17 do list[i] = PNG end
    local _, err = imageroute.edit(fx.route(s), {prompt = "x", image = list})
    assert.equal("edit_images_max", err.rule)
    assert.equal(0, #s:requests())
    imageroute.edit(fx.route(s), {prompt = "x", image = list}, {skip_rules = {"edit_images_max"}})
    local n = 0
    for _, p in ipairs(s:requests()[1].parts) do if p.name == "image[]" then n = n + 1 end end
    assert.equal(17, n)
  end)

  it("hands the reply to the reader, and downloads the links its plan names on the same transfer", function()
    s:script{{b64_mode = "url"}}
    local seen
    local x = assert(core.start_generate(fx.route(s), {endpoint = "/images/generations",
      body = '{"model":"gpt-image-1","prompt":"p"}',
      reader = function(reply)
        seen = reply
        local body = json.decode(reply.text)
        return {images = {}, urls = {body.data[1].url}, url_index = {1}}
      end}))
    local res = assert(x:wait())
    assert.equal(200, seen.status)
    assert.equal(1, #res.images)
    assert.equal("image/png", res.images[1].mime)
    assert.equal(1, res.images[1].index)
    assert.equal("download", res.attempt_log[#res.attempt_log].phase)
  end)

  it("fails the call with the reader's error, or a decode error when the reader raises", function()
    local x = assert(core.start_generate(fx.route(s), {endpoint = "/images/generations",
      body = '{"model":"gpt-image-1","prompt":"p"}',
      reader = function() return nil, core.error("decode", "not what I wanted", {code = "mine"}) end}))
    local _, err = x:wait()
    assert.equal("mine", err.code)
    assert.truthy(err.request_id:find("^req_"))
    assert.equal(1, #err.attempt_log)
    x = assert(core.start_generate(fx.route(s), {endpoint = "/images/generations",
      body = '{"model":"gpt-image-1","prompt":"p"}', reader = function() error("boom") end}))
    _, err = x:wait()
    assert.equal("decode", err.kind)
    assert.truthy(err.message:find("boom", 1, true))
  end)

  it("refuses a malformed shaped request before sending", function()
    local cases = {
      {core.start_generate, {endpoint = "images/generations", body = "{}"}, "endpoint"},
      {core.start_generate, {endpoint = "/x/../y", body = "{}"}, "endpoint"},
      {core.start_generate, {endpoint = "/images/generations", body = "{}", reader = 5}, "reader"},
      {core.start_edit, {endpoint = "/images/edits"}, "parts"},
      {core.start_edit, {endpoint = "/images/edits", parts = {{value = "x"}}}, "parts"},
      {core.start_edit, {endpoint = "/images/edits", parts = {{name = "image"}}}, "parts"},
    }
    for _, c in ipairs(cases) do
      local x, err = c[1](fx.route(s), c[2])
      assert.is_nil(x)
      assert.equal("validation", err.kind)
      assert.equal(c[3], err.field)
    end
    assert.equal(0, #s:requests())
  end)
end)
