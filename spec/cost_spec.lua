local imageroute = require("imageroute")
local cost = require("imageroute.cost")
local prices = require("imageroute.prices")
local policy = require("imageroute.policy")
local server = require("support.server")
local fx = require("support.fixtures")

-- Every expected figure below is computed by hand from OpenAI's pricing page of May 2026
-- (USD; the rows of imageroute.prices):
-- per 1M tokens  gpt-image-1: text in 5, image in 10, image out 40; gpt-image-2: text in 5, text out 10,
--                image out 30; gpt-image-1-mini: text in 2, image out 8
-- per image      gpt-image-1 1024x1024 medium 0.042, 1536x1024 high 0.25, 1024x1536 low 0.016;
--                gpt-image-2 1024x1024 low 0.006, 1536x1024 high 0.165, 1024x1536 low 0.005;
--                gpt-image-1-mini 1024x1024 high 0.036

local EPS = 1e-12
local dispatch = require("imageroute.dispatch")
local function raw(kind) return function(...) return dispatch.call(kind, ...) end end

local function route(extra)
  local cfg = fx.with({name = "r", base_url = "http://127.0.0.1:9/v1", model = "gpt-image-1",
    api_key_env = fx.KEY_ENV}, extra)
  return assert(imageroute.route(cfg))
end

local function gateway(billing, extra)
  local cfg = fx.with({lane = "provider", provider = "acme", shape = "chat", model = "gpt-image-2", accepted = "spec",
    billing = billing}, extra)
  return route(cfg)
end

local OK = {{attempt = 1, status = 200, phase = "request"}}

local function images(n, fields)
  local list = {}
  for i = 1, n do list[i] = fields or {} end
  return list
end

describe("cost (imageroute.cost) against hand-computed figures", function()
  it("keeps one price table with a source and date on every row", function()
    for model, row in pairs(prices.tokens) do
      assert.truthy(row.source and row.date, model)
      assert.equal(1e6, row.per)
    end
    for model, row in pairs(prices.images) do
      assert.truthy(row.source and row.date, model)
      assert.equal(row["1024x1536"].high, row["1536x1024"].high, model)
    end
    assert.equal(0.042, (prices.image_price("gpt-image-1", "1024x1024", "medium")))
    assert.equal(0.165, (prices.image_price("gpt-image-2-2026-04-21", "1536x1024", "high")))
    assert.is_nil((prices.image_price("gpt-image-1", "auto", "medium")))
  end)

  it("prices usage tokens: 100 text in x $5/1M + 4160 image out x $40/1M = $0.1669", function()
    local usage = {input_tokens = 100, input_tokens_details = {text_tokens = 100, image_tokens = 0},
      output_tokens = 4160, total_tokens = 4260}
    local c = cost.of("generate", route(), {prompt = "p"}, {usage = usage, model = "gpt-image-1",
      images = images(1), attempt_log = OK})
    assert.near(0.1669, c.amount, EPS)
    assert.equal("usage", c.basis)
    assert.equal("token", c.unit)
    assert.equal("USD", c.currency)
    assert.is_true(c.estimated)
    assert.equal("success", c.outcome)
    assert.equal(prices.tokens["gpt-image-1"].source, c.source)
    assert.equal("2026-05", c.date)
    assert.same({text_in = 100, image_in = 0, image_out = 4160, text_out = 0}, c.tokens)
  end)

  it("prices image input tokens and the output details when given", function()
    -- edit: 10 text x $5 + 256 image in x $10 + 1056 image out x $40 = $0.04485
    local c = cost.of("edit", route(), {}, {model = "gpt-image-1", attempt_log = OK, usage = {input_tokens = 266,
      input_tokens_details = {text_tokens = 10, image_tokens = 256}, output_tokens = 1056}})
    assert.near(0.04485, c.amount, EPS)
    -- gpt-image-2: 50 text in x $5 + 4000 image out x $30 + 100 text out x $10 = $0.12125
    c = cost.of("generate", route{model = "gpt-image-2"}, {}, {model = "gpt-image-2", attempt_log = OK,
      usage = {input_tokens = 50, input_tokens_details = {text_tokens = 50, image_tokens = 0}, output_tokens = 4100,
        output_tokens_details = {image_tokens = 4000, text_tokens = 100}}})
    assert.near(0.12125, c.amount, EPS)
    -- no input details: every input token as text; gpt-image-1-mini 40 x $2 + 272 x $8 = $0.002256
    c = cost.of("generate", route{model = "gpt-image-1-mini"}, {}, {model = "gpt-image-1-mini", attempt_log = OK,
      usage = {input_tokens = 40, output_tokens = 272}})
    assert.near(0.002256, c.amount, EPS)
    assert.truthy(c.note:find("input_tokens_details", 1, true))
    -- a token kind without a published price is unknown, never zero
    c = cost.of("generate", route{model = "gpt-image-1.5"}, {size = "1024x1024", quality = "low"},
      {model = "gpt-image-1.5", attempt_log = OK, images = images(1), usage = {input_tokens = 5,
        input_tokens_details = {text_tokens = 5, image_tokens = 0}, output_tokens = 300,
        output_tokens_details = {image_tokens = 280, text_tokens = 20}}})
    assert.near(0.009, c.amount, EPS) -- falls back to the per-image row
    assert.equal("per_image", c.basis)
  end)

  it("prices per image by model, size and quality when there is no usage", function()
    local function of(model, params, res)
      res.attempt_log, res.model = OK, model
      return cost.of("generate", route{model = model}, params, res)
    end
    local c = of("gpt-image-1", {size = "1024x1024", quality = "medium"}, {images = images(1)})
    assert.near(0.042, c.amount, EPS)
    assert.equal("per_image", c.basis)
    assert.equal("image", c.unit)
    assert.equal(prices.images["gpt-image-1"].source, c.source)
    -- the size and quality the API reports win over what was asked (auto)
    assert.near(0.5, of("gpt-image-1", {size = "auto", quality = "auto", n = 2},
      {images = images(2), size = "1536x1024", quality = "high"}).amount, EPS)
    assert.near(0.015, of("gpt-image-2", {size = "1024x1536", quality = "low", n = 3}, {images = images(3)}).amount,
      EPS)
    assert.near(0.036, of("gpt-image-1-mini", {size = "1024x1024", quality = "high"}, {images = images(1)}).amount,
      EPS)
    c = of("gpt-image-2", {size = "2048x1152", quality = "high"}, {images = images(1)})
    assert.is_nil(c.amount)
    assert.truthy(c.reason:find("no per-image price", 1, true), c.reason)
    c = of("dall-e-3", {size = "1024x1024"}, {images = images(1)})
    assert.is_nil(c.amount)
    assert.equal(0, c.known_amount)
  end)

  it("prices a Responses result per image from each image's size and quality", function()
    -- gpt-image-2: 1024x1024 low 0.006 + 1536x1024 high 0.165 = 0.171
    local r = route{shape = "responses", model = "gpt-5", image_model = "gpt-image-2"}
    local c = cost.of("respond", r, {input = "x"}, {model = "gpt-5", tool_model = "gpt-image-2", attempt_log = OK,
      usage = {input_tokens = 20, output_tokens = 300, total_tokens = 320},
      images = {{size = "1024x1024", quality = "low"}, {size = "1536x1024", quality = "high"}}})
    assert.near(0.171, c.amount, EPS)
    assert.equal("per_image", c.basis)
    assert.truthy(c.excludes:find("gpt-5", 1, true), c.excludes)
  end)

  it("uses the route's own provider price per call, per image, per token, and a reported amount", function()
    local c = cost.of("generate", gateway{unit = "call", price = 0.03, source = "acme pricing", date = "2026-05-12"},
      {prompt = "p"}, {images = images(2), attempt_log = OK})
    assert.near(0.03, c.amount, EPS)
    assert.same({"provider", "call", "acme pricing", "2026-05-12", true},
      {c.basis, c.unit, c.source, c.date, c.estimated})
    c = cost.of("generate", gateway{unit = "image", price = 0.02}, {prompt = "p"}, {images = images(3),
      attempt_log = OK})
    assert.near(0.06, c.amount, EPS)
    assert.equal("image", c.unit)
    c = cost.of("generate", gateway{unit = "token", price = 0.000002}, {prompt = "p"},
      {images = images(1), attempt_log = OK, usage = {total_tokens = 1500}})
    assert.near(0.003, c.amount, EPS)
    c = cost.of("generate", gateway{unit = "call", price = 0.03, currency = "EUR"}, {prompt = "p"},
      {images = images(1), attempt_log = OK, usage = {cost = 0.027}})
    assert.same({0.027, "reported", false, "EUR"}, {c.amount, c.basis, c.estimated, c.currency})
  end)
end)

describe("failed calls are priced by the route's failed_calls_billed rule", function()
  local RULE = {rejected = "no", moderation = "no", timeout = "unknown", server_error = "yes"}
  local gw = gateway({unit = "call", price = 0.03}, {contract = {failed_calls_billed = RULE}})

  local function fail(err, params, r)
    err.attempt_log = err.attempt_log or {{attempt = 1, status = err.status, phase = "request",
      error_kind = (err.kind == "timeout" or err.kind == "connection") and err.kind or nil}}
    return cost.of("generate", r or gw, params or {prompt = "p"}, nil, err)
  end

  it("charges the price, zero, or an unknown amount (never a silent zero)", function()
    local c = fail{kind = "api", status = 500}
    assert.same({0.03, "server_error", "yes", 0.03}, {c.amount, c.outcome, c.billed, c.max_amount})
    c = fail{kind = "api", status = 400, code = "invalid_size"}
    assert.same({0, "rejected", "no"}, {c.amount, c.outcome, c.billed})
    c = fail{kind = "api", status = 429}
    assert.equal("rejected", c.outcome)
    c = fail{kind = "api", status = 400, code = "moderation_blocked"}
    assert.same({0, "moderation", "no"}, {c.amount, c.outcome, c.billed})
    c = fail{kind = "timeout"}
    assert.is_nil(c.amount)
    assert.same({"timeout", "unknown", 0.03, 0}, {c.outcome, c.billed, c.max_amount, c.known_amount})
    assert.truthy(c.reason:find("timeout", 1, true))
    c = fail{kind = "connection"}
    assert.equal("timeout", c.outcome)
    c = fail{kind = "http", status = 504}
    assert.equal("timeout", c.outcome)
  end)

  it("reads the rule from billing.failed_calls_billed, and prices an official route per image", function()
    local r = gateway({unit = "image", price = 0.02, failed_calls_billed = "yes"}, {shape = "images"})
    assert.near(0.06, fail({kind = "api", status = 500}, {prompt = "p", n = 3}, r).amount, EPS)
    -- official, no rule recorded: unknown, at most the per-image price asked (2 x 0.042)
    local c = fail({kind = "api", status = 500}, {prompt = "p", size = "1024x1024", quality = "medium", n = 2},
      route())
    assert.is_nil(c.amount)
    assert.near(0.084, c.max_amount, EPS)
    assert.equal("per_image", c.basis)
    -- billed, but the size asked has no price row: unknown with a reason
    c = fail({kind = "api", status = 500}, {prompt = "p", size = "auto"},
      route{billing = {unit = "token", failed_calls_billed = "yes"}})
    assert.is_nil(c.amount)
    assert.is_nil(c.max_amount)
    assert.truthy(c.reason:find("no per-image price", 1, true))
  end)

  it("prices every retried attempt, so a call billed twice shows it", function()
    local log = {{attempt = 1, status = 500, phase = "request", retry_reason = "server_error"},
      {attempt = 2, status = 500, phase = "request", retry_reason = "server_error"},
      {attempt = 3, status = 200, phase = "request"}, {attempt = 1, status = 200, phase = "download"}}
    local c = cost.of("generate", gw, {prompt = "p"}, {images = images(1), attempt_log = log})
    assert.near(0.09, c.amount, EPS)
    assert.equal(4, #c.attempts)
    assert.same({"server_error", "yes", 0.03}, {c.attempts[1].outcome, c.attempts[1].billed, c.attempts[1].amount})
    assert.same({"success", 0.03}, {c.attempts[3].outcome, c.attempts[3].amount})
    assert.same({"download", 0}, {c.attempts[4].outcome, c.attempts[4].amount})
    assert.equal("success", c.outcome)
    -- with an unknown rule the total is unknown, with what is known and the most it can be
    log[1].status, log[2].status = 408, 408
    c = cost.of("generate", gw, {prompt = "p"}, {images = images(1), attempt_log = log})
    assert.is_nil(c.amount)
    assert.near(0.03, c.known_amount, EPS)
    assert.near(0.09, c.max_amount, EPS)
  end)

  it("costs nothing when refused before sending, and prices an answered call that failed after", function()
    local c = cost.of("generate", gw, {prompt = "p"}, nil, {kind = "validation", attempts = 0})
    assert.same({0, "not_sent", false, "not_sent"}, {c.amount, c.basis, c.estimated, c.outcome})
    -- the gateway answered, the image download failed: the call was answered and bills its price
    c = cost.of("generate", gw, {prompt = "p"}, nil, {kind = "http", status = 404, attempt_log = {
      {attempt = 1, status = 200, phase = "request"}, {attempt = 1, status = 404, phase = "download"}}})
    assert.same({0.03, "answered", "yes"}, {c.amount, c.outcome, c.billed})
    -- an official 2xx without a usable image: whether it billed is unknown
    c = cost.of("generate", route(), {prompt = "p", size = "1024x1024", quality = "medium"}, nil,
      {kind = "decode", status = 200, attempt_log = OK})
    assert.is_nil(c.amount)
    assert.equal("answered", c.outcome)
    assert.near(0.042, c.max_amount, EPS)
  end)
end)

describe("cost of real calls to the local server (policy hooks)", function()
  local s = server.for_block()
  local png
  setup(function() png = fx.read("examples/assets/mask-1024.png") end)

  -- the local server's tokens: text ceil(chars / 4), 256 per input image, output low 272 / medium 1056 /
  -- high 4160 per 1024x1024 image (scaled by area), no output_tokens_details
  it("generate: 400 chars (100 tokens) at high 1024x1024 = 100 x $5/1M + 4160 x $40/1M = $0.1669", function()
    local res = assert(policy.call("generate", raw("generate"), fx.route(s),
      {prompt = ("a"):rep(400), size = "1024x1024", quality = "high"}))
    assert.near(0.1669, res.cost.amount, EPS)
    assert.equal("usage", res.cost.basis)
  end)

  it("edit: 3 text + 256 image in + 1056 out = 15 + 2560 + 42240 micro-dollars = $0.044815", function()
    local res = assert(policy.call("edit", raw("edit"), fx.route(s),
      {prompt = "make it blue", image = png, size = "1024x1024", quality = "medium"}))
    assert.near(0.044815, res.cost.amount, EPS)
  end)

  it("responses: one gpt-image-1 image at 1024x1536 low = $0.016", function()
    local r = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-1"})
    local res = assert(policy.call("generate", raw("generate"), r, {prompt = "a kite", size = "1024x1536",
      quality = "low"}))
    assert.near(0.016, res.cost.amount, EPS)
    assert.equal("per_image", res.cost.basis)
  end)

  it("chat gateway at $0.03 per call, a billed server error retried once: $0.06", function()
    local r = fx.route(s, {lane = "provider", provider = "local-gateway", shape = "chat", model = "gpt-image-2",
      accepted = "spec", billing = {unit = "call", price = 0.03, failed_calls_billed = {server_error = "yes"}}})
    s:script{{status = 500}, {}}
    local res = assert(policy.call("generate", raw("generate"), r, {prompt = "p"}))
    assert.near(0.06, res.cost.amount, EPS)
    s:script{{status = 400, error = {message = "blocked", type = "image_generation_user_error",
      code = "moderation_blocked"}}}
    local _, err = policy.call("generate", raw("generate"), r, {prompt = "p"})
    assert.is_nil(err.cost.amount) -- moderation billing not recorded: unknown
    assert.equal("moderation", err.cost.outcome)
    assert.near(0.03, err.cost.max_amount, EPS)
  end)

  -- needs init.lua to run policy.after around generate, edit and respond
  it("every result and every error carries cost (needs the init.lua wiring)", function()
    local res = assert(imageroute.generate(fx.route(s), {prompt = ("a"):rep(400), size = "1024x1024",
      quality = "high"}))
    assert.near(0.1669, res.cost.amount, EPS)
    s:script{{status = 400, error = {message = "bad", type = "invalid_request_error"}}}
    local _, err = imageroute.generate(fx.route(s), {prompt = "p"})
    assert.equal("table", type(err.cost))
    assert.equal("rejected", err.cost.outcome)
    _, err = imageroute.generate(fx.route(s), {prompt = "p", n = 0})
    assert.equal("not_sent", err.cost.basis)
  end)
end)
