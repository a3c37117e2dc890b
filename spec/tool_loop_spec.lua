-- The documented tool loop against the local server: the model calls the app's function (next to
-- the image tool), the app answers with a function_call_output item and previous_response_id, the
-- model then draws; result.output / result.function_calls; what goes on the wire (no silent moves,
-- arrays stay arrays); the flow record of each step.
local imageroute = require("imageroute")
local json = require("imageroute.json")
local server = require("support.server")
local fx = require("support.fixtures")

local WEATHER = {type = "function", name = "get_weather", description = "Weather for a city",
  parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"}}}

describe("the tool loop on the Responses API", function()
  local s = server.for_block()
  local route
  setup(function() route = fx.responses_route(s, {image_model = "gpt-image-2", max_retries = 0}) end)

  it("function call, function_call_output, then the image; the flow records each step", function()
    local f = imageroute.flow.new{name = "loop"}
    local ask = assert(f:step("ask", imageroute.respond, route, {input = "Draw Oslo tomorrow; use get_weather",
      tools = {WEATHER}, size = "1024x1024"}))
    -- the app's tool and the image tool went out in one turn, flat options in the image tool
    local body = s:requests()[1].json
    assert.equal(2, #body.tools)
    assert.equal("get_weather", body.tools[1].name)
    assert.same({type = "image_generation", model = "gpt-image-2", size = "1024x1024"}, body.tools[2])
    assert.is_nil(body.size)
    -- the call is visible
    assert.equal(0, #ask.images)
    assert.equal(1, #ask.function_calls)
    local call = ask.function_calls[1]
    assert.equal("get_weather", call.name)
    assert.truthy(call.call_id:find("^call_"))
    assert.equal("string", type(call.arguments))
    assert.same({city = "Draw Oslo tomorrow; use get_weather"}, call.args)
    assert.equal("function_call", ask.output[1].type)
    assert.equal(call.call_id, ask.output[1].call_id)
    -- the app answers; the model draws
    local drawn = assert(f:step("answer", imageroute.respond, route, {previous_response_id = ask.id,
      tools = {WEATHER}, input = {{type = "function_call_output", call_id = call.call_id,
        output = json.encode({forecast = "snow"})}}}))
    local sent = s:requests()[2].json
    assert.same({type = "function_call_output", call_id = call.call_id, output = '{"forecast":"snow"}'},
      sent.input[1]) -- a top-level input item, not wrapped in a message
    assert.equal(ask.id, sent.previous_response_id)
    assert.equal(1, #drawn.images)
    assert.equal(0, #drawn.function_calls)
    assert.same({"image_generation_call", "message"}, {drawn.output[1].type, drawn.output[2].type})
    assert.equal(drawn.images[1], drawn.output[1].image)
    assert.is_nil(drawn.output[1].result)
    assert.truthy(drawn.output_text:find("snow", 1, true))
    -- the record
    assert.same({{call_id = call.call_id, name = "get_weather", arguments = call.arguments}},
      f:get("ask").function_calls)
    assert.same({"function_call"}, f:get("ask").output)
    assert.same({call.call_id}, f:get("answer").answers)
    assert.equal(1, f:get("answer").images)
    assert.truthy(f:report():find("calls=get_weather(" .. call.call_id .. ")", 1, true))
    assert.truthy(f:report():find("answered=" .. call.call_id, 1, true))
  end)

  it("examples/tool_loop.lua runs the loop and a background revision against the local server", function()
    local dir = os.tmpname()
    os.remove(dir)
    local q = function(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end
    local cmd = ("OPENAI_BASE_URL=%s OPENAI_API_KEY=%s IMAGEROUTE_POLL=0.02 IMAGEROUTE_OUT=%s lua5.4 "
      .. "examples/tool_loop.lua 2>&1; echo \"rc=$?\""):format(q(s.base_url), q(fx.KEY), q(dir))
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    os.execute("rm -rf " .. q(dir))
    assert.truthy(out:find("rc=0", 1, true), out)
    assert.truthy(out:find("toolloop 1 ask +ok .* calls=get_weather%(call_"), out)
    assert.truthy(out:find("toolloop 2 answer +ok .* images=1 answered=call_"), out)
    assert.truthy(out:find("toolloop 3 revision +ok .* images=1 background_polls=%d"), out)
    assert.is_nil(out:find(fx.KEY, 1, true))
  end)

  it("streamed: the function call comes in its output_item events, and is on the result", function()
    local res = assert(imageroute.respond(route, {input = "use get_weather", tools = {WEATHER}, stream = true,
      partial_images = 1}))
    assert.is_true(res.stream)
    assert.equal("get_weather", res.function_calls[1].name)
    assert.same({"function_call"}, {res.output[1].type})
  end)

  it("arguments that are not JSON: arguments as returned, args nil", function()
    s:script{{function_arguments = "{oops"}}
    local res = assert(imageroute.respond(route, {input = "use get_weather", tools = {WEATHER}}))
    assert.equal("{oops", res.function_calls[1].arguments)
    assert.is_nil(res.function_calls[1].args)
  end)

  it("a list that already holds an image_generation tool is sent as given", function()
    assert(imageroute.respond(route, {input = "draw", tools = {WEATHER, {type = "image_generation", quality = "low"}}}))
    assert.same({type = "image_generation", quality = "low"}, s:requests()[1].json.tools[2])
    assert.equal(2, #s:requests()[1].json.tools)
  end)

  it("reply items echoed back keep their empty arrays", function()
    local r1 = assert(imageroute.respond(route, {input = "hello", tool = false}))
    assert.is_true(json.is_array(r1.output[1].content[1].annotations))
    assert(imageroute.respond(route, {input = {r1.output[1], {role = "user", content = {"and now?"}}}, tool = false,
      tools = imageroute.array()}))
    local raw = s:requests()[2].raw
    assert.truthy(raw:find('"annotations":[]', 1, true), raw)
    assert.truthy(raw:find('"logprobs":[]', 1, true), raw)
    assert.truthy(raw:find('"tools":[]', 1, true), raw)
  end)

  describe("no silent moves", function()
    it("top-level moderation (an object) and the tool's moderation level go where each belongs", function()
      local res = assert(imageroute.respond(route, {input = "draw", moderation = {model = "omni-moderation-latest"},
        tool = {moderation = "low"}}))
      local body = s:requests()[1].json
      assert.same({model = "omni-moderation-latest"}, body.moderation)
      assert.equal("low", body.tools[1].moderation)
      assert.is_false(res.moderation.input.flagged) -- the response's moderation result, exposed
    end)

    it("the same name flat and in params.tool is refused before sending, naming both places", function()
      local _, err = imageroute.respond(route, {input = "draw", moderation = "low", tool = {moderation = "auto"}})
      assert.equal("validation", err.kind)
      assert.matches("params.tool.moderation", err.message, 1, true)
      assert.matches("top-level moderation", err.message, 1, true)
      assert.equal(0, #s:requests())
      assert.equal(0, err.attempts)
    end)

    it("tool options with tool = false are refused, not dropped", function()
      local _, err = imageroute.respond(route, {input = "hi", tool = false, size = "1024x1024"})
      assert.equal("validation", err.kind)
      assert.equal("size", err.field)
      assert.equal(0, #s:requests())
    end)

    it("flat options next to an explicit image_generation tool are refused, not dropped", function()
      local _, err = imageroute.respond(route, {input = "draw", quality = "high",
        tools = {{type = "image_generation"}}})
      assert.equal("validation", err.kind)
      assert.equal("quality", err.field)
      assert.equal(0, #s:requests())
    end)
  end)

  describe("moderation blocks and image calls without an image", function()
    it("a blocked response is an error with result.moderation, never a success, never retried", function()
      s:script{{moderation_block = true}, {moderation_block = true}}
      local r2 = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-2", max_retries = 2})
      local _, err = imageroute.respond(r2, {input = "draw something", tool_choice = "image_generation"})
      assert.equal("api", err.kind)
      assert.equal("moderation_blocked", err.code)
      assert.is_true(err.moderation.blocked)
      assert.equal("content_filter", err.moderation.reason)
      assert.is_true(err.moderation.input.flagged)
      assert.truthy(err.response_id:find("^resp_"))
      assert.equal(1, #s:requests())
      assert.equal("moderation", err.cost.outcome)
    end)

    it("an image call that produced no image is an api error with the call", function()
      s:script{{response_status = "failed"}}
      local _, err = imageroute.respond(route, {input = "draw", tool_choice = "image_generation"})
      assert.equal("api", err.kind)
      assert.equal("failed", err.image_calls[1].status)
      assert.truthy(err.image_calls[1].error)
    end)
  end)

  it("format mismatch on the Responses API: webp asked, PNG bytes back (the item even claims webp)", function()
    s:script{{format_switch = true}}
    local res = assert(imageroute.respond(route, {input = "draw", output_format = "webp"}))
    assert.equal("webp", res.images[1].output_format)
    assert.same({requested = "webp", got = "png"}, res.images[1].format_mismatch)
  end)
end)
