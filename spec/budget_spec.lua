-- Budgets: the worst case of a call is reserved before it is sent; a call that does not fit is
-- refused with kind = "budget"; the reservation is settled to the cost after.
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")

describe("budgets", function()
  local s = server.for_block()

  it("refuses the call that would exceed it, before sending, and settles to the cost", function()
    -- gpt-image-1, 1024x1024 high: $0.167 per image (the price table): two fit in $0.40, not three
    local b = assert(imageroute.budget{name = "spec-run", usd = 0.40})
    local route = fx.route(s, {name = "budgeted", budget = b})
    local params = {prompt = "a fox", size = "1024x1024", quality = "high"}
    local r1 = assert(imageroute.generate(route, params))
    assert.is_near(0.167, r1.budgets[1].reserved, 1e-9)
    local after1 = b:status()
    assert.equal(0, after1.reserved)
    assert.is_true(after1.spent > 0 and after1.spent <= 0.167 + 1e-9, "settled to the call's cost: " .. after1.spent)
    assert(imageroute.generate(route, params))
    local before = #s:requests()
    local _, err = imageroute.generate(route, params)
    if err then
      assert.equal("budget", err.kind)
      assert.equal("budget_exceeded", err.code)
      assert.equal(before, #s:requests()) -- nothing was sent
    else
      -- the settled costs (usage priced) can be below the worst case: then a third fits, a fourth not
      local _, err4 = imageroute.generate(route, params)
      assert.equal("budget", err4.kind)
    end
    assert.is_true(b:status().spent <= 0.40 + 1e-9)
    b:reset()
    assert.equal(0, b:status().spent)
  end)

  it("releases a reservation when the request never left, and refuses unknown prices unless allowed", function()
    local b = assert(imageroute.budget{name = "spec-release", usd = 1})
    local route = fx.route(s, {name = "budgeted-release", budget = b, max_retries = 0})
    local _, verr = imageroute.generate(route, {prompt = "x", n = 99}) -- a stop rule: refused before sending
    assert.equal("validation", verr.kind)
    assert.equal(0, b:status().spent)
    -- a connection refused never reached anyone
    local sock = require("socket").bind("127.0.0.1", 0)
    local _, port = sock:getsockname()
    sock:close()
    local closed = assert(imageroute.route{name = "budget-closed", base_url = ("http://127.0.0.1:%d/v1"):format(port),
      model = "gpt-image-1", api_key_env = fx.KEY_ENV, max_retries = 0, budget = b})
    local _, cerr = imageroute.generate(closed, {prompt = "x", size = "1024x1024", quality = "low"})
    assert.equal("connection", cerr.kind)
    assert.equal(0, b:status().spent)
    assert.equal(0, b:status().reserved)
    -- a provider alias without a price: unknown in USD
    local alias = fx.route(s, {name = "alias", lane = "provider", provider = "acme", accepted = "test",
      model = "acme-image-xl", budget = b})
    local _, uerr = imageroute.generate(alias, {prompt = "x"})
    assert.equal("budget", uerr.kind)
    assert.equal("unknown_price", uerr.code)
    local lenient = assert(imageroute.budget{name = "spec-lenient", usd = 1, unknown_price = "allow"})
    local alias2 = fx.route(s, {name = "alias2", lane = "provider", provider = "acme", accepted = "test",
      model = "acme-image-xl", budget = lenient})
    assert(imageroute.generate(alias2, {prompt = "x"}))
  end)

  it("applies a router's budget to every route it tries, and counts a flat provider price", function()
    local b = assert(imageroute.budget{name = "spec-router", usd = 0.05, per = "day"})
    local gw = fx.route(s, {name = "flat-gw", lane = "provider", provider = "acme", accepted = "test",
      billing = {unit = "call", price = 0.03, currency = "USD", source = "test", date = "2026-12-01"}})
    local r = assert(imageroute.router{name = "budget-router", routes = {gw}, budget = b})
    assert(imageroute.generate(r, {prompt = "one"}))
    assert.is_near(0.03, b:status().spent, 1e-9)
    local _, err = imageroute.generate(r, {prompt = "two"})
    assert.equal("budget", err.kind)
    assert.matches("^%d%d%d%d%-%d%d%-%d%d$", b:status().period)
    local _, e2 = imageroute.budget{name = "x", usd = -1}
    assert.equal("usd", e2.field)
  end)
end)
