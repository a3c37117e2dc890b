--- imageroute.localserver.chat: the Chat Completions mock, gateway style: `POST /v1/chat/completions`
-- answers with a Markdown image link to a stored file (`/files/<name>`); `stream` answers with
-- chunks and `[DONE]`. A model label the server does not serve (`imageroute.localserver.models`:
-- its `KNOWN` labels, plus any the behaviour lists in `models`) is refused as a real gateway refuses
-- it: 404 with `{"error": {"type": "invalid_request_error", "code": "model_not_found", ...}}`, no
-- image made. A body without `model` is answered as `gpt-image-2`.
--
-- Behaviour switches read here (see `imageroute.localserver.serve`): `chat_content` (the reply text;
-- `{URL}` and `{URL2}` become links to fresh images), `refusal`, `png_bytes` (through `mock.make_image`),
-- `chat_images` (N: the message also carries N image parts in `images`, beside the content, as some
-- gateways answer: `{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`, or
-- links to stored files with `chat_images_as = "url"`; streamed, they come in one delta's `images`
-- after the content; the content defaults to a sentence without a link then).
-- @module imageroute.localserver.chat

local core = require("imageroute.core")
local mock = require("imageroute.localserver.mock")
local models = require("imageroute.localserver.models")

local concat, find = table.concat, string.find
local os_time = os.time
local type, ipairs = type, ipairs
local J, http, fixtures, S = mock.json, mock.http, mock.fixtures, mock.S
local NULL, val, field, str = J.NULL, J.val, J.field, J.str
local error_response, json_response = http.error_response, http.json_response
local fingerprint = fixtures.fingerprint
local text_tokens, url_bytes, make_image, file_url, boolish = mock.text_tokens, mock.url_bytes, mock.make_image,
  mock.file_url, mock.boolish
local new_id = S.new_id
local served, not_found = models.serves, models.not_found

local function handle_chat(ctx, B)
  local req = ctx.json
  if type(req) ~= "table" then
    return error_response(400, "The request body must be a JSON object.", NULL, "invalid_json")
  end
  local messages = field(req, "messages")
  if type(messages) ~= "table" or messages[1] == nil then
    return error_response(400, "Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
  end
  local user
  for _, m in ipairs(messages) do
    if field(m, "role") == "user" then user = m end
  end
  if not user then
    return error_response(400, "No user message in 'messages'.", "messages", "invalid_value")
  end
  local texts, images = {}, {}
  local content = field(user, "content")
  if type(content) == "string" then
    texts[1] = content
  elseif type(content) == "table" then
    for _, c in ipairs(content) do
      local ctype = field(c, "type")
      if ctype == "text" then
        texts[#texts + 1] = str(field(c, "text")) or ""
      elseif ctype == "image_url" then
        local iu = field(c, "image_url")
        local url = type(iu) == "table" and field(iu, "url") or iu
        local bytes, err = url_bytes(url)
        if not bytes then return error_response(400, err, "messages", "invalid_image_url") end
        images[#images + 1] = bytes
      end
    end
  end
  -- a gateway answers a label it does not route with the API's 404 model_not_found, nothing made
  local model = str(field(req, "model")) or "gpt-image-2"
  if not served(model, B) then return not_found(model) end
  local prompt = concat(texts, "\n")
  local fps = {}
  for k, bytes in ipairs(images) do fps[k] = fingerprint(bytes) end
  local seed = "chat\0" .. prompt .. "\0" .. concat(fps, "\0")
  local msg = {role = "assistant", content = NULL, refusal = NULL}
  local refusal = str(field(B, "refusal"))
  if refusal then
    msg.refusal = refusal
  else
    local n_parts = math.tointeger(val(field(B, "chat_images"))) or 0
    local template = str(field(B, "chat_content"))
      or (n_parts > 0 and "Here is the image you asked for." or "\n\n![image]({URL})\n\n")
    if n_parts > 0 then
      local parts, as_url = {}, str(field(B, "chat_images_as")) == "url"
      for k = 1, math.min(n_parts, 8) do
        local png = make_image(B, seed .. "\0part" .. k)
        local url = as_url and file_url(ctx, png) or ("data:image/png;base64," .. core.b64encode(png))
        parts[k] = {type = "image_url", image_url = {url = url}}
      end
      msg.images = parts
    end
    local text = template
    if find(text, "{URL}", 1, true) then
      local url = file_url(ctx, (make_image(B, seed .. "\0" .. 1)))
      text = text:gsub("{URL}", function() return url end)
    end
    if find(text, "{URL2}", 1, true) then
      local url = file_url(ctx, (make_image(B, seed .. "\0" .. 2)))
      text = text:gsub("{URL2}", function() return url end)
    end
    msg.content = text
  end
  local prompt_tokens = text_tokens(prompt) + 256 * #images
  local completion_tokens = text_tokens(val(msg.content) or refusal)
  local id = new_id("chatcmpl-")
  local created = os_time()
  local usage = {prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
    total_tokens = prompt_tokens + completion_tokens}
  if not boolish(field(req, "stream")) then
    return json_response(200, {id = id, object = "chat.completion", created = created, model = model,
      choices = {{index = 0, message = msg, finish_reason = "stop"}}, usage = usage})
  end
  local function chunk(delta, finish)
    return {false, {id = id, object = "chat.completion.chunk", created = created, model = model,
      choices = {{index = 0, delta = delta, finish_reason = finish or NULL}}}}
  end
  local events = {chunk({role = "assistant", content = ""})}
  if refusal then events[#events + 1] = chunk({refusal = refusal})
  else events[#events + 1] = chunk({content = msg.content}) end
  if msg.images then events[#events + 1] = chunk({images = msg.images}) end
  local last = chunk({}, "stop")
  last[2].usage = usage
  events[#events + 1] = last
  events[#events + 1] = {false, "[DONE]"}
  return {status = 200, events = events}
end

return {completions = handle_chat}
