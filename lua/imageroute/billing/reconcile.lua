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

local cost = require("imageroute.cost")
local contract = require("imageroute.contract")

local type, pairs, ipairs, tonumber, format, setmetatable =
  type, pairs, ipairs, tonumber, string.format, setmetatable
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
M.day_of, M.minute_of = day_of, minute_of

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
-- official: the Usage and Costs API against the log, in imageroute.billing.official (loaded on first use:
-- it reads this module's calls, times and money)

--- The queries `M.official` sends, for a window: `imageroute.billing.official.queries`.
-- @function queries
function M.queries(...) return require("imageroute.billing.official").queries(...) end

--- Compares the log with the organization's usage and costs: `imageroute.billing.official.official`.
-- @function official
function M.official(...) return require("imageroute.billing.official").official(...) end

return M
