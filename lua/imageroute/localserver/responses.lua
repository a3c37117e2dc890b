--- imageroute.localserver.responses: the Responses API mock, `POST /v1/responses` with the
-- `image_generation` tool. The tool runs when it is forced (`tool_choice` "required" or the tool
-- object) or when the text asks for a picture (IMAGE_WORDS); `previous_response_id` continues a
-- stored turn (text and last image, in `state.responses`); `stream` answers with the Responses
-- events (created, in_progress, output items, partial images, text delta, completed/failed/incomplete).
--
-- Assistant flows (OpenAI API reference, Responses, https://platform.openai.com/docs/api-reference/responses,
-- read 2026-12-01):
--
-- * function tools: the model calls an app's function (a `function_call` output item with `call_id`,
--   `name`, `arguments`, and no message) when `tool_choice` names it (`{type = "function", name =}`),
--   or when the input text names the function (e.g. "... use get_weather"); its `arguments` give
--   every string property of the function's `parameters` the input text (behaviour
--   `function_arguments`: that text as it is, valid JSON or not). An input holding
--   `function_call_output` items must continue (`previous_response_id`) the response whose calls they
--   answer (else 400, as the API answers); the outputs join the text, and the image tool then runs
--   as for any turn (forced, or a text that asks for a picture).
-- * background mode (`background: true`): the answer is the response `queued` with no output; `GET
--   /v1/responses/{id}` answers `in_progress` (behaviour `background_polls`: that many times, default
--   1), then the final response; `POST /v1/responses/{id}/cancel` makes a queued or running one
--   `cancelled` (a response not made in background mode: 400). `GET` also answers the recent
--   foreground responses (the last 64).
-- * moderation: with a top-level `moderation` object the response carries `moderation` results
--   (schema `Moderation`); behaviour `moderation_block` blocks the input: status `incomplete`,
--   `incomplete_details.reason = "content_filter"`, no output, the input flagged.
-- * behaviour `unverified`: the 403 an organization gets before it is verified for the image model
--   (see `mock.unverified`); behaviour `format_switch`: the image item claims the `output_format`
--   asked for (e.g. webp) while its bytes stay PNG.
--
-- Behaviour switches read here (see `imageroute.localserver.serve`): `response_status`
-- ("failed" | "incomplete"), `png_bytes` (through `mock.make_image`), and those above.
-- @module imageroute.localserver.responses

local core = require("imageroute.core")
local mock = require("imageroute.localserver.mock")

local concat, find, format, sub = table.concat, string.find, string.format, string.sub
local os_time = os.time
local type, pairs, ipairs, next, tostring = type, pairs, ipairs, next, tostring
local J, http, fixtures, S = mock.json, mock.http, mock.fixtures, mock.S
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

-- The function_call_output items of an input: {call_id =, output = text}.
local function answers_of(input)
  local out = {}
  if type(input) ~= "table" then return out end
  for _, item in ipairs(input) do
    if type(item) == "table" and field(item, "type") == "function_call_output" then
      local o = field(item, "output")
      if type(o) == "table" then
        local parts = {}
        for _, c in ipairs(o) do parts[#parts + 1] = str(field(c, "text")) or "" end
        o = concat(parts, "\n")
      end
      out[#out + 1] = {call_id = str(field(item, "call_id")), output = str(o) or ""}
    end
  end
  return out
end

-- The function tool the mock model calls, or nil (see the module doc).
local function pick_function(tools, choice, text)
  local fns = {}
  for _, t in ipairs(type(tools) == "table" and tools or {}) do
    if field(t, "type") == "function" and str(field(t, "name")) then fns[#fns + 1] = t end
  end
  if #fns == 0 or choice == "none" then return nil end
  if type(choice) == "table" then
    if field(choice, "type") ~= "function" then return nil end
    for _, t in ipairs(fns) do
      if field(t, "name") == field(choice, "name") then return t end
    end
    return nil
  end
  local lower = text:lower()
  for _, t in ipairs(fns) do
    if find(lower, field(t, "name"):lower(), 1, true) then return t end
  end
  return nil
end

local function function_arguments(fn, text, B)
  local given = field(B, "function_arguments")
  if type(given) == "string" then return given end
  local props = field(field(fn, "parameters"), "properties")
  local args = {}
  if type(props) == "table" then
    for name, schema in pairs(props) do
      if field(schema, "type") == "string" then args[name] = clip(text, 200) end
    end
  end
  if next(args) == nil then return "{}" end
  return J.encode(args)
end

local function moderation_result(flagged)
  -- (empty tables are written as {} objects)
  return {type = "moderation_result", model = "omni-moderation-latest", flagged = flagged,
    categories = flagged and {violence = true} or {}, category_scores = flagged and {violence = 0.97} or {},
    category_applied_input_types = flagged and {violence = {"text"}} or {}}
end

-- Stored response texts (GET /v1/responses/{id}): background ones until read, the last 64 others.
local MAX_STORED = 64
local stored_order = {}
local function remember(id, rec)
  state.responses[id] = rec
  if rec.background then return end
  stored_order[#stored_order + 1] = id
  while #stored_order > MAX_STORED do
    local old = state.responses[table.remove(stored_order, 1)]
    if old then old.final_text = nil end
  end
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
  local answers = answers_of(field(req, "input"))
  for _, a in ipairs(answers) do
    if not (prev and prev.calls and a.call_id and prev.calls[a.call_id]) then
      return error_response(400, format("No tool call found for function call output with call_id %s.",
        tostring(a.call_id)), "input", NULL)
    end
  end
  if #answers > 0 then
    local outs = {}
    for k, a in ipairs(answers) do outs[k] = a.output end
    text = (text ~= "" and (text .. "\n") or "") .. prev.text .. "\n" .. concat(outs, "\n")
  end

  local tool
  local tools = field(req, "tools")
  if type(tools) == "table" then
    for _, t in ipairs(tools) do
      if field(t, "type") == "image_generation" then tool = t; break end
    end
  end
  local choice = field(req, "tool_choice")
  local forced = choice == "required" or (type(choice) == "table" and field(choice, "type") == "image_generation")
  local fn = pick_function(tools, choice, text)
  if #answers > 0 then fn = nil end
  local blocked = field(B, "moderation_block") == true
  local use_tool = not fn and not blocked and tool ~= nil and choice ~= "none" and (forced or wants_image(text))
  if use_tool then
    local refused = mock.unverified(B, str(field(tool, "model")) or "gpt-image-1")
    if refused then return refused end
  end

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
      revised_prompt = "An image of: " .. text, size = size, quality = quality,
      output_format = field(B, "format_switch") == true and str(field(tool, "output_format")) or "png",
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
  local calls
  if fn then
    local item = {type = "function_call", id = new_id("fc_"), call_id = new_id("call_"), name = str(field(fn, "name")),
      arguments = function_arguments(fn, text, B), status = "completed"}
    output[#output + 1] = item
    calls = {[item.call_id] = item.name}
    out_tokens = out_tokens + text_tokens(item.arguments)
  end
  local message
  if status ~= "failed" and not fn and not blocked then
    local say
    if image_item then
      say = "Here is the image you asked for: " .. clip(text, 200)
    else
      say = "You said: " .. clip(text, 200)
    end
    if prev then say = say .. format(" (continuing from %s, where you said: %s)", prev_id, clip(prev.text, 80)) end
    message = {type = "message", id = new_id("msg_"), role = "assistant",
      status = status == "incomplete" and "incomplete" or "completed",
      content = {{type = "output_text", text = say, annotations = EMPTY_ARRAY, logprobs = EMPTY_ARRAY}}}
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
  if blocked then
    response.status, response.incomplete_details = "incomplete", {reason = "content_filter"}
    response.usage.output_tokens, response.usage.total_tokens = 0, in_tokens
  end
  if blocked or type(field(req, "moderation")) == "table" then
    response.moderation = {input = moderation_result(blocked), output = moderation_result(false)}
  end
  local background = field(req, "background") == true
  local rec = {text = text, image = image_bytes or (prev and prev.image), calls = calls}
  if not boolish(field(req, "stream")) or background then
    if boolish(field(req, "stream")) then
      return error_response(400, "The local server does not stream background responses.", "stream", NULL)
    end
    response.background = background
    local body = J.encode(response, ctx.blobs)
    rec.final_text = body
    if background then
      local shell = {}
      for k, v in pairs(response) do shell[k] = v end
      shell.status, shell.output, shell.usage, shell.error = "queued", EMPTY_ARRAY, NULL, NULL
      shell.incomplete_details, shell.moderation = NULL, NULL
      rec.background, rec.shell, rec.state = true, shell, "queued"
      rec.polls = int(field(B, "background_polls")) or 1
      remember(resp_id, rec)
      return json_response(200, shell)
    end
    remember(resp_id, rec)
    return {status = 200, body = body, content_type = "application/json"}
  end
  remember(resp_id, rec)

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
  -- an item's output_item.added event: a copy of it in progress, its key holding placeholder
  local function added(item, key, placeholder)
    local pending = {}
    for k, v in pairs(item) do pending[k] = v end
    pending.status, pending[key] = "in_progress", placeholder
    ev("response.output_item.added", {output_index = index, item = pending})
  end
  if fn then -- the function call: added, its arguments (one delta), done
    local item = output[1]
    added(item, "arguments", "")
    ev("response.function_call_arguments.delta", {output_index = index, item_id = item.id, delta = item.arguments})
    ev("response.function_call_arguments.done", {output_index = index, item_id = item.id,
      arguments = item.arguments})
    ev("response.output_item.done", {output_index = index, item = item})
    index = index + 1
  end
  if image_item then
    added(image_item, "result", NULL)
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
    added(message, "content", EMPTY_ARRAY)
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

local function not_found(id)
  return error_response(404, format("Response with id '%s' not found.", tostring(id)), NULL, NULL)
end

local function shell_with(rec, status)
  rec.shell.status = status
  return json_response(200, rec.shell)
end

-- GET /v1/responses/{id}: a background response in_progress for its polls, then final.
local function handle_retrieve(ctx)
  local id = ctx.params.id
  local rec = state.responses[id]
  if not rec or not rec.final_text then return not_found(id) end
  if rec.background and (rec.state == "queued" or rec.state == "in_progress") then
    if rec.polls > 0 then
      rec.polls = rec.polls - 1
      rec.state = "in_progress"
      return shell_with(rec, "in_progress")
    end
    rec.state = "completed"
  end
  if rec.state == "cancelled" then return shell_with(rec, "cancelled") end
  return {status = 200, body = rec.final_text, content_type = "application/json"}
end

-- POST /v1/responses/{id}/cancel
local function handle_cancel(ctx)
  local id = ctx.params.id
  local rec = state.responses[id]
  if not rec or not rec.final_text then return not_found(id) end
  if not rec.background then
    return error_response(400, "Only responses created with background=true can be cancelled.", NULL, NULL)
  end
  if rec.state == "queued" or rec.state == "in_progress" then rec.state = "cancelled" end
  if rec.state == "cancelled" then return shell_with(rec, "cancelled") end
  return {status = 200, body = rec.final_text, content_type = "application/json"}
end

return {create = handle_responses, retrieve = handle_retrieve, cancel = handle_cancel, input = responses_input,
  wants_image = wants_image}
