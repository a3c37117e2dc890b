local imageroute = require("imageroute")

describe("imageroute.route", function()
  it("applies the SDK defaults", function()
    local r = assert(imageroute.route{model = "gpt-image-1", base_url = "https://api.openai.com/v1/"})
    assert.equal("official", r.lane)
    assert.equal("openai", r.provider)
    assert.equal("images", r.shape)
    assert.equal("https://api.openai.com/v1", r.base_url) -- trailing slash dropped
    assert.equal("OPENAI_API_KEY", r.api_key_env)
    assert.equal(600, r.timeout)
    assert.equal(5, r.connect_timeout)
    assert.equal(2, r.max_retries)
    assert.equal("official/openai/gpt-image-1", r.name)
    assert.is_true(imageroute.is_route(r))
    assert.is_false(imageroute.is_route({}))
  end)

  it("keeps every given field", function()
    local r = assert(imageroute.route{
      name = "gw", lane = "provider", provider = "acme", shape = "chat", model = "gpt-image-2",
      base_url = "https://gw.example/v1", api_key_env = "ACME_KEY", headers = {["X-Team"] = "a"},
      timeout = 30, connect_timeout = 2, max_retries = 0,
      billing = {unit = "call", price = 0.03, failed_calls_billed = "unknown"},
    })
    assert.same({"gw", "provider", "acme", "chat", "gpt-image-2", "ACME_KEY", 30, 2, 0},
      {r.name, r.lane, r.provider, r.shape, r.model, r.api_key_env, r.timeout, r.connect_timeout, r.max_retries})
    assert.same({["X-Team"] = "a"}, r.headers)
    assert.same({unit = "call", price = 0.03, currency = "USD", failed_calls_billed = "unknown"}, r.billing)
  end)

  local bad = {
    {{lane = "grey"}, "lane", "unknown lane 'grey'"},
    {{shape = "video"}, "shape", "unknown shape 'video'"},
    {{base_url = "http://api.example.com/v1"}, "base_url", "must use https://"},
    {{base_url = "ftp://x.example/v1"}, "base_url", "must use https://"},
    {{base_url = "not a url"}, "base_url", "not a valid absolute URL"},
    {{base_url = "https://gw.example/v1beta/models/gemini:generateContent"}, "base_url", "model-level path"},
    {{base_url = "https://gw.example/v1/images/generations"}, "base_url", "not an endpoint"},
    {{base_url = "https://gw.example/v1?key=1"}, "base_url", "query string"},
    {{lane = "provider"}, "provider", "provider"},
    {{timeout = 0}, "timeout", "positive number of seconds"},
    {{timeout = "60"}, "timeout", "positive number of seconds"},
    {{max_retries = 1.5}, "max_retries", "integer"},
    {{max_retries = -1}, "max_retries", "integer"},
    {{api_key_env = "sk-abcdef0123456789"}, "api_key_env", "NAME of an environment variable"},
    {{headers = {Authorization = "Bearer x"}}, "headers", "comes from api_key_env"},
    {{headers = {["X-A"] = 1}}, "headers", "string values"},
    {{billing = {unit = "minute"}}, "billing", "billing.unit"},
    {{billing = {price = -1}}, "billing", "billing.price"},
    {{modle = "gpt-image-1"}, "modle", "unknown route field 'modle'"},
  }
  for _, case in ipairs(bad) do
    it("refuses " .. case[2] .. " in " .. next(case[1]) .. " = " .. tostring(select(2, next(case[1]))), function()
      local r, err = imageroute.route(case[1])
      assert.is_nil(r)
      assert.equal("validation", err.kind)
      assert.equal(case[2], err.field)
      assert.truthy(err.message:find(case[3], 1, true), err.message)
      assert.truthy(tostring(err):find("^imageroute validation error: "), tostring(err))
    end)
  end

  it("never echoes a key passed by mistake", function()
    local _, err = imageroute.route{api_key_env = "sk-live-SECRETSECRET"}
    assert.falsy(tostring(err):find("SECRETSECRET", 1, true))
  end)

  it("allows plain http only on loopback hosts", function()
    local loopback = {"http://127.0.0.1:8080/v1", "http://localhost:1/v1", "http://[::1]:9/v1", "http://127.9.9.9/v1"}
    for _, url in ipairs(loopback) do
      assert.truthy(imageroute.route{base_url = url}, url)
    end
    assert.is_nil(imageroute.route{base_url = "http://127.0.0.1.evil.example/v1"})
  end)

  it("raises on a non-table", function()
    assert.has_error(function() imageroute.route("gpt-image-1") end)
  end)

  it("prints name, lane, provider, shape and model, and is immutable", function()
    local r = assert(imageroute.route{name = "n", model = "gpt-image-1"})
    assert.equal("imageroute.Route(name=n, lane=official, provider=openai, shape=images, model=gpt-image-1)",
      tostring(r))
    assert.has_error(function() r.model = "dall-e-3" end)
    local h = r.headers
    assert.is_nil(h)
    local cfg = r:config()
    cfg.model = "changed"
    assert.equal("gpt-image-1", r.model)
    local again = assert(imageroute.route(cfg)) -- a config round-trips
    assert.equal("changed", again.model)
    assert.equal("api.openai.com", r.host)
  end)
end)
