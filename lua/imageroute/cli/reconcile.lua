-- imageroute.cli.reconcile: `imageroute reconcile`, the call log against what was billed
-- (imageroute.billing.reconcile). Internal to the command (its public face is imageroute.cli).
--
--    imageroute reconcile --probe ID --billed 0.03                 # a provider: the probe's calls
--    imageroute reconcile --route acme-chat --since 2026-12-01T10:00Z --until 2026-12-01T11:00Z --billed 1.20
--    OPENAI_ADMIN_KEY=... imageroute reconcile --official --probe ID   # the Usage and Costs API

local imageroute = require("imageroute")
local probe = require("imageroute.billing.probe")
local reconcile = require("imageroute.billing.reconcile")
local compare = require("imageroute.compare")
local common = require("imageroute.cli.common")
local cli_probe = require("imageroute.cli.probe")

local format, concat = string.format, table.concat
local fail = common.fail

local M = {}

--- The environment variable of the admin key (Usage and Costs API).
M.ADMIN_KEY_ENV = "OPENAI_ADMIN_KEY"

function M.add(parser, help, opt, epilog)
  local c = parser:command("reconcile", "Compare the call log with what was billed: a provider's billed amount "
    .. "(--billed) for a probe or a window, or the official API's usage and costs (--official, with "
    .. M.ADMIN_KEY_ENV .. ").")
  help(c, epilog .. "\nTimes: ISO 8601 (2026-12-01T10:00:00Z; no zone = UTC) or Unix seconds.")
  opt(c, "--probe", "The probe whose calls to reconcile (its id, printed by imageroute probe).", "ID")
  opt(c, "--route", "Only this route's calls (a window with calls of several routes needs it).", "NAME")
  opt(c, "--since", "Start of the window (inclusive).", "TIME")
  opt(c, "--until", "End of the window (exclusive; default now).", "TIME"):target("until_")
  opt(c, "--billed", "The amount the provider billed for these calls (in the route's currency).", "AMOUNT", tonumber)
  c:flag("--official", "Read the organization's usage and costs (GET /organization/usage/images, /organization/costs) "
    .. "with the admin key in " .. M.ADMIN_KEY_ENV .. ".")
  opt(c, "--key-map", "A log key_id and the API's api_key_id it is (repeat), e.g. 1a2b3c4d=key_abc.", "ID=KEY")
    :count("*"):target("key_map")
  opt(c, "--tolerance", "The largest difference of amounts that still matches (default 0.005).", "AMOUNT", tonumber)
  opt(c, "--log", "The call log (default: the route's log, else ./out/" .. common.LOG_NAME .. ").", "FILE")
  c:flag("--json", "Print the result as JSON.")
end

local function money(v, cur) return reconcile.money(v, cur) end

local function load_log(path)
  local records, err = imageroute.log.read(path)
  if not records then fail(1, "imageroute: cannot read the call log " .. path .. ": " .. common.message(err)) end
  return records
end

-- The window: the probe's, or --since/--until.
local function window(args, pr, default_till)
  if pr and not args.since then return pr.start_time, pr.end_time + 1 end
  if not args.since then fail(2, "imageroute: reconcile needs --probe ID, or a window: --since TIME [--until TIME]") end
  local since, e1 = reconcile.parse_time(args.since)
  if not since then fail(2, "imageroute: --since: " .. e1) end
  local till = default_till
  if args.until_ then
    local t, e2 = reconcile.parse_time(args.until_)
    if not t then fail(2, "imageroute: --until: " .. e2) end
    till = t
  end
  if till and till <= since then fail(2, "imageroute: --until must be after --since") end
  return since, till
end

-- The route of the reconcile (from the routes file), when it can be found.
local function find_route(ctx, name)
  if not name then return nil end
  local ok, r = pcall(common.pick_route, ctx, name, "generate")
  if ok then return r end
  if type(r) == "table" and r.msg and ctx.args.route then error(r, 0) end
  return nil
end

--- The admin request of the official reconcile: `fetch(path, query) -> page | nil, err` over
-- `imageroute.api` (the route's transport) with the admin key.
-- @tparam Route admin a route whose `api_key_env` is `OPENAI_ADMIN_KEY`
function M.fetcher(admin)
  return function(path, query)
    local res, err = imageroute.api(admin, {method = "GET", path = path, query = query})
    if not res then return nil, err end
    if type(res.body) ~= "table" then
      return nil, {kind = "decode", message = path .. " answered without a JSON body (status " .. tostring(res.status)
        .. ")", request_id = res.request_id}
    end
    return res.body
  end
end

local function provider(ctx, args, records, path)
  local pr
  if args.probe then
    pr = probe.find(records, args.probe)[1]
    if not pr then fail(2, "imageroute: no probe '" .. args.probe .. "' in " .. path) end
  end
  local route = find_route(ctx, args.route or (pr and pr.route))
  local calls, since, till
  if pr then
    calls = reconcile.probe_calls(pr)
    since, till = pr.start_time, pr.end_time
  else
    since, till = window(args, nil, nil)
    local routes = route and {[route.name] = route} or nil
    calls = reconcile.calls(records, {route = args.route, since = since, ["until"] = till, routes = routes})
    local names = {}
    for _, c in ipairs(calls) do names[c.route] = true end
    local list = {}
    for n in pairs(names) do list[#list + 1] = n end
    if #list > 1 then
      table.sort(list)
      fail(2, "imageroute: the window holds calls of several routes (" .. concat(list, ", ") .. "): choose one with "
        .. "--route NAME")
    end
    if not route and list[1] then route = find_route(ctx, list[1]) end
  end
  if #calls == 0 then fail(1, "imageroute: no calls were sent in that window (" .. path .. ")") end
  local billing = route and route.billing or (pr and pr.billing) or {}
  local r = reconcile.provider(calls, args.billed, {tolerance = args.tolerance, billing = billing})
  local rule = route and imageroute.contract.failed_billing(route) or (pr and pr.failed_rule)
  local today = os.date("!%Y-%m-%d")
  local source = format("imageroute reconcile: %s, %d call(s), billed %s %s", pr and ("probe " .. pr.probe_id)
    or (reconcile.day_of(since) .. " window"), #calls, money(args.billed), r.currency)
  local line, merged = reconcile.routes_line(rule, r.answers, today, source)
  r.line, r.merged = line, merged
  local name = route and route.name or (pr and pr.route) or (calls[1] and calls[1].route)
  local rec = {event = "reconcile", mode = "provider", probe_id = pr and pr.probe_id, route = name,
    start_time = since, end_time = till, billed = args.billed, currency = r.currency, expected = r.success.amount,
    answers = r.answers, flat_held = r.flat and r.flat.held, matched = #r.matches > 0, verdict = r.verdict,
    line = line, calls = #calls}
  imageroute.log.event(path, nil, rec)
  if args.json then
    r.hypotheses = nil
    io.write(compare.to_json(r), "\n")
  else
    io.write(format("reconcile route=%s%s window %s .. %s\n", tostring(name), pr and (" probe=" .. pr.probe_id) or "",
      probe.iso(since), till and probe.iso(till) or "now"))
    io.write(format("calls: %d sent, %d successful (estimated %s)", #calls, r.success.count,
      money(r.success.amount, r.currency)))
    for _, o in ipairs(r.outcomes) do
      local g = r.failed[o]
      io.write(format(", %d %s (%s if billed)", g.count, o, money(g.if_billed, r.currency)))
    end
    io.write("\n")
    for _, h in ipairs(r.hypotheses) do
      local parts = {}
      for _, o in ipairs(r.outcomes) do parts[#parts + 1] = o .. (h.billed[o] and " billed" or " free") end
      io.write(format("  if %s: %s%s\n", #parts > 0 and concat(parts, ", ") or "only the successful calls",
        money(h.expected, r.currency), (h.expected and math.abs(h.expected - args.billed) <= r.tolerance)
          and "  <- matches the bill" or ""))
    end
    io.write("billed: ", money(args.billed, r.currency), "\n")
    io.write("verdict: ", r.verdict, "\n")
    if r.flat and r.flat.held ~= nil then
      io.write(format("flat price %s %s per %s: %s\n", tostring(r.flat.price), r.currency, tostring(r.flat.unit),
        r.flat.held and "held" or format("did NOT hold (billed / successful calls = %s; billed / all calls = %s)",
          money(r.flat.implied_if_free, r.currency), money(r.flat.implied_if_billed, r.currency))))
    end
    io.write("record it in the routes file (route ", tostring(name), ", in contract):\n  ", line, "\n")
  end
  return #r.matches > 0 and 0 or 1
end

local function official(ctx, args, records, path)
  local key = os.getenv(M.ADMIN_KEY_ENV)
  if not key or key == "" then
    fail(2, "imageroute: reconcile --official reads the Usage and Costs API with an admin key: export "
      .. M.ADMIN_KEY_ENV .. "=... (an organization admin key, never the project key of the calls)")
  end
  local pr
  if args.probe then
    pr = probe.find(records, args.probe)[1]
    if not pr then fail(2, "imageroute: no probe '" .. args.probe .. "' in " .. path) end
  end
  local since, till = window(args, pr, os.time() + 1)
  local route = find_route(ctx, args.route or (pr and pr.route))
  local base = (pr and pr.base_url) or (route and route.base_url) or nil
  if not base then -- the API the window's official calls went to
    local bases, list = {}, {}
    for _, c in ipairs(reconcile.calls(records, {since = since, ["until"] = till, lane = "official"})) do
      local r = find_route(ctx, c.route)
      if r and not bases[r.base_url] then
        bases[r.base_url] = true
        list[#list + 1] = r.base_url
      end
    end
    if #list > 1 then
      fail(2, "imageroute: the window's official calls went to several APIs (" .. concat(list, ", ") .. "): choose "
        .. "the route with --route NAME")
    end
    base = list[1]
    if not base then
      fail(2, "imageroute: no official call of the routes file in that window tells which API to ask: choose the "
        .. "route with --route NAME")
    end
  end
  local admin, aerr = imageroute.route{name = "admin", lane = "official", base_url = base,
    api_key_env = M.ADMIN_KEY_ENV, max_retries = 2}
  if not admin then fail(2, "imageroute: the admin route: " .. common.message(aerr)) end
  local map = {}
  for _, m in ipairs(args.key_map or {}) do
    local a, b = tostring(m):match("^([^=]+)=(.+)$")
    if not a then fail(2, "imageroute: --key-map takes LOG_KEY_ID=API_KEY_ID, got '" .. tostring(m) .. "'") end
    map[a] = b
  end
  local r, err = reconcile.official(records, M.fetcher(admin), {since = since, ["until"] = till,
    route = args.route or (pr and pr.route), key_map = map, tolerance = args.tolerance, host = admin.host,
    routes = pcall(common.load_routes, ctx) and ctx.routes or nil})
  if not r then
    io.stderr:write("imageroute: reconcile failed: ", common.message(err), "\n")
    return 1
  end
  local log_images, api_images, log_usd, api_usd = 0, 0, 0, 0
  for _, row in ipairs(r.images) do log_images, api_images = log_images + row.log, api_images + row.api end
  for _, row in ipairs(r.costs) do log_usd, api_usd = log_usd + row.log, api_usd + row.api end
  local name = args.route or (pr and pr.route)
  imageroute.log.event(path, nil, {event = "reconcile", mode = "official", probe_id = pr and pr.probe_id,
    route = name, start_time = since, end_time = till, ok = r.ok, log_images = log_images, api_images = api_images,
    log_usd = log_usd, api_usd = api_usd, differences = #r.differences})
  if args.json then
    io.write(compare.to_json(r), "\n")
    return r.ok and 0 or 1
  end
  io.write(format("reconcile --official%s window %s .. %s (buckets %s)\n", name and (" route=" .. name) or "",
    probe.iso(since), probe.iso(till), r.bucket_width))
  if r.by_elimination then
    io.write(format("key %s of the log is %s of the usage (the only key on each side)\n", r.by_elimination.key_id,
      r.by_elimination.api_key_id))
  end
  local rows = {{"DAY", "MODEL", "KEY", "PROJECT", "LOG IMAGES", "USAGE IMAGES", "DIFF", "LOG REQ", "USAGE REQ"}}
  for _, row in ipairs(r.images) do
    rows[#rows + 1] = {row.day, tostring(row.model or "-"), tostring(row.api_key_id or "-"),
      tostring(row.project or "-"),
      tostring(row.log), tostring(row.api), format("%+d", row.diff), tostring(row.log_requests),
      tostring(row.api_requests)}
  end
  io.write(common.table_text(rows), "\n")
  local crow = {{"DAY", "PROJECT", "KEY", "LOG USD", "COSTS USD", "DIFF"}}
  for _, row in ipairs(r.costs) do
    crow[#crow + 1] = {row.day, tostring(row.project or "-"), tostring(row.api_key_id or "-"),
      money(row.log) .. (row.log_unknown > 0 and format(" (+%d unknown)", row.log_unknown) or ""), money(row.api),
      format("%+.6f", row.diff)}
  end
  io.write(common.table_text(crow), "\n")
  for _, d in ipairs(r.differences) do io.write("difference: ", d.text, "\n") end
  if #r.responses > 0 then
    io.write(format("not compared: %d Responses call(s) (the images usage counts the Images API only)\n",
      #r.responses))
  end
  io.write(r.ok and "the log and the bill agree\n" or "the log and the bill differ\n")
  return r.ok and 0 or 1
end

function M.run(ctx)
  local args = ctx.args
  local route = args.route and common.pick_route(ctx, args.route, "generate") or nil
  local path = cli_probe.log_for(ctx, route)
  local records = load_log(path)
  if args.official then return official(ctx, args, records, path) end
  if args.billed == nil then
    fail(2, "imageroute: reconcile needs --billed AMOUNT (what the provider's dashboard says these calls cost), "
      .. "or --official for the official API")
  end
  return provider(ctx, args, records, path)
end

return M
