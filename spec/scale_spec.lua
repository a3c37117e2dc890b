-- Scale follows observability: a non-official route whose observability gate fails serves single
-- calls only ("manual tests only; no automated scale-up"), unless it records scale_exception.
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")

describe("scale follows observability", function()
  local s = server.for_block()

  local function blind(extra)
    local cfg = fx.with({name = "blind-gw", lane = "provider", provider = "acme", accepted = "manual tests",
      contract = {observability = {request_ids = "no", error_types = "no", usage = "no", dashboard = "no"}}}, extra)
    return fx.route(s, cfg)
  end

  it("serves a single call but is refused in batch, as a router target and twice in flight", function()
    local gw = blind()
    assert(imageroute.generate(gw, {prompt = "one at a time"}))
    assert.equal(1, #s:requests())
    local results = imageroute.batch({{route = gw, params = {prompt = "a"}}, {route = gw, params = {prompt = "b"}}})
    for _, r in ipairs(results) do
      assert.is_false(r.ok)
      assert.equal("route", r.error.kind)
      assert.equal("scale_refused", r.error.code)
    end
    local r = assert(imageroute.router{routes = {gw, fx.route(s, {name = "official"})}})
    local res = assert(imageroute.generate(r, {prompt = "via router"}))
    assert.equal("official", res.route)
    assert.equal("skipped", res.fallback_log[1].reason)
    local errs = {}
    imageroute.run(function() local _, e = imageroute.generate(fx.behaving(s, {delay = 0.3},
      {name = "blind-gw", lane = "provider", provider = "acme", accepted = "manual tests",
        contract = {observability = {request_ids = "no"}}}), {prompt = "first"}); errs[1] = e end,
      function() local _, e = imageroute.generate(gw, {prompt = "second"}); errs[2] = e end)
    assert.is_nil(errs[1])
    assert.equal("scale_refused", errs[2].code)
    assert.equal(3, #s:requests()) -- the single call, the router's official target, the first of the two
  end)

  it("scales with scale_exception, which the log records like accepted", function()
    local log = fx.tmpdir() .. "/calls.jsonl"
    local gw = blind({scale_exception = "load test agreed with acme", log = log})
    local results = imageroute.batch({{route = gw, params = {prompt = "a"}}, {route = gw, params = {prompt = "b"}}})
    for _, r in ipairs(results) do assert.is_true(r.ok, tostring(r.error)) end
    local recs = assert(imageroute.log.read(log))
    assert.equal("load test agreed with acme", recs[1].scale_exception)
  end)
end)
