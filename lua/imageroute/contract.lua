--- imageroute.contract: lanes and acceptance gates (the project's route model: README, "Routes,
-- contracts and route files").
--
-- A route's `contract` table records what a user must know before sending anything through it:
--
-- * `owner`: who owns the endpoint, the account, billing, support and abuse handling: a string (one
--   owner for all), or `{endpoint =, account =, billing =, support =, abuse =}`.
-- * `model_mapping`: how it is known that the requested label maps to the intended model (a string:
--   the evidence), `false` when it is known not to be verified.
-- * `failed_calls_billed`: per outcome, `{rejected =, moderation =, timeout =, server_error =}`, each
--   `"yes"` | `"no"` | `"unknown"` (or a boolean); one string applies to every outcome. When the
--   contract does not say, the route's `billing.failed_calls_billed` is used. The table may also
--   record how the answers are known: `checked` (the date they were checked, `"YYYY-MM-DD"`) and
--   `source` (how: e.g. the probe and bill `imageroute reconcile` compared), both optional strings;
--   `imageroute reconcile` prints such a line.
-- * `output_rights`: may outputs be stored, sold, deleted: a string, or `{store =, sell =, delete =}`
--   (`"yes"` | `"no"` | a description | `"unknown"`).
-- * `observability`: `{request_ids =, error_types =, usage =, dashboard =}` (true / `"yes"` / a
--   description when provided, false / `"no"` when not), or a string.
--
-- Lanes: an `official` route passes by construction when its host is `api.openai.com` (or a loopback
-- host, so the local server can stand in for it); an official route on any other host is refused (a
-- gateway is a provider, whatever it calls itself). A `provider` route with a failing or unknown gate
-- is refused unless it records `accepted = "<why>"`. An `account_pool` route is refused unless it
-- records `risk_exception = "<why>"`. The reason is logged with every call (`imageroute.log`).
--
-- `route:check()` (defined with the Route type, `imageroute.route`) is `contract.check(route)`.
-- @module imageroute.contract

local core = require("imageroute.core")

local type, pairs, ipairs, tostring, concat = type, pairs, ipairs, tostring, table.concat

local M = {}

--- Hosts of the official API.
M.OFFICIAL_HOSTS = {["api.openai.com"] = true}

--- The failure outcomes a contract prices (`failed_calls_billed`).
M.OUTCOMES = {"rejected", "moderation", "timeout", "server_error"}

--- The gates, in report order (after the `lane` and `host` rows).
M.GATES = {"owner", "model_mapping", "failed_calls_billed", "output_rights", "observability", "billing"}

local OWNER_PARTS = {"endpoint", "account", "billing", "support", "abuse"}
local RIGHTS = {"store", "sell", "delete"}
local OBSERVE = {"request_ids", "error_types", "usage", "dashboard"}
local KNOWN_KEYS = {owner = true, model_mapping = true, failed_calls_billed = true, output_rights = true,
  observability = true, notes = true, docs = true, terms = true, reviewed = true}

--- True when host is a loopback host (`localhost`, `127.x.x.x`, `::1`).
-- @tparam string host
-- @treturn boolean
function M.is_loopback(host)
  if type(host) ~= "string" then return false end
  if host == "localhost" or host == "::1" or host == "[::1]" then return true end
  return host:find("^127%.[%d.]+$") ~= nil
end

local function text(v)
  return type(v) == "string" and v ~= "" and v:lower() ~= "unknown"
end

--- Normalises a yes/no answer: true/"yes" -> "yes", false/"no" -> "no", nil/"unknown" -> "unknown";
-- anything else -> nil (invalid).
-- @param v
-- @treturn string|nil
function M.yes_no(v)
  if v == true then return "yes" end
  if v == false then return "no" end
  if v == nil then return "unknown" end
  if type(v) == "string" then
    local l = v:lower()
    if l == "yes" or l == "no" or l == "unknown" then return l end
  end
  return nil
end

--- How the route says failed calls are billed: outcome -> "yes" | "no" | "unknown".
-- From `contract.failed_calls_billed`, else `billing.failed_calls_billed`; a single value applies to
-- every outcome; an outcome not recorded is "unknown".
-- @tparam Route route
-- @treturn table outcome -> answer (for `rejected`, `moderation`, `timeout`, `server_error`)
-- @treturn string|nil where it was read: "contract" | "billing" | nil (nowhere)
function M.failed_billing(route)
  local c = route.contract
  local rule, from = c and c.failed_calls_billed, "contract"
  if rule == nil then
    local b = route.billing
    rule, from = b and b.failed_calls_billed, "billing"
  end
  if rule == nil then from = nil end
  local out = {}
  for _, o in ipairs(M.OUTCOMES) do
    local v = rule
    if type(rule) == "table" then v = rule[o] end
    out[o] = M.yes_no(v) or "unknown"
  end
  return out, from
end

-- Each gate: route, contract -> status, reason (for the provider and account_pool lanes).
local gate = {}

-- The keys of a contract entry recorded as a table, sorted by classify(value) -> "ok", shown |
-- "missing" | "absent" into lists: `ok` ("key=shown"), `missing`, `absent` (key names).
local function sort_keys(v, keys, classify)
  local lists = {ok = {}, missing = {}, absent = {}}
  for _, k in ipairs(keys) do
    local class, shown = classify(v[k])
    local l = lists[class]
    l[#l + 1] = shown and (k .. "=" .. shown) or k
  end
  return lists
end

local function right_of(x)
  if x == true then x = "yes" elseif x == false then x = "no" end
  if text(x) then return "ok", x end
  return "missing"
end

local function observed(x)
  if x == false or (type(x) == "string" and x:lower() == "no") then return "absent" end
  if x == true or text(x) then return "ok" end
  return "missing"
end

local function recorded(x)
  if text(x) then return "ok" end
  return "missing"
end

-- The gate of a contract entry recorded as a sentence (pass: `prefix` .. the sentence) or as a table
-- of `keys`, sorted by `classify` (see sort_keys) and judged by `verdict(lists)`; `why` when it is
-- neither (unknown).
local function keyed_gate(g)
  return function(_, c)
    local v = c[g.field]
    if text(v) then return "pass", (g.prefix or "") .. v end
    if type(v) == "table" then return g.verdict(sort_keys(v, g.keys, g.classify)) end
    return "unknown", g.why
  end
end

gate.owner = keyed_gate{field = "owner", keys = OWNER_PARTS, classify = recorded, prefix = "owner: ",
  verdict = function(l)
    if #l.missing == 0 then return "pass", "every part has an owner" end
    return "unknown", "no owner recorded for: " .. concat(l.missing, ", ")
  end,
  why = "contract.owner not recorded (who owns endpoint, account, billing, support, abuse handling)"}

function gate.model_mapping(_, c)
  local v = c.model_mapping
  if v == false or (type(v) == "string" and v:lower() == "no") then
    return "fail", "recorded as not verified: the label may not reach the intended model"
  end
  if text(v) then return "pass", v end
  if type(v) == "table" then
    for _, x in pairs(v) do
      if text(x) then return "pass", "recorded" end
    end
  end
  return "unknown", "contract.model_mapping not recorded (how is the label known to map to the intended model?)"
end

function gate.failed_calls_billed(route, c)
  local raw = c.failed_calls_billed
  if raw == nil then raw = route.billing and route.billing.failed_calls_billed end
  if raw == nil then return "unknown", "failed_calls_billed not recorded (contract or billing)" end
  local bad = {}
  for _, o in ipairs(M.OUTCOMES) do
    local v = raw
    if type(raw) == "table" then v = raw[o] end
    if not M.yes_no(v) then bad[#bad + 1] = o .. "=" .. tostring(v) end
  end
  if #bad > 0 then return "fail", "invalid answers (yes | no | unknown): " .. concat(bad, ", ") end
  local rule = M.failed_billing(route)
  local unknown, parts = {}, {}
  for _, o in ipairs(M.OUTCOMES) do
    parts[#parts + 1] = o .. "=" .. rule[o]
    if rule[o] == "unknown" then unknown[#unknown + 1] = o end
  end
  local checked = type(raw) == "table" and type(raw.checked) == "string" and
    (" (checked " .. raw.checked .. (type(raw.source) == "string" and (": " .. raw.source) or "") .. ")") or ""
  if #unknown > 0 then return "unknown", "not known whether billed: " .. concat(unknown, ", ") .. checked end
  return "pass", concat(parts, ", ") .. checked
end

gate.output_rights = keyed_gate{field = "output_rights", keys = RIGHTS, classify = right_of,
  verdict = function(l)
    if #l.missing == 0 then return "pass", concat(l.ok, ", ") end
    return "unknown", "not recorded whether outputs may be: " .. concat(l.missing, ", ")
  end,
  why = "contract.output_rights not recorded (may outputs be stored, sold, deleted?)"}

gate.observability = keyed_gate{field = "observability", keys = OBSERVE, classify = observed,
  verdict = function(l)
    if #l.absent > 0 then return "fail", "not provided: " .. concat(l.absent, ", ") end
    if #l.missing > 0 then return "unknown", "not recorded: " .. concat(l.missing, ", ") end
    return "pass", "request ids, error types, usage and a dashboard"
  end,
  why = "contract.observability not recorded (request ids, error types, usage, a dashboard)"}

function gate.billing(route)
  local b = route.billing
  if not b or b.unit == nil then return "unknown", "route.billing not recorded: costs will be unknown" end
  if b.price ~= nil then
    return "pass", ("%s %s per %s"):format(tostring(b.price), tostring(b.currency or "USD"), b.unit)
  end
  if b.unit == "token" then return "pass", "per token, at the published rates (imageroute.prices)" end
  return "unknown", "billing.unit = " .. b.unit .. " but no billing.price"
end

--- The acceptance report of a route (also `route:check()`, `route:check{live = true}`).
-- @tparam Route route
-- @tparam[opt] table opts `live = true`: also ask the route's API whether its models are available
--   to this account (`GET /models/{model}`, free, no image made; see `imageroute.live`), one row
--   each (`gate = "live"` / `"live_image_model"`), after the gates; `timeout` (seconds) for those asks
-- @treturn table report: `ok` (true when every row passes, live rows included), `allowed` (true when
--   calls may go through: see `allow`; the gates decide it, never the live rows), `lane`, `route`
--   (name), `host`, `rows` (list of `{gate =, status = "pass" | "fail" | "unknown", reason =}`: the
--   `lane` and `host` rows, then one per gate in `M.GATES`, then the live rows), `accepted`,
--   `risk_exception` (as recorded), `reason` (why calls are allowed or refused), and with `live`:
--   `live_ok` (true when every live row passes)
function M.check(route, opts)
  local lane, host = route.lane, route.host
  local c = route.contract or {}
  local rows = {}
  local function row(g, status, reason) rows[#rows + 1] = {gate = g, status = status, reason = reason} end
  local report = {lane = lane, route = route.name, host = host, rows = rows, accepted = route.accepted,
    risk_exception = route.risk_exception}
  if lane == "official" then
    local official = M.OFFICIAL_HOSTS[host]
    local loop = M.is_loopback(host)
    row("lane", "pass", "official lane: OpenAI's docs, spec, model ids and price rows decide")
    if official or loop then
      row("host", "pass", official and (host .. " is the official API host")
        or (host .. " is a loopback host (the local server stands in for the official API)"))
      for _, g in ipairs(M.GATES) do row(g, "pass", "official API: passes by construction") end
    else
      row("host", "fail", tostring(host) .. " is not the official API host (api.openai.com): a gateway is a "
        .. "provider, whatever it calls itself")
      for _, g in ipairs(M.GATES) do row(g, "unknown", "not the official API: no contract by construction") end
    end
  else
    if lane == "account_pool" then
      row("lane", "fail", "account pool: self-hosted relays on consumer accounts, browser sessions or cookies"
        .. (route.risk_exception and ("; risk exception recorded: " .. route.risk_exception) or ""))
    else
      row("lane", "pass", "provider lane: allowed once its contract is written down and accepted")
    end
    row("host", "pass", tostring(host) .. " (provider " .. tostring(route.provider) .. ")")
    for _, g in ipairs(M.GATES) do
      local status, reason = gate[g](route, c)
      row(g, status, reason)
    end
  end
  local ok = true
  for _, r in ipairs(rows) do
    if r.status ~= "pass" then ok = false end
  end
  report.ok = ok
  local allowed, why = M.decide(route, report)
  report.allowed = allowed ~= nil
  report.reason = type(why) == "table" and why.message or why
  if type(opts) == "table" and opts.live then
    report.live_ok = true
    for _, r in ipairs(require("imageroute.live").rows(route, opts)) do
      rows[#rows + 1] = r
      if r.status ~= "pass" then report.ok, report.live_ok = false, false end
    end
  end
  return report
end

--- Whether a route may serve more than single calls: inside `batch`, as a router target, or with
-- more than one call in flight. The route guides this project follows give the rule for a
-- non-official route whose observability gate fails: "manual tests only; no automated scale-up".
-- Such a route, even when accepted, serves single calls only, unless it records
-- `scale_exception = "<why>"` (logged like `accepted`). Official routes always may.
-- @tparam Route route
-- @treturn true|nil
-- @treturn string|table the exception recorded, or the `route` error (`code = "scale_refused"`)
function M.scale_allowed(route)
  if route.scale_exception then return true, route.scale_exception end
  if route.lane == "official" then return true end
  local status, reason = gate.observability(route, route.contract or {})
  if status ~= "fail" then return true end
  local fix = "record what the gateway offers in contract.observability, or scale_exception = \"<why>\""
  return nil, core.error("route", ("route '%s' refused at scale (observability: %s): manual tests only, no " ..
    "automated scale-up; fix: %s"):format(tostring(route.name), reason, fix),
    {code = "scale_refused", rule = "scale", gate = "observability", fix = fix, route = route.name, attempts = 0})
end

--- The decision `allow` takes on a report made by `check` (for callers that already hold one).
-- @tparam Route route
-- @tparam table report from `M.check(route)`
-- @treturn true|nil as for `allow`
-- @treturn string|table the reason, or the error
function M.decide(route, report)
  local lane, name = route.lane, route.name
  local function refuse(rule, g, msg, fix)
    return nil, core.error("route", ("route '%s' refused (%s): %s; fix: %s"):format(tostring(name), rule, msg, fix),
      {rule = rule, gate = g, fix = fix, route = name, lane = lane, attempts = 0})
  end
  if lane == "official" then
    if report.rows[2].status ~= "pass" then
      return refuse("official_host", "host", report.rows[2].reason,
        "declare it lane = \"provider\" with its contract (and accepted = \"<why>\" while a gate is open), or "
          .. "point base_url at https://api.openai.com/v1")
    end
    return true, nil
  end
  if lane == "account_pool" then
    if not text(route.risk_exception) then
      return refuse("account_pool", "lane", "an account_pool route needs an explicit risk exception",
        "record risk_exception = \"<why this risk is accepted>\" on the route")
    end
    return true, route.risk_exception
  end
  local open = {}
  local first
  for _, r in ipairs(report.rows) do
    if r.status ~= "pass" then
      open[#open + 1] = r.gate .. " " .. r.status
      first = first or r.gate
    end
  end
  if #open == 0 then return true, route.accepted end
  if text(route.accepted) then return true, route.accepted end
  return refuse("provider_gates", first, "gates not passed: " .. concat(open, ", ") .. " (route:check() tells why)",
    "record the missing contract fields, or accepted = \"<why>\" on the route to accept the open gates")
end

--- Whether calls may go through this route now.
-- @tparam Route route
-- @treturn true when allowed
-- @treturn string|nil the recorded reason that allows it (`accepted` or `risk_exception`), to log
-- @treturn[2] nil
-- @treturn[2] table error (`core.error`): `kind = "route"`, `rule` (`"official_host"` |
--   `"provider_gates"` | `"account_pool"`), `gate` (the first failing gate), `fix`, `route`, `lane`
function M.allow(route)
  return M.decide(route, M.check(route))
end

--- The optional fields of a `failed_calls_billed` table besides the outcomes, each with its check:
-- `checked` (the date the answers were checked, `"YYYY-MM-DD"`) and `source` (how they are known).
M.FAILED_META = {
  checked = function(v) return type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%d$") ~= nil end,
  source = function(v) return type(v) == "string" and v ~= "" end,
}

--- Checks the shape of a contract table (for route files): known keys, valid yes/no answers.
-- @tparam table|nil c the contract
-- @treturn true
-- @treturn[2] nil
-- @treturn[2] string message
-- @treturn[2] string the field, e.g. "contract.failed_calls_billed.timeout"
function M.validate(c)
  if c == nil then return true end
  if type(c) ~= "table" then return nil, "contract must be a table", "contract" end
  for k in pairs(c) do
    if not KNOWN_KEYS[k] then
      return nil, ("unknown contract field '%s' (owner, model_mapping, failed_calls_billed, output_rights, "
        .. "observability, notes, docs, terms, reviewed)"):format(tostring(k)), "contract." .. tostring(k)
    end
  end
  local f = c.failed_calls_billed
  if type(f) == "table" then
    for k, v in pairs(f) do
      local known = M.FAILED_META[k] ~= nil
      if known and not M.FAILED_META[k](v) then
        return nil, ("failed_calls_billed.%s must be %s"):format(k, k == "checked" and "a date \"YYYY-MM-DD\""
          or "a string"), "contract.failed_calls_billed." .. k
      end
      for _, o in ipairs(M.OUTCOMES) do known = known or o == k end
      if not known then
        return nil, ("unknown outcome '%s' (rejected, moderation, timeout, server_error; or checked, source)")
          :format(tostring(k)), "contract.failed_calls_billed." .. tostring(k)
      end
      if not M.FAILED_META[k] and not M.yes_no(v) then
        return nil, ("failed_calls_billed.%s must be yes | no | unknown"):format(k),
          "contract.failed_calls_billed." .. k
      end
    end
  elseif f ~= nil and not M.yes_no(f) then
    return nil, "failed_calls_billed must be yes | no | unknown or a table per outcome",
      "contract.failed_calls_billed"
  end
  return true
end


return M
