--- imageroute.policy: what runs around every call (`imageroute.generate`, `edit`, `respond`).
--
--    local ok, err = policy.before(kind, route, params, opts)      -- before anything is sent
--    local res; if ok then res, err = <the call> end
--    return policy.after(kind, route, params, opts, res, err)      -- always, refusals included
--
-- or, the same in one line: `return policy.call(kind, fn, route, params, opts)`.
--
-- Every reader of one call (the rules, the budget, the shape that builds the body, the price, the log)
-- reads the same normalised request (`imageroute.request.of`), built when `before` starts the call.
--
-- `before` applies the route's acceptance gates (`imageroute.contract`) and the stop rules
-- (`imageroute.rules`); `after` gives the result or error its `cost` (`imageroute.cost`) and
-- `contract_reason`, and appends the call's lines to the call log (`imageroute.log`) when a log path
-- applies. Neither raises on an I/O problem: a log failure is reported as `log_error`.
-- @module imageroute.policy

local core = require("imageroute.core")
local contract = require("imageroute.contract")
local rules = require("imageroute.rules")
local request = require("imageroute.request")
local cost = require("imageroute.cost")
local log = require("imageroute.log")
local ratelimit = require("imageroute.ratelimit")
local budget = require("imageroute.budget")
local assistant = require("imageroute.assistant")

local type, pcall, tostring = type, pcall, tostring

local M = {}

--- Checks a call before anything is sent: the route's gates, then the stop rules.
-- Arguments of the wrong type are let through, so that the call raises its usual argument error.
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts per-call options (`allow_preview`, `skip_rules`: see `imageroute.rules`)
-- @treturn true when the call may be sent
-- @treturn string|nil the route's recorded reason that allows it (`accepted` / `risk_exception`)
-- @treturn[2] nil
-- @treturn[2] table error: `kind = "route"` (a gate: `rule`, `gate`, `fix`) or `kind = "validation"` (a
--   stop rule: `rule`, `field`, `fix`, `source`), with `route` and `attempts = 0`
function M.before(kind, route, params, opts)
  if not core.is_route(route) or type(params) ~= "table" then return true end
  request.forget(params) -- a call starts: its normalised request is built anew (params may have changed)
  local ok, reason = contract.allow(route)
  if not ok then return nil, reason end
  local pass, err = rules.check(kind, route, params, opts)
  if not pass then return nil, err end
  return true, reason
end

--- The reason a route records for being used (logged with every call), or nil.
-- @tparam Route route
-- @treturn string|nil `risk_exception` on an account_pool route, `accepted` on a provider route
function M.reason(route)
  if route.lane == "account_pool" then return route.risk_exception end
  if route.lane == "provider" then return route.accepted end
  return nil
end

--- Finishes a call: sets `cost`, `contract_reason`, writes the log. Never raises.
-- @tparam string kind
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts per-call options (`log`: a log path for this call, or false)
-- @tparam table|nil res the result
-- @tparam table|nil err the error
-- @treturn table|nil res, with `cost`, `contract_reason` and (when logged) `call_id`; `log_error` when
--   the log could not be written; each image's `save` also logs the saved file
-- @treturn table|nil err, with the same fields
function M.after(kind, route, params, opts, res, err)
  local target = res or err
  if type(target) ~= "table" or not core.is_route(route) then return res, err end
  if err then assistant.classify_error(err) end -- the verification 403's fix, a moderation block's details
  if res and type(res.images) == "table" and type(params) == "table" then -- a format other than the one asked
    local okv, view = pcall(rules.view, kind, route, params)
    local fields = okv and view and view.fields
    if type(fields) == "table" then
      res.format_mismatch = assistant.format_mismatch(res.images, fields.output_format)
    end
  end
  if type(target.rate_limit_headers) == "table" then
    target.rate_limit = ratelimit.parse(target.rate_limit_headers)
    target.rate_limit_headers = nil
  end
  if type(target.attempt_log) == "table" and #target.attempt_log > 0 then
    local any = false
    for _, e in ipairs(target.attempt_log) do any = any or (type(e) == "table" and e.may_have_billed == true) end
    target.may_have_billed = any -- some attempt reached the server: it may have made (and billed) an image
  end
  local ok, c = pcall(cost.of, kind, route, params, res, err)
  if ok then
    target.cost = c
  else -- never a missing cost: an unknown one, with the reason
    target.cost_error = tostring(c)
    local b = route.billing
    target.cost = {amount = nil, currency = type(b) == "table" and b.currency or "USD", basis = "unknown",
      estimated = true,
      reason = "the cost could not be computed: " .. target.cost_error}
  end
  local reason = M.reason(route)
  if reason then target.contract_reason = reason end
  local okp, path = pcall(log.path_for, route, opts)
  if okp and path then
    local call_id = log.new_call_id()
    local okw, written, werr = pcall(log.write, kind, route, params, opts, res, err, {call_id = call_id})
    if not okw then
      target.log_error = core.error("io", "writing the call log failed: " .. tostring(written), {path = path})
    elseif not written then
      target.log_error = werr
    else
      target.call_id = call_id
    end
    local extra = {call_id = call_id, request_id = target.request_id}
    if opts and opts.save_to then -- the files save_to wrote while the reply streamed in
      for _, img in ipairs(type(target.images) == "table" and target.images or {}) do
        if img.path then pcall(log.saved, path, route, img, img.path, img.length, extra) end
      end
    end
    pcall(log.watch_saves, path, route, target.images, extra)
  end
  return res, err
end

--- Runs one call with both hooks: `before`, then `fn(route, params, opts)` unless refused, then `after`.
-- @tparam string kind
-- @tparam function fn the call (returns result | nil, err)
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn table|nil result
-- @treturn[2] table error
function M.call(kind, fn, route, params, opts)
  local ok, err = M.before(kind, route, params, opts)
  if not ok then return M.after(kind, route, params, opts, nil, err) end
  -- budgets: the route's, and one handed down by a router (opts.budget); the worst case is
  -- reserved before sending, settled to the cost after
  local held = {}
  local names = {}
  if core.is_route(route) and route.budget ~= nil then names[#names + 1] = route.budget end
  if type(opts) == "table" and opts.budget ~= nil then names[#names + 1] = opts.budget end
  for _, name in ipairs(names) do
    local b = budget.is_budget(name) and name or budget.get(name)
    if not b then
      return M.after(kind, route, params, opts, nil, core.error("validation",
        ("the budget '%s' named by the route does not exist in this process"):format(tostring(name)),
        {field = "budget"}))
    end
    local r, berr = b:reserve(kind, route, params)
    if not r then
      for _, h in ipairs(held) do h.b:settle(h.r, nil, berr) end
      return M.after(kind, route, params, opts, nil, berr)
    end
    held[#held + 1] = {b = b, r = r}
  end
  local res, e = fn(route, params, opts)
  res, e = M.after(kind, route, params, opts, res, e)
  request.forget(params)
  local target = res or e
  for _, h in ipairs(held) do
    local charged, left = h.b:settle(h.r, res, e) -- left: as settled, no second store call
    if type(target) == "table" then
      target.budgets = target.budgets or {}
      if left == nil then left = h.b:status().left end -- not settled in the budget's store: read it
      target.budgets[#target.budgets + 1] = {name = h.b.name, reserved = h.r.amount, charged = charged,
        left = left}
    end
  end
  return res, e
end

return M
