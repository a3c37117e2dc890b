--- imageroute.shapes.responses: the Responses API request shape, both ways (OpenAI API reference,
-- Responses > Create a response and Streaming events,
-- https://platform.openai.com/docs/api-reference/responses, read 2026-12-01; the image generation
-- tool guide, https://platform.openai.com/docs/guides/tools-image-generation).
--
--    POST {base_url}/responses
--    {"model": <text model>, "input": ..., "tools": [{"type": "image_generation", "model": <image model>, ...}]}
--
-- The contract of this module (the one place that knows the Responses body and reply):
--
-- * `build(req)` takes the normalised request (`imageroute.request`: `req.send` holds the fields,
--   the tool in `tools`, `input` as items) and returns the body as JSON text (`imageroute.json`), with
--   every image given as bytes, a path or an Image turned into a data URL (`input_image` items, the
--   tool's `input_image_mask`), or nil and a `validation` error (with `field`, `route`, `attempts = 0`)
--   when the params cannot make a request. No policy here: the stop rules (an image model on top, ...)
--   ran before, in `imageroute.rules`.
-- * `start(req)` builds and hands the body to the C core (`core.start_respond(route, {body = text},
--   opts)`), which only sends it: a Transfer on the shared loop, or nil, err.
-- * `reply(req, res, err)` reads what the core returns once the transfer is done, and returns the
--   call's result or error. The core lifts every base64 image out of the reply (streamed events and
--   partial images included) and hands over `res.reply`: `{text = <the JSON, each image replaced by
--   "@imageroute-image:N">, images = {[N + 1] = Image | why}, content_type =}` for a JSON reply, or
--   `{stream = true, response = <the final response object>, items = <the output items that were
--   done>, results = <their Images, annotated>, images =, partials_received =}` for a stream. The
--   common fields (`request_id`, `http_status`, `latency`, `attempts`, `attempt_log`, `route`,
--   `endpoint`, `bytes_received`, `rate_limit_headers`) are already on `res`. Errors of the transfer
--   itself (`err`) pass through unchanged.
--
-- The result (documented on `imageroute.respond`): `id` (= `response_id`), `status`, `output_text`,
-- `images` (each with `call_id`, `status`, `revised_prompt`, `size`, `quality`, `output_format`,
-- `background`, `index`), `image_calls`, `usage`, `error`, `incomplete_details`,
-- `previous_response_id`, `created_at`, `model`, `tool_model`, `shape = "responses"`, and with a
-- stream `stream = true`, `partial_images_received`.
-- @module imageroute.shapes.responses

local core = require("imageroute.core")
local json = require("imageroute.json")
local assistant = require("imageroute.assistant")

local type, ipairs, rawlen, tostring, tonumber, concat = type, ipairs, rawlen, tostring, tonumber, table.concat

local M = {}

M.endpoint = "/responses"

local common = require("imageroute.shapes.common")
local copy, is_image = common.copy, common.is_image

--- A validation error of a request that cannot be built, as the core gives one (nothing sent).
local function invalid(req, field, message, problem)
  local p = type(problem) == "table" and problem or {}
  return core.error("validation", message, {field = field, route = req.route.name, attempts = 0, fix = p.fix,
    rule = p.rule})
end

-- One content item of an input list (at place n) as a Responses content part.
local function content_part(req, item, n)
  local field = ("input[%d]"):format(n)
  if type(item) == "string" then return {type = "input_text", text = item} end
  if is_image(item) then
    local url, err = core.data_url(item, field)
    if not url then return nil, err end
    return {type = "input_image", image_url = url}
  end
  if type(item) ~= "table" then
    return nil, invalid(req, "input", field .. " must be a string, an Image or a content table")
  end
  local part = copy(item)
  if part.image ~= nil then
    local url, err = core.data_url(part.image, field)
    if not url then return nil, err end
    part.image_url, part.image = url, nil
    if part.type == nil then part.type = "input_image" end
  end
  return part
end

-- The content part types (an input list starting with one of these, a string or an Image is a list of
-- content items; anything else, a table with a `role` or another `type`, a list of input items).
local CONTENT_TYPES = {input_text = true, input_image = true, input_file = true}

--- Whether an input list is a list of input items (messages, `function_call_output`, echoed reply
-- items such as `reasoning` or `message`) rather than the content of one user message.
-- @tparam table input
-- @treturn boolean
function M.is_item_list(input)
  local first = input[1]
  if type(first) ~= "table" or is_image(first) then return false end
  if first.role ~= nil then return true end
  return type(first.type) == "string" and not CONTENT_TYPES[first.type]
end

-- params.input: a string as it is; a list of content items becomes one user message; a list of
-- input items (messages {role =, content =}, function_call_output items, reply items echoed back) is
-- sent item by item, each message's content items converted and every other item as given (arrays
-- keep their JSON array marks, see imageroute.json).
local function build_input(req, input)
  if type(input) ~= "table" then return input end
  local out = json.array({})
  if not M.is_item_list(input) then
    for i = 1, rawlen(input) do
      local part, err = content_part(req, input[i], i)
      if not part then return nil, err end
      out[i] = part
    end
    return {{role = "user", content = out}}
  end
  for i = 1, rawlen(input) do
    local msg = input[i]
    if type(msg) ~= "table" then return nil, invalid(req, "input", "input messages must be tables") end
    msg = copy(msg)
    if msg.type == "image_generation_call" and is_image(msg.image) then
      -- an output item echoed back (result.output): its Image goes back as the base64 result
      msg.result, msg.image = core.b64encode(msg.image.bytes), nil
    end
    if type(msg.content) == "table" and msg.role ~= nil then
      local content = json.array({})
      for j = 1, rawlen(msg.content) do
        local part, err = content_part(req, msg.content[j], j)
        if not part then return nil, err end
        content[j] = part
      end
      msg.content = content
    end
    out[i] = msg
  end
  return out
end

--- Builds the request body (JSON text) from the normalised request.
-- @tparam table req the normalised request (`imageroute.request.of("respond" | ..., route, params)`)
-- @treturn string|nil the body
-- @treturn[2] table a `validation` error (`field`, `route`, `attempts = 0`)
function M.build(req)
  if req.problem then return nil, invalid(req, req.problem.field, req.problem.message, req.problem) end
  local body = copy(req.send)
  local input, err = build_input(req, body.input)
  if err then return nil, err end
  body.input = input
  if req.tool and body.tools and req.tool.input_image_mask ~= nil then
    -- the mask, given as an image (bytes, a path, an Image, {data =|path =}), goes as {image_url = data URL};
    -- {image_url =} or {file_id =} tables are sent as given
    local m = req.tool.input_image_mask
    if not (type(m) == "table" and (m.image_url ~= nil or m.file_id ~= nil)) then
      local url, merr = core.data_url(m, "input_image_mask")
      if not url then return nil, merr end
      local tools = {}
      for i, t in ipairs(body.tools) do
        if t == req.tool then
          t = copy(t)
          t.input_image_mask = {image_url = url}
        end
        tools[i] = t
      end
      body.tools = tools
    end
  end
  local text, jerr = json.encode(body)
  if not text then return nil, invalid(req, "params", "params cannot be sent as JSON: " .. tostring(jerr)) end
  return text
end

--- Builds the body and starts the transfer on the core's loop.
-- @tparam table req the normalised request
-- @treturn Transfer|nil
-- @treturn[2] table the error (nothing sent)
function M.start(req)
  local body, err = M.build(req)
  if not body then return nil, err end
  local x, serr = core.start_respond(req.route, {body = body}, req.opts)
  return x, serr
end

-- ---------------------------------------------------------------------------------------------
-- the reply

local PLACEHOLDER = "^@imageroute%-image:(%d+)$"

-- A short printable excerpt of s (at most max bytes, whitespace runs as one space, controls as '?').
local function excerpt(s, max)
  local cut = s:sub(1, max):gsub("[\n\r\t ]+", " "):gsub("[%c\127]", "?")
  if #s > max then cut = cut .. "..." end
  return cut
end

-- The fields every error of a call carries, from the transfer's result.
local COMMON = {"route", "attempt_log", "attempts", "request_id", "latency", "endpoint", "rate_limit_headers"}

local function fail(res, kind, message, fields)
  local e = core.error(kind, message, fields)
  for _, k in ipairs(COMMON) do
    if e[k] == nil then e[k] = res[k] end
  end
  if e.status == nil then e.status = res.http_status end
  return nil, e
end

-- The output_text parts of every message item, concatenated.
local function output_text(output)
  local pieces = {}
  if type(output) ~= "table" then return "" end
  for i = 1, rawlen(output) do
    local item = output[i]
    if type(item) == "table" and type(item.content) == "table" then
      for j = 1, rawlen(item.content) do
        local c = item.content[j]
        if type(c) == "table" and c.type == "output_text" and type(c.text) == "string" then
          pieces[#pieces + 1] = c.text
        end
      end
    end
  end
  return concat(pieces)
end

local IMAGE_FIELDS = {"revised_prompt", "size", "quality", "background", "output_format", "status"}
local CARRY = {"response_id", "output_text", "image_calls", "usage", "incomplete_details", "output", "function_calls"}
local PENDING = {queued = true, in_progress = true}
local RESULT_FIELDS = {"id", "status", "usage", "error", "incomplete_details", "previous_response_id", "created_at"}

local function str(v)
  return (type(v) == "string" or type(v) == "number") and tostring(v) or nil
end

--- Reads the reply into the call's result, or an error.
-- @tparam table req the normalised request
-- @tparam table|nil res the transfer's result (with `reply`)
-- @tparam[opt] table err the transfer's error (passed through)
-- @treturn table|nil the result
-- @treturn[2] table the error (`decode`: the reply is not JSON, an image is not valid, `code =
--   "no_image"` for generate/edit without an image; `api`: the response failed or an
--   `image_generation_call` has no image, `code`), with `response_id`, `output_text`, `image_calls`,
--   `usage`, `incomplete_details` and the `images` that did arrive
function M.reply(req, res, err)
  if not res then return nil, err end
  local reply = res.reply
  res.reply = nil
  if type(reply) ~= "table" then return res end -- not a reply of this shape (kept as it is)
  local body, output, images, extracted
  local stream = reply.stream == true
  if stream then
    body = type(reply.response) == "table" and reply.response or {}
    images = type(reply.images) == "table" and reply.images or {}
    for _, img in ipairs(reply.results or {}) do
      img.index = #images + 1 -- its place in the list: a stream may have sent other image events before
      images[#images + 1] = img
    end
    output = type(reply.items) == "table" and reply.items or {}
  else
    local text = reply.text or ""
    body = reply.body -- already decoded (a background response's final poll, see reply_polled)
    if body == nil then body = json.decode(text) end
    if type(body) ~= "table" then
      return fail(res, "decode", ("the response is not valid JSON (HTTP %d, content-type %s): %s"):format(
        res.http_status or 0, reply.content_type or "none", excerpt(text, 200)))
    end
    images, extracted = {}, reply.images or {}
    output = type(body.output) == "table" and body.output or {}
  end
  local response_id = type(body.id) == "string" and body.id or nil
  -- a background response still running (its create reply): no output yet, nothing missing
  local pending = req.send ~= nil and req.send.background == true and PENDING[body.status] == true
  local calls, failed = {}, 0
  for i = 1, rawlen(output) do
    local item = output[i]
    if type(item) == "table" and item.type == "image_generation_call" then
      local call = {id = item.id, status = item.status}
      local k = type(item.result) == "string" and item.result:match(PLACEHOLDER)
      if k and stream then -- luacheck: ignore 542 (taken already, as it streamed)
      elseif k then
        local img = extracted[tonumber(k) + 1]
        local field = ("output[%d].result"):format(i)
        if type(img) == "string" then
          return fail(res, "decode", field .. " " .. img, {response_id = response_id, images = #images > 0 and images
            or nil})
        elseif not is_image(img) then
          local e = type(img) == "table" and img or core.error("decode", field .. ": internal placeholder out of range")
          for _, f in ipairs(COMMON) do if e[f] == nil then e[f] = res[f] end end
          if e.status == nil then e.status = res.http_status end
          e.response_id = response_id
          if #images > 0 then e.images = images end
          return nil, e
        end
        for _, f in ipairs(IMAGE_FIELDS) do img[f] = item[f] end
        img.call_id = item.id
        img.index = #images + 1
        images[#images + 1] = img
      elseif not pending then
        call.error = ("no image (status %s, result %s)"):format(str(item.status) or "missing", "null")
        failed = failed + 1
      end
      calls[#calls + 1] = call
    end
  end
  for _, f in ipairs(RESULT_FIELDS) do res[f] = body[f] end
  res.model = body.model
  if stream then
    res.stream = true
    res.partial_images_received = reply.partials_received
  end
  res.tool_model = type(req.tool) == "table" and req.tool.model or nil -- the image tool's, wherever it sits
  res.output_text = output_text(body.output)
  res.images = images
  res.image_calls = calls
  res.shape = "responses"
  res.response_id = body.id
  -- every output item in order (image calls with their Image), the function calls, moderation
  assistant.decorate(res, {output = output, moderation = body.moderation})
  local function carried(e)
    for _, f in ipairs(CARRY) do e[f] = res[f] end
    if #images > 0 then e.images = images end
    return e
  end
  if pending then return res end
  local status = str(res.status)
  local block = assistant.moderation_block(body)
  if block then -- never a success, never retried (a 2xx is not retried; see imageroute.router for fallback)
    return fail(res, "api", ("the response was blocked by moderation (%s, status %s)"):format(block.reason,
      tostring(status)), carried({code = "moderation_blocked", moderation = block, status = res.http_status,
      retryable = false}))
  end
  if status == "failed" or failed > 0 then
    local msg, code = "an image_generation_call returned no image", "image_generation_failed"
    if type(res.error) == "table" then
      msg = str(res.error.message) or msg
      code = str(res.error.code) or code
    end
    return fail(res, "api", ("the response %s: %s"):format(status == "failed" and "failed" or "lost an image", msg),
      carried({code = code, status = res.http_status}))
  end
  if #images == 0 and req.need_image then
    local text = res.output_text
    return fail(res, "decode", ('the response holds no image, only text: "%s"'):format(excerpt(text, 200)),
      carried({code = "no_image", status = res.http_status}))
  end
  return res
end

--- Reads the final poll of a background response (`GET /responses/{id}`, decoded by `imageroute.api`)
-- exactly as a foreground reply: every `image_generation_call`'s base64 `result` is lifted into an
-- Image here (as the core does for a reply: at most the call's `max_images`, each sniffed), then
-- `reply` reads it. The common fields (`request_id`, `http_status`, `attempts`, `attempt_log`, ...)
-- are the create request's: the call was made by it, the polls only read it.
-- @tparam table req the normalised request
-- @tparam table created the create reply's result (`reply` of the `queued` response)
-- @tparam table polled the `imageroute.api` result of the final poll (`body` decoded)
-- @treturn table|nil the result
-- @treturn[2] table the error, as for `reply`
function M.reply_polled(req, created, polled)
  local res = {}
  for _, f in ipairs{"route", "attempt_log", "attempts", "request_id", "latency", "endpoint", "rate_limit_headers",
    "http_status", "bytes_received", "contract_reason"} do res[f] = created[f] end
  local body = polled.body
  if type(body) ~= "table" then
    return fail(res, "decode", "the final poll's reply is not a JSON object: " .. excerpt(polled.text or "", 200))
  end
  local max = type(req.opts) == "table" and tonumber(req.opts.max_images) or tonumber(req.route.max_images) or 16
  local images, output = {}, type(body.output) == "table" and body.output or {}
  for i = 1, rawlen(output) do
    local item = output[i]
    if type(item) == "table" and item.type == "image_generation_call" and type(item.result) == "string" then
      if #images >= max then
        return fail(res, "decode", ("the response holds more than %d images (max_images)"):format(max),
          {code = "too_many_images", response_id = body.id})
      end
      local bytes, berr = core.b64decode(item.result)
      local img
      if not bytes then
        img = "is not valid base64: " .. tostring(berr)
      else
        img = core.image(bytes)
        if img.format == nil then
          img = ("decoded to %d bytes that are not a PNG, JPEG, WebP or GIF image"):format(#bytes)
        end
      end
      images[#images + 1] = img
      item.result = "@imageroute-image:" .. (#images - 1)
    end
  end
  res.reply = {body = body, images = images}
  return M.reply(req, res)
end

return M
