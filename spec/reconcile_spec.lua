-- imageroute reconcile: the call log against what was billed. A provider's bill over a probe or a
-- window tells which failed calls were billed and whether the flat price held; the official API's
-- usage and costs (the local server's /organization endpoints, answering from the calls it served)
-- are compared per day, model, key and project, with the differences listed call by call.
local imageroute = require("imageroute")
local core = require("imageroute.core")
local json = require("imageroute.json")
local probe = require("imageroute.billing.probe")
local reconcile = require("imageroute.billing.reconcile")
local server = require("support.server")
local fx = require("support.fixtures")
local cli = require("support.cli_run")

local function gateway(s, log, extra)
  local cfg = fx.with({name = "gw", lane = "provider", provider = "gw", shape = "chat", model = "gpt-image-2",
    billing = {unit = "call", price = 0.03, currency = "USD"}, accepted = "spec gateway", max_retries = 0,
    log = log}, extra)
  return fx.route(s, cfg)
end

local REFUSE = {status = 404, error = {message = "The model does not exist", code = "model_not_found"}}

describe("imageroute reconcile", function()
  local s, dir = server.for_block{dir = true}

  it("parses ISO 8601 and Unix seconds", function()
    assert.equal(1764547200, reconcile.parse_time("2025-12-01"))
    assert.equal(1764547200, reconcile.parse_time("1764547200"))
    assert.equal(1764583200, reconcile.parse_time("2025-12-01T10:00:00Z"))
    assert.equal(1764583200.25, reconcile.parse_time("2025-12-01T10:00:00.250Z"))
    assert.equal(1764583200, reconcile.parse_time("2025-12-01T12:00:00+02:00"))
    assert.equal(1764583200, reconcile.parse_time("2025-12-01T10:00"))
    assert.is_nil((reconcile.parse_time("yesterday")))
  end)

  describe("a provider", function()
    it("tells from the bill of a probe whether the refused call was billed and whether the flat price held",
      function()
      local log = dir .. "/gw.jsonl"
      s:script({{}, REFUSE})
      local pr = assert(probe.run(gateway(s, log), {failed = true}))
      local calls = reconcile.probe_calls(pr)
      assert.equal(2, #calls)
      local billing = {unit = "call", price = 0.03, currency = "USD"}
      local free = reconcile.provider(calls, 0.03, {billing = billing})
      assert.same({rejected = "no"}, free.answers)
      assert.is_true(free.flat.held)
      local billed = reconcile.provider(calls, 0.06, {billing = billing})
      assert.same({rejected = "yes"}, billed.answers)
      assert.is_true(billed.flat.held)
      local odd = reconcile.provider(calls, 0.045, {billing = billing})
      assert.same({rejected = "unknown"}, odd.answers)
      assert.is_false(odd.flat.held)
      assert.equal(0.045, odd.flat.implied_if_free)
      assert.equal(0.0225, odd.flat.implied_if_billed)
      -- the line it prints is a valid routes-file line: the gate passes with its date and source
      local line = reconcile.routes_line({rejected = "unknown", moderation = "no", timeout = "unknown",
        server_error = "no"}, billed.answers, "2026-12-01", "probe " .. pr.probe_id)
      assert.truthy(line:find('rejected = "yes", moderation = "no"', 1, true), line)
      local routes = dir .. "/line-routes.lua"
      cli.write(routes, ([[return {gw = {lane = "provider", provider = "gw", shape = "chat", base_url = %q,
        api_key_env = "IMAGEROUTE_TEST_KEY", billing = {unit = "call", price = 0.03},
        contract = {owner = "gw", model_mapping = "checked", output_rights = "yes", observability = "yes",
          %s}}}]]):format(s.base_url, line))
      local route = assert(imageroute.routes.get(routes, "gw"))
      local report = route:check()
      local gate
      for _, row in ipairs(report.rows) do if row.gate == "failed_calls_billed" then gate = row end end
      assert.equal("unknown", gate.status) -- timeout is still unknown
      assert.truthy(gate.reason:find("checked 2026-12-01: probe " .. pr.probe_id, 1, true), gate.reason)
      -- a bad date is refused with the field named
      local ok, msg, field = imageroute.contract.validate({failed_calls_billed = {rejected = "no", checked = "today"}})
      assert.is_nil(ok)
      assert.equal("contract.failed_calls_billed.checked", field, msg)
    end)

    it("over a window: each retried attempt counts; outcomes it cannot tell apart stay unknown", function()
      local log = dir .. "/window.jsonl"
      local route = gateway(s, log, {name = "gw-retry", max_retries = 1, retry_policy = "sdk"})
      local since = os.time()
      s:script({{status = 500}, {}, {status = 400, error = {message = "blocked", code = "moderation_blocked"}}})
      assert(imageroute.generate(route, {prompt = "a fox"}))
      assert.is_nil((imageroute.generate(route, {prompt = "a fox"})))
      local records = assert(imageroute.log.read(log))
      local calls = reconcile.calls(records, {route = "gw-retry", since = since, routes = {["gw-retry"] = route}})
      assert.equal(3, #calls) -- two requests for the first call (500, then 200), one for the second
      local outcomes = {}
      for _, c in ipairs(calls) do outcomes[#outcomes + 1] = c.outcome end
      table.sort(outcomes)
      assert.same({"moderation", "server_error", "success"}, outcomes)
      local billing = route.billing
      local function answers(amount) return reconcile.provider(calls, amount, {billing = billing}).answers end
      assert.same({moderation = "no", server_error = "no"}, answers(0.03))
      assert.same({moderation = "yes", server_error = "yes"}, answers(0.09))
      local r = reconcile.provider(calls, 0.06, {billing = billing})
      assert.equal(2, #r.matches)                 -- one of the two was billed: which one, the bill cannot say
      assert.same({moderation = "unknown", server_error = "unknown"}, r.answers)
      assert.truthy(r.verdict:find("cannot be told apart", 1, true), r.verdict)
    end)

    it("the command: the verdict, the routes-file line and a reconcile record; exit 1 when nothing fits", function()
      local log = dir .. "/cli-gw.jsonl"
      local routes = dir .. "/gw-routes.lua"
      cli.write(routes, ([[return {gw = {lane = "provider", provider = "gw", shape = "chat", model = "gpt-image-2",
        base_url = %q, api_key_env = "IMAGEROUTE_TEST_KEY", max_retries = 0, accepted = "spec gateway",
        billing = {unit = "call", price = 0.03, currency = "USD"}, log = %q,
        contract = {failed_calls_billed = {rejected = "unknown", moderation = "no", timeout = "unknown",
          server_error = "no"}}},
        official = {lane = "official", model = "gpt-image-1", base_url = %q, api_key_env = "IMAGEROUTE_TEST_KEY"}}
      ]]):format(s.base_url, log, s.base_url))
      s:script({{}, REFUSE})
      local rc, out, err = cli.run(dir, {"--routes", routes, "probe", "gw", "--failed"})
      assert.equal(0, rc, err)
      local id = out:match("^probe (probe%-%S+)")
      rc, out, err = cli.run(dir, {"--routes", routes, "reconcile", "--probe", id, "--billed", "0.06"})
      assert.equal(0, rc, err)
      assert.truthy(out:find("verdict: billed 0.06: failed calls billed: rejected=yes", 1, true), out)
      assert.truthy(out:find("flat price 0.03 USD per call: held", 1, true), out)
      assert.truthy(out:find('failed_calls_billed = {rejected = "yes", moderation = "no", timeout = "unknown", '
        .. 'server_error = "no", checked = "' .. os.date("!%Y-%m-%d") .. '"', 1, true), out)
      local records = assert(imageroute.log.read(log))
      local last = records[#records]
      assert.equal("reconcile", last.event)
      assert.equal(id, last.probe_id)
      assert.equal(0.06, last.billed)
      assert.equal("yes", last.answers.rejected)
      rc, out = cli.run(dir, {"--routes", routes, "reconcile", "--probe", id, "--billed", "0.05"})
      assert.equal(1, rc, out)
      assert.truthy(out:find("did NOT hold", 1, true), out)
      -- the comparison report shows the route's latest billing test and reconciliation
      rc, out, err = cli.run(dir, {"--routes", routes, "compare", "a fox", "--route", "gw", "--route", "official",
        "-o", dir .. "/cmp", "--json"})
      assert.equal(0, rc, err)
      local cmp = assert(json.decode(out))
      local gw_entry, off_entry = cmp.entries[1], cmp.entries[2]
      assert.equal(id, gw_entry.billing.probe.probe_id)
      assert.equal(0.05, gw_entry.billing.reconcile.billed) -- the latest reconcile line of the route
      assert.is_false(gw_entry.billing.reconcile.flat_held)
      assert.is_nil(off_entry.billing)
      local html = fx.read(dir .. "/cmp/compare.html")
      assert.truthy(html:find("<th scope=\"row\">billing test</th>", 1, true))
      assert.truthy(html:find(id .. " ", 1, true))
      assert.truthy(html:find("billed 0.05 USD, estimated 0.03 USD: flat price did NOT hold", 1, true))
      rc, out, err = cli.run(dir, {"--routes", routes, "reconcile", "--probe", id})
      assert.equal(2, rc, out)
      assert.truthy(err:find("--billed AMOUNT", 1, true), err)
      rc, out, err = cli.run(dir, {"--routes", routes, "reconcile", "--route", "gw", "--since", "2026-13-45x",
        "--billed", "1"})
      assert.equal(2, rc, out)
      assert.truthy(err:find("--since", 1, true), err)
    end)
  end)

  describe("the official API's usage and costs", function()
    local function get(path)
      local status, body = s:request("GET", path)
      return status, json.decode(body)
    end

    it("the local server answers UsageResponse pages from the image calls it served", function()
      local route = fx.route(s, {name = "off", max_retries = 0})
      assert(imageroute.generate(route, {prompt = "a fox", n = 2, size = "1024x1024", quality = "low"}))
      assert(imageroute.generate(route, {prompt = "a fox", model = "gpt-image-2", size = "1024x1536", quality = "low"}))
      assert.is_nil((imageroute.generate(route, {prompt = "a fox", n = 0}, {skip_rules = {"n_range"}})))
      local now = os.time()
      local status, page = get("/v1/organization/usage/images?start_time=" .. (now - 3600) .. "&group_by=model"
        .. "&group_by=size&bucket_width=1h&limit=24")
      assert.equal(200, status)
      assert.equal("page", page.object)
      assert.is_false(page.has_more)
      local by = {}
      for _, b in ipairs(page.data) do
        assert.equal("bucket", b.object)
        assert.equal(3600, b.end_time - b.start_time)
        for _, r in ipairs(b.results) do
          assert.equal("organization.usage.images.result", r.object)
          by[r.model .. " " .. r.size] = r
        end
      end
      assert.same({2, 1}, {by["gpt-image-1 1024x1024"].images, by["gpt-image-1 1024x1024"].num_model_requests})
      assert.same({1, 1}, {by["gpt-image-2 1024x1536"].images, by["gpt-image-2 1024x1536"].num_model_requests})
      -- pages: minute buckets, two a page, the cursor followed to the end
      local seen, cursor, pages = 0, nil, 0
      repeat
        local path = "/v1/organization/usage/images?bucket_width=1m&limit=2&start_time=" .. (now - 299)
          .. "&end_time=" .. (now + 60) .. (cursor and ("&page=" .. cursor) or "")
        status, page = get(path)
        assert.equal(200, status)
        pages = pages + 1
        for _, b in ipairs(page.data) do
          for _, r in ipairs(b.results) do seen = seen + r.images end
        end
        cursor = page.next_page
      until not page.has_more
      assert.equal(3, seen)
      assert.is_true(pages >= 3)
      -- costs: the usage priced at the published token rates, in USD
      status, page = get("/v1/organization/costs?start_time=" .. (now - 86400))
      assert.equal(200, status)
      local total = 0
      for _, b in ipairs(page.data) do
        for _, r in ipairs(b.results) do
          assert.equal("organization.costs.result", r.object)
          assert.equal("usd", r.amount.currency)
          total = total + r.amount.value
        end
      end
      assert.is_true(total > 0)
      -- refused like the API
      status = get("/v1/organization/usage/images")
      assert.equal(400, status)
      status = get("/v1/organization/usage/images?start_time=1&group_by=colour")
      assert.equal(400, status)
      status = get("/v1/organization/costs?start_time=1&bucket_width=1h")
      assert.equal(400, status)
    end)

    it("in Lua: over imageroute.api; no project in the log, no grouping by project; other hosts left out", function()
      local log = dir .. "/lua-official.jsonl"
      local since = os.time()
      local route = fx.route(s, {name = "off-lua", max_retries = 0, log = log})
      assert(imageroute.generate(route, {prompt = "a fox", quality = "low", size = "1024x1024"}))
      -- a line of another host in the same log is not this API's
      imageroute.log.event(log, nil, {event = "attempt", call_id = "x", attempt = 1, final = true, ok = true,
        images = 5, lane = "official", host = "api.openai.com", route = "off-lua", kind = "generate",
        model = "gpt-image-1", time = os.date("!%Y-%m-%dT%H:%M:%SZ")})
      local admin = fx.route(s, {name = "admin", max_retries = 0})
      local function fetch(path, query)
        local res, err = imageroute.api(admin, {path = path, query = query})
        if not res then return nil, err end
        return res.body
      end
      local r = assert(reconcile.official(assert(imageroute.log.read(log)), fetch, {since = since,
        ["until"] = os.time() + 1, host = route.host}))
      assert.is_true(r.ok)
      assert.same({"model", "api_key_id"}, r.queries.usage.query.group_by)
      assert.same({"api_key_id"}, r.queries.costs.query.group_by)
      assert.equal(1, r.images[1].log)
      assert.equal(1, r.images[1].api)
      local q = s:requests()[2].query
      assert.truthy(q:find("group_by=model", 1, true), q)
      assert.is_nil(q:find("project_id", 1, true), q)
    end)

    it("agrees with the log per day, model, key and project, and lists a changed bill call by call", function()
      local log = dir .. "/official.jsonl"
      local routes = cli.routes_file(dir, s, "official", 'log = "' .. log .. '"')
      local env = "OPENAI_PROJECT_ID=proj_spec OPENAI_ADMIN_KEY=sk-admin-spec-0123456789"
      local since = os.time()
      local rc, _, err = cli.run(dir, {"--routes", routes, "generate", "a fox", "-q", "low", "-s", "1024x1024",
        "-n", "2", "-o", dir .. "/img/"}, {env = env})
      assert.equal(0, rc, err)
      local out
      rc, out, err = cli.run(dir, {"--routes", routes, "probe", "official", "--failed"}, {env = env})
      assert.equal(0, rc, err)
      local id = out:match("^probe (probe%-%S+)")
      local records = assert(imageroute.log.read(log))
      local key_id = imageroute.log.key_id(fx.KEY)
      for _, r in ipairs(records) do
        if r.event == "attempt" then
          assert.equal(key_id, r.key_id)
          assert.equal("proj_spec", r.project)
        end
      end
      assert.is_nil(fx.read(log):find(fx.KEY, 1, true)) -- the key id, never the key
      rc, out, err = cli.run(dir, {"--routes", routes, "reconcile", "--official", "--since", tostring(since),
        "--json"}, {env = env})
      assert.equal(0, rc, out .. err)
      local r = assert(json.decode(out))
      assert.is_true(r.ok)
      assert.equal("1m", r.bucket_width)
      assert.equal(1, #r.images)
      local row = r.images[1]
      assert.same({"gpt-image-1", "proj_spec", 3, 3, 0}, {row.model, row.project, row.log, row.api, row.diff})
      assert.equal("key_" .. core.sha256(fx.KEY):sub(1, 16), row.api_key_id)
      assert.equal(key_id, r.by_elimination.key_id)
      assert.is_true(math.abs(r.costs[1].diff) < 1e-9)
      -- the usage and costs requests went out with the admin key, to the documented endpoints
      local admin = {}
      for _, q in ipairs(s:requests()) do
        if q.path:find("^/v1/organization/") then admin[#admin + 1] = q end
      end
      assert.equal(2, #admin)
      assert.equal("/v1/organization/usage/images", admin[1].path)
      assert.truthy(admin[1].query:find("bucket_width=1m", 1, true), admin[1].query)
      assert.truthy(admin[1].query:find("group_by=model", 1, true), admin[1].query)
      assert.equal("Bearer sk-admin-spec-0123456789", admin[1].headers.authorization)
      assert.equal("/v1/organization/costs", admin[2].path)
      -- the server bills the refused call: the usage counts it, the costs hold its price
      s:script({{billing = {bill_failed = true}}, {billing = {bill_failed = true}}})
      rc, out = cli.run(dir, {"--routes", routes, "reconcile", "--official", "--probe", id}, {env = env})
      assert.equal(1, rc, out)
      local pr = probe.find(assert(imageroute.log.read(log)), id)[1]
      local failed_id = pr.calls[2].request_id
      assert.truthy(out:find("the usage counts the failed call(s) " .. failed_id .. " (rejected): they were billed",
        1, true), out)
      assert.truthy(out:find("the difference is the failed call(s) " .. failed_id .. " priced as billed (0.011)", 1,
        true), out)
      assert.truthy(out:find("the log and the bill differ", 1, true), out)
      -- an image more on the last served call: named call by call
      s:script({{billing = {extra_images = 1}}, {billing = {extra_images = 1}}})
      rc, out = cli.run(dir, {"--routes", routes, "reconcile", "--official", "--probe", id, "--json"}, {env = env})
      assert.equal(1, rc, out)
      r = assert(json.decode(out))
      assert.equal(1, #r.differences)
      assert.equal(1, r.differences[1].api - r.differences[1].log)
      assert.truthy(r.differences[1].text:find(pr.calls[1].request_id, 1, true), r.differences[1].text)
      -- no admin key: exit 2 and what to set
      rc, out, err = cli.run(dir, {"--routes", routes, "reconcile", "--official", "--probe", id})
      assert.equal(2, rc, out)
      assert.truthy(err:find("export OPENAI_ADMIN_KEY=", 1, true), err)
    end)
  end)
end)
