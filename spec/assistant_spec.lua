-- imageroute.assistant as plain functions: where each option goes (no silent moves, tool merging),
-- and what a reply's output items become. The same behaviour against the local server is in
-- spec/tool_loop_spec.lua.
local assistant = require("imageroute.assistant")
local json = require("imageroute.json")
local imageroute = require("imageroute")

local route = {image_model = "gpt-image-2"}

local function tools_of(p) return p.tools end

describe("assistant.place: every option goes where the caller put it", function()
  it("flat tool options go into the image tool, the route's image model as its model", function()
    local p = assert(assistant.place(route, {input = "x", size = "1024x1024", quality = "low"}))
    assert.same({{type = "image_generation", size = "1024x1024", quality = "low", model = "gpt-image-2"}}, tools_of(p))
    assert.is_nil(p.size)
    assert.is_nil(p.quality)
    assert.is_true(json.is_array(p.tools))
  end)

  it("the app's tools are sent as given, and the image tool is added to them", function()
    local fn = {type = "function", name = "get_weather", parameters = {type = "object", properties = {}}}
    local p = assert(assistant.place(route, {input = "x", tools = {fn}, size = "1024x1536"}))
    assert.equal(2, #p.tools)
    assert.equal(fn, p.tools[1])
    assert.same({type = "image_generation", size = "1024x1536", model = "gpt-image-2"}, p.tools[2])
  end)

  it("a list that already holds an image_generation tool is sent as it is", function()
    local ig = {type = "image_generation", quality = "high"}
    local p = assert(assistant.place(route, {input = "x", tools = {{type = "function", name = "f"}, ig}}))
    assert.equal(2, #p.tools)
    assert.equal(ig, p.tools[2])
  end)

  it("flat options next to such a list would be dropped: refused, naming them", function()
    local p, err = assistant.place(route, {input = "x", size = "1024x1024",
      tools = {{type = "image_generation"}}})
    assert.is_nil(p)
    assert.equal("validation", err.kind)
    assert.equal("size", err.field)
    assert.matches("would not be sent", err.message)
  end)

  it("moderation: a string is the tool's, a table is the top level's", function()
    local p = assert(assistant.place(route, {input = "x", moderation = "low"}))
    assert.equal("low", p.tools[1].moderation)
    assert.is_nil(p.moderation)
    local top = {model = "omni-moderation-latest"}
    p = assert(assistant.place(route, {input = "x", moderation = top}))
    assert.equal(top, p.moderation)
    assert.is_nil(p.tools[1].moderation)
  end)

  it("background: true is background mode (top level), a string the image's background", function()
    local p = assert(assistant.place(route, {input = "x", background = true}))
    assert.is_true(p.background)
    assert.is_nil(p.tools[1].background)
    p = assert(assistant.place(route, {input = "x", background = "transparent"}))
    assert.equal("transparent", p.tools[1].background)
    assert.is_nil(p.background)
    p = assert(assistant.place(route, {input = "x", background = true, tool = {background = "opaque"}}))
    assert.is_true(p.background)
    assert.equal("opaque", p.tools[1].background)
  end)

  it("the same option flat and in params.tool is refused naming both places", function()
    local p, err = assistant.place(route, {input = "x", moderation = "low", tool = {moderation = "auto"}})
    assert.is_nil(p)
    assert.matches("params.tool.moderation", err.message, 1, true)
    assert.matches("top-level moderation", err.message, 1, true)
    assert.equal("ambiguous_placement", err.rule)
    p, err = assistant.place(route, {input = "x", size = "1024x1024", tool = {size = "1536x1024"}})
    assert.is_nil(p)
    assert.matches("params.tool.size", err.message, 1, true)
  end)

  it("a value of neither type is refused naming both places", function()
    local p, err = assistant.place(route, {input = "x", moderation = 3})
    assert.is_nil(p)
    assert.matches("top-level moderation", err.message, 1, true)
    assert.matches("params.tool.moderation", err.message, 1, true)
    p, err = assistant.place(route, {input = "x", background = 1})
    assert.is_nil(p)
    assert.equal("background", err.field)
  end)

  it("tool = false with tool options is refused (they would be dropped); top-level fields stay", function()
    local p, err = assistant.place(route, {input = "x", tool = false, moderation = "low"})
    assert.is_nil(p)
    assert.matches("dropped", err.message)
    p = assert(assistant.place(route, {input = "x", tool = false, moderation = {model = "omni-moderation-latest"},
      background = true}))
    assert.is_nil(p.tools)
    assert.is_true(p.background)
    assert.equal("omni-moderation-latest", p.moderation.model)
  end)

  it("tool = false with the app's tools sends those only", function()
    local p = assert(assistant.place(route, {input = "x", tool = false, tools = {{type = "function", name = "f"}}}))
    assert.equal(1, #p.tools)
    assert.equal("function", p.tools[1].type)
  end)

  it("an empty tools list stays an empty array", function()
    local p = assert(assistant.place(route, {input = "x", tool = false, tools = imageroute.array()}))
    assert.equal("[]", json.encode(p.tools))
  end)

  it("params is never changed", function()
    local params = {input = "x", size = "1024x1024", tool = {quality = "low"}}
    assert(assistant.place(route, params))
    assert.equal("1024x1024", params.size)
    assert.same({quality = "low"}, params.tool)
  end)

  it("image_model, tool.model and tool_choice", function()
    local p = assert(assistant.place(route, {input = "x", image_model = "gpt-image-1",
      tool_choice = "image_generation"}))
    assert.equal("gpt-image-1", p.tools[1].model)
    assert.same({type = "image_generation"}, p.tool_choice)
    local _, err = assistant.place(route, {input = "x", image_model = "gpt-image-1", tool = {model = "gpt-image-2"}})
    assert.equal("image_model", err.field)
  end)
end)

describe("assistant: output items and function calls", function()
  local reply = json.decode([[{"id":"resp_1","output":[
    {"type":"reasoning","id":"rs_1","summary":[]},
    {"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Oslo\"}",
     "status":"completed"},
    {"type":"function_call","id":"fc_2","call_id":"call_2","name":"broken","arguments":"{not json"},
    {"type":"image_generation_call","id":"ig_1","status":"completed","result":"QUJD"},
    {"type":"message","id":"msg_1","role":"assistant","content":[{"type":"output_text","text":"hi","annotations":[]}]}
  ]}]])

  it("function_calls keeps arguments as returned and decodes args (nil when not JSON)", function()
    local calls = assistant.function_calls(reply.output)
    assert.equal(2, #calls)
    assert.equal("call_1", calls[1].call_id)
    assert.equal("get_weather", calls[1].name)
    assert.equal('{"city":"Oslo"}', calls[1].arguments)
    assert.same({city = "Oslo"}, calls[1].args)
    assert.equal("{not json", calls[2].arguments)
    assert.is_nil(calls[2].args)
  end)

  it("output lists every item in order, the image call with its Image instead of base64", function()
    local img = imageroute.image(require("imageroute.localserver").image("x"))
    img.call_id = "ig_1"
    local out = assistant.output(reply.output, {img})
    assert.equal(5, #out)
    assert.same({"reasoning", "function_call", "function_call", "image_generation_call", "message"},
      {out[1].type, out[2].type, out[3].type, out[4].type, out[5].type})
    assert.is_nil(out[4].result)
    assert.equal(img, out[4].image)
    -- echoed back as input, the empty arrays are still arrays
    local s = json.encode({input = {out[1], out[5]}})
    assert.truthy(s:find('"summary":[]', 1, true), s)
    assert.truthy(s:find('"annotations":[]', 1, true), s)
  end)

  it("format_mismatch marks the image and reports it for the log", function()
    local img = imageroute.image(require("imageroute.localserver").image("y"))
    local m = assistant.format_mismatch({img}, "webp")
    assert.same({requested = "webp", got = "png"}, img.format_mismatch)
    assert.same({requested = "webp", got = "png", count = 1}, m)
    local same = imageroute.image(require("imageroute.localserver").image("z"))
    assert.is_nil(assistant.format_mismatch({same}, "png"))
    assert.is_nil(same.format_mismatch)
  end)

  it("classify_error: the verification 403 gets a fix naming the settings page", function()
    local err = assistant.classify_error({kind = "api", status = 403, message = "Your organization must be "
      .. "verified to use the model `gpt-image-1`. Please go to: https://platform.openai.com/settings/organization/"
      .. "general and click on Verify Organization."})
    assert.equal("organization_not_verified", err.code)
    assert.matches("https://platform.openai.com/settings/organization/general", err.fix, 1, true)
    assert.is_false(err.retryable)
    local other = assistant.classify_error({kind = "api", status = 403, message = "forbidden"})
    assert.is_nil(other.fix)
  end)

  it("moderation_block reads content_filter and flagged results", function()
    assert.is_nil(assistant.moderation_block({status = "completed", output = {}}))
    local b = assistant.moderation_block({status = "incomplete", incomplete_details = {reason = "content_filter"},
      moderation = {input = {type = "moderation_result", flagged = true}}})
    assert.equal("content_filter", b.reason)
    assert.is_true(b.input.flagged)
  end)
end)
