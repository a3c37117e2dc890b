--- imageroute.background: Responses background mode for long generations (a high-quality image can
-- take minutes).
--
--    local t = imageroute.start_background(assistant, {input = "A detailed city map", quality = "high"})
--    -- ... later, or from another flow: t:cancel()
--    local res, err = t:wait()      -- the same result as a foreground respond
--
-- or simply `imageroute.respond(route, {input = ..., background = true})`, which waits for it.
--
-- The call is created with `background: true` (`POST /responses`: the API answers at once with the
-- response `queued` or `in_progress`), then polled with `GET /responses/{id}` every `poll_interval`
-- seconds (default 2, as the background guide's example does) on the same libcurl loop and
-- scheduler as every call (other flows progress meanwhile), until it is `completed`, `failed`,
-- `incomplete` or `cancelled`, within the call's deadline (`opts.deadline`, else the route's
-- `deadline`: the whole call, creation and polls). The final response is read exactly as a
-- foreground reply is (the same `imageroute.shapes.responses` code), so the result holds the same
-- fields, plus `background_mode = {response_id =, polls =, poll_log =, created_status =}`.
--
-- Cancelling (`transfer:cancel([reason])`): while the create request is in flight, its transfer is
-- cancelled; once the response exists, `POST /responses/{id}/cancel` is sent on the loop and the call
-- ends with a `cancelled` error (`code = "cancelled"`, `response_id`, `cancel_status`: the status
-- the API answered, `cancelled` when it stopped in time). When the deadline passes, a cancel is sent
-- too (nothing keeps generating behind the caller's back) and the call ends with a `timeout` error,
-- `code = "deadline_exceeded"`, `response_id`.
--
-- Sources (read 2026-12-01): OpenAI API reference, Responses > Create a response (`background`),
-- Retrieve a model response (`GET /responses/{response_id}`) and Cancel a response (`POST
-- /responses/{response_id}/cancel`: "Only responses created with the background parameter set to true
-- can be cancelled"), https://platform.openai.com/docs/api-reference/responses; the background mode
-- guide, https://platform.openai.com/docs/guides/background.
-- @module imageroute.background

local core = require("imageroute.core")

local type, tostring, setmetatable, pairs = type, tostring, setmetatable, pairs

local M = {}

--- Seconds between two polls when the call does not say (`opts.poll_interval`).
M.POLL_INTERVAL = 2

--- The statuses of a response that is still running.
M.PENDING = {queued = true, in_progress = true}

--- Whether a call's normalised request asks for background mode (a Responses body with the
-- top-level `background = true`; see `imageroute.assistant.place`).
-- @tparam table req the normalised request (`imageroute.request`)
-- @treturn boolean
function M.wanted(req)
  return type(req) == "table" and req.shape == "responses" and type(req.send) == "table"
    and req.send.background == true and req.problem == nil
end

local Transfer = {}
Transfer.__index = Transfer
Transfer.__name = "imageroute.BackgroundTransfer"

--- A background transfer (the handle `imageroute.start_background` returns): the Transfer methods
-- `done`, `result`, `wait`, `cancel`, `progress`, `take_partials`, and the fields `response_id`
-- (once created) and `status` (the response's last known status).
-- @treturn table
function M.transfer()
  return setmetatable({started = core.now(), polls = 0}, Transfer)
end

--- True when the call has ended.
function Transfer:done() return self.finished == true end

--- The outcome; raises when not done.
function Transfer:result()
  if not self.finished then error("the background call is not done yet", 2) end
  return self.res, self.err
end

--- Waits for the outcome (the wait function is set by `imageroute.start_background`).
function Transfer:wait()
  self.waiter(function() return self.finished end)
  if self.raised ~= nil then error(self.raised, 0) end -- a callback's error, raised where the call is waited for
  return self.res, self.err
end

--- Bytes received (0: not counted across polls), seconds since the start, and the number of
-- requests made (the create and the polls).
function Transfer:progress()
  return 0, core.now() - self.started, 1 + self.polls
end

--- Background calls stream no partial images: always empty.
function Transfer.take_partials() return {} end

--- Asks the call to stop: the create request is cancelled if still in flight, else the response is
-- cancelled on the API (`POST /responses/{id}/cancel`) and the call ends with a `cancelled` error.
-- @tparam[opt] string reason
-- @treturn boolean true when the call was still running
function Transfer:cancel(reason)
  if self.finished or self.cancel_reason then return false end
  self.cancel_reason = type(reason) == "string" and reason or "cancelled by the caller"
  if self.xfer then self.xfer:cancel(self.cancel_reason) end
  core.wake_at(core.now()) -- a waiting poll wakes now
  return true
end

--- Records the outcome (internal).
function Transfer:finish(res, err)
  self.finished, self.res, self.err = true, res, err
end

local function transient(err)
  if type(err) ~= "table" then return false end
  if err.kind == "timeout" and err.code ~= "deadline_exceeded" then return true end
  if err.kind == "connection" then return true end
  local st = err.status
  return st == 429 or (type(st) == "number" and st >= 500)
end

--- Runs a background call (internal: `imageroute.respond` with `background = true` calls it).
-- @tparam table t the Transfer (`M.transfer()`)
-- @tparam table env `route`, `opts`, `start()` -> Transfer | nil, err (the create request, on the
--   loop), `await(x)` -> res | nil, err (the create reply read by the shape: a pending response
--   is a result with `status = "queued"`), `api(route, req, opts)` (`imageroute.api`),
--   `wait_until(fn)` (the scheduler's wait), `final(created, poll)` -> res | nil, err (the final
--   response read by the shape from the poll's reply)
-- @treturn table|nil the result
-- @treturn[2] table the error
function M.run(t, env)
  local route, opts = env.route, env.opts or {}
  local deadline_s = tonumber(opts.deadline) or tonumber(route.deadline) or 1800
  local deadline = t.started + deadline_s
  local interval = tonumber(opts.poll_interval) or M.POLL_INTERVAL
  if t.cancel_reason then
    return nil, core.error("cancelled", "cancelled: " .. t.cancel_reason, {code = "cancelled", attempts = 0,
      route = route.name})
  end
  local x, err = env.start()
  if not x then return nil, err end
  t.xfer = x
  local created
  created, err = env.await(x)
  t.xfer = nil
  if not created then return nil, err end
  local id = created.id
  local info = {response_id = id, polls = 0, poll_log = {}, created_status = created.status}
  t.response_id, t.status = id, created.status
  local function annotate(e)
    e.response_id = e.response_id or id
    e.background_mode = info
    e.attempt_log = e.attempt_log or created.attempt_log
    e.attempts = e.attempts or created.attempts
    e.request_id = e.request_id or created.request_id
    e.latency = core.now() - t.started
    return e
  end
  if not M.PENDING[created.status] then
    created.background_mode = info
    return created
  end
  if type(id) ~= "string" then
    return nil, annotate(core.error("decode", "the background response has no id to poll", {code = "no_response_id"}))
  end
  local function cancel_remote(why)
    local r, e = env.api(route, {method = "POST", path = "/responses/" .. id .. "/cancel"},
      {max_retries = 1, timeout = 10}) -- best effort, after the deadline too: nothing keeps generating
    local status = r and type(r.body) == "table" and r.body.status or nil
    info.cancel = {status = status, http_status = (r or e or {}).status, request_id = (r or e or {}).request_id,
      error = e and tostring(e) or nil, why = why}
    return status, e
  end
  local failures = 0
  while true do
    if t.cancel_reason then
      local status = cancel_remote("caller")
      return nil, annotate(core.error("cancelled", ("cancelled: %s (response %s: %s)"):format(t.cancel_reason, id,
        tostring(status or "cancel not confirmed")), {code = "cancelled", cancel_status = status}))
    end
    local now = core.now()
    if now >= deadline then
      local status = cancel_remote("deadline")
      return nil, annotate(core.error("timeout", ("the call's deadline of %g s passed while the background response "
        .. "%s was %s (a cancel was sent: %s)"):format(deadline_s, id, tostring(t.status), tostring(status or
        "not confirmed")), {code = "deadline_exceeded", cancel_status = status}))
    end
    local wake = math.min(now + interval, deadline)
    core.wake_at(wake)
    env.wait_until(function() -- the wake-up asked again at each check: the loop keeps only the earliest
      if t.cancel_reason ~= nil or core.now() >= wake then return true end
      core.wake_at(wake)
      return false
    end)
    if not t.cancel_reason and core.now() < deadline then
      local r, e = env.api(route, {path = "/responses/" .. id}, {deadline = math.max(0.001, deadline - core.now())})
      info.polls, t.polls = info.polls + 1, t.polls + 1
      local o = r or e or {}
      local status = r and type(r.body) == "table" and r.body.status or nil
      info.poll_log[#info.poll_log + 1] = {http_status = o.status, request_id = o.request_id, status = status,
        latency = o.latency, error = e and tostring(e) or nil}
      if r then
        failures = 0
        if type(status) ~= "string" then
          return nil, annotate(core.error("decode", "GET /responses/" .. id .. " answered without a status",
            {code = "no_status", status = r.status}))
        end
        t.status = status
        if not M.PENDING[status] then
          local res, ferr = env.final(created, r)
          local target = res or ferr
          if type(target) == "table" then
            target.background_mode = info
            target.latency = core.now() - t.started
          end
          return res, ferr
        end
      elseif type(e) == "table" and e.code == "deadline_exceeded" then -- the deadline passed during the poll
        deadline = core.now() -- the next turn sends the cancel and ends the call
      elseif transient(e) and failures < 3 then
        failures = failures + 1
      else
        return nil, annotate(e)
      end
    end
  end
end

-- ------------------------------------------------------------------------------------------
-- The call: what `imageroute.respond{background = true}` and `imageroute.start_background` run.

local handles = setmetatable({}, {__mode = "k"}) -- opts -> the Transfer made by start_background

--- Runs one call in background mode: the create request on the loop (`imageroute.dispatch`), then
-- the polls through `imageroute.api`, each reply read by the request's shape. Called by the call
-- path of `imageroute` (inside its gates, stop rules, limits, budget and log).
-- @tparam string kind the call's kind (`"respond"`)
-- @tparam Route route
-- @tparam table params
-- @tparam table|nil opts
-- @tparam function|nil keepalive the call's lease renewal (`imageroute.limits.before`), called while
--   the create request and the polls run
-- @treturn table|nil the result
-- @treturn[2] table the error
function M.call(kind, route, params, opts, keepalive)
  local dispatch = require("imageroute.dispatch")
  local scheduler = require("imageroute.scheduler")
  local responses_shape = require("imageroute.shapes.responses")
  local t = type(opts) == "table" and handles[opts] or M.transfer()
  local within_call = require("imageroute.api").within_call
  local wait_until = scheduler.wait_until
  local env = {route = route, opts = opts,
    -- the call already holds its admission and in-flight slot: its polls renew the lease, never ask again
    wait_until = function(fn) return wait_until(function() if keepalive then keepalive() end return fn() end) end,
    api = function(r, req, o) return within_call(r, req, o, keepalive) end}
  env.final = function(created, polled) return responses_shape.reply_polled(env.req, created, polled) end
  env.start = function()
    local x, err, req = dispatch.start(kind, route, params, opts)
    env.req = req
    return x, err
  end
  env.await = function(x) return dispatch.finish(env.req, scheduler.await(x, nil, opts, keepalive)) end
  return M.run(t, env)
end

--- Starts `respond(route, params, opts)` in background mode without waiting (see
-- `imageroute.start_background`, which documents it).
-- @tparam function respond `imageroute.respond`
-- @tparam Route route
-- @tparam table params copied; `background = true` is set
-- @tparam[opt] table opts copied
-- @treturn table the Transfer
function M.start(respond, route, params, opts)
  local scheduler = require("imageroute.scheduler")
  local p, o = {}, {}
  for k, v in pairs(params) do p[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  p.background = true
  local t = M.transfer()
  t.waiter = scheduler.wait_until
  handles[o] = t
  scheduler.spawn(function() return respond(route, p, o) end, function(ok, res, err)
    if ok then t:finish(res, err) else t:finish(nil, nil); t.raised = res end
  end)
  return t
end

return M
