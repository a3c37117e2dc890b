local imageroute = require("imageroute")
local dispatch = require("imageroute.dispatch")
local function raw_generate(...) return dispatch.call("generate", ...) end
local contract = require("imageroute.contract")
local policy = require("imageroute.policy")
local server = require("support.server")
local fx = require("support.fixtures")
local json = require("imageroute.json")

local FULL = {
  owner = {endpoint = "Acme Ltd", account = "team account", billing = "Acme Ltd", support = "support@acme.example",
    abuse = "abuse@acme.example"},
  model_mapping = "Acme model list of 2026-05-12; test image reviewed",
  failed_calls_billed = {rejected = "no", moderation = "no", timeout = "yes", server_error = "no"},
  output_rights = {store = "yes", sell = "yes", delete = "on request"},
  observability = {request_ids = true, error_types = "OpenAI error bodies", usage = true, dashboard = "yes"},
}

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = type(v) == "table" and copy(v) or v end
  return o
end

local function provider(extra)
  local cfg = fx.with({name = "gw", lane = "provider", provider = "acme", base_url = "https://gateway.example/v1",
    model = "gpt-image-2", shape = "chat", api_key_env = "ACME_KEY", contract = copy(FULL),
    billing = {unit = "call", price = 0.03}}, extra)
  if cfg.contract == "none" then cfg.contract = nil end
  return assert(imageroute.route(cfg))
end

local function rows_by_gate(report)
  local out = {}
  for _, r in ipairs(report.rows) do out[r.gate] = r end
  return out
end

describe("acceptance gates (imageroute.contract)", function()
  it("adds route:check(), one row per gate with pass, fail or unknown and a reason", function()
    local r = provider()
    local report = r:check()
    assert.same(contract.check(r), report)
    assert.is_true(report.ok)
    assert.is_true(report.allowed)
    assert.equal("provider", report.lane)
    assert.equal("gw", report.route)
    local gates = {}
    for i, row in ipairs(report.rows) do
      gates[i] = row.gate
      assert.equal("pass", row.status, row.gate)
      assert.equal("string", type(row.reason))
    end
    assert.same({"lane", "host", "owner", "model_mapping", "failed_calls_billed", "output_rights", "observability",
      "billing"}, gates)
    assert.truthy(rows_by_gate(report).failed_calls_billed.reason:find("timeout=yes", 1, true))
  end)

  it("passes an official route on the official host or a loopback host by construction", function()
    for _, url in ipairs{"https://api.openai.com/v1", "http://127.0.0.1:8080/v1", "http://localhost:1/v1",
      "http://[::1]:9/v1"} do
      local r = assert(imageroute.route{base_url = url, model = "gpt-image-1"})
      local report = r:check()
      assert.is_true(report.ok, url)
      assert.is_true(report.allowed, url)
      assert.equal("pass", rows_by_gate(report).host.status, url)
      assert.truthy(rows_by_gate(report).owner.reason:find("by construction", 1, true))
      assert.same({true}, {contract.allow(r)})
    end
  end)

  it("refuses an official route on any other host: a gateway is a provider", function()
    for _, extra in ipairs{{}, {accepted = "we trust it"}, {contract = copy(FULL)}} do
      local cfg = {base_url = "https://gateway.example/v1", model = "gpt-image-1"}
      for k, v in pairs(extra) do cfg[k] = v end
      local r = assert(imageroute.route(cfg))
      local report = r:check()
      assert.is_false(report.ok)
      assert.is_false(report.allowed)
      local host = rows_by_gate(report).host
      assert.equal("fail", host.status)
      assert.truthy(host.reason:find("gateway.example", 1, true))
      local ok, err = contract.allow(r)
      assert.is_nil(ok)
      assert.equal("route", err.kind)
      assert.equal("official_host", err.rule)
      assert.equal("host", err.gate)
      assert.truthy(err.fix:find("lane = \"provider\"", 1, true))
      assert.truthy(err.message:find("official_host", 1, true))
      assert.truthy(tostring(err):find("^imageroute route error: "))
    end
  end)

  it("reports each unknown or failing provider gate with its reason", function()
    local c = copy(FULL)
    c.owner = {endpoint = "Acme Ltd", account = "team"}
    c.model_mapping = false
    c.failed_calls_billed = {rejected = "no", moderation = "unknown"}
    c.output_rights = nil
    c.observability = {request_ids = false, error_types = true, usage = true, dashboard = true}
    local g = rows_by_gate(provider{contract = c, billing = {unit = "credit"}}:check())
    assert.equal("unknown", g.owner.status)
    assert.truthy(g.owner.reason:find("billing, support, abuse", 1, true), g.owner.reason)
    assert.equal("fail", g.model_mapping.status)
    assert.equal("unknown", g.failed_calls_billed.status)
    assert.truthy(g.failed_calls_billed.reason:find("moderation, timeout, server_error", 1, true))
    assert.equal("unknown", g.output_rights.status)
    assert.equal("fail", g.observability.status)
    assert.truthy(g.observability.reason:find("request_ids", 1, true))
    assert.equal("unknown", g.billing.status)
    local bad = copy(FULL)
    bad.failed_calls_billed = {timeout = "sometimes"}
    assert.equal("fail", rows_by_gate(provider{contract = bad}:check()).failed_calls_billed.status)
    local none = rows_by_gate(provider{contract = "none"}:check())
    for _, gname in ipairs{"owner", "model_mapping", "failed_calls_billed", "output_rights", "observability"} do
      assert.equal("unknown", none[gname].status, gname)
    end
  end)

  it("reads failed-call billing from the route's billing when the contract does not say", function()
    local c = copy(FULL)
    c.failed_calls_billed = nil
    local r = provider{contract = c, billing = {unit = "call", price = 0.03, failed_calls_billed = "no"}}
    assert.equal("pass", rows_by_gate(r:check()).failed_calls_billed.status)
    assert.same({rejected = "no", moderation = "no", timeout = "no", server_error = "no"}, contract.failed_billing(r))
    r = provider{contract = c, billing = {unit = "call", price = 0.03, failed_calls_billed = {timeout = true}}}
    local rule = contract.failed_billing(r)
    assert.equal("yes", rule.timeout)
    assert.equal("unknown", rule.rejected)
  end)

  it("refuses a provider route with an open gate unless it records accepted", function()
    local c = copy(FULL)
    c.output_rights = nil
    local ok, err = contract.allow(provider{contract = c})
    assert.is_nil(ok)
    assert.equal("route", err.kind)
    assert.equal("provider_gates", err.rule)
    assert.equal("output_rights", err.gate)
    assert.truthy(err.message:find("output_rights unknown", 1, true), err.message)
    assert.truthy(err.fix:find("accepted = ", 1, true))
    local r = provider{contract = c, accepted = "rights reviewed by legal on 2026-05-12"}
    local report = r:check()
    assert.is_false(report.ok)
    assert.is_true(report.allowed)
    assert.equal("rights reviewed by legal on 2026-05-12", report.reason)
    assert.same({true, "rights reviewed by legal on 2026-05-12"}, {contract.allow(r)})
  end)

  it("refuses an account_pool route unless it records risk_exception", function()
    local cfg = {name = "pool", lane = "account_pool", provider = "relay", base_url = "https://relay.example/v1",
      model = "gpt-image-2", contract = copy(FULL), accepted = "accepted is not enough here"}
    local r = assert(imageroute.route(cfg))
    local report = r:check()
    assert.equal("fail", report.rows[1].status)
    assert.is_false(report.allowed)
    local ok, err = contract.allow(r)
    assert.is_nil(ok)
    assert.equal("account_pool", err.rule)
    assert.equal("lane", err.gate)
    assert.truthy(err.fix:find("risk_exception", 1, true))
    cfg.risk_exception = "internal mood-board tool, no customer data, owner signed off 2026-05-12"
    r = assert(imageroute.route(cfg))
    assert.same({true, cfg.risk_exception}, {contract.allow(r)})
    assert.truthy(r:check().rows[1].reason:find("risk exception recorded", 1, true))
  end)

  it("validates contract tables (for route files)", function()
    assert.is_true(contract.validate(FULL))
    assert.is_true(contract.validate(nil))
    local ok, msg, field = contract.validate({failed_calls_billed = {timeout = "maybe"}})
    assert.is_nil(ok)
    assert.equal("contract.failed_calls_billed.timeout", field)
    assert.truthy(msg:find("yes | no | unknown", 1, true))
    ok, msg, field = contract.validate({failed_calls_billed = {crash = "no"}})
    assert.is_nil(ok)
    assert.truthy(msg:find("unknown outcome", 1, true))
    assert.equal("contract.failed_calls_billed.crash", field)
    ok, msg, field = contract.validate({ownr = "x"})
    assert.equal("contract.ownr", field)
    assert.truthy(msg:find("unknown contract field", 1, true))
    assert.is_nil(ok)
  end)
end)

describe("gates at call time, against the local server", function()
  local s, dir = server.for_block{dir = true}

  local function local_provider(extra)
    local cfg = fx.with({lane = "provider", provider = "local-gateway", shape = "chat", model = "gpt-image-2",
      billing = {unit = "call", price = 0.03}}, extra)
    return fx.route(s, cfg)
  end

  it("refuses an unaccepted provider route and an account_pool route before sending (policy hooks)", function()
    local cases = {
      {local_provider(), "provider_gates"},
      {fx.route(s, {lane = "account_pool", provider = "relay", accepted = "not enough"}), "account_pool"},
    }
    for _, c in ipairs(cases) do
      local res, err = policy.call("generate", raw_generate, c[1], {prompt = "p"})
      assert.is_nil(res)
      assert.equal("route", err.kind)
      assert.equal(c[2], err.rule)
      assert.equal(0, err.attempts)
      assert.equal(0, err.cost.amount)
    end
    assert.equal(0, #s:requests())
  end)

  it("lets an accepted provider route through and logs the reason with every call (policy hooks)", function()
    local log_path = dir .. "/accepted.jsonl"
    local r = local_provider{accepted = "local test gateway, reviewed", log = log_path}
    s:script{{status = 500}, {}}
    local res = assert(policy.call("generate", raw_generate, r, {prompt = "p"}))
    assert.equal("local test gateway, reviewed", res.contract_reason)
    local pool = fx.route(s, {lane = "account_pool", provider = "relay", risk_exception = "spec risk", log = log_path})
    local res2 = assert(policy.call("generate", raw_generate, pool, {prompt = "p"}))
    assert.equal("spec risk", res2.contract_reason)
    local lines = 0
    for line in io.lines(log_path) do
      local rec = assert(json.decode(line))
      lines = lines + 1
      if rec.lane == "provider" then
        assert.equal("local test gateway, reviewed", rec.accepted)
        assert.equal("local test gateway, reviewed", rec.contract_reason)
      else
        assert.equal("spec risk", rec.risk_exception)
        assert.equal("spec risk", rec.contract_reason)
      end
    end
    assert.equal(4, lines) -- provider: a retried attempt, the answer, the image download; the pool call
  end)

  -- These need init.lua to run policy.before / policy.after around generate, edit and respond.
  it("refuses through imageroute.generate, edit and respond (needs the init.lua wiring)", function()
    local png = fx.read("examples/assets/mask-1024.png")
    local pool = fx.route(s, {lane = "account_pool", provider = "relay"})
    for _, call in ipairs{
      function() return imageroute.generate(local_provider(), {prompt = "p"}) end,
      function() return imageroute.edit(local_provider(), {prompt = "p", image = png}) end,
      function() return imageroute.generate(pool, {prompt = "p"}) end,
      function() return imageroute.respond(fx.route(s, {lane = "account_pool", provider = "relay",
        shape = "responses", model = "gpt-5"}), {input = "p"}) end,
    } do
      local res, err = call()
      assert.is_nil(res)
      assert.equal("route", err.kind)
    end
    assert.equal(0, #s:requests())
    local gw = assert(imageroute.route{base_url = "https://gateway.invalid/v1", model = "gpt-image-1",
      api_key_env = fx.KEY_ENV})
    local _, err = imageroute.generate(gw, {prompt = "p"})
    assert.equal("official_host", err.rule)
    assert.equal(0, err.attempts)
    local res = assert(imageroute.generate(local_provider{accepted = "reviewed"}, {prompt = "p"}))
    assert.equal("reviewed", res.contract_reason)
  end)
end)
