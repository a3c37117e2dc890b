--- imageroute.localserver.serve: one connection, one request, one response, close. A `/v1` request
-- is recorded (`GET /__requests`), takes its behaviour, has its body parsed (JSON or multipart),
-- waits `delay`, may be dropped, is rate limited, gets the behaviour's own reply or its endpoint's
-- (`imageroute.localserver.dispatch`), and is sent whole, truncated, reset, dripped or paced.
-- Other paths are the control endpoints and the stored files.
-- @module imageroute.localserver.serve

local socket = require("socket")
local J = require("imageroute.localserver.json")
local http = require("imageroute.localserver.http")
local loop = require("imageroute.localserver.loop")
local multipart = require("imageroute.localserver.multipart")
local faults = require("imageroute.localserver.faults")
local control = require("imageroute.localserver.control")
local dispatch = require("imageroute.localserver.dispatch")
local S = require("imageroute.localserver.state")

local format = string.format
local gettime = socket.gettime
local type, pairs, tostring, tonumber, pcall = type, pairs, tostring, tonumber, pcall
local NULL, decode, field, int = J.NULL, J.decode, J.field, J.int
local error_response, send_plain, send_events = http.error_response, http.send_plain, http.send_events
local read_head, read_body, new_conn = http.read_head, http.read_body, http.new_conn
local header_params, parse_multipart = multipart.header_params, multipart.parse_multipart
local take_behaviour, behaviour_response, rate_limit = faults.take_behaviour, faults.behaviour_response,
  faults.rate_limit
local handle_control, handle_files = control.control, control.files
local sleep = loop.sleep
local state, new_id, logf = S.state, S.new_id, S.logf

local function route_v1(ctx, B)
  local handler, params = dispatch.find(ctx.method, ctx.path)
  if not handler and not params then
    return error_response(404, format("Invalid URL (%s %s)", ctx.method, ctx.path), NULL, "unknown_url")
  end
  if not handler then
    return error_response(405, format("Method %s not allowed on %s", ctx.method, ctx.path), NULL,
      "method_not_allowed")
  end
  ctx.params = params
  local ok, resp = pcall(handler, ctx, B)
  if not ok then
    logf("localserver: handler error: %s", tostring(resp))
    return error_response(500, "Internal error in the local server: " .. tostring(resp), NULL, "server_error")
  end
  return resp
end

-- Decode the body into ctx.json / ctx.parts. Returns nil or an error response.
local function parse_body(ctx)
  local ct = (ctx.headers["content-type"] or ""):lower()
  local body = ctx.body
  if ct:find("multipart/form-data", 1, true) then
    local params = header_params(ctx.headers["content-type"])
    local boundary = params.boundary
    if not boundary or boundary == "" then
      return error_response(400, "multipart/form-data without a boundary.", NULL, "invalid_multipart")
    end
    local parts, err = parse_multipart(body, boundary)
    if not parts then return error_response(400, "Malformed multipart body: " .. err, NULL, "invalid_multipart") end
    ctx.parts = parts
  elseif #body > 0 then
    local v = decode(body)
    if v ~= nil then
      ctx.json = v
    elseif ct:find("json", 1, true) then
      if #body <= (1 << 20) then ctx.body_text = body end
      return error_response(400, "We could not parse the JSON body of your request.", NULL, "invalid_json")
    elseif #body <= (1 << 20) then
      ctx.body_text = body
    end
  end
  return nil
end

local function merged(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  if type(b) == "table" then for k, v in pairs(b) do out[k] = v end end
  return out
end

local function serve_v1(conn, ctx)
  local rec = {method = ctx.method, path = ctx.path, query = ctx.query, headers = ctx.headers,
    t_start = ctx.t_start}
  state.log[#state.log + 1] = rec
  state.requests = state.requests + 1
  state.in_flight = state.in_flight + 1
  if state.in_flight > state.max_in_flight then state.max_in_flight = state.in_flight end
  local finished = false
  local function finish(status)
    if finished then return end
    finished = true
    rec.t_end = gettime()
    rec.status = status
    state.in_flight = state.in_flight - 1
  end
  local ok, err = pcall(function()
    local B, berr = take_behaviour(ctx)
    local body, rerr, bad = read_body(conn, ctx)
    if not body and rerr == "closed" then bad, rerr = true, "incomplete request body" end
    if not body then
      if bad then
        local status = rerr == "request body too large" and 413 or 400
        send_plain(conn, ctx, error_response(status, rerr))
        finish(status)
        conn:linger()
      else
        finish(0)
        conn:close()
      end
      return
    end
    ctx.body = body
    rec.body_bytes = #body
    local resp = parse_body(ctx)
    rec.json, rec.parts, rec.body = ctx.json, ctx.parts, ctx.body_text
    if ctx.json ~= nil and #body <= (1 << 16) then rec.raw = body end -- the JSON text as sent ([] vs {})
    if not B then
      resp = error_response(400, berr, NULL, "invalid_test_header")
      B = {}
    end
    sleep(tonumber(field(B, "delay")))
    if field(B, "drop") == true then
      finish(0)
      conn:close()
      logf("%s %s -> dropped", ctx.method, ctx.path)
      return
    end
    local rl_headers, limited = rate_limit(B)
    resp = resp or limited or behaviour_response(B) or route_v1(ctx, B)
    local status = int(field(B, "status"))
    if status and status < 400 and resp.status < 400 then resp.status = status end
    local extra = merged(rl_headers, field(B, "headers"))
    local truncate = field(B, "truncate") == true
    local reset = field(B, "reset") == true -- like truncate, then a TCP reset instead of a close
    truncate = truncate or reset
    if resp.events then
      send_events(conn, ctx, resp, extra, truncate, tonumber(field(B, "pace")) or 0)
    else
      send_plain(conn, ctx, resp, extra, truncate, field(B, "drip"))
    end
    finish(resp.status)
    logf("%s %s -> %d%s", ctx.method, ctx.path, resp.status, truncate and " (truncated)" or "")
    if reset then
      pcall(conn.sock.setoption, conn.sock, "linger", {on = true, timeout = 0})
      conn:close()
    elseif truncate then conn:close() else conn:linger() end
  end)
  finish(0)
  if not ok then
    logf("localserver: error serving %s %s: %s", ctx.method, ctx.path, tostring(err))
    conn:close()
  end
end

local function serve_other(conn, ctx)
  local body, rerr, bad = read_body(conn, ctx)
  if not body and rerr == "closed" then bad, rerr = true, "incomplete request body" end
  if not body then
    if bad then send_plain(conn, ctx, error_response(400, rerr)) end
    conn:linger()
    return
  end
  ctx.body = body
  local resp
  if ctx.path:sub(1, 3) == "/__" then
    if #body > 0 then ctx.json = decode(body) end
    resp = handle_control(ctx)
  elseif ctx.path:sub(1, 7) == "/files/" then
    resp = handle_files(ctx)
  else
    resp = error_response(404, format("Invalid URL (%s %s)", ctx.method, ctx.path), NULL, "unknown_url")
  end
  send_plain(conn, ctx, resp)
  conn:linger()
end

-- One connection: one request, one response, close.
local function handle_connection(sock)
  local conn = new_conn(sock)
  local ok, err = pcall(function()
    local req = read_head(conn)
    if not req then conn:close(); return end
    local ctx = req
    ctx.request_id = new_id("req_")
    ctx.blobs = {}
    ctx.t_start = gettime()
    if req.bad then
      ctx.headers = {}
      send_plain(conn, ctx, error_response(400, "Bad request: " .. req.message, NULL, "bad_request"))
      conn:linger()
      return
    end
    if ctx.path:sub(1, 4) == "/v1/" then
      serve_v1(conn, ctx)
    else
      serve_other(conn, ctx)
    end
  end)
  if not ok then logf("localserver: connection error: %s", tostring(err)) end
  conn:close()
end

return {connection = handle_connection}
