--- imageroute.live: a live readiness check, `route:check{live = true}` (and `imageroute check --live`).
--
-- The route guides this project follows advise confirming that the account can use a model before
-- building on its label; this makes that a command. For the route's `model` (and its `image_model`,
-- on a Responses route) it asks the route's API `GET /models/{model}` (OpenAI API reference, Models >
-- Retrieve model, https://platform.openai.com/docs/api-reference/models/retrieve, read 2026-12-01:
-- the model object when the key can see the model, 404 otherwise; free, no image is made) on the
-- route's own transport (`imageroute.api`: its key, headers, gates, deadline), and adds one row per
-- model to the report:
--
-- * `gate = "live"` (the route's `model`) or `"live_image_model"`, `model`, `http_status`,
--   `request_id`, and `status`: `pass` (the API returned the model: the key can see it), `fail` (404:
--   not available to this account; 401 / 403: the key or the organization was refused, with the
--   API's message, which for an organization that must be verified names the settings page), or
--   `unknown` (no model on the route, the route refused by its gates, an endpoint the gateway does
--   not have, a timeout or connection failure: nothing could be learned).
--
-- A model the API lists may still refuse image calls for an organization that is not verified
-- (the 403 of `imageroute.assistant.classify_error`): a `pass` says the label exists for the key,
-- not that every call will succeed.
-- @module imageroute.live

local M = {}

local type, tostring = type, tostring

local function one_line(s)
  s = tostring(s or ""):gsub("%s+", " ")
  if #s > 200 then s = s:sub(1, 200) .. "..." end
  return s
end

--- The live row of one model.
-- @tparam Route route
-- @tparam string gate the row's name (`"live"` | `"live_image_model"`)
-- @tparam string|nil model the label to ask about
-- @tparam[opt] table opts `timeout` (seconds, default 30)
-- @treturn table `{gate =, status =, reason =, model =, http_status =, request_id =}`
function M.row(route, gate, model, opts)
  local row = {gate = gate, model = model}
  if type(model) ~= "string" or model == "" then
    row.status, row.reason = "unknown", "the route names no model to ask about"
    return row
  end
  local imageroute = require("imageroute") -- loaded by now (contract is required by it)
  local timeout = type(opts) == "table" and opts.timeout or 30
  local path = "/models/" .. model:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end)
  local res, err = imageroute.api(route, {path = path}, {timeout = timeout, max_retries = 0})
  local r = res or err or {}
  row.http_status, row.request_id = r.status, r.request_id
  if res then
    local body = type(res.body) == "table" and res.body or {}
    if body.id == model then
      row.status = "pass"
      row.reason = ("GET /models/%s: the API returns the model for this key (owned_by %s)"):format(model,
        tostring(body.owned_by or "?"))
    else
      row.status = "unknown"
      row.reason = ("GET /models/%s answered %s without the model object"):format(model, tostring(res.status))
    end
    return row
  end
  local st = err.status
  if err.kind == "route" then
    row.status, row.reason = "unknown", "not asked: the route is refused by its gates (" .. one_line(err.message) .. ")"
  elseif st == 404 and (err.code == "model_not_found" or tostring(err.message):find("does not exist", 1, true)) then
    row.status = "fail"
    row.reason = ("GET /models/%s: 404, the model is not available to this account (%s); confirm access before "
      .. "building on the label"):format(model, one_line(err.message))
  elseif st == 401 or st == 403 then
    row.status = "fail"
    row.reason = ("GET /models/%s: %d, %s"):format(model, st, one_line(err.message))
  elseif st then
    row.status = "unknown"
    row.reason = ("GET /models/%s: HTTP %d (the endpoint may not exist on this host): %s"):format(model, st,
      one_line(err.message))
  else
    row.status = "unknown"
    row.reason = ("GET /models/%s: no answer (%s: %s)"):format(model, tostring(err.kind), one_line(err.message))
  end
  return row
end

--- The live rows of a route: its `model`, and its `image_model` when it has one.
-- @tparam Route route
-- @tparam[opt] table opts as for `row`
-- @treturn {table,...}
function M.rows(route, opts)
  local rows = {M.row(route, "live", route.model, opts)}
  if route.image_model ~= nil then rows[2] = M.row(route, "live_image_model", route.image_model, opts) end
  return rows
end

return M
