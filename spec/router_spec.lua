-- Routes at production scale, part one: explicit fallback (imageroute.router), the x-ratelimit-*
-- headers parsed, may_have_billed per attempt and the billing-safe retry policy.
local imageroute = require("imageroute")
local ratelimit = require("imageroute.ratelimit")
local server = require("support.server")
local fx = require("support.fixtures")

local function provider(s, b, extra)
  local cfg = fx.with({name = "gateway", lane = "provider", provider = "acme", accepted = "a test gateway",
    billing = {unit = "call", price = 0.03, currency = "USD", source = "test", date = "2026-12-01"}}, extra)
  if b then return fx.behaving(s, b, cfg) end
  return fx.route(s, cfg)
end

describe("router", function()
  local s = server.for_block()

  it("falls back from official to provider on 503 and on 429 after retries, and says so", function()
    for _, status in ipairs{503, 429} do
      s:reset()
      local official = fx.behaving(s, {status = status}, {name = "official", max_retries = 1})
      local r = assert(imageroute.router{name = "images", routes = {official, provider(s)}})
      local log = fx.tmpdir() .. "/calls.jsonl"
      local res = assert(imageroute.generate(r, {prompt = "a fox"}, {log = log}))
      assert.equal("gateway", res.route)
      assert.equal("images", res.router)
      assert.same({"official"}, res.fallback_from)
      assert.equal(status == 503 and "server_error" or "rate_limit", res.fallback_log[1].reason)
      assert.equal(1, #res.images)
      assert.equal(3, #s:requests()) -- official twice (one retry), then the gateway once
      -- the cost adds up over the routes tried: the official failures cost nothing known, the gateway $0.03
      assert.is_near(0.03, res.cost.amount, 1e-9)
      assert.equal(2, #res.cost.routes)
      local recs = assert(imageroute.log.read(log))
      local routers, reasons = 0, {}
      for _, rec in ipairs(recs) do
        if rec.router == "images" then routers = routers + 1 end
        if rec.fallback_reason then reasons[#reasons + 1] = rec.route .. ":" .. rec.fallback_reason end
      end
      assert.equal(#recs, routers) -- every line carries the router
      assert.same({"gateway:" .. (status == 503 and "server_error" or "rate_limit")}, reasons)
    end
  end)

  it("never falls back on 400, moderation, 401/403 or a refusal before sending", function()
    local cases = {
      {status = 400, error = {message = "bad size", type = "invalid_request_error", param = "size"}},
      {status = 400, error = {message = "blocked", type = "image_generation_user_error", code = "moderation_blocked"}},
      {status = 401, error = {message = "bad key", type = "invalid_request_error", code = "invalid_api_key"}},
      {status = 403, error = {message = "Your organization must be verified to use the model gpt-image-1.",
        type = "invalid_request_error"}},
    }
    for _, b in ipairs(cases) do
      s:reset()
      local r = assert(imageroute.router{routes = {fx.behaving(s, b, {name = "official"}), provider(s)}})
      local res, err = imageroute.generate(r, {prompt = "a fox"})
      assert.is_nil(res)
      assert.equal(b.status, err.status)
      assert.same({}, err.fallback_from)
      assert.truthy(err.fallback_stopped)
      assert.equal(1, #s:requests()) -- the gateway was never called
    end
    -- a stop rule refuses before sending, on every route alike: no fallback, nothing sent
    s:reset()
    local r = assert(imageroute.router{routes = {fx.route(s, {name = "official"}), provider(s)}})
    local _, err = imageroute.generate(r, {prompt = "x", size = "17x17", model = "gpt-image-2"})
    assert.equal("validation", err.kind)
    assert.equal(0, #s:requests())
  end)

  it("falls back only on the classes listed, and skips a target whose gates refuse the call", function()
    local official = fx.behaving(s, {status = 500}, {name = "official", max_retries = 0})
    local r = assert(imageroute.router{routes = {official, provider(s)}, fallback_on = {"rate_limit"}})
    local _, err = imageroute.generate(r, {prompt = "x"})
    assert.equal(500, err.status)
    assert.matches("server_error", err.fallback_stopped)
    -- a provider route without contract or acceptance is refused by its gates: skipped, with the reason
    s:reset()
    local ungated = fx.route(s, {name = "unaccepted", lane = "provider", provider = "nobody"})
    local r2 = assert(imageroute.router{routes = {ungated, fx.route(s, {name = "official"})}})
    local res = assert(imageroute.generate(r2, {prompt = "x"}))
    assert.equal("official", res.route)
    assert.equal("skipped", res.fallback_log[1].reason)
    assert.equal("unaccepted", res.fallback_log[1].route)
    assert.same({}, res.fallback_from) -- skipped is not tried: nothing was sent to it
    assert.equal(1, #s:requests())
    -- bad configurations are validation errors naming the field
    local _, e1 = imageroute.router{routes = {}}
    assert.equal("routes", e1.field)
    local _, e2 = imageroute.router{routes = {official}, fallback_on = {"moderation"}}
    assert.equal("fallback_on", e2.field)
  end)

  it("works in batch and from a routes file, next to routes", function()
    local dir = fx.tmpdir()
    local path = dir .. "/routes.lua"
    local f = assert(io.open(path, "w"))
    f:write(([[return {
      down = {base_url = %q, model = "gpt-image-1", api_key_env = %q, max_retries = 0,
        headers = {["x-imageroute-test"] = '{"status":502}'}},
      up = {base_url = %q, model = "gpt-image-1", api_key_env = %q},
      both = {routes = {"down", "up"}, fallback_on = {"server_error"}},
    }]]):format(s.base_url, fx.KEY_ENV, s.base_url, fx.KEY_ENV))
    f:close()
    local r = assert(imageroute.routes.get(path, "both"))
    assert.is_true(imageroute.is_router(r))
    local results = imageroute.batch({{route = r, params = {prompt = "a"}}, {route = r, params = {prompt = "b"}}},
      {max_in_flight = 2})
    for _, x in ipairs(results) do
      assert.is_true(x.ok, tostring(x.error))
      assert.equal("up", x.result.route)
      assert.same({"down"}, x.result.fallback_from)
    end
  end)
end)

describe("rate limits and billing-safe retries", function()
  local s = server.for_block()

  it("parses reset durations as the API writes them", function()
    assert.equal(360, ratelimit.seconds("6m0s"))
    assert.is_near(0.02, ratelimit.seconds("20ms"), 1e-12)
    assert.equal(1, ratelimit.seconds("1s"))
    assert.is_near(3723.5, ratelimit.seconds("1h2m3.5s"), 1e-9)
    assert.equal(12, ratelimit.seconds("12"))
    assert.is_nil(ratelimit.seconds("soon"))
    assert.is_nil(ratelimit.seconds("5x"))
    assert.is_nil(ratelimit.seconds(("9"):rep(50)))
  end)

  it("puts the x-ratelimit-* headers on the result, parsed, and into the log", function()
    local log = fx.tmpdir() .. "/calls.jsonl"
    local res = assert(imageroute.generate(fx.behaving(s, {rate_limit = {requests = 5, window = 60}}),
      {prompt = "a"}, {log = log}))
    assert.equal(5, res.rate_limit.limit_requests)
    assert.equal(4, res.rate_limit.remaining_requests)
    assert.is_true(res.rate_limit.reset_requests > 50 and res.rate_limit.reset_requests <= 60)
    assert.equal(250000, res.rate_limit.limit_tokens)
    assert.is_near(0.24, res.rate_limit.reset_tokens, 1e-9)
    local recs = assert(imageroute.log.read(log))
    assert.equal(4, recs[#recs].rate_limit.remaining_requests)
    assert.is_nil(res.rate_limit_headers)
  end)

  it("answers 429s like the real API past the limit", function()
    local route = fx.behaving(s, {rate_limit = {requests = 2, window = 30}}, {max_retries = 0})
    assert(imageroute.generate(route, {prompt = "1"}))
    assert(imageroute.generate(route, {prompt = "2"}))
    local _, err = imageroute.generate(route, {prompt = "3"})
    assert.equal(429, err.status)
    assert.equal("rate_limit_exceeded", err.code)
    assert.equal(0, err.rate_limit.remaining_requests)
    assert.is_false(err.may_have_billed) -- a 429 was not processed
  end)

  it("records may_have_billed per attempt for each fault class; retry_policy = safe retries only the unbilled",
    function()
    -- 500: reached the server, may have made an image
    local _, e500 = imageroute.generate(fx.behaving(s, {status = 500}, {max_retries = 1}), {prompt = "x"})
    assert.equal(2, #e500.attempt_log)
    assert.is_true(e500.attempt_log[1].may_have_billed)
    assert.is_true(e500.may_have_billed)
    -- the same under the safe policy: not retried
    s:reset()
    local _, esafe = imageroute.generate(fx.behaving(s, {status = 500}, {max_retries = 2, retry_policy = "safe"}),
      {prompt = "x"})
    assert.equal(1, #esafe.attempt_log)
    assert.equal(1, #s:requests())
    -- 429 with the safe policy: the server said it did not process it, so it is retried
    s:script({{status = 429, headers = {["retry-after-ms"] = "10"}}, {}})
    local ok429 = assert(imageroute.generate(fx.route(s, {max_retries = 2, retry_policy = "safe"}), {prompt = "x"}))
    assert.equal(2, ok429.attempts)
    assert.is_false(ok429.attempt_log[1].may_have_billed)
    assert.is_true(ok429.attempt_log[2].may_have_billed) -- the success made an image
    -- a connection refused never reached anyone: not billed, retried even under safe
    local sock = require("socket").bind("127.0.0.1", 0)
    local _, port = sock:getsockname()
    sock:close()
    local closed = assert(imageroute.route{name = "closed", base_url = ("http://127.0.0.1:%d/v1"):format(port),
      model = "gpt-image-1", api_key_env = fx.KEY_ENV, max_retries = 1, retry_policy = "safe",
      retry_initial_delay = 0.01})
    local _, econn = imageroute.generate(closed, {prompt = "x"})
    assert.equal("connection", econn.kind)
    assert.equal(2, #econn.attempt_log)
    assert.is_false(econn.attempt_log[1].may_have_billed)
    assert.is_false(econn.may_have_billed)
    -- a reply cut off mid-body reached the server: may have billed, not retried under safe
    s:reset()
    local _, ecut = imageroute.generate(fx.behaving(s, {truncate = true}, {max_retries = 2, retry_policy = "safe"}),
      {prompt = "x"})
    assert.truthy(ecut)
    assert.is_true(ecut.attempt_log[1].may_have_billed)
    assert.equal(1, #s:requests())
    -- an unknown policy is refused when the route is built
    local _, ebad = imageroute.route{name = "x", retry_policy = "never"}
    assert.equal("retry_policy", ebad.field)
  end)
end)

describe("routers on the command line", function()
  local s = server.for_block{reset = false}

  it("--route takes a router from the routes file, and check reports its targets", function()
    local cli = require("support.cli_run")
    local dir = fx.tmpdir()
    local f = assert(io.open(dir .. "/routes.lua", "w"))
    f:write(([[return {
      down = {base_url = %q, model = "gpt-image-1", api_key_env = %q, max_retries = 0,
        headers = {["x-imageroute-test"] = '{"status":503}'}},
      up = {base_url = %q, model = "gpt-image-1", api_key_env = %q},
      both = {routes = {"down", "up"}},
    }]]):format(s.base_url, fx.KEY_ENV, s.base_url, fx.KEY_ENV))
    f:close()
    local rc, out, err = cli.run(dir, {"--routes", dir .. "/routes.lua", "generate", "--route", "both", "a fox",
      "-o", dir .. "/out/"})
    assert.equal(0, rc, err)
    assert.matches("router=both fallback_from=down route=up", out)
    local rc2, out2 = cli.run(dir, {"--routes", dir .. "/routes.lua", "check", "both"})
    assert.equal(0, rc2)
    assert.matches("lane=router", out2)
    assert.matches("1%. down%s+pass", out2)
    assert.matches("2%. up%s+pass", out2)
  end)
end)
