--- imageroute.dispatch: one call from its normalised request to its result, by request shape.
--
-- `start(kind, route, params, opts)` builds the normalised request (`imageroute.request`), has the
-- shape build the body and hand it to the C core, which sends it on the shared loop;
-- `finish(req, res, err)` has the shape read what the core handed back. Each shape is one module,
-- the one place that knows its body and its reply:
--
-- * `images` (`imageroute.shapes.images`): `/images/generations` (JSON), `/images/edits` (multipart);
-- * `responses` (`imageroute.shapes.responses`): `/responses`;
-- * `chat` (`imageroute.shapes.chat`): `/chat/completions`, the images as Markdown links.
-- @module imageroute.dispatch

local core = require("imageroute.core")
local request = require("imageroute.request")

local type, error = type, error

local SHAPES = {
  images = require("imageroute.shapes.images"),
  responses = require("imageroute.shapes.responses"),
  chat = require("imageroute.shapes.chat"),
}

local M = {}

--- Starts one call's transfer.
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn Transfer|nil the transfer on the loop
-- @treturn table|nil the error when nothing was started
-- @treturn table the normalised request (for `finish`)
function M.start(kind, route, params, opts)
  if not core.is_route(route) then error("bad argument #1 (imageroute.Route expected)", 3) end
  if type(params) ~= "table" then error("bad argument #2 (params: table expected, got " .. type(params) .. ")", 3) end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 (opts: table expected, got " .. type(opts) .. ")", 3)
  end
  local req = request.of(kind, route, params, opts)
  local shape = SHAPES[req.shape] or SHAPES.images
  local x, err = shape.start(req)
  return x, err, req
end

--- Reads a done transfer's outcome into the call's result or error.
-- @tparam table req the normalised request `start` returned
-- @tparam table|nil res the transfer's result
-- @tparam[opt] table err the transfer's error
-- @treturn table|nil result
-- @treturn[2] table error
function M.finish(req, res, err)
  local shape = SHAPES[req.shape] or SHAPES.images
  local cb = res and res.callback_error
  local r, e = shape.reply(req, res, err)
  if cb ~= nil and (r or e) then (r or e).callback_error = cb end
  return r, e
end

--- One call without the policy around it (no gates, stop rules, cost or log), blocking: what
-- `core.generate` / `core.edit` / `core.respond` did before the shapes moved to Lua. It steps the
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
