local imageroute = require("imageroute")
local core = require("imageroute.core")
local log = require("imageroute.log")
local policy = require("imageroute.policy")
local dispatch = require("imageroute.dispatch")
local server = require("support.server")
local fx = require("support.fixtures")
local json = require("imageroute.json")

local function lines_of(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

local records = fx.log_records

-- no base64 anywhere: no PNG signature in base64, no long run of the base64 alphabet
local function assert_clean(text)
  assert.falsy(text:find(fx.KEY, 1, true), "the key is in the log")
  assert.falsy(text:find("iVBORw0KGgo", 1, true), "base64 PNG data is in the log")
  local longest = 0
  for run in text:gmatch("[%w+/=\\]+") do
    if #run > longest then longest = #run end
  end
  assert.truthy(longest < 100, "a base64-like run of " .. longest .. " characters is in the log")
end

describe("the call log (imageroute.log)", function()
  local s, dir = server.for_block{dir = true}
  local n = 0
  teardown(function() log.set_default(nil) end)

  local function new_log()
    n = n + 1
    return dir .. "/calls-" .. n .. ".jsonl"
  end

  local function call(kind, r, params, opts)
    return policy.call(kind, function(...) return dispatch.call(kind, ...) end, r, params, opts)
  end

  it("writes one line with every field for a successful call", function()
    local path = new_log()
    local prompt = "a lighthouse at dawn"
    local res = assert(call("generate", fx.route(s, {log = path, billing = {unit = "token"}}),
      {prompt = prompt, size = "1024x1024", quality = "low", n = 2, output_format = "png"}))
    local list = records(path)
    assert.equal(1, #list)
    local rec = list[1]
    assert.same({"attempt", "generate", "local", "official", "openai", "images", "/images/generations", "gpt-image-1"},
      {rec.event, rec.kind, rec.route, rec.lane, rec.provider, rec.shape, rec.endpoint, rec.model})
    assert.same({"1024x1024", "low", 2, 2, "png"}, {rec.size, rec.quality, rec.n, rec.images, rec.output_format})
    assert.same({res.request_id, 200, 200, 1, 1, true, true, "request"},
      {rec.request_id, rec.status, rec.http_status, rec.attempt, rec.attempts, rec.final, rec.ok, rec.phase})
    assert.truthy(rec.time:find("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), rec.time)
    assert.equal(res.call_id, rec.call_id)
    assert.equal("number", type(rec.latency))
    assert.equal("number", type(rec.call_latency))
    assert.truthy(rec.bytes > 0)
    assert.equal(res.bytes_received, rec.bytes_received)
    assert.equal("token", rec.billing_unit)
    assert.near(res.cost.amount, rec.cost.amount, 1e-12)
    assert.same({"USD", "usage", true, "success"}, {rec.cost.currency, rec.cost.basis, rec.cost.estimated,
      rec.cost.outcome})
    assert.near(res.cost.amount, rec.call_cost.amount, 1e-12)
    assert.equal(core.sha256(prompt), rec.prompt_sha256)
    assert.equal(prompt, rec.prompt)
    assert.equal(#prompt, rec.prompt_chars)
    assert.is_nil(rec.error_kind)
  end)

  it("logs one line per attempt of a retried call, with the retry reason", function()
    local path = new_log()
    s:script{{status = 503}, {status = 429, headers = {["retry-after-ms"] = "10"}}, {}}
    local res = assert(call("generate", fx.route(s, {log = path}), {prompt = "p"}))
    local list = records(path)
    assert.equal(3, #list)
    for i, rec in ipairs(list) do
      assert.equal(i, rec.attempt)
      assert.equal(res.call_id, rec.call_id)
      assert.truthy(rec.request_id:find("^req_"))
      assert.equal("table", type(rec.cost))
    end
    assert.same({503, "server_error", "http"}, {list[1].status, list[1].retry_reason, list[1].error_kind})
    assert.same({429, "rate_limited"}, {list[2].status, list[2].retry_reason})
    assert.equal("number", type(list[1].retry_delay))
    assert.is_nil(list[1].final)
    assert.same({200, true, true, 3, 1}, {list[3].status, list[3].final, list[3].ok, list[3].attempts, list[3].images})
    assert.equal("unknown", list[1].cost.billed) -- the official route records no failed-call rule
    assert.equal("rejected", list[2].cost.outcome)
  end)

  it("logs a failure's error kind and code, and a refusal's rule", function()
    local path = new_log()
    s:script{{status = 400, error = {message = "Your request was rejected by the safety system",
      type = "image_generation_user_error", code = "moderation_blocked"}}}
    local _, err = call("generate", fx.route(s, {log = path}), {prompt = "p"})
    assert.equal("moderation_blocked", err.code)
    local _, refused = call("generate", fx.route(s, {log = path}), {prompt = "p", size = "999x999"})
    assert.equal("size", refused.rule)
    local list = records(path)
    assert.equal(2, #list)
    assert.same({"api", "moderation_blocked", 400, false, true, "moderation"},
      {list[1].error_kind, list[1].error_code, list[1].status, list[1].ok, list[1].final, list[1].cost.outcome})
    assert.truthy(list[1].error:find("safety system", 1, true))
    assert.same({0, "not_sent", "validation", "size", false, 0}, {list[2].attempt, list[2].phase, list[2].error_kind,
      list[2].rule, list[2].ok, list[2].cost.amount})
  end)

  it("logs each saved file's path, size and sha256", function()
    local path = new_log()
    local res = assert(call("generate", fx.route(s, {log = path}), {prompt = "p", n = 2}))
    local file = dir .. "/saved-1.png"
    local p, bytes = res.images[1]:save(file)
    assert.same({file, res.images[1].length}, {p, bytes})
    local _, e = res.images[1]:save(file) -- exists: a failed save logs nothing
    assert.equal("io", e.kind)
    local saved = imageroute.save(res, dir, {name = "batch"})
    assert.equal(2, #saved)
    local list = records(path)
    assert.equal(4, #list)
    local rec = list[2]
    assert.same({"save", file, res.images[1].length, res.images[1].sha256, core.sha256(fx.read(file)), res.call_id,
      res.request_id}, {rec.event, rec.path, rec.bytes, rec.sha256, rec.sha256, rec.call_id, rec.request_id})
    assert.equal(saved[2].sha256, list[4].sha256)
  end)

  it("never writes the key, base64, or a prompt longer than the limit (its hash instead)", function()
    local path = new_log()
    local long = ("a very long prompt "):rep(20)
    local r = fx.route(s, {log = path})
    assert(call("generate", r, {prompt = long}))
    assert(call("generate", r, {prompt = "my key is " .. fx.KEY}))
    local png = fx.read("examples/assets/mask-1024.png")
    assert(call("edit", r, {prompt = "edit", image = png, mask = png}))
    assert(call("respond", fx.route(s, {log = path, shape = "responses", model = "gpt-5", image_model = "gpt-image-1"}),
      {input = {"describe", imageroute.image(png)}, tool_choice = "image_generation"}))
    assert(call("generate", fx.route(s, {log = path, shape = "chat", lane = "provider", provider = "gw",
      accepted = "spec", model = "gpt-image-2"}), {prompt = "boat"}))
    -- a 2xx body that is base64, quoted back in the error message
    s:script{{body = ("iVBORw0KGgoAAAANSUhEUg"):rep(20), content_type = "text/plain"}}
    local _, err = call("generate", r, {prompt = "p"})
    assert.equal("decode", err.kind)
    assert.truthy(err.message:find("iVBORw0KGgo", 1, true))
    s:script{{status = 401, error = {message = "Incorrect API key provided: " .. fx.KEY, code = "invalid_api_key"}}}
    assert.is_nil((call("generate", r, {prompt = "p"})))
    local text = fx.read(path)
    assert_clean(text)
    local list = records(path)
    assert.is_nil(list[1].prompt)
    assert.equal(core.sha256(long), list[1].prompt_sha256)
    assert.equal(#long, list[1].prompt_chars)
    assert.truthy(list[2].prompt:find("[redacted]", 1, true))
    assert.truthy(text:find("chars elided", 1, true))
    -- the limit is configurable: per route, per call
    local path2 = new_log()
    assert(call("generate", fx.route(s, {log = {path = path2, prompt_limit = 0}}), {prompt = "short"}))
    assert(call("generate", fx.route(s, {log = path2}), {prompt = long}, {prompt_limit = 1000}))
    local l2 = records(path2)
    assert.is_nil(l2[1].prompt)
    assert.equal(core.sha256("short"), l2[1].prompt_sha256)
    assert.equal(long, l2[2].prompt)
  end)

  it("goes to the route's file, the global default, or the per-call file; false turns it off", function()
    local default, own, per_call = new_log(), new_log(), new_log()
    log.set_default(default)
    assert(call("generate", fx.route(s), {prompt = "to the default"}))
    assert(call("generate", fx.route(s, {log = own}), {prompt = "to the route's file"}))
    assert(call("generate", fx.route(s, {log = own}), {prompt = "to the call's file"}, {log = per_call}))
    assert(call("generate", fx.route(s, {log = false}), {prompt = "nowhere"}))
    assert(call("generate", fx.route(s), {prompt = "nowhere either"}, {log = false}))
    log.set_default(nil)
    assert(call("generate", fx.route(s), {prompt = "no default any more"}))
    assert.same({"to the default"}, {records(default)[1].prompt, records(default)[2]})
    assert.equal(1, #records(default))
    assert.equal("to the route's file", records(own)[1].prompt)
    assert.equal(1, #records(own))
    assert.equal("to the call's file", records(per_call)[1].prompt)
  end)

  it("reports a log it cannot write as log_error, never raising, never failing the call", function()
    local res = assert(call("generate", fx.route(s, {log = dir .. "/no/such/dir/calls.jsonl"}), {prompt = "p"}))
    assert.equal(1, #res.images)
    assert.equal("io", res.log_error.kind)
    assert.truthy(tostring(res.log_error):find("no/such/dir", 1, true))
  end)

  it("keeps whole lines when two processes append to the same file at once", function()
    local path = new_log()
    local script = dir .. "/writer.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local log = require("imageroute.log")
      local core = require("imageroute.core")
      local r = assert(core.route{name = arg[1], base_url = "http://127.0.0.1:9/v1", model = "gpt-image-1",
        log = arg[2]})
      while not io.open(arg[3]) do end -- start together
      for i = 1, 1000 do
        local res = {images = {}, attempts = 3, latency = i / 1000, attempt_log = {
          {attempt = 1, status = 500, phase = "request", retry_reason = "server_error", latency = 0.001},
          {attempt = 2, status = 500, phase = "request", retry_reason = "server_error", latency = 0.001},
          {attempt = 3, status = 200, phase = "request", latency = 0.001}}}
        assert(log.write("generate", r, {prompt = (arg[1]):rep(180) .. i}, nil, res, nil))
      end
    ]])
    f:close()
    local go = dir .. "/go"
    local cmd = ("lua5.4 %s a %s %s & lua5.4 %s b %s %s & sleep 0.2; touch %s; wait"):format(script, path, go,
      script, path, go, go)
    assert.is_true((os.execute(cmd)))
    local lines = lines_of(path)
    assert.equal(2 * 1000 * 3, #lines)
    local per_route, last_call, last_attempt, calls, switches = {a = 0, b = 0}, nil, 0, {}, 0
    local last_route
    for _, line in ipairs(lines) do
      local rec = json.decode(line)
      assert.equal("table", type(rec), line:sub(1, 80))
      per_route[rec.route] = per_route[rec.route] + 1
      if last_route and rec.route ~= last_route then switches = switches + 1 end
      last_route = rec.route
      -- one call's lines are written in one append, so they stay together and in order
      if rec.call_id ~= last_call then
        assert.equal(3, last_call and last_attempt or 3)
        assert.is_nil(calls[rec.call_id])
        calls[rec.call_id], last_call = true, rec.call_id
        assert.equal(1, rec.attempt)
      else
        assert.equal(last_attempt + 1, rec.attempt)
      end
      last_attempt = rec.attempt
    end
    assert.same({a = 3000, b = 3000}, per_route)
    assert.truthy(switches >= 2, "the two writers did not overlap (" .. switches .. " switches)")
  end)

  it("sums per route: calls, failures, images, cost, p50/p95 latency", function()
    local path = new_log()
    local rule = {server_error = "yes", rejected = "no", timeout = "unknown", moderation = "no"}
    local r1 = fx.route(s, {name = "s1", log = path, billing = {unit = "token", failed_calls_billed = rule}})
    local r2 = fx.route(s, {name = "s2", log = path})
    local asked = {prompt = "p", size = "1024x1024", quality = "medium"}
    local function ok_log(lat) return {{attempt = 1, status = 200, phase = "request", latency = lat}} end
    -- 7 successes, 1 image each at $0.042, latencies 0.1 .. 0.7 s
    for i = 1, 7 do
      policy.after("generate", r1, asked, nil, {images = {{}}, latency = i / 10, attempt_log = ok_log(i / 10)})
    end
    -- a success after a billed server error: 2 x $0.042, 0.8 s
    policy.after("generate", r1, asked, nil, {images = {{}}, latency = 0.8, attempts = 2, attempt_log = {
      {attempt = 1, status = 500, phase = "request", retry_reason = "server_error"},
      {attempt = 2, status = 200, phase = "request"}}})
    -- a rejected call (not billed), 0.9 s; a timeout (billing unknown), 1.0 s; a refusal (not sent)
    policy.after("generate", r1, asked, nil, nil, {kind = "api", status = 400, latency = 0.9, attempts = 1,
      attempt_log = {{attempt = 1, status = 400, phase = "request"}}})
    policy.after("generate", r1, asked, nil, nil, {kind = "timeout", latency = 1.0, attempts = 1,
      attempt_log = {{attempt = 1, error_kind = "timeout", phase = "request"}}})
    policy.after("generate", r1, asked, nil, nil, core.error("validation", "refused", {attempts = 0, rule = "n_range"}))
    -- route s2: 2 images at 1536x1024 high, $0.25 each, 2.0 s
    policy.after("generate", r2, {prompt = "p", size = "1536x1024", quality = "high", n = 2}, nil,
      {images = {{}, {}}, latency = 2.0, attempt_log = ok_log(2.0)})
    local sum = assert(log.summary(path))
    assert.same(sum, log.summary(records(path)))
    local a = sum.s1
    assert.same({11, 3, 1, 8, 11, 1, 1, "USD"}, {a.calls, a.failures, a.refused, a.images, a.attempts, a.retries,
      a.cost_unknown, a.currency})
    assert.near(8 * 0.042 + 0.042, a.cost, 1e-12) -- 0.378
    assert.equal(0.5, a.p50_latency)
    assert.equal(1.0, a.p95_latency)
    local b = sum.s2
    assert.same({1, 0, 2, 2.0, 2.0}, {b.calls, b.failures, b.images, b.p50_latency, b.p95_latency})
    assert.near(0.5, b.cost, 1e-12)
  end)

  it("reads a log back, counting lines that are not JSON", function()
    local path = new_log()
    core.append(path, '{"event":"attempt","route":"x","final":true,"ok":true}\nnot json\n\n')
    local list, bad = log.read(path)
    assert.equal(1, #list)
    assert.equal(1, bad)
    local none, err = log.read(dir .. "/missing.jsonl")
    assert.is_nil(none)
    assert.equal("io", err.kind)
  end)

  -- needs init.lua to run policy.after around generate, edit and respond, and to expose imageroute.log
  it("logs calls made through imageroute.generate (needs the init.lua wiring)", function()
    local path = new_log()
    assert(imageroute.generate(fx.route(s, {log = path}), {prompt = "wired"}))
    assert.equal("wired", records(path)[1].prompt)
    assert.equal(log, imageroute.log)
    assert.equal(1, imageroute.log.summary(path)["local"].calls)
  end)
end)
