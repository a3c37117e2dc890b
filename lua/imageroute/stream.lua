--- imageroute.stream: one call as an iterator of its partial images and its outcome
-- (`imageroute.stream` is this module's `stream`; the Stream type is documented in ldoc/types.lua).
-- @module imageroute.stream

local core = require("imageroute.core")
local policy = require("imageroute.policy")
local dispatch = require("imageroute.dispatch")
local hostloop = require("imageroute.hostloop")
local scheduler = require("imageroute.scheduler")
local save = require("imageroute.save")

local wait_until, check_save_to, save_rest = scheduler.wait_until, save.check_save_to, save.save_rest

local M = {}

local STREAM_KINDS = {generate = true, edit = true, respond = true}

local Stream = {}
Stream.__index = Stream

-- Stream:close() (documented with the Stream type, ldoc/types.lua). Ends the stream's call now:
-- a transfer still running is stopped (its connection closed, nothing more is received) and the
-- call is logged as a `connection` error with `code = "stream_closed"`
-- (its cost follows the route's `failed_calls_billed.timeout`: the request was sent, so it may be
-- billed). Called by the generic `for` when the loop is left early (`break`, `return`, an error)
-- on Lua 5.4, through the iterator's to-be-closed value; on Lua 5.3 call it yourself (or let the
-- garbage collector stop the transfer). Idempotent; a stream that already ended is left as is.
function Stream:close()
  if self.finished then return end
  self.finished = true
  local x = self.xfer
  self.xfer, self.queue = nil, {}
  if not x then return end
  local _, elapsed, attempt = x:progress()
  local bytes = x:progress()
  getmetatable(x).__close(x) -- removes the transfer from the loop and frees its connection
  local msg = "the stream was closed before the call finished (the request was sent and may be billed)"
  local err = core.error("connection", msg, {code = "stream_closed", route = self.route.name,
    attempts = attempt, latency = elapsed, bytes_received = bytes,
    attempt_log = {{attempt = attempt, phase = "request", error_kind = "connection", error = msg, bytes = bytes,
      latency = elapsed}}})
  policy.after(self.kind, self.route, self.params, self.opts, nil, err)
end
Stream.__close = Stream.close

-- The iterator function: the next (kind, value) of stream s.
local function stream_next(s)
  if s.queue[1] then return "partial", table.remove(s.queue, 1) end
  if s.finished then return nil end
  local x = s.xfer
  if x then
    wait_until(function()
      for _, img in ipairs(x:take_partials()) do s.queue[#s.queue + 1] = img end
      return s.queue[1] ~= nil or x:done()
    end)
    if s.queue[1] then return "partial", table.remove(s.queue, 1) end
    s.xfer = nil
    local res, err = dispatch.finish(s.req, x:result())
    if res and s.opts.save_to then res, err = save_rest(res, s.opts) end
    s.res, s.err = policy.after(s.kind, s.route, s.params, s.opts, res, err)
  end
  s.finished = true
  if s.res then return "result", s.res end
  return "error", s.err
end

--- Streams one call as an iterator: partial images as they arrive, then the outcome.
--
--    for kind, value in imageroute.stream(route, {prompt = "a fox", partial_images = 2}) do
--      if kind == "partial" then value:save(("out/fox-partial-%d.png"):format(value.partial_image_index))
--      elseif kind == "result" then value.images[1]:save("out/fox.png")
--      else io.stderr:write(tostring(value), "\n") end -- kind == "error"
--    end
--
-- The call is `generate`, `edit` or `respond` (`opts.call`; default `edit` when `params.image` is
-- set, `respond` when `params.input` is set, else `generate`), made on a copy of `params` with
-- `stream = true` (`partial_images` as the caller set it: without it the Images API sends no
-- partials, and the Responses tool refuses to stream, see `imageroute.rules`). Every value comes
-- from the ordinary call path: the route's gates and stop rules before sending (a refusal is the
-- one `"error"`, nothing sent), `cost`, `contract_reason` and the call log after.
--
-- Kinds, in order: zero or more `"partial"` (value: the partial Image, with
-- `partial_image_index`, 0-based, and `event`, the event's other fields), then exactly one
-- `"result"` (the result, as `generate`/`edit`/`respond` return it) or `"error"` (the error); then
-- the loop ends. A chat route streams no partial images: only the `"result"` or `"error"` comes.
--
-- Waiting: inside a flow (a coroutine run by `imageroute.spawn`, `run` or `batch`) the iterator
-- yields to the scheduler while no event is there, so other flows progress; in a host loop's
-- coroutine with an adapter attached it waits through the host; elsewhere it steps the loop
-- (0.5 s at most per step, other flows progressing meanwhile).
--
-- Leaving the loop early: the fourth value returned is the stream object, to-be-closed in Lua
-- 5.4's generic `for`, so `break` (or an error in the body) calls `stream:close()`: the transfer is
-- stopped at once and the call is logged as closed (see `Stream:close`). Without a `for` (calling the
-- iterator by hand) or on Lua 5.3, call `close()` yourself.
-- @tparam Route route
-- @tparam table params API fields, as for `generate` / `edit` / `respond` (copied; `stream = true` is set)
-- @tparam[opt] table opts per-call options as for `generate` (`on_partial` is not used: partials
--   come from the iterator), and `call` (`"generate"` | `"edit"` | `"respond"`)
-- @treturn function the iterator, returning `kind, value`
-- @treturn table the stream object: `close()`, and after the end `res` or `err`
-- @treturn nil the generic `for`'s control value
-- @treturn table the stream object again, the to-be-closed value
-- @raise when route is not a Route, params is not a table, or `opts.call` is unknown
function M.stream(route, params, opts)
  assert(core.is_route(route), "stream: a Route expected")
  assert(type(params) == "table", "stream: params must be a table")
  opts = opts or {}
  local kind = opts.call or (params.image ~= nil and "edit") or (params.input ~= nil and "respond") or "generate"
  assert(STREAM_KINDS[kind], "stream: opts.call must be \"generate\", \"edit\" or \"respond\"")
  local p = {}
  for k, v in pairs(params) do p[k] = v end
  p.stream = true
  local o = {}
  for k, v in pairs(opts) do if k ~= "call" and k ~= "on_partial" then o[k] = v end end
  local s = setmetatable({kind = kind, route = route, params = p, opts = o, queue = {}}, Stream)
  local ok, err = policy.before(kind, route, p, o)
  if ok then ok, err = check_save_to(p, o) end
  if ok then
    local x, serr, req = dispatch.start(kind, route, p, o)
    s.req = req
    if x then
      s.xfer = x
      hostloop.flush() -- a host loop learns the new transfer's timer now
    else
      ok, err = nil, serr
    end
  end
  if not ok then
    s.res, s.err = policy.after(kind, route, p, o, nil, err)
    s.finished = true
    s.pending_error = true
  end
  local function iter()
    if s.pending_error then
      s.pending_error = nil
      return "error", s.err
    end
    return stream_next(s)
  end
  return iter, s, nil, s
end

return M
