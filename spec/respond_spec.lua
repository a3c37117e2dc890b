local imageroute = require("imageroute")
local core = require("imageroute.core")
local server = require("support.server")
local fx = require("support.fixtures")

describe("respond (Responses API with the image_generation tool)", function()
  local s = server.for_block()
  local png
  setup(function() png = assert(imageroute.generate(fx.route(s), {prompt = "input"})).images[1] end)

  local function route(extra)
    return fx.responses_route(s, fx.with({image_model = "gpt-image-2"}, extra))
  end

  it("puts the text model on top and the image model and its options in the tool", function()
    local res = assert(imageroute.respond(route(), {
      input = "Draw a lighthouse", size = "1024x1536", quality = "high", background = "opaque",
      output_format = "webp", output_compression = 70, moderation = "low", partial_images = 2,
      input_fidelity = "low", action = "generate", instructions = "be brief",
    }))
    local req = s:requests()[1]
    assert.equal("/v1/responses", req.path)
    assert.same({
      model = "gpt-5", input = "Draw a lighthouse", instructions = "be brief",
      tools = {{type = "image_generation", model = "gpt-image-2", size = "1024x1536", quality = "high",
        background = "opaque", output_format = "webp", output_compression = 70, moderation = "low",
        partial_images = 2, input_fidelity = "low", action = "generate"}},
    }, req.json)
    assert.equal("gpt-5", res.model)
    assert.equal("gpt-image-2", res.tool_model)
    assert.equal(1, #res.images)
    local img = res.images[1]
    assert.equal("image/png", img.mime)
    assert.truthy(img.call_id:find("^ig_"))
    assert.equal("completed", img.status)
    assert.truthy(res.id:find("^resp_"))
    assert.equal(res.id, res.response_id)
    assert.equal("completed", res.status)
    assert.truthy(#res.output_text > 0)
    assert.truthy(res.request_id:find("^req_"))
    assert.same({{id = img.call_id, status = "completed"}}, res.image_calls)
    assert.equal("responses", res.shape)
    assert.truthy(res.usage.total_tokens > 0)
  end)

  it("merges params.tool, takes params.image_model as the tool's model, and forces the tool by name", function()
    assert(imageroute.respond(route(), {input = "draw", tool = {quality = "low"},
      image_model = "gpt-image-1-mini", tool_choice = "image_generation"}))
    local body = s:requests()[1].json
    assert.same({{type = "image_generation", quality = "low", model = "gpt-image-1-mini"}}, body.tools)
    assert.same({type = "image_generation"}, body.tool_choice)
    -- two image models named: refused before sending, nothing dropped
    local _, err = imageroute.respond(route(), {input = "draw", tool = {model = "x"}, image_model = "gpt-image-1-mini"})
    assert.equal("validation", err.kind)
    assert.equal("image_model", err.field)
    assert.equal(1, #s:requests())
  end)

  it("sends no tool for a text-only turn", function()
    local res = assert(imageroute.respond(route(), {input = "Write a concept", tool = false}))
    local body = s:requests()[1].json
    assert.is_nil(body.tools)
    assert.is_nil(body.tool)
    assert.equal(0, #res.images)
    assert.truthy(#res.output_text > 0)
  end)

  it("builds input items: text, an Image as a data URL, a URL with detail", function()
    assert(imageroute.respond(route(), {input = {
      "Make this image brighter",
      png,
      {type = "input_image", image_url = "https://cdn.example/x.png", detail = "high"},
      {type = "input_image", image = png.bytes, detail = "low"},
    }}))
    local input = s:requests()[1].json.input
    assert.equal(1, #input)
    assert.equal("user", input[1].role)
    local c = input[1].content
    assert.same({type = "input_text", text = "Make this image brighter"}, c[1])
    assert.equal("input_image", c[2].type)
    assert.equal("data:image/png;base64," .. core.b64encode(png.bytes), c[2].image_url)
    assert.same({type = "input_image", image_url = "https://cdn.example/x.png", detail = "high"}, c[3])
    assert.same({type = "input_image", image_url = c[2].image_url, detail = "low"}, c[4])
  end)

  it("passes a list of messages through, converting their content items", function()
    assert(imageroute.respond(route(), {input = {
      {role = "developer", content = {"You draw posters."}},
      {role = "user", content = {"draw", {type = "input_image", image = png}}},
    }}))
    local input = s:requests()[1].json.input
    assert.equal("developer", input[1].role)
    assert.same({{type = "input_text", text = "You draw posters."}}, input[1].content)
    assert.truthy(input[2].content[2].image_url:find("^data:image/png;base64,"))
  end)

  it("sends a mask given as an image as input_image_mask.image_url", function()
    assert(imageroute.respond(route(), {input = {"edit", png}, input_image_mask = png.bytes}))
    local tool = s:requests()[1].json.tools[1]
    assert.equal("data:image/png;base64," .. core.b64encode(png.bytes), tool.input_image_mask.image_url)
    s:reset()
    assert(imageroute.respond(route(), {input = {"edit", png}, input_image_mask = {file_id = "file-1"}}))
    assert.same({file_id = "file-1"}, s:requests()[1].json.tools[1].input_image_mask)
  end)

  it("continues a conversation with previous_response_id", function()
    local first = assert(imageroute.respond(route(), {input = "Draw a cat", tool_choice = "image_generation"}))
    local second = assert(imageroute.respond(route(), {input = "Now make it blue",
      previous_response_id = first.id, tool_choice = "image_generation"}))
    assert.equal(first.id, s:requests()[2].json.previous_response_id)
    assert.truthy(second.output_text:find(first.id, 1, true))
    assert.are_not.equal(first.id, second.id)
    local _, err = imageroute.respond(route(), {input = "x", previous_response_id = "resp_unknown"})
    assert.equal("api", err.kind)
    assert.equal(400, err.status)
  end)

  it("refuses an image model as the top-level model before sending", function()
    for _, m in ipairs{"gpt-image-2", "gpt-image-1", "dall-e-3", "chatgpt-image-latest"} do
      local res, err = imageroute.respond(route(), {input = "draw", model = m})
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal("model", err.field)
      assert.truthy(err.message:find("put the image model in the tool", 1, true))
    end
    local _, err = imageroute.respond(route{model = "gpt-image-2"}, {input = "draw"})
    assert.equal("model", err.field)
    assert.equal(0, #s:requests())
  end)

  it("refuses an empty input", function()
    for _, input in ipairs{"", {}, 5} do
      local _, err = imageroute.respond(route(), {input = input})
      assert.equal("input", err.field)
    end
    local _, err = imageroute.respond(route(), {})
    assert.equal("input", err.field)
  end)

  it("reports a failed image call with the response's error, not silently", function()
    s:script{{response_status = "failed"}}
    local res, err = imageroute.respond(route(), {input = "draw", tool_choice = "image_generation"})
    assert.is_nil(res)
    assert.equal("api", err.kind)
    assert.equal("server_error", err.code)
    assert.truthy(err.response_id:find("^resp_"))
    assert.equal("failed", err.image_calls[1].status)
    assert.truthy(err.image_calls[1].error:find("no image", 1, true))
  end)

  it("surfaces incomplete_details", function()
    s:script{{response_status = "incomplete"}}
    local res = assert(imageroute.respond(route(), {input = "write something", tool = false}))
    assert.equal("incomplete", res.status)
    assert.equal("max_output_tokens", res.incomplete_details.reason)
  end)

  it("runs generate and edit on a responses route through the forced tool", function()
    local res = assert(imageroute.generate(route(), {prompt = "a kite", size = "1024x1024"}))
    assert.equal(1, #res.images)
    local body = s:requests()[1].json
    assert.equal("a kite", body.input)
    assert.same({type = "image_generation"}, body.tool_choice)
    assert.equal("1024x1024", body.tools[1].size)
    local ed = assert(imageroute.edit(route(), {prompt = "make it red", image = {png, png.bytes}, mask = png}))
    assert.equal(1, #ed.images)
    local b2 = s:requests()[2].json
    assert.equal("make it red", b2.input[1].content[1].text)
    assert.equal(3, #b2.input[1].content)
    assert.truthy(b2.tools[1].input_image_mask.image_url:find("^data:image/png"))
  end)
end)
