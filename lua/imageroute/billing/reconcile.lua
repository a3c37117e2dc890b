--- imageroute.billing.reconcile: the call log's estimates against what was billed.
--
-- For a provider (`M.provider`): the calls of a probe (`imageroute.billing.probe`) or of a time
-- window, and the amount the provider's dashboard says it billed for them. Every combination of
-- "this failure outcome was billed / was not" is priced from the log; the bill that matches one
-- combination tells, per outcome, whether failed calls were billed, and whether the route's flat
-- price held; `M.routes_line` prints the `failed_calls_billed = {...}` line to record the answer in
-- the routes file, with the date it was checked and how (`checked`, `source`: see
-- `imageroute.contract`).
--
-- For the official API (`M.official`): with an admin key, the organization's image usage
-- (`GET /organization/usage/images`: buckets of 1 minute, 1 hour or 1 day holding `images` and
-- `num_model_requests`, grouped by `model`, `api_key_id`, `project_id`, ...) and costs
-- (`GET /organization/costs`: daily buckets of `amount.value` in USD, grouped by `project_id`,
-- `api_key_id`, `line_item`), read for the window and compared with the log per day and model,
-- and per key (the log's `key_id`, mapped to the API's `api_key_id`) and project; differences are
-- listed call by call where a bucket holds few enough calls to tell (minute buckets when the window
-- is at most a day). Sources: OpenAI API reference, Administration > Usage > Images,
-- https://platform.openai.com/docs/api-reference/usage/images, and Administration > Usage > Costs,
-- https://platform.openai.com/docs/api-reference/usage/costs, read 2026-12-01; schemas
-- `UsageResponse`, `UsageTimeBucket`, `UsageImagesResult`, `CostsResult` of
-- https://github.com/openai/openai-openapi at f85dbe2 (2026-08-21). The usage endpoint counts the
-- Images API only (sources `image.generation`, `image.edit`, `image.variation`), so Responses tool
-- calls are listed apart; costs cover every product billed to a key or project, so one key per lane
-- makes the dollars exact.
-- @module imageroute.billing.reconcile

local cost = require "imageroute.cost"
local contract = require "imageroute.contract"

local type, pairs, ipairs, tostring, tonumber, format, setmetatable =
  type, pairs, ipairs, tostring, tonumber, string.format, setmetatable
local floor, abs, concat, sort = math.floor, math.abs, table.concat, table.sort

local M = {}

--- The default tolerance of an amount comparison (USD or the route's currency): half a cent, as
-- dashboards show cents.
M.TOLERANCE = 0.005

-- ---------------------------------------------------------------------------------------------
-- times

-- Days since 1970-01-01 of a civil date (proleptic Gregorian), without the local time zone.
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

--- A time as Unix seconds: Unix seconds (a number, or digits), or ISO 8601 (`2026-12-01`,
-- `2026-12-01T22:10:00Z`, with fractions, or an offset such as `+02:00`; no zone means UTC).
-- @param v
-- @treturn number|nil Unix seconds (fractions kept)
-- @treturn[2] string why it is not a time
function M.parse_time(v)
  if type(v) == "number" then return v end
  if type(v) ~= "string" then return nil, "a time must be ISO 8601 or Unix seconds" end
  if v:match("^%d+%.?%d*$") then return tonumber(v) end
  local y, mo, d, rest = v:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil, ("'%s' is neither ISO 8601 nor Unix seconds"):format(v) end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
  if rest == "" then return t end
  local h, mi, s, frac, zone = rest:match("^[T ](%d%d):(%d%d):?(%d?%d?)(%.?%d*)(.*)$")
  if not h then return nil, ("'%s' is neither ISO 8601 nor Unix seconds"):format(v) end
  t = t + tonumber(h) * 3600 + tonumber(mi) * 60 + (tonumber(s) or 0) + (tonumber("0" .. frac) or 0)
  if zone == "" or zone == "Z" then return t end
  local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
  if not sign then return nil, ("'%s': unknown time zone '%s'"):format(v, zone) end
  local off = tonumber(zh) * 3600 + tonumber(zm) * 60
  return sign == "+" and t - off or t + off
end

local function day_of(t) return os.date("!%Y-%m-%d", floor(t)) end
local function minute_of(t) return os.date("!%Y-%m-%dT%H:%MZ", floor(t)) end
M.day_of = day_of

-- ---------------------------------------------------------------------------------------------
-- the calls of a log

-- The price of one logged attempt if the provider billed it: the route's price for the call as
-- asked (n of at least 1), else what the log's cost part says.
local function price_if_billed(rec, route)
  if route then
    local n = tonumber(rec.n)
    local p = cost.call_price(rec.kind or "generate", route, {model = rec.model, size = rec.size,
      quality = rec.quality, n = (n and n >= 1) and n or 1, image_model = rec.tool_model})
    if p.amount then return p.amount end
  end
  local c = type(rec.cost) == "table" and rec.cost or {}
  if type(c.max_amount) == "number" and c.max_amount > 0 then return c.max_amount end
  if type(c.amount) == "number" and c.amount > 0 then return c.amount end
  return nil
end

--- The requests a log shows as sent (one per attempt that reached for the server: refusals before
-- sending and image downloads left out), filtered.
-- @tparam table records from `imageroute.log.read`
-- @tparam[opt] table opts `route` (a name), `lane`, `host`, `since`, `until` (Unix seconds; `until`
--   exclusive), `call_ids` (a set), `routes` (name -> Route, to price calls if billed)
-- @treturn table list of `{time =, t =, route =, lane =, kind =, endpoint =, model =, tool_model =, size =,
--   quality =, n =, images =, request_id =, call_id =, status =, outcome =, ok =, final =, amount =,
--   price_if_billed =, currency =, key_id =, project =, attempt =}` (`outcome` `"success"` or a
--   failure outcome of `imageroute.cost.outcome`; `amount` the logged estimate, nil when unknown)
function M.calls(records, opts)
  opts = opts or {}
  local out = {}
  -- a call's final line may be a download's: its last request attempt takes the call's outcome
  local final, last = {}, {}
  for _, rec in ipairs(records) do
    if rec.event == "attempt" and rec.call_id then
      if rec.final then final[rec.call_id] = rec end
      local a = tonumber(rec.attempt) or 0
      if rec.phase ~= "not_sent" and rec.phase ~= "download" and a > (last[rec.call_id] or 0) then
        last[rec.call_id] = a
      end
    end
  end
  for _, rec0 in ipairs(records) do
    local rec = rec0
    if rec.event == "attempt" and not rec.final and rec.call_id and last[rec.call_id] == tonumber(rec.attempt)
      and final[rec.call_id] and final[rec.call_id].phase == "download" then
      rec = setmetatable({final = true, ok = final[rec.call_id].ok, images = final[rec.call_id].images},
        {__index = rec0})
    end
    if rec.event == "attempt" and rec.phase ~= "not_sent" and rec.phase ~= "download"
      and (tonumber(rec.attempt) or 0) >= 1 then
      local t = M.parse_time(rec.time)
      local keep = t ~= nil and (opts.route == nil or rec.route == opts.route)
        and (opts.lane == nil or rec.lane == opts.lane) and (opts.host == nil or rec.host == opts.host)
        and (opts.since == nil or t >= opts.since) and (opts["until"] == nil or t < opts["until"])
        and (opts.call_ids == nil or opts.call_ids[rec.call_id])
      if keep then
        local c = type(rec.cost) == "table" and rec.cost or {}
        local outcome = c.outcome
        if rec.final and rec.ok then outcome = "success" end
        if outcome == nil then outcome = cost.outcome(rec.status, rec.error_kind, rec.error_code) end
        local route = opts.routes and opts.routes[rec.route]
        out[#out + 1] = {time = rec.time, t = t, route = rec.route, lane = rec.lane, kind = rec.kind,
          endpoint = rec.endpoint, model = rec.model, tool_model = rec.tool_model, size = rec.size,
          quality = rec.quality, n = rec.n, images = rec.final and tonumber(rec.images) or 0,
          request_id = rec.request_id, call_id = rec.call_id, status = rec.status, outcome = outcome,
          ok = rec.final and rec.ok or false, final = rec.final,
          amount = type(c.amount) == "number" and c.amount or nil,
          price_if_billed = price_if_billed(rec, route), currency = c.currency, key_id = rec.key_id,
          project = rec.project, attempt = rec.attempt, shape = rec.shape, host = rec.host}
      end
    end
  end
  return out
end

-- ---------------------------------------------------------------------------------------------
-- provider: a bill against the log

--- Which failed calls a provider billed, and whether its flat price held.
-- @tparam table calls from `M.calls` (or a probe's calls turned into that shape by `M.probe_calls`)
-- @tparam number billed the amount billed for exactly these calls (the route's currency)
-- @tparam[opt] table opts `tolerance` (default `M.TOLERANCE`), `billing` (the route's billing table:
--   `unit`, `price`, `currency`)
-- @treturn table `billed`, `currency`, `tolerance`, `count`, `success` (`{count =, amount =,
--   unknown =}`), `failed` (outcome -> `{count =, if_billed =}`), `matches` (each hypothesis that
--   fits the bill: `{billed = {outcome = true}, expected =}`), `hypotheses` (all of them), `answers`
--   (outcome -> `"yes"` | `"no"` | `"unknown"`, for the outcomes the calls hold), `flat` (`{unit =,
--   price =, held = true | false | nil, implied_if_free =, implied_if_billed =}`), `verdict` (one line)
function M.provider(calls, billed, opts)
  opts = opts or {}
  local tol = opts.tolerance or M.TOLERANCE
  local b = opts.billing or {}
  local r = {billed = billed, tolerance = tol, count = #calls, currency = b.currency or "USD",
    success = {count = 0, amount = 0, unknown = 0}, failed = {}, matches = {}, hypotheses = {}, answers = {}}
  for _, c in ipairs(calls) do
    if c.currency then r.currency = c.currency end
    if c.outcome == "success" then
      r.success.count = r.success.count + 1
      local a = c.amount or c.price_if_billed
      if a then r.success.amount = r.success.amount + a else r.success.unknown = r.success.unknown + 1 end
    else
      local g = r.failed[c.outcome] or {count = 0, if_billed = 0}
      r.failed[c.outcome] = g
      g.count = g.count + 1
      if g.if_billed and c.price_if_billed then g.if_billed = g.if_billed + c.price_if_billed else g.if_billed = nil end
    end
  end
  local outcomes = {}
  for o in pairs(r.failed) do outcomes[#outcomes + 1] = o end
  sort(outcomes)
  r.outcomes = outcomes
  if r.success.unknown > 0 then
    r.verdict = ("%d successful call(s) have no known price: nothing can be told"):format(r.success.unknown)
    for _, o in ipairs(outcomes) do r.answers[o] = "unknown" end
    return r
  end
  for mask = 0, (1 << #outcomes) - 1 do
    local h = {billed = {}, expected = r.success.amount}
    for i, o in ipairs(outcomes) do
      if mask & (1 << (i - 1)) ~= 0 then
        h.billed[o] = true
        h.expected = r.failed[o].if_billed and (h.expected and h.expected + r.failed[o].if_billed) or nil
      end
    end
    r.hypotheses[#r.hypotheses + 1] = h
    if h.expected and abs(billed - h.expected) <= tol then r.matches[#r.matches + 1] = h end
  end
  for _, o in ipairs(outcomes) do
    local yes, no = 0, 0
    for _, h in ipairs(r.matches) do
      if h.billed[o] then yes = yes + 1 else no = no + 1 end
    end
    r.answers[o] = (#r.matches > 0 and no == 0) and "yes" or (#r.matches > 0 and yes == 0) and "no" or "unknown"
  end
  local n_failed = #calls - r.success.count
  r.flat = {unit = b.unit, price = b.price}
  if b.price and (b.unit == "call" or b.unit == "image") then
    r.flat.held = #r.matches > 0
    if r.success.count > 0 then r.flat.implied_if_free = billed / r.success.count end
    if #calls > 0 then r.flat.implied_if_billed = billed / #calls end
  end
  local parts = {}
  for _, o in ipairs(outcomes) do parts[#parts + 1] = o .. "=" .. r.answers[o] end
  if #r.matches == 0 then
    r.verdict = ("billed %s matches no combination of the %d call(s) (%d failed): the price did not hold, or "
      .. "the bill holds other calls"):format(M.money(billed), #calls, n_failed)
  elseif #outcomes == 0 then
    r.verdict = ("billed %s = the %d successful call(s) as estimated: the price held"):format(M.money(billed),
      r.success.count)
  else
    r.verdict = ("billed %s: failed calls billed: %s%s"):format(M.money(billed), concat(parts, ", "),
      #r.matches > 1 and " (several combinations fit: the unknown ones cannot be told apart)" or "")
  end
  return r
end

--- The calls of a probe record, in the shape `M.provider` takes (only those that were sent).
-- @tparam table probe a probe record
-- @treturn table
function M.probe_calls(probe)
  local out = {}
  for _, c in ipairs(probe.calls or {}) do
    if c.sent ~= false then
      out[#out + 1] = {request_id = c.request_id, call_id = c.call_id, outcome = c.ok and "success" or c.outcome,
        amount = c.ok and c.estimated or nil, price_if_billed = c.price_if_billed, currency = c.currency,
        model = c.model, images = c.images, status = c.status, route = probe.route}
    end
  end
  return out
end

local function quote(s) return format("%q", s) end

--- The routes-file line that records the answers: the route's current rule, with the answers that
-- are known now, the date and how.
-- @tparam table rule outcome -> answer (`imageroute.contract.failed_billing(route)`, or nil)
-- @tparam table answers outcome -> answer (from `M.provider`)
-- @tparam string checked the date, `"YYYY-MM-DD"`
-- @tparam string source how the answers are known
-- @treturn string `failed_calls_billed = {rejected = "no", ..., checked = "...", source = "..."},`
-- @treturn table the merged table
function M.routes_line(rule, answers, checked, source)
  local t = {}
  for _, o in ipairs(contract.OUTCOMES) do
    local a = answers[o]
    t[o] = (a == "yes" or a == "no") and a or (rule and rule[o]) or "unknown"
  end
  t.checked, t.source = checked, source
  local parts = {}
  for _, o in ipairs(contract.OUTCOMES) do parts[#parts + 1] = o .. " = " .. quote(t[o]) end
  parts[#parts + 1] = "checked = " .. quote(checked)
  parts[#parts + 1] = "source = " .. quote(source)
  return "failed_calls_billed = {" .. concat(parts, ", ") .. "},", t
end

function M.money(v, cur)
  if type(v) ~= "number" then return "unknown" end
  local s = format("%.6f", v):gsub("0+$", ""):gsub("%.$", ".0")
  return cur and (s .. " " .. cur) or s
end

-- ---------------------------------------------------------------------------------------------
-- official: the Usage and Costs API against the log

--- The queries `M.official` sends, for a window.
-- @tparam number since Unix seconds
-- @tparam number till Unix seconds (exclusive)
-- @tparam[opt] table by `keys`, `projects` (booleans, default true): group by `api_key_id` and
--   `project_id` (not when the log holds no key ids, or no project ids: the rows would never meet)
-- @treturn table `{usage = {path =, query =}, costs = {path =, query =}, bucket_width =}`: minute
--   buckets when the window is at most a day (so differences can be told call by call), else days
function M.queries(since, till, by)
  by = by or {}
  local usage_groups, cost_groups = {"model"}, {}
  if by.keys ~= false then usage_groups[#usage_groups + 1] = "api_key_id" end
  if by.projects ~= false then
    usage_groups[#usage_groups + 1] = "project_id"
    cost_groups[#cost_groups + 1] = "project_id"
  end
  if by.keys ~= false then cost_groups[#cost_groups + 1] = "api_key_id" end
  local width = (till - since) <= 86400 and "1m" or "1d"
  local step = width == "1m" and 60 or 86400
  local start = floor(since / step) * step
  local stop = -floor(-till / step) * step
  local dstart = floor(since / 86400) * 86400
  local dstop = -floor(-till / 86400) * 86400
  return {
    bucket_width = width,
    usage = {path = "/organization/usage/images", query = {start_time = start, end_time = stop, bucket_width = width,
      group_by = usage_groups, limit = width == "1m" and 1440 or 31}},
    costs = {path = "/organization/costs", query = {start_time = dstart, end_time = dstop, bucket_width = "1d",
      group_by = #cost_groups > 0 and cost_groups or nil, limit = 180}},
  }
end

-- Every bucket of a paginated UsageResponse: fetch(path, query) -> page | nil, err.
local function all_buckets(fetch, q)
  local buckets, page, n = {}, nil, 0
  repeat
    local query = {}
    for k, v in pairs(q.query) do query[k] = v end
    query.page = page
    local body, err = fetch(q.path, query)
    if not body then return nil, err end
    if type(body) ~= "table" or type(body.data) ~= "table" then
      return nil, {kind = "decode", message = q.path .. ": the answer is not a UsageResponse page (no data list)"}
    end
    for _, b in ipairs(body.data) do buckets[#buckets + 1] = b end
    page = body.has_more and type(body.next_page) == "string" and body.next_page or nil
    n = n + 1
  until not page or n >= 100
  return buckets
end

local function row_key(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...)) or "-") end
  return concat(parts, "|")
end

--- Compares the log with the organization's usage and costs.
-- @tparam table records from `imageroute.log.read`
-- @tparam function fetch `fetch(path, query) -> decoded page | nil, err`: one GET with the admin key
-- @tparam table opts `since`, `until` (Unix seconds, required), `route` (only this route's calls),
--   `host` (only the calls to this host: the admin route's), `key_map` (log key_id -> API api_key_id),
--   `tolerance` (USD, default `M.TOLERANCE`), `routes`
--   (name -> Route: prices the failed calls as if billed, to explain a difference)
-- @treturn table `ok` (every row within tolerance), `bucket_width`, `since`, `until`, `images` (rows per
--   day, model, key and project: `{day =, model =, api_key_id =, key_id =, project =, log =, api =,
--   log_requests =, api_requests =, diff =}`), `costs` (rows per day, project and key: `{day =,
--   project =, api_key_id =, key_id =, log =, log_unknown =, api =, diff =}`), `differences` (call by
--   call: `{bucket =, model =, log =, api =, calls = {{request_id =, time =, images =, status =,
--   outcome =}}, text =}`), `responses` (the Responses tool calls of the window: not in the images usage),
--   `key_map` (as used, pairs found by elimination included), `queries`
-- @treturn[2] nil
-- @treturn[2] table the error of a request
function M.official(records, fetch, opts)
  local since, till = opts.since, opts["until"]
  local tol = opts.tolerance or M.TOLERANCE
  local q = M.queries(since, till)
  local dcalls = M.calls(records, {since = q.costs.query.start_time, ["until"] = q.costs.query.end_time,
    route = opts.route, lane = "official", routes = opts.routes, host = opts.host})
  local has_keys, has_projects = false, false
  for _, c in ipairs(dcalls) do
    has_keys = has_keys or c.key_id ~= nil
    has_projects = has_projects or c.project ~= nil
  end
  q = M.queries(since, till, {keys = has_keys, projects = has_projects})
  local usage, uerr = all_buckets(fetch, q.usage)
  if not usage then return nil, uerr end
  local costs, cerr = all_buckets(fetch, q.costs)
  if not costs then return nil, cerr end
  local step = q.bucket_width == "1m" and 60 or 86400
  local calls = M.calls(records, {since = q.usage.query.start_time, ["until"] = q.usage.query.end_time,
    route = opts.route, lane = "official", routes = opts.routes, host = opts.host})
  -- the API's key ids: log key ids map to them (given, or by elimination)
  local key_map = {}
  for k, v in pairs(opts.key_map or {}) do key_map[k] = v end
  local api_keys, log_keys = {}, {}
  for _, b in ipairs(usage) do
    for _, res in ipairs(b.results or {}) do
      if res.api_key_id then api_keys[res.api_key_id] = true end
    end
  end
  for _, c in ipairs(calls) do if c.key_id then log_keys[c.key_id] = true end end
  local mapped = {}
  for _, v in pairs(key_map) do mapped[v] = true end
  local free_api, free_log = {}, {}
  for k in pairs(api_keys) do if not mapped[k] then free_api[#free_api + 1] = k end end
  for k in pairs(log_keys) do if not key_map[k] then free_log[#free_log + 1] = k end end
  local by_elimination
  if #free_api == 1 and #free_log == 1 then
    key_map[free_log[1]] = free_api[1]
    by_elimination = {key_id = free_log[1], api_key_id = free_api[1]}
  end
  local function api_key(c) return c.key_id and key_map[c.key_id] or (c.key_id and ("log:" .. c.key_id)) end

  local out = {bucket_width = q.bucket_width, since = since, ["until"] = till, images = {}, costs = {},
    differences = {}, responses = {}, key_map = key_map, by_elimination = by_elimination, queries = q, ok = true}
  -- images per day, model, key, project; and per bucket for the call-by-call list
  local rows, order = {}, {}
  local buckets, border = {}, {}
  local function row(day, model, key, project)
    local k = row_key(day, model, key, project)
    local r = rows[k]
    if not r then
      r = {day = day, model = model, api_key_id = key, project = project, log = 0, api = 0, log_requests = 0,
        api_requests = 0}
      rows[k] = r
      order[#order + 1] = k
    end
    return r
  end
  local function bucket(start, model, key, project)
    local k = row_key(start, model, key, project)
    local r = buckets[k]
    if not r then
      r = {start = start, bucket = step == 60 and minute_of(start) or day_of(start), model = model,
        api_key_id = key, project = project, log = 0, api = 0, calls = {}}
      buckets[k] = r
      border[#border + 1] = k
    end
    return r
  end
  for _, c in ipairs(calls) do
    if c.kind == "respond" or c.shape == "responses" then
      out.responses[#out.responses + 1] = {request_id = c.request_id, time = c.time, images = c.images,
        model = c.tool_model or c.model}
    else
      local key = api_key(c)
      local r = row(day_of(c.t), c.model, key, c.project)
      r.key_id = c.key_id
      r.log = r.log + (c.images or 0)
      if c.ok then r.log_requests = r.log_requests + 1 end
      local bk = bucket(floor(c.t / step) * step, c.model, key, c.project)
      bk.log = bk.log + (c.images or 0)
      bk.calls[#bk.calls + 1] = {request_id = c.request_id, time = c.time, images = c.images, status = c.status,
        outcome = c.outcome}
    end
  end
  for _, b in ipairs(usage) do
    for _, res in ipairs(b.results or {}) do
      if res.object == nil or res.object == "organization.usage.images.result" then
        local start = tonumber(b.start_time) or 0
        local r = row(day_of(start), res.model, res.api_key_id, res.project_id)
        r.api = r.api + (tonumber(res.images) or 0)
        r.api_requests = r.api_requests + (tonumber(res.num_model_requests) or 0)
        local bk = bucket(floor(start / step) * step, res.model, res.api_key_id, res.project_id)
        bk.api = bk.api + (tonumber(res.images) or 0)
      end
    end
  end
  for _, k in ipairs(order) do
    local r = rows[k]
    r.diff = r.api - r.log
    if r.diff ~= 0 then out.ok = false end
    out.images[#out.images + 1] = r
  end
  sort(out.images, function(a, b)
    return row_key(a.day, a.model, a.api_key_id) < row_key(b.day, b.model, b.api_key_id)
  end)
  sort(border, function(a, b)
    return buckets[a].start < buckets[b].start or (buckets[a].start == buckets[b].start and a < b)
  end)
  for _, k in ipairs(border) do
    local bk = buckets[k]
    if bk.api ~= bk.log then
      local d = {bucket = bk.bucket, model = bk.model, api_key_id = bk.api_key_id, project = bk.project, log = bk.log,
        api = bk.api, calls = bk.calls}
      if #bk.calls == 0 then
        d.text = ("%s %s: the usage shows %d image(s), the log no call (another client on this key or project?)")
          :format(bk.bucket, tostring(bk.model), bk.api)
      elseif #bk.calls == 1 then
        local c = bk.calls[1]
        d.text = ("%s %s: call %s (status %s, %s) logged %d image(s), the usage shows %d"):format(bk.bucket,
          tostring(bk.model), tostring(c.request_id), tostring(c.status), tostring(c.outcome), c.images or 0, bk.api)
      else
        local ids = {}
        for i, c in ipairs(bk.calls) do ids[i] = tostring(c.request_id) .. "=" .. tostring(c.images or 0) end
        d.text = ("%s %s: %d calls logged %d image(s) (%s), the usage shows %d"):format(bk.bucket, tostring(bk.model),
          #bk.calls, bk.log, concat(ids, ", "), bk.api)
      end
      local failed = {}
      for _, c in ipairs(bk.calls) do
        if c.outcome ~= "success" then
          failed[#failed + 1] = tostring(c.request_id) .. " (" .. tostring(c.outcome) .. ")"
        end
      end
      if #failed > 0 and #failed == bk.api - bk.log then
        d.billed_failed = failed
        d.text = d.text .. "; the usage counts the failed call(s) " .. concat(failed, ", ") .. ": they were billed"
      end
      out.differences[#out.differences + 1] = d
    end
  end
  -- dollars per day, project and key
  local crows, corder = {}, {}
  local function crow(day, project, key)
    local k = row_key(day, project, key)
    local r = crows[k]
    if not r then
      r = {day = day, project = project, api_key_id = key, log = 0, log_unknown = 0, api = 0}
      crows[k] = r
      corder[#corder + 1] = k
    end
    return r
  end
  local grouped_by_key = false
  for _, b in ipairs(costs) do
    for _, res in ipairs(b.results or {}) do if res.api_key_id then grouped_by_key = true end end
  end
  for _, c in ipairs(dcalls) do
    local r = crow(day_of(c.t), c.project, grouped_by_key and api_key(c) or nil)
    r.key_id = c.key_id
    if c.amount then r.log = r.log + c.amount else r.log_unknown = r.log_unknown + 1 end
    if c.outcome ~= "success" then
      r.failed = r.failed or {}
      r.failed[#r.failed + 1] = c
    end
  end
  for _, b in ipairs(costs) do
    for _, res in ipairs(b.results or {}) do
      local amount = type(res.amount) == "table" and tonumber(res.amount.value) or 0
      local r = crow(day_of(tonumber(b.start_time) or 0), res.project_id, res.api_key_id)
      r.api = r.api + amount
      r.currency = type(res.amount) == "table" and res.amount.currency or nil
    end
  end
  for _, k in ipairs(corder) do
    local r = crows[k]
    r.diff = r.api - r.log
    if abs(r.diff) > tol then
      out.ok = false
      -- does the difference equal the failed calls of that day, priced as billed?
      local sum, ids, known = 0, {}, true
      for _, c in ipairs(r.failed or {}) do
        if (c.amount or 0) == 0 then
          if c.price_if_billed then sum = sum + c.price_if_billed else known = false end
          ids[#ids + 1] = tostring(c.request_id)
        end
      end
      if #ids > 0 and known and abs(r.diff - sum) <= tol then
        r.explained = ("the difference is the failed call(s) %s priced as billed (%s)"):format(concat(ids, ", "),
          M.money(sum))
        out.differences[#out.differences + 1] = {bucket = r.day, calls = r.failed, text = r.day .. " costs: "
          .. r.explained}
      else
        out.differences[#out.differences + 1] = {bucket = r.day, text = ("%s costs: the log says %s, the costs %s "
          .. "(%s): calls not in the log, or priced otherwise"):format(r.day, M.money(r.log), M.money(r.api),
          format("%+.6f", r.diff))}
      end
    end
    out.costs[#out.costs + 1] = r
  end
  sort(out.costs, function(a, b)
    return row_key(a.day, a.project, a.api_key_id) < row_key(b.day, b.project, b.api_key_id)
  end)
  return out
end

return M
