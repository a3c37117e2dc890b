local imageroute = require("imageroute")
local routes = require("imageroute.routes")
require("imageroute.contract") -- route:check()
local fx = require("support.fixtures")

describe("route files (imageroute.routes)", function()
  local dir, n = nil, 0
  setup(function() dir = fx.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  local function file(text)
    n = n + 1
    return fx.write(dir .. "/routes-" .. n .. ".lua", text)
  end

  it("loads examples/routes.lua: two official routes and an accepted provider gateway", function()
    local all, names = assert(routes.load("examples/routes.lua"))
    assert.same({"acme-chat", "official-images", "official-responses"}, names)
    local images, resp, gw = all["official-images"], all["official-responses"], all["acme-chat"]
    assert.truthy(imageroute.is_route(images))
    assert.same({"official", "images", "gpt-image-1"}, {images.lane, images.shape, images.model})
    assert.same({"official", "responses", "gpt-5", "gpt-image-2"}, {resp.lane, resp.shape, resp.model,
      resp.image_model})
    assert.same({"provider", "acme", "chat", "ACME_API_KEY"}, {gw.lane, gw.provider, gw.shape, gw.api_key_env})
    assert.same({"call", 0.03, "USD"}, {gw.billing.unit, gw.billing.price, gw.billing.currency})
    local report = gw:check()
    assert.is_true(report.allowed)
    assert.is_false(report.ok) -- timeout billing is unknown: open, and accepted with a reason
    assert.equal(gw.accepted, report.reason)
    for _, row in ipairs(report.rows) do
      assert.equal(row.gate == "failed_calls_billed" and "unknown" or "pass", row.status, row.gate)
    end
    assert.equal(gw, gw) -- routes are values
    assert.truthy(routes.get("examples/routes.lua", "official-images"))
  end)

  it("takes a list of routes with names, or a map keyed by name", function()
    local all = assert(routes.load(file([[
      return {
        {name = "one", model = "gpt-image-1", base_url = "http://127.0.0.1:1/v1"},
        {name = "two", model = "gpt-image-2", lane = "provider", provider = "p", accepted = "why"},
      }]])))
    assert.equal("gpt-image-1", all.one.model)
    assert.equal("two", all.two.name)
    local map = assert(routes.load(file([[return {solo = {model = "gpt-image-1", name = "solo"}}]])))
    assert.equal("solo", map.solo.name)
    local r = assert(routes.get(file([[return {a = {model = "m"}, b = {model = "n"}}]]), "b"))
    assert.equal("n", r.model)
  end)

  it("names the file, the route and the field in its errors", function()
    local cases = {
      {[[return {gw = {lane = "grey"}}]], "gw", "lane", "unknown lane"},
      {[[return {gw = {lane = "provider", provider = "p", modle = "x"}}]], "gw", "modle", "unknown route field"},
      {[[return {gw = {lane = "provider", provider = "p", contract = {failed_calls_billed = {timeout = "maybe"}}}}]],
        "gw", "contract.failed_calls_billed.timeout", "yes | no | unknown"},
      {[[return {gw = {name = "other"}}]], "gw", "name", "declared under 'gw' but named 'other'"},
      {[[return {{model = "m"}}]], "#1", "name", "need a name"},
      {[[return {{name = "x"}, {name = "x"}}]], "x", "name", "declared twice"},
      {[[return {gw = "not a table"}]], "gw", nil, "must be a table"},
    }
    for _, c in ipairs(cases) do
      local path = file(c[1])
      local all, err = routes.load(path)
      assert.is_nil(all, c[1])
      assert.equal("validation", err.kind)
      assert.equal(c[2], err.route, c[1])
      assert.equal(c[3], err.field, c[1])
      assert.equal(path, err.path)
      assert.truthy(err.message:find(c[4], 1, true), err.message)
      assert.truthy(err.message:find(path, 1, true), err.message)
    end
  end)

  it("refuses files that are not a table of routes, or not data", function()
    local cases = {
      {"return 5", "must return a table"},
      {"return {", "routes%-"},
      {"local t = {} return t.x.y", "error while loading"},
      {"return {a = {model = io.open('/etc/passwd') and 'x'}}", "error while loading"},
    }
    for _, c in ipairs(cases) do
      local all, err = routes.load(file(c[1]))
      assert.is_nil(all, c[1])
      assert.truthy(err.message:find(c[2]), err.message)
    end
    local _, err = routes.load(dir .. "/missing.lua")
    assert.equal("io", err.kind)
    -- os.getenv is the one thing a route file may call
    local all = assert(routes.load(file(
      [[return {a = {model = os.getenv("IMAGEROUTE_TEST_KEY") and "set" or "unset"}}]])))
    assert.equal("set", all.a.model)
  end)

  it("says which routes exist when asked for one that does not", function()
    local r, err = routes.get("examples/routes.lua", "nope")
    assert.is_nil(r)
    assert.equal("name", err.field)
    assert.truthy(err.message:find("acme-chat, official-images, official-responses", 1, true), err.message)
  end)
end)
