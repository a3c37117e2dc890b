--- imageroute.localserver.responses: the Responses API mock, `POST /v1/responses` with the
-- `image_generation` tool. The tool runs when it is forced (`tool_choice` "required" or the tool
-- object) or when the text asks for a picture (IMAGE_WORDS); `previous_response_id` continues a
-- stored turn (text and last image, in `state.responses`); `stream` answers with the Responses
-- events (created, in_progress, output items, partial images, text delta, completed/failed/incomplete).
--
-- Behaviour switches read here (see `imageroute.localserver.serve`): `response_status`
-- ("failed" | "incomplete"), `png_bytes` (through `mock.make_image`).
-- @module imageroute.localserver.responses

local core = require "imageroute.core"
local J = require "imageroute.localserver.json"
local http = require "imageroute.localserver.http"
local fixtures = require "imageroute.localserver.png"
local mock = require "imageroute.localserver.mock"
local S = require "imageroute.localserver.state"

local concat, find, format, sub = table.concat, string.find, string.format, string.sub
local os_time = os.time
local type, pairs, ipairs = type, pairs, ipairs
local NULL, EMPTY_ARRAY, blob, field, int, str, array = J.NULL, J.EMPTY_ARRAY, J.blob, J.field, J.int, J.str,
  J.array
local error_response, json_response = http.error_response, http.json_response
local fingerprint = fixtures.fingerprint
local text_tokens, norm_size, norm_quality, norm_background = mock.text_tokens, mock.norm_size, mock.norm_quality,
  mock.norm_background
local image_output_tokens, url_bytes, make_image, boolish = mock.image_output_tokens, mock.url_bytes,
  mock.make_image, mock.boolish
local state, new_id = S.state, S.new_id

-- Collect text and input images of a Responses `input`. Returns text, images (bytes list) or nil, err.
local function responses_input(input)
  local texts, images = {}, {}
  local function add_content(c)
    if type(c) == "string" then texts[#texts + 1] = c; return true end
    if type(c) ~= "table" then return true end
    local ctype = field(c, "type")
    if ctype == "input_text" or ctype == "text" or ctype == "output_text" then
      texts[#texts + 1] = str(field(c, "text")) or ""
    elseif ctype == "input_image" then
      local url = field(c, "image_url")
      if type(url) == "table" then url = field(url, "url") end
      if url then
        local bytes, err = url_bytes(url)
        if not bytes then return nil, err end
        images[#images + 1] = bytes
      elseif field(c, "file_id") then
        images[#images + 1] = str(field(c, "file_id")) or ""
      end
    end
    return true
  end
  if type(input) == "string" then
    texts[1] = input
  elseif type(input) == "table" then
    for _, item in ipairs(input) do
      if type(item) == "string" then
        texts[#texts + 1] = item
      elseif type(item) == "table" then
        local content = field(item, "content")
        local ok, err
        if content ~= nil then
          if type(content) == "table" and content[1] ~= nil then
            for _, c in ipairs(content) do
              ok, err = add_content(c)
              if not ok then return nil, err end
            end
          else
            ok, err = add_content(content)
            if not ok then return nil, err end
          end
        else
          ok, err = add_content(item)
          if not ok then return nil, err end
        end
      end
    end
  elseif input ~= nil then
    return nil, "'input' must be a string or a list of items"
  end
  return concat(texts, "\n"), images
end

local IMAGE_WORDS = {"image", "draw", "picture", "render"}

local function wants_image(text)
  local lower = text:lower()
  for _, w in ipairs(IMAGE_WORDS) do
    if find(lower, w, 1, true) then return true end
  end
  return false
end

local function clip(s, n)
  if #s <= n then return s end
  return sub(s, 1, n) .. "..."
end

local function handle_responses(ctx, B)
  local req = ctx.json
  if type(req) ~= "table" then
    return error_response(400, "The request body must be a JSON object.", NULL, "invalid_json")
  end
  local model = str(field(req, "model"))
  if not model then
    return error_response(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
  end
  if model:match("^gpt%-image") or model:match("^dall%-e") then
    return error_response(400, format("The model '%s' is not supported with the Responses API; "
      .. "put the image model inside the image_generation tool.", model), "model", "model_not_supported")
  end
  local prev_id = str(field(req, "previous_response_id"))
  local prev
  if prev_id then
    prev = state.responses[prev_id]
    if not prev then
      return error_response(400, format("Previous response with id '%s' not found.", prev_id),
        "previous_response_id", "previous_response_not_found")
    end
  end
  local text, images = responses_input(field(req, "input"))
  if not text then return error_response(400, images, "input", "invalid_value") end

  local tool
  local tools = field(req, "tools")
  if type(tools) == "table" then
    for _, t in ipairs(tools) do
      if field(t, "type") == "image_generation" then tool = t; break end
    end
  end
  local choice = field(req, "tool_choice")
  local forced = choice == "required" or (type(choice) == "table" and field(choice, "type") == "image_generation")
  local use_tool = tool ~= nil and choice ~= "none" and (forced or wants_image(text))

  local resp_id = new_id("resp_")
  local created = os_time()
  local status = str(field(B, "response_status")) or "completed"
  local output = {}
  local image_item, image_bytes
  local out_tokens = 0
  local size, quality = norm_size(field(tool, "size")), norm_quality(field(tool, "quality"))
  local partials = {}
  if use_tool then
    local fps = {}
    for k, bytes in ipairs(images) do fps[k] = fingerprint(bytes) end
    if prev and prev.image then fps[#fps + 1] = fingerprint(prev.image) end
    local seed = "responses\0" .. text .. "\0" .. concat(fps, "\0")
    image_item = {
      type = "image_generation_call", id = new_id("ig_"), status = "completed",
      revised_prompt = "An image of: " .. text, size = size, quality = quality, output_format = "png",
      background = norm_background(field(tool, "background")),
      action = (#images > 0 or (prev and prev.image)) and "edit" or "generate",
    }
    if status == "failed" then
      image_item.status, image_item.result = "failed", NULL
    else
      local png, b64 = make_image(B, seed)
      image_bytes = png
      image_item.result = blob(ctx.blobs, b64 or core.b64encode(png))
      out_tokens = out_tokens + image_output_tokens(size, quality)
      for i = 0, (int(field(tool, "partial_images")) or 0) - 1 do
        partials[#partials + 1] = blob(ctx.blobs, core.b64encode(fixtures.image(seed .. "\0partial" .. i)))
      end
    end
    output[#output + 1] = image_item
  end
  local message
  if status ~= "failed" then
    local say
    if image_item then
      say = "Here is the image you asked for: " .. clip(text, 200)
    else
      say = "You said: " .. clip(text, 200)
    end
    if prev then say = say .. format(" (continuing from %s, where you said: %s)", prev_id, clip(prev.text, 80)) end
    message = {type = "message", id = new_id("msg_"), role = "assistant",
      status = status == "incomplete" and "incomplete" or "completed",
      content = {{type = "output_text", text = say, annotations = EMPTY_ARRAY}}}
    output[#output + 1] = message
    out_tokens = out_tokens + text_tokens(say)
  end
  local in_tokens = text_tokens(text) + 256 * #images
  local response = {
    id = resp_id, object = "response", created_at = created, status = status, model = model,
    output = array(output), previous_response_id = prev_id or NULL,
    usage = {input_tokens = in_tokens, output_tokens = out_tokens, total_tokens = in_tokens + out_tokens},
    error = NULL, incomplete_details = NULL,
  }
  if status == "failed" then
    response.error = {code = "server_error", message = "The image could not be generated (simulated failure)."}
  elseif status == "incomplete" then
    response.incomplete_details = {reason = "max_output_tokens"}
  end
  state.responses[resp_id] = {text = text, image = image_bytes or (prev and prev.image)}

  if not boolish(field(req, "stream")) then return json_response(200, response, ctx.blobs) end

  -- Streaming: build the event list.
  local events, seq = {}, 0
  local function ev(t, tbl)
    tbl.type = t
    tbl.sequence_number = seq
    seq = seq + 1
    events[#events + 1] = {t, tbl}
  end
  local shell = {}
  for k, v in pairs(response) do shell[k] = v end
  shell.status, shell.output, shell.usage = "in_progress", EMPTY_ARRAY, NULL
  shell.error, shell.incomplete_details = NULL, NULL
  ev("response.created", {response = shell})
  ev("response.in_progress", {response = shell})
  local index = 0
  if image_item then
    local pending = {}
    for k, v in pairs(image_item) do pending[k] = v end
    pending.status, pending.result = "in_progress", NULL
    ev("response.output_item.added", {output_index = index, item = pending})
    ev("response.image_generation_call.in_progress", {output_index = index, item_id = image_item.id})
    ev("response.image_generation_call.generating", {output_index = index, item_id = image_item.id})
    for i, b64 in ipairs(partials) do
      ev("response.image_generation_call.partial_image", {output_index = index, item_id = image_item.id,
        partial_image_index = i - 1, partial_image_b64 = b64, size = size, quality = quality,
        output_format = "png", background = image_item.background})
    end
    if image_item.status == "completed" then
      ev("response.image_generation_call.completed", {output_index = index, item_id = image_item.id})
    end
    ev("response.output_item.done", {output_index = index, item = image_item})
    index = index + 1
  end
  if message then
    local pending = {}
    for k, v in pairs(message) do pending[k] = v end
    pending.status, pending.content = "in_progress", EMPTY_ARRAY
    ev("response.output_item.added", {output_index = index, item = pending})
    local part = message.content[1]
    ev("response.output_text.delta", {output_index = index, item_id = message.id, content_index = 0,
      delta = part.text})
    ev("response.output_text.done", {output_index = index, item_id = message.id, content_index = 0,
      text = part.text})
    ev("response.output_item.done", {output_index = index, item = message})
  end
  local final = {failed = "response.failed", incomplete = "response.incomplete"}
  ev(final[status] or "response.completed", {response = response})
  return {status = 200, events = events, blobs = ctx.blobs}
end

return {create = handle_responses, input = responses_input, wants_image = wants_image}
