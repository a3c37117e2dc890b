-- Contract suite: the request shapes of assistant flows (issue 13), as imageroute builds them,
-- checked against the official OpenAPI spec by Steady (see images_contract.lua for how to read the
-- results): the app's tools next to the image tool, the function_call_output turn with
-- previous_response_id, an empty array, the top-level moderation object, background mode (create,
-- GET /responses/{id}, POST /responses/{id}/cancel) and GET /models/{model}.
local imageroute = require("imageroute")

local url = assert(os.getenv("STEADY_URL"), "run through scripts/contract.sh")

local function route(extra)
  local cfg = {name = "steady", base_url = url, api_key_env = "IMAGEROUTE_CONTRACT_KEY", max_retries = 0}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return assert(imageroute.route(cfg))
end

local responses = route{shape = "responses", model = "gpt-5", image_model = "gpt-image-1"}
local images = route{model = "gpt-image-1"}

local WEATHER = {type = "function", name = "get_weather", description = "The weather in a city",
  parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"},
    additionalProperties = false}, strict = true}

--- Asserts the spec accepted the request: no 4xx answer.
local function accepted(res, err)
  if res then return res end
  assert.is_nil(err.status and err.status >= 400 and err.status < 500 or nil, tostring(err))
  assert.truthy(err.kind == "decode" or err.kind == "api" and err.status == 200, tostring(err))
end

describe("assistant-flow requests match the official spec", function()
  it("the app's function tool and the image tool in one turn", function()
    accepted(imageroute.respond(responses, {input = "Draw tomorrow's weather in Oslo", tools = {WEATHER},
      size = "1024x1024", quality = "low"}))
  end)

  it("the function_call_output turn with previous_response_id", function()
    accepted(imageroute.respond(responses, {previous_response_id = "resp_123", tools = {WEATHER},
      input = {{type = "function_call_output", call_id = "call_123", output = '{"forecast":"snow"}'}},
      tool_choice = "image_generation"}))
  end)

  it("echoed reply items with empty arrays (reasoning summary, annotations)", function()
    accepted(imageroute.respond(responses, {input = {
      {type = "reasoning", id = "rs_123", summary = imageroute.array()},
      {type = "message", role = "assistant", id = "msg_123", status = "completed",
        content = {{type = "output_text", text = "Here it is", annotations = imageroute.array(),
          logprobs = imageroute.array()}}},
      {role = "user", content = {"now make it night"}},
    }}))
  end)

  it("an empty tools list is sent as []", function()
    accepted(imageroute.respond(responses, {input = "a concept only", tool = false, tools = imageroute.array()}))
  end)

  it("the top-level moderation object next to the tool's moderation level", function()
    accepted(imageroute.respond(responses, {input = "Draw a fox", moderation = {model = "omni-moderation-latest"},
      tool = {moderation = "low"}}))
  end)

  it("background mode: the create request", function()
    local _, err = imageroute.core.start_api(responses, {method = "POST", path = "/responses",
      body = require("imageroute.json").encode({model = "gpt-5", input = "Draw a fox", background = true,
        tools = {{type = "image_generation", model = "gpt-image-1", quality = "high"}}})}):wait()
    assert.is_nil(err, tostring(err))
    accepted(imageroute.respond(responses, {input = "Draw a fox", background = true, quality = "high"},
      {poll_interval = 0.01, deadline = 5}))
  end)

  it("background mode: GET /responses/{id} and POST /responses/{id}/cancel", function()
    local r, err = imageroute.api(responses, {path = "/responses/resp_123"})
    assert.is_nil(err, tostring(err))
    assert.equal(200, r.status)
    r, err = imageroute.api(responses, {method = "POST", path = "/responses/resp_123/cancel"})
    assert.is_nil(err, tostring(err))
    assert.equal(200, r.status)
  end)

  it("GET /models/{model}, and the live check built on it", function()
    local r, err = imageroute.api(images, {path = "/models/gpt-image-1"})
    assert.is_nil(err, tostring(err))
    assert.equal(200, r.status)
    local rep = images:check{live = true}
    assert.equal("live", rep.rows[#rep.rows].gate)
    assert.are_not.equal("fail", rep.rows[#rep.rows].status, rep.rows[#rep.rows].reason)
  end)

  it("can fail: Steady rejects background mode given the tool's type, and tools as an object", function()
    local _, err = imageroute.api(responses, {method = "POST", path = "/responses",
      body = {model = "gpt-5", input = "x", background = "transparent"}})
    assert.equal(400, err.status)
    _, err = imageroute.api(responses, {method = "POST", path = "/responses",
      body = '{"model":"gpt-5","input":"x","tools":{}}'})
    assert.equal(400, err.status)
  end)
end)
