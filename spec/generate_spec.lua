local imageroute = require("imageroute")
local dispatch = require("imageroute.dispatch")
local server = require("support.server")
local fx = require("support.fixtures")

describe("generate (Images API) against the local server", function()
  local s = server.for_block()

  it("sends exactly the fields the caller set, plus the route's model", function()
    local res = assert(imageroute.generate(fx.route(s), {prompt = "a red fox", size = "1024x1536"}))
    local reqs = s:requests()
    assert.equal(1, #reqs)
    assert.equal("POST", reqs[1].method)
    assert.equal("/v1/images/generations", reqs[1].path)
    assert.same({model = "gpt-image-1", prompt = "a red fox", size = "1024x1536"}, reqs[1].json)
    assert.equal("gpt-image-1", res.model)
  end)

  it("lets params.model override the route and sends every set field as given", function()
    local params = {prompt = "p", model = "gpt-image-2", n = 2, quality = "high", background = "opaque",
      output_format = "png", moderation = "low", user = "u1"}
    local res = assert(imageroute.generate(fx.route(s), params))
    assert.same(params, s:requests()[1].json)
    assert.equal("gpt-image-2", res.model)
    assert.equal(2, #res.images)
  end)

  it("sends the key as Bearer, a User-Agent naming imageroute, no Expect, and route headers", function()
    assert(imageroute.generate(fx.route(s, {headers = {["X-Team"] = "imaging"}}), {prompt = "p"}))
    local h = s:requests()[1].headers
    assert.equal("Bearer " .. fx.KEY, h.authorization)
    assert.truthy(h["user-agent"]:find("^imageroute/" .. imageroute._VERSION:gsub("%.", "%%.")), h["user-agent"])
    assert.is_nil(h.expect)
    assert.equal("application/json", h["content-type"])
    assert.equal("imaging", h["x-team"])
  end)

  it("sends OpenAI-Organization and OpenAI-Project only when those variables are set", function()
    local script = [[
      local ir = require("imageroute")
      local r = assert(ir.route{base_url = os.getenv("IR_BASE"), model = "m", api_key_env = "IMAGEROUTE_TEST_KEY"})
      assert(ir.generate(r, {prompt = "p"}))
    ]]
    local cmd = "env -u OPENAI_ORG_ID -u OPENAI_PROJECT_ID IR_BASE=" .. s.base_url .. " %s lua5.4 -e '%s'"
    assert(os.execute(cmd:format("", script)))
    assert(os.execute(cmd:format("OPENAI_ORG_ID=org-123 OPENAI_PROJECT_ID=proj-456", script)))
    local reqs = s:requests()
    assert.is_nil(reqs[1].headers["openai-organization"])
    assert.is_nil(reqs[1].headers["openai-project"])
    assert.equal("org-123", reqs[2].headers["openai-organization"])
    assert.equal("proj-456", reqs[2].headers["openai-project"])
  end)

  it("returns decoded images and the response's fields", function()
    local res = assert(imageroute.generate(fx.route(s), {prompt = "a red fox", n = 3, quality = "low"}))
    assert.equal(3, #res.images)
    local seen = {}
    for i, img in ipairs(res.images) do
      assert.equal(i, img.index)
      assert.equal("image/png", img.mime)
      assert.equal("png", img.format)
      assert.equal("\137PNG\r\n\26\n", img.bytes:sub(1, 8))
      assert.equal(#img.bytes, img.length)
      assert.truthy(img.width > 0 and img.height > 0)
      assert.is_nil(seen[img.bytes])
      seen[img.bytes] = true
    end
    assert.truthy(res.request_id:find("^req_"))
    assert.equal(200, res.http_status)
    assert.equal(1, res.attempts)
    assert.equal("low", res.quality)
    assert.equal("png", res.output_format)
    assert.equal(math.type(res.created), "integer")
    assert.equal(math.type(res.usage.input_tokens), "integer")
    assert.equal(res.usage.input_tokens + res.usage.output_tokens, res.usage.total_tokens)
    assert.equal("local", res.route)
    assert.equal("images", res.shape)
    assert.equal("/images/generations", res.endpoint)
    assert.truthy(res.latency > 0 and res.latency < 5)
    assert.truthy(res.bytes_received > 3 * #res.images[1].bytes)
    local r2 = assert(imageroute.generate(fx.route(s), {prompt = "a red fox"}))
    assert.are_not.equal(res.request_id, r2.request_id)
  end)

  it("gives different pictures for different prompts", function()
    local a = assert(imageroute.generate(fx.route(s), {prompt = "a red fox"}))
    local b = assert(imageroute.generate(fx.route(s), {prompt = "a blue whale"}))
    assert.are_not.equal(a.images[1].bytes, b.images[1].bytes)
  end)

  it("strips a data-URL prefix from b64_json (the gateway quirk)", function()
    local plain = assert(imageroute.generate(fx.route(s), {prompt = "same prompt"}))
    local dataurl = assert(imageroute.generate(fx.behaving(s, {b64_mode = "dataurl"}), {prompt = "same prompt"}))
    assert.equal(plain.images[1].bytes, dataurl.images[1].bytes)
    assert.equal("image/png", dataurl.images[1].mime)
  end)

  it("downloads data[].url with the same client", function()
    local plain = assert(imageroute.generate(fx.route(s), {prompt = "via url", n = 2}))
    local res = assert(imageroute.generate(fx.behaving(s, {b64_mode = "url"}), {prompt = "via url", n = 2}))
    assert.equal(2, #res.images)
    for i = 1, 2 do
      assert.equal(plain.images[i].bytes, res.images[i].bytes)
      assert.truthy(res.images[i].url:find("^http://127%.0%.0%.1:%d+/files/"))
      assert.equal(i, res.images[i].index)
    end
    local log = res.attempt_log
    assert.equal(3, #log)
    assert.same({"request", "download", "download"}, {log[1].phase, log[2].phase, log[3].phase})
  end)

  it("refuses bad input before sending anything", function()
    local r = fx.route(s)
    local cases = {
      {{}, "prompt"},
      {{prompt = ""}, "prompt"},
      {{prompt = 42}, "prompt"},
      {{prompt = "p", model = 5}, "model"},
      {{prompt = "p", f = function() end}, "params"},
    }
    for _, c in ipairs(cases) do
      local res, err = imageroute.generate(r, c[1])
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal(c[2], err.field)
      assert.equal(0, err.attempts)
    end
    local nomodel = assert(imageroute.route{base_url = s.base_url, api_key_env = fx.KEY_ENV})
    local _, err = imageroute.generate(nomodel, {prompt = "p"})
    assert.equal("model", err.field)
    assert.equal(0, #s:requests())
  end)

  it("refuses to call a non-loopback host without a key, naming the variable", function()
    local r = assert(imageroute.route{base_url = "https://api.invalid/v1", model = "m", lane = "provider",
      provider = "nobody", accepted = "test", api_key_env = "IMAGEROUTE_SURELY_UNSET_KEY"})
    local res, err = imageroute.generate(r, {prompt = "p"})
    assert.is_nil(res)
    assert.equal("validation", err.kind)
    assert.truthy(err.message:find("IMAGEROUTE_SURELY_UNSET_KEY", 1, true))
  end)

  it("raises on wrong argument types", function()
    assert.has_error(function() imageroute.generate({}, {prompt = "p"}) end)
    assert.has_error(function() imageroute.generate(fx.route(s), "p") end)
    assert.has_error(function() imageroute.generate(fx.route(s), {prompt = "p"}, 5) end)
  end)

  it("runs through the blocking call without the policy (dispatch.call) too", function()
    local res = assert(dispatch.call("generate", fx.route(s), {prompt = "p"}))
    assert.equal(1, #res.images)
  end)
end)
