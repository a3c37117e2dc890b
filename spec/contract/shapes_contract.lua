-- Contract suite: Responses API and Chat Completions requests, as imageroute builds them, checked
-- against the official OpenAPI spec by Steady (see images_contract.lua for how to read results).
local imageroute = require("imageroute")

local url = assert(os.getenv("STEADY_URL"), "run through scripts/contract.sh")
local PNG = assert(io.open("examples/assets/mask-1024.png", "rb")):read("a")

local function route(extra)
  local cfg = {name = "steady", base_url = url, api_key_env = "IMAGEROUTE_CONTRACT_KEY", max_retries = 0}
  for k, v in pairs(extra) do cfg[k] = v end
  return assert(imageroute.route(cfg))
end

local responses = route{shape = "responses", model = "gpt-5", image_model = "gpt-image-1"}
local chat = route{shape = "chat", lane = "provider", provider = "steady", model = "gpt-image-2",
  accepted = "Steady, the official spec as a mock server"}

--- Asserts the spec accepted the request: no 4xx answer.
local function accepted(res, err)
  if res then return end
  assert.is_nil(err.status and err.status >= 400 and err.status < 500 or nil, tostring(err))
  assert.truthy(err.kind == "decode" or err.kind == "api" and err.status == 200, tostring(err))
end

describe("Responses API requests match the official spec", function()
  local cases = {
    {input = "Draw a lighthouse"},
    {input = "Draw a lighthouse", size = "1024x1536", quality = "high", background = "transparent",
      output_format = "webp", output_compression = 80, moderation = "low", partial_images = 2,
      tool_choice = "image_generation"},
    {input = "A concept only", tool = false, instructions = "be brief"},
    {input = {"Make it brighter", {type = "input_image", image = PNG, detail = "high"},
      {type = "input_image", image_url = "https://cdn.example/x.png"}}, input_fidelity = "high", action = "edit",
      input_image_mask = PNG},
    {input = {{role = "user", content = {"draw", {type = "input_image", image = PNG}}}},
      previous_response_id = "resp_123", tool_choice = "required"},
  }
  for i, params in ipairs(cases) do
    it("respond case " .. i, function()
      accepted(imageroute.respond(responses, params))
    end)
  end
  it("generate and edit on a responses route", function()
    accepted(imageroute.generate(responses, {prompt = "a kite", size = "1024x1024", quality = "low"}))
    accepted(imageroute.edit(responses, {prompt = "red", image = {PNG, PNG}, mask = PNG}))
  end)
  it("can fail: Steady rejects a body that breaks the spec", function()
    local _, err = require("imageroute.dispatch").call("respond", responses, {input = "x", tool = {quality = "superb"}})
    assert.equal(400, err.status)
  end)
end)

describe("Chat Completions requests match the official spec", function()
  it("generate: the prompt as one user message", function()
    accepted(imageroute.generate(chat, {prompt = "a paper boat"}))
  end)
  it("edit: a text part and image_url parts (https URL and data URLs)", function()
    accepted(imageroute.edit(chat, {prompt = "make it yellow", image = {"https://cdn.example/a.png", PNG}}))
  end)
  it("can fail: Steady rejects a body that breaks the spec", function()
    local _, err = imageroute.generate(chat, {prompt = "p", chat = {temperature = "hot"}})
    assert.equal(400, err.status)
  end)
end)
