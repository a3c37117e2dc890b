-- Contract suite: Images API requests, as imageroute builds them, checked against the official
-- OpenAPI spec by Steady (scripts/contract.sh starts it). Steady answers 400 to a request that
-- does not match the spec; its 200 answers are schema placeholders, not images, so a successful
-- call here ends in a "decode" error, which is fine: what is checked is what was sent.
local imageroute = require("imageroute")

local url = assert(os.getenv("STEADY_URL"), "run through scripts/contract.sh")
local route = assert(imageroute.route{
  name = "steady", base_url = url, model = "gpt-image-1", api_key_env = "IMAGEROUTE_CONTRACT_KEY", max_retries = 0,
})

local PNG = assert(io.open("examples/assets/mask-1024.png", "rb")):read("a")

--- Asserts the spec accepted the request: no 4xx answer.
local function accepted(res, err)
  if res then return end
  assert.are_not.equal(400, err.status, tostring(err))
  assert.is_nil(err.status and err.status >= 400 and err.status < 500 or nil, tostring(err))
  assert.equal("decode", err.kind, tostring(err))
end

describe("Images API requests match the official spec", function()
  local generate_cases = {
    {prompt = "a lighthouse"},
    {prompt = "a lighthouse", n = 2, size = "1024x1536", quality = "high"},
    {prompt = "a lighthouse", background = "transparent", output_format = "png", moderation = "low"},
    {prompt = "a lighthouse", output_format = "webp", output_compression = 80, user = "u-1"},
    {prompt = "a lighthouse", model = "dall-e-3", style = "vivid", response_format = "url", quality = "hd"},
    {prompt = "a lighthouse", model = "gpt-image-2", size = "2048x1152"},
  }
  for i, params in ipairs(generate_cases) do
    it("generate case " .. i, function()
      accepted(imageroute.generate(route, params))
    end)
  end

  local edit_cases = {
    {prompt = "add a boat", image = PNG},
    {prompt = "add a boat", image = {PNG, PNG, PNG}, mask = PNG},
    {prompt = "add a boat", image = "examples/assets/mask-1024.png", n = 2, size = "1024x1024", quality = "low",
      input_fidelity = "high", output_format = "jpeg", output_compression = 50, background = "opaque"},
    {prompt = "add a boat", image = {data = PNG, filename = "x.png"}, model = "gpt-image-1-mini"},
  }
  for i, params in ipairs(edit_cases) do
    it("edit case " .. i, function()
      accepted(imageroute.edit(route, params))
    end)
  end

  it("can fail: Steady rejects a request that breaks the spec", function()
    -- the stop rules would refuse these before sending: the core's raw call sends them anyway
    local refused = select(2, imageroute.generate(route, {prompt = "x", quality = "superb"}))
    assert.equal("validation", refused.kind)
    local res, err = require("imageroute.dispatch").call("generate", route, {prompt = "x", quality = "superb"})
    assert.is_nil(res)
    assert.equal(400, err.status)
    local res2, err2 = require("imageroute.dispatch").call("generate", route, {prompt = "x", n = "two"})
    assert.is_nil(res2)
    assert.equal(400, err2.status)
  end)
end)
