--- imageroute.billing.probe: the billing test of a route, as one function.
--
-- The production checklist of the route guides this project follows: "run one small billing test
-- before real traffic: save the request ID, endpoint, model label, image size, quality, output
-- count, response time, and billed amount. If the provider route uses a flat call price, verify
-- whether a failed request is charged." `probe.run` makes the cheapest successful call the route
-- allows (from `imageroute.prices` and `imageroute.models`), and, with `failed = true`, one call the
-- server will refuse (a deliberately invalid field, sent past the stop rules), then appends a
-- `probe` record to the call log: an id, both calls' request ids, the time window, the estimated
-- cost, and what each failed call would cost if billed. `probe.text` says exactly what to compare
-- on the provider's dashboard; `imageroute.billing.reconcile` then compares it with the bill.
--
--    local probe = require("imageroute.billing.probe")
--    local rec = assert(probe.run(route, {failed = true, log = "out/imageroute-calls.jsonl"}))
--    print(probe.text(rec))     -- the request ids, the window, what to look for, the next command
--
-- Both calls are made with `max_retries = 0`: a retry could bill a second time.
-- The invalid field of the failed call depends on the route's shape: `n = 0` on the Images API
-- (`CreateImageRequest.n` is 1..10; stop rule `n_range` waived for this call, `opts.skip_rules`), a
-- `previous_response_id` no response has on the Responses API, and a model label no gateway serves
-- on the chat shape (no stop rule applies to those). OpenAI API reference,
-- Images > Create image, https://platform.openai.com/docs/api-reference/images/create, and
-- Responses, https://platform.openai.com/docs/api-reference/responses, read 2026-12-01.
-- @module imageroute.billing.probe

local imageroute = require("imageroute")
local prices = require("imageroute.prices")
local models = require("imageroute.models")
local cost = require("imageroute.cost")
local contract = require("imageroute.contract")
local log = require("imageroute.log")

local type, pairs, ipairs, tostring, format = type, pairs, ipairs, tostring, string.format
local floor, ceil = math.floor, math.ceil

local M = {}

--- The prompt of the probe's calls (short: fewest text tokens).
M.PROMPT = "a small red dot on white"

--- The `previous_response_id` of the responses shape's failed call: no response has it.
M.INVALID_RESPONSE_ID = "resp_imageroute_probe_invalid"

--- The model label of the chat shape's failed call: no gateway serves it.
M.INVALID_MODEL = "imageroute-probe-invalid-model"

local gettime = os.time
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then gettime = socket.gettime end
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end
M.iso = iso

-- The cheapest size and quality of a model: its per-image price rows, else its capability entry.
local function cheapest(model)
  local row = type(model) == "string" and prices.images[models.canonical(model)] or nil
  if row then
    local best
    local sizes = {}
    for size, q in pairs(row) do
      if type(q) == "table" then sizes[#sizes + 1] = size end
    end
    table.sort(sizes)
    for _, size in ipairs(sizes) do
      local qs = {}
      for quality in pairs(row[size]) do qs[#qs + 1] = quality end
      table.sort(qs)
      for _, quality in ipairs(qs) do
        local p = row[size][quality]
        if not best or p < best.price then best = {size = size, quality = quality, price = p} end
      end
    end
    if best then
      best.why = format("the cheapest row of %s in imageroute.prices (%s USD per image, %s %s; %s)", model,
        tostring(best.price), best.size, best.quality, row.source)
      return best
    end
  end
  local entry = models.get(model)
  if not entry then
    return {why = "no price row or capability entry for " .. tostring(model) .. ": only the prompt is sent"}
  end
  local out = {}
  if type(entry.quality) == "table" and models.listed(entry.quality, "low") then out.quality = "low" end
  if type(entry.sizes) == "table" then
    local area
    for _, s in ipairs(entry.sizes) do
      local w, h = s:match("^(%d+)x(%d+)$")
      if w and (not area or w * h < area) then out.size, area = s, w * h end
    end
  elseif entry.sizes == "multiple_of_16" then
    out.size = "1024x1024"
  end
  out.why = "no per-image price row for " .. tostring(model) .. ": its smallest size and lowest quality"
  return out
end

--- The probe's calls for a route, before anything is sent.
-- @tparam Route route
-- @treturn table `{success = {kind =, params =, why =}, failed = {kind =, params =, opts =, field =,
--   value =, why =}}`: `params` as `imageroute.generate` / `respond` take them, `opts` of the failed
--   call (`skip_rules`)
function M.plan(route)
  local shape = route.shape
  local success, failed
  if shape == "responses" then
    local c = cheapest(route.image_model)
    success = {kind = "respond", params = {input = M.PROMPT, tool_choice = "image_generation", size = c.size,
      quality = c.quality}, why = c.why}
    failed = {kind = "respond", params = {input = M.PROMPT, tool_choice = "image_generation",
      previous_response_id = M.INVALID_RESPONSE_ID, size = c.size, quality = c.quality}, opts = {},
      field = "previous_response_id", value = M.INVALID_RESPONSE_ID,
      why = "a previous_response_id no response has (the API answers 400)"}
  elseif shape == "chat" then
    success = {kind = "generate", params = {prompt = M.PROMPT},
      why = "a chat body carries the prompt and the model label only"}
    failed = {kind = "generate", params = {prompt = M.PROMPT, model = M.INVALID_MODEL}, opts = {},
      field = "model", value = M.INVALID_MODEL, why = "a model label the gateway does not serve"}
  else
    local c = cheapest(route.model)
    success = {kind = "generate", params = {prompt = M.PROMPT, size = c.size, quality = c.quality, n = 1}, why = c.why}
    failed = {kind = "generate", params = {prompt = M.PROMPT, size = c.size, quality = c.quality, n = 0},
      opts = {skip_rules = {"n_range"}}, field = "n", value = 0,
      why = "n = 0 (the Images API takes n from 1 to 10)"}
  end
  return {success = success, failed = failed}
end

local function call_row(role, step, route, res, err, price_if_billed)
  local r = res or err or {}
  local c = type(r.cost) == "table" and r.cost or {}
  local row = {role = role, kind = step.kind, ok = res ~= nil, call_id = r.call_id, request_id = r.request_id,
    response_id = r.response_id, endpoint = r.endpoint, model = r.model or step.params.model or route.model,
    tool_model = r.tool_model, size = r.size or step.params.size, quality = r.quality or step.params.quality,
    n = step.params.n, images = type(r.images) == "table" and #r.images or 0, status = r.http_status or r.status,
    latency = r.latency, attempts = r.attempts, estimated = c.amount, max_amount = c.max_amount,
    currency = c.currency, basis = c.basis, outcome = res and "success" or c.outcome, billed_rule = c.billed,
    price_if_billed = price_if_billed}
  if err then
    row.error_kind, row.error_code, row.error = err.kind, err.code, log.scrub(err.message)
    -- sent: some attempt went out (a refusal before sending has no attempt: gates, stop rules, budgets)
    row.sent = (type(err.attempt_log) == "table" and #err.attempt_log > 0)
      or (type(err.attempts) == "number" and err.attempts > 0)
  else
    row.sent = true
  end
  if step.field then row.field, row.value = step.field, step.value end
  return row
end

--- Runs the billing test of a route.
-- @tparam Route route a route (not a router)
-- @tparam[opt] table opts `failed` (boolean: also the refused call), `log` (the call log path; default
--   the route's own, which must then exist), `timeout` (seconds per attempt), `id` (the probe id;
--   default `"probe-" ..` a new call id)
-- @treturn table|nil the probe record, as appended to the log (`event = "probe"`): `probe_id`,
--   `route`, `lane`, `provider`, `host`, `shape`, `log` (the path), `start_time` and `end_time`
--   (Unix seconds, the window that holds both calls: floor of the first send, ceil of the last
--   answer), `started` / `ended` (the same, ISO 8601 UTC), `billing` (`unit`, `price`, `currency`,
--   `source`, `date` of the route), `failed_rule` (the route's `failed_calls_billed`), `calls` (one
--   row per call: `role` = `"success"` | `"failed"`, `kind`, `ok`, `sent`, `call_id`, `request_id`,
--   `endpoint`, `model`, `tool_model`, `size`, `quality`, `n`, `images`, `status`, `latency` (s),
--   `estimated` (the call's cost amount, nil when unknown), `max_amount`, `currency`, `basis`,
--   `outcome`, `billed_rule`, `price_if_billed` (what the call costs if the provider bills it: the
--   route's price, or the per-image row, of the valid call), `field` / `value` (the invalid field),
--   `error_kind`, `error_code`, `error`), `estimated` (`success` = the successful call's amount,
--   `if_failed_billed`, `if_failed_free`, `currency`), `key_id`, `project`
-- @treturn[2] nil
-- @treturn[2] table error: the successful call's error (nothing more is sent), or `kind = "validation"`
--   when no log applies
function M.run(route, opts)
  opts = opts or {}
  local path = opts.log or log.path_for(route, {})
  if not path then
    return nil, imageroute.core.error("validation", "the probe needs a call log: give opts.log or the route's log",
      {field = "log", fix = "set the route's log = \"out/imageroute-calls.jsonl\" or pass a log path"})
  end
  local plan = M.plan(route)
  local call_opts = {log = path, max_retries = 0, timeout = opts.timeout}
  local t0 = gettime()
  local s = plan.success
  local price = cost.call_price(s.kind, route, s.params)
  local res, err = imageroute[s.kind](route, s.params, call_opts)
  local rows = {call_row("success", s, route, res, err, price.amount)}
  if not res then
    err.probe_calls = rows
    return nil, err
  end
  if opts.failed then
    local f = plan.failed
    local fo = {}
    for k, v in pairs(call_opts) do fo[k] = v end
    for k, v in pairs(f.opts) do fo[k] = v end
    local fres, ferr = imageroute[f.kind](route, f.params, fo)
    rows[2] = call_row("failed", f, route, fres, ferr, price.amount)
    rows[2].why = f.why
  end
  local t1 = gettime()
  local b = route.billing or {}
  local rule = contract.failed_billing(route)
  local first = res
  local success_amount = rows[1].estimated
  local if_billed, if_free = success_amount, success_amount
  for i = 2, #rows do
    local r = rows[i]
    if if_billed and r.sent then if_billed = r.price_if_billed and (if_billed + r.price_if_billed) or nil end
  end
  local rec = {
    event = "probe", probe_id = opts.id or ("probe-" .. log.new_call_id()), shape = route.shape, log = path,
    base_url = route.base_url, start_time = floor(t0), end_time = ceil(t1), started = iso(t0), ended = iso(t1),
    billing = {unit = b.unit, price = b.price, currency = b.currency or "USD", source = b.source, date = b.date},
    failed_rule = rule, calls = rows,
    estimated = {success = success_amount, if_failed_billed = if_billed, if_failed_free = if_free,
      currency = rows[1].currency or b.currency or "USD"},
    prompt = M.PROMPT,
  }
  rec.key_id = first.key_id
  if not rec.key_id and type(route.api_key_env) == "string" then
    rec.key_id = log.key_id(os.getenv(route.api_key_env))
  end
  if route.lane == "official" or route.send_openai_ids then
    local p = os.getenv("OPENAI_PROJECT_ID")
    rec.project = p ~= "" and p or nil
  end
  local ok, werr = log.event(path, route, rec)
  if not ok then return nil, werr end
  rec.route, rec.host, rec.lane, rec.provider = route.name, route.host, route.lane, route.provider
  return rec
end

--- Reads the probe records of a log.
-- @tparam table records from `imageroute.log.read`
-- @tparam[opt] string id a probe id (nil: every probe)
-- @treturn table list of probe records, in file order
function M.find(records, id)
  local out = {}
  for _, r in ipairs(records) do
    if r.event == "probe" and (id == nil or r.probe_id == id) then out[#out + 1] = r end
  end
  return out
end

local function money(v, cur)
  if type(v) ~= "number" then return "unknown" end
  local s = format("%.6f", v):gsub("0+$", ""):gsub("%.$", ".0")
  return s .. " " .. tostring(cur or "USD")
end
M.money = money

--- What to compare on the dashboard: the text `imageroute probe` prints.
-- @tparam table rec a probe record (from `run`, or read back from the log)
-- @treturn string lines, each ending with a newline
function M.text(rec)
  local cur = rec.estimated and rec.estimated.currency or "USD"
  local b = rec.billing or {}
  local out = {}
  local function add(...) out[#out + 1] = format(...) end
  add("probe %s  route=%s lane=%s provider=%s host=%s\n", tostring(rec.probe_id), tostring(rec.route),
    tostring(rec.lane), tostring(rec.provider), tostring(rec.host))
  add("window %s .. %s (Unix %s .. %s)\n", tostring(rec.started), tostring(rec.ended), tostring(rec.start_time),
    tostring(rec.end_time))
  local price = b.price and format("%s %s per %s", tostring(b.price), tostring(b.currency or "USD"),
    tostring(b.unit)) or (rec.lane == "official" and "the published prices, imageroute.prices")
    or ("unit " .. tostring(b.unit or "unknown"))
  for i, c in ipairs(rec.calls or {}) do
    add("call %d %-7s request_id=%s endpoint=%s model=%s%s size=%s quality=%s n=%s images=%s status=%s "
      .. "latency=%s estimated=%s basis=%s\n", i, c.role, tostring(c.request_id or "-"), tostring(c.endpoint or "-"),
      tostring(c.model or "-"), c.tool_model and ("+" .. c.tool_model) or "", tostring(c.size or "-"),
      tostring(c.quality or "-"), tostring(c.n or 1), tostring(c.images or 0), tostring(c.status or "-"),
      type(c.latency) == "number" and format("%.3fs", c.latency) or "-", money(c.estimated, cur),
      tostring(c.basis or "-"))
    if c.role == "failed" and c.sent == false then
      add("       NOT SENT: refused before sending (%s): %s\n", tostring(c.error_kind), tostring(c.error))
    elseif c.role == "failed" then
      add("       invalid field %s = %s (%s): %s, outcome %s, failed_calls_billed.%s = %s, %s if billed\n",
        tostring(c.field), tostring(c.value), tostring(c.why or "refused by the server"),
        c.ok and "the server ACCEPTED it" or ("refused " .. tostring(c.error_code or c.error_kind or "")),
        tostring(c.outcome), tostring(c.outcome), tostring(c.billed_rule), money(c.price_if_billed, cur))
    end
  end
  local e = rec.estimated or {}
  add("estimated: %s for the successful call (%s)", money(e.success, cur), price)
  if #(rec.calls or {}) > 1 then
    add("; the window's bill is %s if the failed call was not billed, %s if it was\n", money(e.if_failed_free, cur),
      money(e.if_failed_billed, cur))
  else
    add("\n")
  end
  if rec.lane == "official" then
    add("compare: the OpenAI dashboard (Usage, Costs) for %s, key %s%s: images, requests and USD for that day and "
      .. "model; with an admin key:\n", tostring(rec.started):sub(1, 10), tostring(rec.key_id or "-"),
      rec.project and (", project " .. rec.project) or "")
    add("  imageroute reconcile --official --probe %s\n", tostring(rec.probe_id))
  else
    add("compare on %s's dashboard, in that window: each request id above, its endpoint, model label, size, "
      .. "quality, images and billed amount, and the total billed\n", tostring(rec.provider))
    add("then: imageroute reconcile --probe %s --billed AMOUNT   (the total billed for these calls)\n",
      tostring(rec.probe_id))
  end
  return table.concat(out)
end

return M
