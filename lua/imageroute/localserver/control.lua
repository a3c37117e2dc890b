--- imageroute.localserver.control: the endpoints outside `/v1`, not recorded. Control:
-- `GET /__requests` (the recorded /v1 requests, with `raw`, the text of a JSON body up to 64 KiB;
-- `?data=0` leaves out the parts' bytes),
-- `POST /__reset`, `POST /__script` (`{"queue": [behaviour, ...]}`), `GET /__stats`, `GET /__health`;
-- and `GET|HEAD /files/<name>` (the stored images).
-- @module imageroute.localserver.control

local core = require("imageroute.core")
local J = require("imageroute.localserver.json")
local http = require("imageroute.localserver.http")
local S = require("imageroute.localserver.state")

local type, ipairs = type, ipairs
local NULL, blob, timestamp, encode, field, array = J.NULL, J.blob, J.timestamp, J.encode, J.field, J.array
local error_response, json_response = http.error_response, http.json_response
local state = S.state

local function record_json(rec, with_data, blobs)
  local out = {
    method = rec.method, path = rec.path, query = rec.query or NULL, headers = rec.headers,
    json = rec.json == nil and NULL or rec.json, body_bytes = rec.body_bytes or 0,
    t_start = timestamp(blobs, rec.t_start), t_end = rec.t_end and timestamp(blobs, rec.t_end) or NULL,
    status = rec.status or NULL,
    body = rec.body or NULL, parts = NULL, raw = rec.raw or NULL,
  }
  if rec.parts then
    local parts = {}
    for k, p in ipairs(rec.parts) do
      parts[k] = {
        name = p.name or NULL, filename = p.filename or NULL, content_type = p.content_type or NULL,
        size = #p.data, value = (not p.filename) and p.data or NULL,
        data_b64 = with_data and blob(blobs, core.b64encode(p.data)) or NULL,
      }
    end
    out.parts = array(parts)
  end
  return out
end

local function handle_control(ctx)
  local path, method = ctx.path, ctx.method
  if path == "/__requests" and method == "GET" then
    local with_data = not (ctx.query and ctx.query:find("data=0", 1, true))
    local list, blobs = {}, {}
    for k, rec in ipairs(state.log) do list[k] = record_json(rec, with_data, blobs) end
    return {status = 200, body = encode(array(list), blobs), content_type = "application/json"}
  elseif path == "/__reset" and method == "POST" then
    state.log, state.queue, state.requests = {}, {}, 0
    state.max_in_flight = state.in_flight
    state.rl_windows = {}
    return json_response(200, {ok = true})
  elseif path == "/__script" and method == "POST" then
    local body = ctx.json
    local queue = field(body, "queue")
    if type(body) ~= "table" or (queue ~= nil and type(queue) ~= "table") then
      return error_response(400, "expected {\"queue\": [behaviour, ...]}")
    end
    for _, b in ipairs(queue or {}) do
      if type(b) ~= "table" then return error_response(400, "each behaviour must be a JSON object") end
    end
    for _, b in ipairs(queue or {}) do state.queue[#state.queue + 1] = b end
    return json_response(200, {queued = #state.queue})
  elseif path == "/__stats" and method == "GET" then
    return json_response(200, {requests = state.requests, in_flight = state.in_flight,
      max_in_flight = state.max_in_flight, queued = #state.queue})
  elseif path == "/__health" and method == "GET" then
    return json_response(200, {ok = true, port = state.port})
  end
  return error_response(404, "Unknown control endpoint " .. method .. " " .. path, NULL, "unknown_url")
end

local function handle_files(ctx)
  local name = ctx.path:match("^/files/([%w%._%-]+)$")
  local bytes = name and state.files[name]
  if ctx.method ~= "GET" and ctx.method ~= "HEAD" then
    return error_response(405, "Method not allowed", NULL, "method_not_allowed")
  end
  if not bytes then return error_response(404, "No such file: " .. ctx.path, NULL, "file_not_found") end
  return {status = 200, body = bytes, content_type = "image/png"}
end

return {control = handle_control, files = handle_files}
