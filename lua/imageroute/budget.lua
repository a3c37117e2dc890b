--- imageroute.budget: spending limits in USD, checked before a call is sent.
--
--    local daily = imageroute.budget{name = "images-daily", usd = 5, per = "day"}
--    local route = assert(imageroute.route{name = "official", model = "gpt-image-1", budget = daily})
--    local res, err = imageroute.generate(route, {prompt = "a fox", size = "1024x1024", quality = "high"})
--    -- err.kind == "budget" once the worst case of the next call no longer fits
--    print(daily:status().spent, daily:status().reserved, daily:status().left)
--
-- Before a call, its worst case is reserved: `n` times the priciest outcome for the model, size
-- and quality asked (`auto` or no size: the priciest size; `auto` or no quality: high), plus 100
-- image output tokens per partial image (OpenAI docs, Guides > Image generation, "each partial
-- image adds 100 image output tokens", https://platform.openai.com/docs/guides/image-generation,
-- read 2026-12-01); on a provider route its flat price per call, or per image times `n`. A call whose
-- reservation does not fit is refused with `kind = "budget"` and nothing is sent. After the call the
-- reservation is settled to the call's cost (`cost.amount`, or its `max_amount`/`known_amount` when
-- the amount is unknown), and released when the request provably never left (refused before
-- sending, or no attempt that may have billed). Input tokens of edits are settled after the call,
-- not reserved. A call whose price in USD is unknown (a credit or quote route, a provider alias
-- without a price) is refused unless the budget says `unknown_price = "allow"`.
--
-- Periods: `"run"` (as long as the budget object lives; in Redis, until `budget:reset()`), `"day"`
-- and `"month"` (UTC). The account (spent, reserved) lives in the store the budget's `state` field
-- names (`imageroute.state`): without one, in a memory store of the budget's own (this process);
-- with a Redis store (or its `redis://` URL) it is shared by every process naming the same budget
-- there, and reservations are atomic (a Redis-side script), so processes sharing a budget never
-- reserve more than it holds together. A reservation of a process that crashed stays reserved (its
-- call may have billed) until the period ends or `budget:reset()`. When the store cannot be reached
-- the call is refused (`kind = "state"`, see `imageroute.state`) unless its route says
-- `on_state_error = "local"`: then a memory store of the budget's own serves the call.
-- @module imageroute.budget

local prices = require("imageroute.prices")
local cost = require("imageroute.cost")
local models = require("imageroute.models")
local state = require("imageroute.state")

local M = {}

local Budget = {}
Budget.__index = Budget
Budget.__name = "imageroute.Budget"
function Budget.__tostring(b) return ("imageroute.Budget(%s: %.4f USD per %s)"):format(b.name, b.usd, b.per) end

local registry = {} -- name -> Budget (routes refer to budgets by name; the newest of a name wins)

--- True when v is a Budget.
function M.is_budget(v) return getmetatable(v) == Budget end

--- The budget of that name, if one is alive.
function M.get(name) return registry[name] end

--- Builds a budget.
-- @tparam table config `name` (string), `usd` (number > 0: the limit per period, USD), `per`
--   (`"run"` | `"day"` | `"month"`, default "run"), `unknown_price` (`"refuse"` default | `"allow"`),
--   `state` (a store of `imageroute.state` or its URL: where the account lives; default a memory
--   store of this budget's own)
-- @treturn Budget|nil
-- @treturn[2] table a validation error with `field`
function M.new(config)
  local core = require("imageroute.core")
  local function bad(field, msg) return nil, core.error("validation", msg, {field = field}) end
  if type(config) ~= "table" then error("budget: a table expected", 2) end
  if type(config.name) ~= "string" or config.name == "" then return bad("name", "budget field 'name' is required") end
  local usd = config.usd
  if type(usd) ~= "number" or usd ~= usd or usd <= 0 or usd > 1e9 then
    return bad("usd", "budget field 'usd' must be a positive number of US dollars")
  end
  local per = config.per or "run"
  if per ~= "run" and per ~= "day" and per ~= "month" then
    return bad("per", "budget field 'per' must be run, day or month")
  end
  local unknown = config.unknown_price or "refuse"
  if unknown ~= "refuse" and unknown ~= "allow" then
    return bad("unknown_price", "budget field 'unknown_price' must be refuse or allow")
  end
  for k in pairs(config) do
    if k ~= "name" and k ~= "usd" and k ~= "per" and k ~= "unknown_price" and k ~= "state" then
      return bad(k, "unknown budget field '" .. tostring(k) .. "'")
    end
  end
  local own = state.memory()
  local store = own
  if config.state ~= nil then
    local serr
    store, serr = state.resolve(config.state)
    if not store then
      serr.field = "state"
      return nil, serr
    end
  end
  local b = setmetatable({name = config.name, usd = usd, per = per, unknown_price = unknown,
    store = store, local_store = own, next_id = 0, open = {}}, Budget)
  registry[b.name] = b
  return b
end

local TTL = {day = 3 * 86400, month = 63 * 86400} -- how long a period's account outlives its start (s)

-- The current period's key and the store key of its account.
function Budget:period()
  local key = self.per == "day" and os.date("!%Y-%m-%d") or self.per == "month" and os.date("!%Y-%m") or "run"
  return key, "budget:" .. self.name .. ":" .. key
end

--- What is spent, reserved and left in the current period (USD), from the budget's store.
-- @treturn table `{name =, period =, usd =, spent =, reserved =, left =, store =}` (`store`: the
--   store's URL); when the store fails, `spent`, `reserved` and `left` are nil and `error` holds the
--   `state` error
function Budget:status()
  local key, acct = self:period()
  local a, err = self.store:account(acct)
  local out = {name = self.name, period = key, usd = self.usd, store = self.store.url}
  if not a then out.error = err; return out end
  out.spent, out.reserved, out.left = a.spent, a.reserved, self.usd - a.spent - a.reserved
  return out
end

--- Clears the current period (a "run" budget starts again; in Redis for every process sharing it).
-- @treturn boolean|nil true
-- @treturn[2] table the `state` error
function Budget:reset()
  local _, acct = self:period()
  self.local_store:reset(acct)
  return self.store:reset(acct)
end

local function priciest(model, size, quality)
  local row = prices.images[models.canonical(model or "")]
  if not row then return nil end
  local best
  for sz, by_q in pairs(row) do
    if type(by_q) == "table" and (size == nil or size == "auto" or sz == size) then
      for q, p in pairs(by_q) do
        if (quality == nil or quality == "auto" or q == quality) and (not best or p > best) then best = p end
      end
    end
  end
  return best
end

--- The worst case of a call, in USD: the amount reserved before it is sent.
-- @treturn number|nil USD (nil when unknown)
-- @treturn string how it was worked out, or why it is unknown
function M.worst_case(kind, route, params)
  local b = route.billing
  if type(b) == "table" and b.unit then
    if (b.currency or "USD") ~= "USD" then return nil, "the route bills in " .. tostring(b.currency) end
    local p = cost.call_price(kind, route, params)
    if p.amount then return p.amount, "the route's " .. tostring(b.unit) .. " price" end
    return nil, p.reason or ("a " .. tostring(b.unit) .. " price has no USD amount before the call")
  end
  local a = cost.asked(kind, route, params)
  local per_image = priciest(a.model, a.size, a.quality)
  if not per_image then return nil, "no USD price for model " .. tostring(a.model) end
  local amount = per_image * a.n
  local partials = type(params) == "table" and math.tointeger(params.partial_images or
    (type(params.tool) == "table" and params.tool.partial_images)) or 0
  local row = prices.token_row(a.model)
  if partials and partials > 0 and row then amount = amount + partials * 100 * row.image_out / row.per end
  return amount, ("%d x the priciest %s outcome"):format(a.n, tostring(a.model))
end

--- Reserves a call's worst case; refuses the call when it does not fit.
-- @treturn table|nil the reservation `{id =, amount =, period =}`
-- @treturn[2] table a `budget` error (nothing is sent)
function Budget:reserve(kind, route, params)
  local core = require("imageroute.core")
  local amount, how = M.worst_case(kind, route, params)
  local key, acct = self:period()
  if not amount then
    if self.unknown_price ~= "allow" then
      return nil, core.error("budget", ("budget '%s' refuses a call whose price in USD is unknown (%s); " ..
        "set unknown_price = \"allow\" to let such calls through"):format(self.name, how),
        {budget = self.name, code = "unknown_price",
          fix = "give the route a USD billing price, or unknown_price = \"allow\""})
    end
    amount = 0
  end
  local store, fallback = self.store, nil
  local fits, left = store:reserve(acct, self.usd, amount, TTL[self.per])
  if fits == nil then
    local serr = left
    if not (route ~= nil and route.on_state_error == "local") then
      serr.budget = self.name
      return nil, serr
    end
    fallback = tostring(serr.message) .. "; budget '" .. self.name ..
      "' served from this process's memory store (on_state_error = local)"
    io.stderr:write("imageroute: ", fallback, "\n")
    store = self.local_store
    fits, left = store:reserve(acct, self.usd, amount, TTL[self.per])
  end
  if not fits then
    return nil, core.error("budget", ("budget '%s' (%g USD per %s) has %.4f USD left, and this call may cost " ..
      "%.4f USD (%s)"):format(self.name, self.usd, self.per, math.max(left, 0), amount, how),
      {budget = self.name, code = "budget_exceeded", reserved = amount, left = math.max(left, 0)})
  end
  self.next_id = self.next_id + 1
  local r = {id = self.next_id, amount = amount, period = key, account = acct, store = store, fallback = fallback}
  self.open[r.id] = r
  return r
end

--- Settles a reservation to what the call cost; releases it when the request never left.
-- @tparam table r the reservation
-- @tparam table|nil res
-- @tparam table|nil err
-- @treturn number the USD amount charged to the budget
-- @treturn number|nil what is left in the period (USD) just after this settlement, as the budget's
--   store settled it (one store call for both); nil when the store could not settle it or the
--   call was served by the local store (`on_state_error = "local"`): then `status()` tells
function Budget:settle(r, res, err)
  if not r or not self.open[r.id] then return 0 end
  self.open[r.id] = nil
  local outcome = res or err or {}
  local never_left = err and (err.kind == "validation" or err.kind == "route" or err.kind == "budget"
    or err.kind == "state") and not (type(err.attempt_log) == "table" and #err.attempt_log > 0)
  local charged = 0
  if not (never_left or (err and outcome.may_have_billed == false)) then
    local c = type(outcome.cost) == "table" and outcome.cost or {}
    charged = c.amount or c.max_amount or c.known_amount
    if type(charged) ~= "number" or charged ~= charged or charged < 0 or charged > 1e6 then charged = r.amount end
    if c.currency and c.currency ~= "USD" then charged = r.amount end
  end
  -- a settle the store cannot take leaves the reservation counted (never less than was spent)
  local a = r.store:settle(r.account, r.amount, charged)
  if r.fallback and type(outcome) == "table" then outcome.state_fallback = outcome.state_fallback or r.fallback end
  local left = type(a) == "table" and r.store == self.store and self.usd - a.spent - a.reserved or nil
  return charged, left
end

return M
