-- imageroute probe: the billing test of a route, against the bundled local server. The cheapest
-- call is chosen from the price rows, the refused call carries a deliberately invalid field past
-- the stop rules, and the probe record in the call log ties both calls' request ids, the window and
-- the estimate together.
local imageroute = require("imageroute")
local core = require("imageroute.core")
local json = require("imageroute.json")
local probe = require("imageroute.billing.probe")
local server = require("support.server")
local fx = require("support.fixtures")
local cli = require("support.cli_run")

local function lines(path)
  return assert(imageroute.log.read(path))
end

local function attempts_of(records, call_id)
  local out = {}
  for _, r in ipairs(records) do
    if r.event == "attempt" and r.call_id == call_id then out[#out + 1] = r end
  end
  return out
end

describe("imageroute probe", function()
  local s, dir = server.for_block{dir = true}

  it("makes the cheapest call of the price rows and a refused n = 0 call, and logs a probe record", function()
    local log = dir .. "/images.jsonl"
    local route = fx.route(s, {name = "official-2", lane = "official", model = "gpt-image-2", log = log})
    local rec = assert(probe.run(route, {failed = true}))
    local reqs = s:requests()
    assert.equal(2, #reqs)
    -- gpt-image-2's cheapest row is 1024x1536 at low (0.005 USD), not the square one (0.006)
    assert.same({"1024x1536", "low", 1}, {reqs[1].json.size, reqs[1].json.quality, reqs[1].json.n})
    assert.equal(0, reqs[2].json.n)           -- sent past the n_range stop rule
    assert.equal(400, reqs[2].status)
    assert.equal("success", rec.calls[1].role)
    assert.is_true(rec.calls[1].ok)
    assert.equal("failed", rec.calls[2].role)
    assert.is_false(rec.calls[2].ok)
    assert.equal("rejected", rec.calls[2].outcome)
    assert.equal("invalid_value", rec.calls[2].error_code)
    assert.equal("n", rec.calls[2].field)
    assert.equal(0.005, rec.calls[2].price_if_billed) -- the valid call's row: what a billed refusal costs
    -- the probe line is in the log, after both calls' lines, with their request ids
    local records = lines(log)
    local last = records[#records]
    assert.equal("probe", last.event)
    assert.equal(rec.probe_id, last.probe_id)
    assert.truthy(rec.probe_id:match("^probe%-"))
    for i = 1, 2 do
      local a = attempts_of(records, rec.calls[i].call_id)
      assert.equal(1, #a)                       -- max_retries = 0: one request each, never billed twice
      assert.equal(a[1].request_id, last.calls[i].request_id)
      assert.truthy(a[1].request_id:match("^req_"))
      local t = assert(require("imageroute.billing.reconcile").parse_time(a[1].time))
      assert.is_true(t >= last.start_time and t <= last.end_time, "the window holds the call")
    end
    assert.equal(fx.KEY and imageroute.log.key_id(fx.KEY), last.key_id)
    -- the estimate is the usage of the reply priced at the published rates, both hypotheses spelled out
    assert.is_true(math.abs(last.estimated.if_failed_billed - (last.estimated.success + 0.005)) < 1e-9)
    local text = probe.text(rec)
    assert.truthy(text:find(rec.calls[1].request_id, 1, true), text)
    assert.truthy(text:find(rec.calls[2].request_id, 1, true), text)
    assert.truthy(text:find("reconcile --official --probe " .. rec.probe_id, 1, true), text)
    assert.truthy(text:find("window " .. rec.started, 1, true), text)
  end)

  it("without --failed sends one call only", function()
    local route = fx.route(s, {name = "one", log = dir .. "/one.jsonl"})
    local rec = assert(probe.run(route))
    assert.equal(1, #s:requests())
    assert.equal(1, #rec.calls)
    assert.same({"1024x1024", "low"}, {s:requests()[1].json.size, s:requests()[1].json.quality})
  end)

  it("on a responses route the refused call continues a response that does not exist", function()
    local route = fx.route(s, {name = "resp", shape = "responses", model = "gpt-5", image_model = "gpt-image-1",
      log = dir .. "/resp.jsonl"})
    local rec = assert(probe.run(route, {failed = true}))
    local reqs = s:requests()
    assert.equal("gpt-5", reqs[1].json.model)
    assert.equal(probe.INVALID_RESPONSE_ID, reqs[2].json.previous_response_id)
    assert.equal(400, reqs[2].status)
    assert.equal("previous_response_not_found", rec.calls[2].error_code)
    assert.equal("low", reqs[1].json.tools[1].quality)
  end)

  it("on a chat gateway asks for a model label the gateway does not serve; a flat price is the estimate", function()
    local route = fx.route(s, {name = "gw", lane = "provider", provider = "gw", shape = "chat", model = "gpt-image-2",
      billing = {unit = "call", price = 0.03, currency = "USD"}, accepted = "spec gateway", max_retries = 0,
      log = dir .. "/gw.jsonl"})
    local rec = assert(probe.run(route, {failed = true}))
    assert.equal(probe.INVALID_MODEL, s:requests()[2].json.model)
    assert.equal(404, s:requests()[2].status) -- the gateway mock serves only the labels it knows
    assert.equal("model_not_found", rec.calls[2].error_code)
    assert.equal("rejected", rec.calls[2].outcome)
    assert.equal(0.03, rec.calls[1].estimated)
    assert.equal(0.03, rec.calls[2].price_if_billed)
    assert.equal("unknown", rec.calls[2].billed_rule) -- the route does not say yet: that is what to find out
    assert.equal(0.03, rec.estimated.if_failed_free)
    assert.equal(0.06, rec.estimated.if_failed_billed)
    local text = probe.text(rec)
    assert.truthy(text:find("reconcile --probe " .. rec.probe_id .. " --billed AMOUNT", 1, true), text)
    assert.truthy(text:find("0.06 USD if it was", 1, true), text)
  end)

  it("the local gateway serves only the labels it knows: another one is a 404 model_not_found, nothing made", function()
    local function chat(model, headers)
      local status, body = s:request("POST", "/v1/chat/completions", {model = model,
        messages = {{role = "user", content = "a dot"}}}, headers)
      return status, assert(json.decode(body))
    end
    local status, body = chat("gpt-image-2")
    assert.equal(200, status)
    assert.equal("gpt-image-2", body.model)
    status, body = chat(probe.INVALID_MODEL)
    assert.equal(404, status)
    assert.same({"invalid_request_error", "model_not_found"}, {body.error.type, body.error.code})
    assert.truthy(body.error.message:find(probe.INVALID_MODEL, 1, true), body.error.message)
    -- a behaviour's `models` serves more labels, as for GET /models/{model}
    status, body = chat("acme-image-xl", {["x-imageroute-test"] = json.encode({models = {"acme-image-xl"}})})
    assert.equal(200, status)
    assert.equal("acme-image-xl", body.model)
    assert.equal(3, #s:requests())
  end)

  it("a refused call that could not be sent (here: over the route's budget) is recorded as not sent", function()
    local b = imageroute.budget{name = "probe-spec", usd = 0.04, per = "run"}
    local route = fx.route(s, {name = "gw-budget", lane = "provider", provider = "gw", shape = "chat",
      model = "gpt-image-2", billing = {unit = "call", price = 0.03, currency = "USD"}, accepted = "spec",
      max_retries = 0, budget = b, log = dir .. "/budget.jsonl"})
    local rec = assert(probe.run(route, {failed = true}))
    assert.equal(1, #s:requests())
    assert.is_false(rec.calls[2].sent)
    assert.equal("budget", rec.calls[2].error_kind)
    assert.equal(0.03, rec.estimated.if_failed_billed) -- nothing sent, nothing to bill
    assert.truthy(probe.text(rec):find("NOT SENT", 1, true))
    assert.equal(1, #require("imageroute.billing.reconcile").probe_calls(rec))
  end)

  it("the command: prints the ids and the window, exit 0; exit 1 when the server accepts the invalid field", function()
    local routes = cli.routes_file(dir, s, "official", 'log = "' .. dir .. '/cli.jsonl"')
    local rc, out, err = cli.run(dir, {"--routes", routes, "probe", "official", "--failed"})
    assert.equal(0, rc, err)
    local id = out:match("^probe (probe%-%S+)")
    assert.truthy(id, out)
    assert.truthy(out:find("call 1 success request_id=req_", 1, true), out)
    assert.truthy(out:find("call 2 failed  request_id=req_", 1, true), out)
    assert.truthy(out:find("log " .. dir .. "/cli.jsonl", 1, true), out)
    local found = probe.find(lines(dir .. "/cli.jsonl"), id)
    assert.equal(1, #found)
    -- a server that takes n = 0 (here: told to answer 200 with an image body) did not refuse it
    s:script({{}, {status = 200, body = {created = 1, data = {{b64_json = core.b64encode(fx.read(
      cli.ROOT .. "/examples/assets/mask-1024.png"))}}}}})
    rc, out, err = cli.run(dir, {"--routes", routes, "probe", "official", "--failed", "--json"})
    assert.equal(1, rc, out)
    assert.truthy(err:find("accepted the invalid field n = 0", 1, true), err)
    local j = assert(json.decode(out))
    assert.is_true(j.calls[2].ok)
  end)

  it("the command on --local local-gateway --failed: the gateway refuses the unknown label (exit 0)", function()
    local rc, out, err = cli.run(dir, {"--local", "probe", "local-gateway", "--failed"})
    assert.equal(0, rc, out .. err)
    local id = out:match("^probe (probe%-%S+)")
    assert.truthy(id, out)
    assert.truthy(out:find("refused model_not_found", 1, true), out)
    assert.falsy(out:find("ACCEPTED", 1, true), out)
    local path = dir .. "/out/imageroute-local-calls.jsonl"
    local records = lines(path)
    local found = probe.find(records, id)
    assert.equal(1, #found)
    local pr = found[1]
    assert.equal("local-gateway", pr.route)
    local ok_call, refused = pr.calls[1], pr.calls[2]
    assert.is_true(ok_call.ok)
    assert.equal(200, ok_call.status)
    assert.equal("gpt-image-1", ok_call.model)
    assert.is_false(refused.ok)
    assert.is_true(refused.sent)
    assert.equal(404, refused.status)
    assert.equal("api", refused.error_kind)
    assert.equal("model_not_found", refused.error_code)
    assert.equal("rejected", refused.outcome)
    assert.equal(probe.INVALID_MODEL, refused.model)
    assert.equal(0, refused.images)
    -- both request ids are the ones of the calls' own lines, and the text names both
    for i = 1, 2 do
      local a = attempts_of(records, pr.calls[i].call_id) -- the link's download has a line of its own
      assert.is_true(#a >= 1)
      assert.truthy(pr.calls[i].request_id:match("^req_"))
      for _, line in ipairs(a) do
        assert.equal(1, line.attempt)           -- one request each, never billed twice
        assert.equal(line.request_id, pr.calls[i].request_id)
      end
      assert.truthy(out:find("request_id=" .. pr.calls[i].request_id, 1, true), out)
    end
    assert.are_not.equal(ok_call.request_id, refused.request_id)
    assert.equal(0.03, pr.estimated.if_failed_free)
    assert.equal(0.06, pr.estimated.if_failed_billed)
    -- reconcile reads that probe: billed 0.03 for both calls means the refused call was free
    local rrc, rout, rerr = cli.run(dir, {"--local", "reconcile", "--probe", id, "--billed", "0.03"})
    assert.equal(0, rrc, rout .. rerr)
    assert.truthy(rout:find("failed_calls_billed", 1, true), rout)
    assert.truthy(rout:find('rejected = "no"', 1, true), rout)
  end)

  it("the command refuses a route whose gates refuse it, nothing sent (exit 2)", function()
    local routes = dir .. "/gated.lua"
    cli.write(routes, ([[return {gw = {lane = "provider", provider = "gw", shape = "chat", base_url = %q,
      api_key_env = "IMAGEROUTE_TEST_KEY", log = %q}}]]):format(s.base_url, dir .. "/gated.jsonl"))
    local rc, _, err = cli.run(dir, {"--routes", routes, "probe", "gw", "--failed"})
    assert.equal(2, rc, err)
    assert.truthy(err:find("refused before sending", 1, true), err)
    assert.equal(0, #s:requests())
  end)
end)
