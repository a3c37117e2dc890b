--- imageroute.localserver.images: the Images API mock, `POST /v1/images/generations` (JSON) and
-- `POST /v1/images/edits` (multipart, or JSON with `images` URLs / file ids); `stream` answers with
-- `partial_image` and `completed` events.
--
-- Behaviour switches read here (see `imageroute.localserver.serve`): `b64_mode` ("dataurl" | "url"),
-- `png_bytes` (through `mock.make_image`).
-- @module imageroute.localserver.images

local core = require("imageroute.core")
local mock = require("imageroute.localserver.mock")

local concat, format = table.concat, string.format
local os_time = os.time
local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local J, http, fixtures = mock.json, mock.http, mock.fixtures
local NULL, blob, field, int, str = J.NULL, J.blob, J.field, J.int, J.str
local error_response, json_response = http.error_response, http.json_response
local fingerprint = fixtures.fingerprint
local text_tokens, norm_size, norm_quality, norm_background = mock.text_tokens, mock.norm_size, mock.norm_quality,
  mock.norm_background
local image_output_tokens, url_bytes, make_image, file_url, boolish = mock.image_output_tokens, mock.url_bytes,
  mock.make_image, mock.file_url, mock.boolish

-- Common parameters of generations and edits (JSON values or form strings).
local function image_params(src)
  return {
    prompt = str(field(src, "prompt")),
    model = str(field(src, "model")),
    n = field(src, "n"),
    size = field(src, "size"),
    quality = field(src, "quality"),
    background = field(src, "background"),
    response_format = str(field(src, "response_format")),
    stream = boolish(field(src, "stream")),
    partial_images = int(field(src, "partial_images")) or 0,
  }
end

local function validate_image_params(p)
  if not p.prompt or p.prompt == "" then
    return error_response(400, "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
  end
  local n = 1
  if p.n ~= nil then
    n = int(p.n)
    if not n or n < 1 or n > 10 or tonumber(p.n) ~= n then
      return error_response(400, format("Invalid 'n': expected an integer between 1 and 10, got %s.",
        tostring(p.n)), "n", "invalid_value")
    end
  end
  p.n = n
  local size = str(p.size)
  if p.size ~= nil and (not size or (size ~= "auto" and not size:match("^%d+x%d+$"))) then
    return error_response(400, format("Invalid size '%s'.", tostring(size)), "size", "invalid_value")
  end
  if p.partial_images < 0 or p.partial_images > 3 then
    return error_response(400, "Invalid 'partial_images': expected 0..3.", "partial_images", "invalid_value")
  end
  return nil
end

local function images_usage(p, input_images)
  local text = text_tokens(p.prompt)
  local image_in = 256 * input_images
  local out = p.n * image_output_tokens(p.size, p.quality)
  return {
    input_tokens = text + image_in,
    input_tokens_details = {text_tokens = text, image_tokens = image_in},
    output_tokens = out,
    total_tokens = text + image_in + out,
  }
end

-- Shared by generations and edits. kind: "image_generation" | "image_edit".
local function images_result(ctx, B, p, inputs, kind)
  local err = validate_image_params(p) or mock.unverified(B, p.model or "dall-e-2")
  if err then return err end
  local fps = {}
  for k, bytes in ipairs(inputs) do fps[k] = fingerprint(bytes) end
  local seed_base = kind .. "\0" .. p.prompt .. "\0" .. concat(fps, "\0")
  local mode = str(field(B, "b64_mode")) or (p.response_format == "url" and "url") or "b64"
  local usage = images_usage(p, p.input_images or #inputs)
  local created = os_time()
  local common = {
    background = norm_background(p.background), output_format = "png",
    size = norm_size(p.size), quality = norm_quality(p.quality),
  }
  local blobs = ctx.blobs
  local function b64_of(png, b64)
    b64 = b64 or core.b64encode(png)
    if mode == "dataurl" then return blob(blobs, "data:image/png;base64," .. b64) end
    return blob(blobs, b64)
  end
  if p.stream then
    local events = {}
    for k = 1, p.n do
      for i = 0, p.partial_images - 1 do
        local partial = fixtures.image(seed_base .. "\0partial" .. k .. ":" .. i)
        local ev = {type = kind .. ".partial_image", b64_json = b64_of(partial),
          partial_image_index = i, created_at = created}
        for key, v in pairs(common) do ev[key] = v end
        events[#events + 1] = {kind .. ".partial_image", ev}
      end
      local png, b64 = make_image(B, seed_base .. "\0" .. k)
      local ev = {type = kind .. ".completed", b64_json = b64_of(png, b64), created_at = created, usage = usage}
      for key, v in pairs(common) do ev[key] = v end
      events[#events + 1] = {kind .. ".completed", ev}
    end
    return {status = 200, events = events, blobs = blobs}
  end
  local data = {}
  for k = 1, p.n do
    local png, b64 = make_image(B, seed_base .. "\0" .. k)
    if mode == "url" then
      data[k] = {url = file_url(ctx, png)}
    else
      data[k] = {b64_json = b64_of(png, b64)}
    end
  end
  local body = {created = created, data = data, usage = usage}
  for key, v in pairs(common) do body[key] = v end
  return json_response(200, body, blobs)
end

local function handle_generations(ctx, B)
  if type(ctx.json) ~= "table" then
    return error_response(400, "The request body must be a JSON object.", NULL, "invalid_json")
  end
  return images_result(ctx, B, image_params(ctx.json), {}, "image_generation")
end

local function is_image_part(name)
  return name == "image" or name == "image[]" or (name and name:match("^image%[%d+%]$") ~= nil)
end

local function handle_edits(ctx, B)
  local p, inputs
  if ctx.parts then
    local form = {}
    inputs = {}
    for _, part in ipairs(ctx.parts) do
      if is_image_part(part.name) then
        inputs[#inputs + 1] = part.data
      elseif part.name == "mask" then
        form.mask = part.data
      elseif part.name and not part.filename then
        form[part.name] = part.data
      end
    end
    p = image_params(form)
    if #inputs == 0 then
      return error_response(400, "Missing required parameter: 'image'.", "image", "missing_required_parameter")
    end
    p.input_images = #inputs
    if form.mask then inputs[#inputs + 1] = form.mask end
  elseif type(ctx.json) == "table" then
    p = image_params(ctx.json)
    inputs = {}
    local images = field(ctx.json, "images")
    if type(images) == "table" then
      for _, im in ipairs(images) do
        local url = field(im, "image_url")
        local fid = field(im, "file_id")
        if url then
          local bytes, err = url_bytes(url)
          if not bytes then return error_response(400, err, "images", "invalid_image_url") end
          inputs[#inputs + 1] = bytes
        elseif fid then
          inputs[#inputs + 1] = str(fid) or ""
        end
      end
    end
    if #inputs == 0 then
      return error_response(400, "Missing required parameter: 'images'.", "images", "missing_required_parameter")
    end
  else
    return error_response(400, "Expected a multipart/form-data (or JSON) body.", NULL, "invalid_content_type")
  end
  return images_result(ctx, B, p, inputs, "image_edit")
end

return {generations = handle_generations, edits = handle_edits}
