--- imageroute.cost: what a call cost, for every result and every error.
--
-- The basis, in order of preference:
--
-- 1. `reported`: the provider reported the charged amount (`usage.cost`, a number): not estimated.
-- 2. `provider`: the route's own price (`route.billing`: `unit = "call"` or `"image"` with a `price`;
--    `unit = "token"` with a `price` per token). A provider's price belongs to the route, never to the
--    model (OpenAI's price page, https://platform.openai.com/docs/pricing, prices OpenAI's own models only).
-- 3. `usage`: the Images API's `usage` priced from `imageroute.prices.tokens` (text and image input
--    tokens, output tokens; when `output_tokens_details` is missing, every output token is an image
--    token; when `input_tokens_details` is missing, every input token is priced as text).
-- 4. `per_image`: `imageroute.prices.images` by model, size and quality, times the images. This is
--    the basis of Responses results (their `usage` counts the top-level text model, which has no
--    price row: noted in `excludes`), priced per image from each image's own size and quality.
--
-- A failed call is priced by the route's `failed_calls_billed` rule (`imageroute.contract`):
-- `"no"` costs 0, `"yes"` costs the call's price as asked (the route's price, or the per-image price
-- of the requested model, size, quality and n), `"unknown"` leaves `amount` nil (never a silent 0)
-- with `max_amount` the price it may have cost. Every retried attempt is priced the same way, so a
-- retried call that bills twice shows it. A call refused before sending costs 0 (`not_sent`).
--
-- Numbers from a reply are untrusted: a token count is used only when it is a finite number from 0
-- to `MAX_TOKENS`, a reported `usage.cost` only from 0 to `MAX_REPORTED`; anything else (`1e400` is
-- `inf` once decoded, `1e308`, a negative count) is ignored with a `note` saying which field, and the
-- call is priced on the next basis, or left with `amount = nil` and a `reason`. No amount is ever
-- `inf` or `nan`: a part whose amount is not finite becomes unknown, with a reason.
-- @module imageroute.cost

local request = require("imageroute.request")
local prices = require("imageroute.prices")
local models = require("imageroute.models")
local contract = require("imageroute.contract")

local type, ipairs, pairs, tostring = type, ipairs, pairs, tostring

local M = {}

local huge = math.huge

--- The largest token count of one call taken from a reply (larger is treated as garbage).
M.MAX_TOKENS = 1e9
--- The largest `usage.cost` of one call taken from a reply (in the route's currency).
M.MAX_REPORTED = 1e6

local function finite(v) return type(v) == "number" and v == v and v ~= huge and v ~= -huge end
local function num(v) return finite(v) and v or nil end

-- A token count from a reply: the number, or nil and why it is not usable (nil, nil: absent).
local function count(v, name)
  if v == nil then return nil, nil end
  if finite(v) and v >= 0 and v <= M.MAX_TOKENS then return v end
  return nil, ("usage.%s ignored: %s is not a token count from 0 to %g"):format(name, tostring(v), M.MAX_TOKENS)
end

-- Effective image options of the call, from its normalised request (imageroute.request).
local function asked(kind, route, params)
  local req = request.of(kind, route, params)
  return {n = num(req.n) or 1, size = req.size, quality = req.quality, model = req.model}
end

--- The call's effective image options: `n`, `size`, `quality`, `model` (the image model), read from
-- the call's normalised request (`imageroute.request`).
-- @tparam string kind
-- @tparam Route route
-- @tparam table params
-- @treturn table
function M.asked(kind, route, params)
  return asked(kind, route, params)
end

--- Prices a `usage` table at a model's per-1M-token rates.
-- @tparam table usage the API's usage (`input_tokens`, `input_tokens_details`, `output_tokens`,
--   `output_tokens_details`)
-- @tparam string model
-- @treturn number|nil amount (USD)
-- @treturn table|string detail `{text_in =, image_in =, image_out =, text_out =, row =}` (tokens), or
--   why it cannot be priced
function M.tokens(usage, model)
  local row = prices.token_row(model)
  if not row then return nil, "no per-token price row for " .. tostring(model) end
  if type(usage) ~= "table" or usage.output_tokens == nil then return nil, "no usage" end
  local bad
  local function tok(v, name)
    local n, why = count(v, name)
    if why then bad = bad or why end
    return n
  end
  local out_tokens = tok(usage.output_tokens, "output_tokens")
  local d = {row = row}
  local ind = type(usage.input_tokens_details) == "table" and usage.input_tokens_details or nil
  if ind then
    d.text_in = tok(ind.text_tokens, "input_tokens_details.text_tokens") or 0
    d.image_in = tok(ind.image_tokens, "input_tokens_details.image_tokens") or 0
  else
    d.text_in, d.image_in = tok(usage.input_tokens, "input_tokens") or 0, 0
    d.note = "input_tokens_details missing: every input token priced as text"
  end
  local outd = type(usage.output_tokens_details) == "table" and usage.output_tokens_details or nil
  if outd then
    d.image_out = tok(outd.image_tokens, "output_tokens_details.image_tokens") or 0
    d.text_out = tok(outd.text_tokens, "output_tokens_details.text_tokens") or 0
  else
    d.image_out, d.text_out = out_tokens or 0, 0
  end
  if bad then return nil, bad end
  local total = 0
  for _, k in ipairs{"text_in", "image_in", "image_out", "text_out"} do
    if d[k] > 0 then
      local rate = row[k]
      if not rate then return nil, ("no %s price for %s"):format(k, tostring(model)) end
      total = total + d[k] * rate
    end
  end
  return total / row.per, d
end

local function provider_billing(route)
  local b = route.billing
  if b and b.price ~= nil and (b.unit == "call" or b.unit == "image" or b.unit == "token") then return b end
  return nil
end

local function priced(amount, basis, unit, source, date, extra)
  local p = {amount = amount, basis = basis, unit = unit, source = source, date = date}
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

--- The price of a call as asked, before any answer: what a failed call costs when billed. The route's
-- price per call or per image (times `n`), else the per-image row of the requested model, size and
-- quality (times `n`; `auto` has no row).
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params the call's params
-- @treturn table `{amount =, basis =, unit =, source =, date =, reason =}` (amount in the route's
--   currency, USD for the price table; nil when unknown, with `reason`)
function M.call_price(kind, route, params)
  local b = provider_billing(route)
  local a = asked(kind, route, params)
  local src = b and (b.source or "route billing (" .. tostring(route.name) .. ")")
  if b and b.unit == "call" then return priced(b.price, "provider", "call", src, b.date) end
  if b and b.unit == "image" then return priced(b.price * a.n, "provider", "image", src, b.date) end
  if b then return priced(nil, "provider", b.unit, src, b.date, {reason = "a per-token price needs usage"}) end
  local p, row = prices.image_price(a.model, a.size, a.quality)
  if p then return priced(p * a.n, "per_image", "image", row.source, row.date) end
  return priced(nil, "per_image", "image", nil, nil, {reason = row})
end

-- The cost of an answered call (a result, or an error after a 2xx): r has usage, images, size, ...
local answered_inner

local function answered(kind, route, params, r)
  local p, note = answered_inner(kind, route, params, r)
  if note then p.note = p.note and (p.note .. "; " .. note) or note end
  return p
end

answered_inner = function(kind, route, params, r)
  local usage = type(r.usage) == "table" and r.usage or nil
  local images = type(r.images) == "table" and #r.images or 0
  local b = provider_billing(route)
  local note
  if usage and usage.cost ~= nil then
    local c = usage.cost
    if finite(c) and c >= 0 and c <= M.MAX_REPORTED then
      return priced(c, "reported", b and b.unit or "call", "provider usage.cost", nil, {estimated = false})
    end
    note = ("usage.cost ignored: %s is not an amount from 0 to %g"):format(tostring(c), M.MAX_REPORTED)
  end
  if b then
    local src = b.source or "route billing (" .. tostring(route.name) .. ")"
    if b.unit == "call" then return priced(b.price, "provider", "call", src, b.date), note end
    if b.unit == "image" then return priced(b.price * images, "provider", "image", src, b.date), note end
    local t, why = count(usage and usage.total_tokens, "total_tokens")
    if t then return priced(b.price * t, "provider", "token", src, b.date), note end
    return priced(nil, "provider", "token", src, b.date, {reason = why or "no usage.total_tokens to price"}), note
  end
  local a = asked(kind, route, params)
  if kind == "respond" or route.shape == "responses" then
    local model = r.tool_model or a.model
    local row = type(model) == "string" and prices.images[models.canonical(model)] or nil
    local extra = {excludes = usage and ("the tokens of the top-level model " .. tostring(r.model or route.model)
      .. " (no price row)") or nil}
    local list = type(r.images) == "table" and r.images or {}
    if #list == 0 and usage and (count(usage.total_tokens, "total_tokens") or 0) > 0 then
      extra.reason = "no image: only tokens of " .. tostring(r.model or route.model) .. ", which have no price row"
      return priced(nil, "usage", "token", nil, nil, extra), note
    end
    local total = 0
    for _, img in ipairs(list) do
      local p, why = prices.image_price(model, img.size or a.size, img.quality or a.quality)
      if not p then
        extra.reason = why
        return priced(nil, "per_image", "image", row and row.source, row and row.date, extra), note
      end
      total = total + p
    end
    return priced(total, "per_image", "image", row and row.source, row and row.date, extra), note
  end
  local model = r.model or a.model
  if usage then
    local amount, d = M.tokens(usage, model)
    if amount then
      return priced(amount, "usage", "token", d.row.source, d.row.date,
        {tokens = {text_in = d.text_in, image_in = d.image_in, image_out = d.image_out, text_out = d.text_out},
          note = d.note}), note
    end
    if type(d) == "string" and d:find("ignored", 1, true) then note = note and (note .. "; " .. d) or d end
  end
  local size, quality = r.size or a.size, r.quality or a.quality
  local p, row = prices.image_price(model, size, quality)
  if p then return priced(p * images, "per_image", "image", row.source, row.date), note end
  return priced(nil, usage and "usage" or "per_image", usage and "token" or "image", nil, nil,
    {reason = note or row}), note
end

--- The failure outcome of an attempt, for `failed_calls_billed`.
-- @tparam integer|nil status HTTP status
-- @tparam string|nil kind error kind (`api`, `http`, `timeout`, `connection`, `decode`, ...)
-- @tparam string|nil code the API's error code
-- @treturn string `"moderation"` (code `moderation_blocked`) | `"timeout"` (a timeout, 408, 504, or a
--   connection failure: no answer came back) | `"server_error"` (>= 500) | `"rejected"` (any other
--   4xx, 429 included) | `"answered"` (a 2xx the client could not use)
function M.outcome(status, kind, code)
  if code == "moderation_blocked" then return "moderation" end
  if kind == "timeout" or status == 408 or status == 504 then return "timeout" end
  if status and status >= 200 and status < 300 then return "answered" end
  if status and status >= 500 then return "server_error" end
  if status and status >= 400 then return "rejected" end
  if kind == "connection" then return "timeout" end
  return "server_error"
end

local function failed_part(kind, route, params, outcome, rule)
  local billed = rule[outcome] or "unknown"
  local p = M.call_price(kind, route, params)
  p.outcome, p.billed = outcome, billed
  if billed == "no" then
    p.max_amount, p.amount = 0, 0
  elseif billed == "unknown" then
    p.max_amount, p.amount = p.amount, nil
    p.reason = p.reason or ("failed_calls_billed." .. outcome .. " is unknown")
  else
    p.max_amount = p.amount
  end
  return p
end

--- The cost of a call: for a result, or for an error.
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params the call's params
-- @tparam table|nil res the result (nil on failure)
-- @tparam table|nil err the error (nil on success)
-- @treturn table cost:
--
-- * `amount` (number, in `currency`; nil when unknown), `currency` (`"USD"` unless the route bills
--   in another), `unit` (`"token"` | `"image"` | `"call"` | ...), `basis` (`"reported"` | `"provider"`
--   | `"usage"` | `"per_image"` | `"not_sent"`), `estimated` (true unless the provider reported the
--   amount), `source` and `date` (of the price table row, or the route's billing), `outcome`
--   (`"success"` | `"answered"` | `"rejected"` | `"moderation"` | `"timeout"` | `"server_error"` |
--   `"not_sent"`), `billed` (failures: `"yes"` | `"no"` | `"unknown"`), `reason` (when unknown).
-- * `known_amount` (the sum of the parts that are known), `max_amount` (the amount if every unknown
--   part was billed; nil when a price is unknown), `attempts` (one part per entry of `attempt_log`:
--   `{attempt =, phase =, outcome =, billed =, amount =, basis =}`), `tokens` (usage basis),
--   `excludes` (what is not priced), `note`.
function M.of(kind, route, params, res, err)
  local r = res or err or {}
  local b = route.billing
  -- the price table is in USD; the route's own price in its billing currency
  local currency = provider_billing(route) and b.currency or "USD"
  local log = type(r.attempt_log) == "table" and r.attempt_log or {}
  local final
  for i = #log, 1, -1 do
    if log[i].phase ~= "download" then final = i break end
  end
  if not final then
    return {amount = 0, known_amount = 0, max_amount = 0, currency = currency, basis = "not_sent",
      unit = b and b.unit, estimated = false, outcome = "not_sent", billed = "no", attempts = {}}
  end
  local rule = contract.failed_billing(route)
  local parts = {}
  for i, e in ipairs(log) do
    local p
    if e.phase == "download" then
      p = {amount = 0, max_amount = 0, basis = "download", outcome = "download", billed = "no"}
    elseif i < final then
      p = failed_part(kind, route, params, M.outcome(e.status, e.error_kind, nil), rule)
    elseif res then
      p = answered(kind, route, params, res)
      p.outcome, p.max_amount = "success", p.amount
    else
      -- the request attempt's own status: a later download's failure does not undo an answer
      -- a moderation block is never an answer, even when it came as a 2xx response (Responses)
      local outcome = err.code ~= "moderation_blocked" and (e.status and e.status >= 200 and e.status < 300)
        and "answered" or M.outcome(err.status or e.status, err.kind, err.code)
      if outcome == "answered" then
        if type(err.usage) == "table" or provider_billing(route) and route.billing.unit == "call" then
          p = answered(kind, route, params, err)
          p.max_amount = p.amount
          p.billed = "yes"
        else
          p = failed_part(kind, route, params, outcome, {answered = "unknown"})
          p.reason = "answered without usable images: whether it was billed is unknown"
        end
        p.outcome = "answered"
      else
        p = failed_part(kind, route, params, outcome, rule)
      end
    end
    p.attempt, p.phase = e.attempt, e.phase or "request"
    for _, k in ipairs{"amount", "max_amount"} do -- the last guard: never inf or nan
      if p[k] ~= nil and not finite(p[k]) then
        p.reason = p.reason or ("the %s computed was not a finite number (%s)"):format(k, tostring(p[k]))
        p[k] = nil
      end
    end
    parts[i] = p
  end
  local last = parts[final]
  local c = {currency = currency, unit = last.unit, basis = last.basis, source = last.source, date = last.date,
    outcome = last.outcome, billed = last.billed, tokens = last.tokens, excludes = last.excludes, note = last.note,
    estimated = last.estimated ~= false, attempts = parts}
  local amount, known, max = 0, 0, 0
  for _, p in ipairs(parts) do
    if p.amount then known = known + p.amount else amount = nil end
    if amount then amount = amount + p.amount end
    if max and p.max_amount then max = max + p.max_amount else max = nil end
    if p.amount == nil and not c.reason then c.reason = p.reason end
  end
  c.amount, c.known_amount, c.max_amount = amount, known, max
  return c
end

return M
