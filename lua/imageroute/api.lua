--- imageroute.api: a generic API request on a route's transport (`imageroute.api` is this module's
-- `request`).
-- @module imageroute.api

local core = require("imageroute.core")
local json = require("imageroute.json")
local contract = require("imageroute.contract")
local limits = require("imageroute.limits")
local scheduler = require("imageroute.scheduler")

local type, pairs, pcall, tostring, error = type, pairs, pcall, tostring, error
local wait_until, await = scheduler.wait_until, scheduler.await

local M = {}

--- A generic API request on a route's transport: any endpoint under the route's `base_url`
-- (`GET /models/{model}`, `GET /responses/{id}`, `POST /responses/{id}/cancel`, the organization
-- usage and costs endpoints, ...), on the same libcurl loop and scheduler as every call (inside
-- `run`/`spawn`/`batch` coroutines it yields; with a host loop it waits through the host).
--
-- It uses the route's key (`api_key` / `api_key_env`, e.g. `api_key_env = "OPENAI_ADMIN_KEY"` for
-- the organization endpoints), `headers`, timeouts, retries (`max_retries`, `retry_policy`),
-- `deadline`, `max_response_bytes`, the redaction of the key, and the route's acceptance gates
-- (`imageroute.contract`: a route refused for calls is refused here, nothing sent). No stop rule,
-- price, budget or call log applies (nothing here makes an image); the route's client-side rate
-- limits (`limits`) count it as one request.
--
--    local m = assert(imageroute.api(route, {path = "/models/gpt-image-2"}))
--    print(m.status, m.body.id, m.request_id)
--    local u = assert(imageroute.api(admin, {path = "/organization/usage/images",
--      query = {start_time = 1764547200, group_by = {"model", "size"}, limit = 7}}))
--
-- @tparam Route route
-- @tparam table req `method` (`"GET"` (default) | `"POST"` | `"DELETE"`), `path` (string, appended to
--   `base_url`: starts with `/`, printable ASCII, no space, `?`, `#`, `\`, `.` or `..` segment),
--   `query` (table `name = value`, a value a string, number or boolean, or a list of them for a
--   repeated name; names sent sorted, both URL-encoded by libcurl), `body` (the JSON text, a string,
--   sent with `Content-Type: application/json`; or a table, encoded here with `imageroute.json`; not
--   with GET)
-- @tparam[opt] table opts `timeout`, `connect_timeout` (seconds), `max_retries`, `deadline` (seconds)
-- @treturn table result: `status` (HTTP status, integer), `headers` (table: lowercased name -> value,
--   a repeated header's values joined with `", "`), `text` (the body as it came), `body` (the body
--   decoded as JSON by `imageroute.json`, or nil when it is empty or not JSON), `request_id`
--   (`x-request-id`), `latency` (seconds, all attempts), `attempts`, `attempt_log`, `endpoint` (the
--   path), `route` (name), `bytes_received`, `shape = "api"`. No image is read from the reply.
-- @treturn[2] nil
-- @treturn[2] table error, with the kinds and codes of every call (`api` for an OpenAI error body,
--   with `type`, `code`, `param`; `http` for another non-2xx; `timeout`, `connection`,
--   `validation` (`field` = `"method"`, `"path"`, `"query"`, `"body"`, or a key field), `route`
--   (a gate), `cancelled`), `status`, `request_id`, `text` (the error body as it came, at most
--   64 KiB), `attempts`, `attempt_log`; every string redacted of the key.
-- @raise when route is not a Route or req is not a table
function M.request(route, req, opts)
  return M.send(route, req, opts, nil)
end

--- The same request made on behalf of a call that is already admitted (the polls and the cancel of
-- a background-mode call, `imageroute.background`): the route's client-side limits are not asked
-- again (the call holds its slot: asking would wait for it forever), and the call's lease is renewed
-- while the request runs.
-- @tparam Route route
-- @tparam table req as for `request`
-- @tparam[opt] table opts as for `request`
-- @tparam function|nil keepalive the enclosing call's lease renewal (`imageroute.limits.before`)
-- @return as `request`
function M.within_call(route, req, opts, keepalive)
  return M.send(route, req, opts, keepalive or true)
end

-- The request; `within` is nil for a request of its own, or (true | the enclosing call's keepalive)
-- for one made inside an admitted call.
function M.send(route, req, opts, within)
  assert(core.is_route(route), "api: a Route expected")
  assert(type(req) == "table", "api: req must be a table")
  if type(req.body) == "table" then
    local r = {}
    for k, v in pairs(req) do r[k] = v end
    local text, why = json.encode(req.body) -- returns nil, why (never raises)
    if not text then
      return nil, core.error("validation", "req.body cannot be sent as JSON: " .. tostring(why), {field = "body"})
    end
    r.body = text
    req = r
  end
  local ok, gate_err = contract.allow(route) -- the route's gates (no stop rule: nothing here makes an image)
  if not ok then return nil, gate_err end
  local waited, release, keepalive = 0, function() end, type(within) == "function" and within or nil
  if not within then
    local lerr
    waited, release, keepalive, lerr = limits.before(route, "api", {}, wait_until,
      tonumber(opts and opts.deadline) or tonumber(route.deadline))
    if lerr then return nil, lerr end -- the state store failed: refused, nothing sent
  end
  local x, err = core.start_api(route, req, opts)
  local okw, res, e = pcall(await, x, err, opts, keepalive)
  if not okw then release(); error(res, 0) end
  release(res, e)
  if waited > 0 and type(res or e) == "table" then (res or e).limit_wait = waited end
  if res and res.text ~= "" then
    local ct = res.headers["content-type"]
    if ct == nil or ct:find("json", 1, true) then
      res.body = json.decode(res.text) -- nil when the text is not JSON
    end
  end
  return res, e
end

return M
