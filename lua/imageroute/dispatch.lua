--- imageroute.dispatch: one call from its normalised request to its result, by request shape.
--
-- `start(kind, route, params, opts)` builds the normalised request (`imageroute.request`), has the
-- shape build the body and hands it to the C core, which sends it on the shared loop;
-- `finish(req, res, err)` has the shape read what the core handed back. The shapes:
--
-- * `responses` (`imageroute.shapes.responses`): the body and the reply in Lua; the core's
--   `core.start_respond` only sends the JSON text and lifts the images out of the reply.
-- * `images` and `chat`: built and read by the C core (`core.start_generate` / `core.start_edit`)
--   from the params.
-- @module imageroute.dispatch

local core = require "imageroute.core"
local request = require "imageroute.request"
local responses = require "imageroute.shapes.responses"

local M = {}

local C_START = {generate = core.start_generate, edit = core.start_edit}

--- Starts one call's transfer.
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn Transfer|nil the transfer on the loop
-- @treturn table|nil the error when nothing was started
-- @treturn table the normalised request (for `finish`)
function M.start(kind, route, params, opts)
  local req = request.of(kind, route, params, opts)
  if req.shape == "responses" then
    local x, err = responses.start(req)
    return x, err, req
  end
  local x, err = C_START[kind](route, params, opts)
  return x, err, req
end

--- Reads a done transfer's outcome into the call's result or error.
-- @tparam table req the normalised request `start` returned
-- @tparam table|nil res the transfer's result
-- @tparam[opt] table err the transfer's error
-- @treturn table|nil result
-- @treturn[2] table error
function M.finish(req, res, err)
  if req.shape ~= "responses" then return res, err end
  local cb = res and res.callback_error
  local r, e = responses.reply(req, res, err)
  if cb ~= nil and (r or e) then (r or e).callback_error = cb end
  return r, e
end

--- One call without the policy around it (no gates, stop rules, cost or log), blocking: what
-- `core.generate` / `core.edit` / `core.respond` were before the shapes moved to Lua. It steps the
-- loop until the call is done (never yields to the scheduler; `imageroute.generate` does).
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn table|nil result
-- @treturn[2] table error
function M.call(kind, route, params, opts)
  local x, err, req = M.start(kind, route, params, opts)
  if not x then return nil, err end
  return M.finish(req, x:wait())
end

return M
