-- The local server's assistant-flow mocks, spoken to over HTTP with imageroute.api: function calls
-- and the function_call_output turn, background mode (queued, in_progress, completed, cancel),
-- moderation results and blocks, the verification 403, GET /models/{model}, the format switch,
-- and the raw JSON text recorded for each request.
local imageroute = require("imageroute")
local json = require("imageroute.json")
local server = require("support.server")
local fx = require("support.fixtures")

describe("local server: assistant flows on the Responses API", function()
  local s = server.for_block()
  local route
  setup(function() route = fx.route(s, {max_retries = 0}) end)

  local WEATHER = {type = "function", name = "get_weather", description = "Weather for a city",
    parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"}}}

  local function create(body)
    return imageroute.api(route, {method = "POST", path = "/responses", body = body})
  end

  it("calls the app's function when the input names it, and draws after the function_call_output", function()
    local r1 = assert(create{model = "gpt-5", input = "Draw tomorrow in Oslo; use get_weather",
      tools = {WEATHER, {type = "image_generation"}}})
    local out = r1.body.output
    assert.equal(1, #out)
    assert.equal("function_call", out[1].type)
    assert.equal("get_weather", out[1].name)
    assert.truthy(out[1].call_id:find("^call_"))
    assert.same({city = "Draw tomorrow in Oslo; use get_weather"}, json.decode(out[1].arguments))
    local r2 = assert(create{model = "gpt-5", previous_response_id = r1.body.id, tools = {WEATHER,
      {type = "image_generation"}}, input = {{type = "function_call_output", call_id = out[1].call_id,
      output = '{"forecast":"snow"}'}}})
    local types = {}
    for i, item in ipairs(r2.body.output) do types[i] = item.type end
    assert.same({"image_generation_call", "message"}, types)
    assert.truthy(r2.body.output[2].content[1].text:find("snow", 1, true))
  end)

  it("refuses a function_call_output that answers no call, as the API does", function()
    local _, err = create{model = "gpt-5", input = {{type = "function_call_output", call_id = "call_nope",
      output = "x"}}}
    assert.equal(400, err.status)
    assert.matches("No tool call found", err.message)
  end)

  it("tool_choice naming the function forces it; function_arguments is sent as it is", function()
    s:script{{function_arguments = "{not json"}}
    local r = assert(create{model = "gpt-5", input = "hello", tools = {WEATHER},
      tool_choice = {type = "function", name = "get_weather"}})
    assert.equal("{not json", r.body.output[1].arguments)
  end)

  it("background mode: queued, in_progress for the polls asked, then the final response", function()
    s:script{{background_polls = 2}}
    local r = assert(create{model = "gpt-5", input = "draw a fox", background = true,
      tools = {{type = "image_generation"}}})
    assert.equal("queued", r.body.status)
    assert.equal(0, #r.body.output)
    assert.truthy(r.text:find('"output":[]', 1, true))
    local id = r.body.id
    local statuses = {}
    for i = 1, 3 do statuses[i] = assert(imageroute.api(route, {path = "/responses/" .. id})).body.status end
    assert.same({"in_progress", "in_progress", "completed"}, statuses)
    local final = assert(imageroute.api(route, {path = "/responses/" .. id})).body
    assert.equal("image_generation_call", final.output[1].type)
    assert.is_true(final.background)
    assert.truthy(#final.output[1].result > 100)
  end)

  it("cancel stops a running background response; a foreground one cannot be cancelled", function()
    local r = assert(create{model = "gpt-5", input = "draw", background = true, tools = {{type = "image_generation"}}})
    local c = assert(imageroute.api(route, {method = "POST", path = "/responses/" .. r.body.id .. "/cancel"}))
    assert.equal("cancelled", c.body.status)
    assert.equal("cancelled", assert(imageroute.api(route, {path = "/responses/" .. r.body.id})).body.status)
    local f = assert(create{model = "gpt-5", input = "hello"})
    local _, err = imageroute.api(route, {method = "POST", path = "/responses/" .. f.body.id .. "/cancel"})
    assert.equal(400, err.status)
    local _, nf = imageroute.api(route, {path = "/responses/resp_missing"})
    assert.equal(404, nf.status)
  end)

  it("moderation: results with a top-level moderation object; a block is incomplete, content_filter", function()
    local r = assert(create{model = "gpt-5", input = "hello", moderation = {model = "omni-moderation-latest"}})
    assert.is_false(r.body.moderation.input.flagged)
    s:script{{moderation_block = true}}
    local b = assert(create{model = "gpt-5", input = "draw it", tools = {{type = "image_generation"}}})
    assert.equal("incomplete", b.body.status)
    assert.equal("content_filter", b.body.incomplete_details.reason)
    assert.is_true(b.body.moderation.input.flagged)
    assert.equal(0, #b.body.output)
  end)

  it("unverified: the 403 naming the image model and the settings page", function()
    s:script{{unverified = true}}
    local _, err = create{model = "gpt-5", input = "draw", tools = {{type = "image_generation", model = "gpt-image-1"}}}
    assert.equal(403, err.status)
    assert.matches("must be verified to use the model `gpt-image-1`", err.message, 1, true)
    assert.matches("https://platform.openai.com/settings/organization/general", err.message, 1, true)
  end)

  it("format_switch: the item claims webp, the bytes stay PNG", function()
    s:script{{format_switch = true}}
    local r = assert(create{model = "gpt-5", input = "draw", tools = {{type = "image_generation",
      output_format = "webp"}}})
    assert.equal("webp", r.body.output[1].output_format)
    local bytes = imageroute.core.b64decode(r.body.output[1].result)
    assert.equal("\137PNG", bytes:sub(1, 4))
  end)

  it("GET /models/{model}: the model object, or 404 model_not_found", function()
    local m = assert(imageroute.api(route, {path = "/models/gpt-image-2"}))
    assert.equal("model", m.body.object)
    assert.equal("gpt-image-2", m.body.id)
    local _, err = imageroute.api(route, {path = "/models/gpt-image-99"})
    assert.equal(404, err.status)
    assert.equal("model_not_found", err.code)
  end)

  it("records the JSON text as sent, so [] and {} can be told apart", function()
    assert(create{model = "gpt-5", input = "hello", tools = imageroute.array(), metadata = {}})
    local raw = s:requests()[1].raw
    assert.truthy(raw:find('"tools":[]', 1, true), raw)
    assert.truthy(raw:find('"metadata":{}', 1, true), raw)
  end)
end)
