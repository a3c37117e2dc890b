--- imageroute.shapes.images: the Images API request shape, both ways (OpenAI API reference, Images,
-- https://platform.openai.com/docs/api-reference/images, read 2026-12-01; schemas CreateImageRequest,
-- CreateImageEditRequest and ImagesResponse of https://github.com/openai/openai-openapi at f85dbe2,
-- 2026-08-21).
--
--    generate  POST {base_url}/images/generations, JSON with exactly the fields the caller set (+ model)
--    edit      POST {base_url}/images/edits, multipart: model, the fields by name, image | image[], mask
--
-- Contract: `start(req)` builds the request from the normalised request (`imageroute.request`) and
-- hands it to the core (`core.start_generate(route, {endpoint =, body =, reader =})`, or
-- `core.start_edit(route, {endpoint =, parts =, reader =})` with the multipart parts: the core only
-- builds the form and sends it); `reader(reply)` runs when the 2xx reply is in (in the loop, never
-- inside libcurl): it decodes the JSON once, takes the images the core lifted out of `data[i].b64_json`
-- and lists the `data[i].url` links for the core to download on the same transfer; `reply(req, res,
-- err)` builds the result. No policy here: the stop rules (16 edit images, ...) are in
-- `imageroute.rules`.
-- @module imageroute.shapes.images

local core = require("imageroute.core")
local common = require("imageroute.shapes.common")

local type, pairs, ipairs, rawlen, tostring, sort, io_open =
  type, pairs, ipairs, rawlen, tostring, table.sort, io.open

local M = {}

-- ---------------------------------------------------------------------------------------------
-- generate: JSON

local function build_generate(req)
  local ok, err = common.check_prompt(req)
  if not ok then return nil, err end
  local model, merr = common.model(req)
  if not model then return nil, merr end
  local body = common.copy(req.params)
  body.model = model
  local text, jerr = common.encode(req, body)
  if not text then return nil, jerr end
  return {endpoint = "/images/generations", body = text, reader = M.reader}
end

-- ---------------------------------------------------------------------------------------------
-- edit: multipart

local function base_name(path)
  return path:match("([^/]*)$")
end

local function ext(fmt)
  return fmt == "jpeg" and "jpg" or fmt
end

-- One image part from v: a path, the bytes, an Image, or {data =|path =, filename =, mime =}.
-- number: its place among several images (0: a single image or the mask).
local function image_part(req, name, v, number, field)
  local data, path, image, filename, mime
  if common.is_image(v) then
    if v.released then
      return nil, common.invalid(req, field, field .. " is an Image that was released")
    end
    image = v
  elseif type(v) == "string" then
    if core.sniff(v) then data = v
    elseif #v < 4096 and not v:find("\0", 1, true) then path = v
    else data = v end
  elseif type(v) == "table" then
    if type(v.data) == "string" then data = v.data end
    if type(v.path) == "string" then path = v.path end
    if type(v.filename) == "string" then filename = v.filename end
    if type(v.mime) == "string" then mime = v.mime end
    if not data and not path then
      return nil, common.invalid(req, field, field .. " must give data (the bytes) or path")
    end
    if data then path = nil end
  else
    return nil, common.invalid(req, field, field ..
      " must be a path, the image bytes, an Image, or {data =, filename =, mime =}")
  end
  local sniffed, fmt
  if image then
    sniffed, fmt = image.mime, image.format
  elseif path then
    local f, msg = io_open(path, "rb")
    if not f then
      return nil, common.invalid(req, field, ("cannot read %s file %s: %s"):format(field, path,
        tostring(msg):match(": ([^:]*)$") or tostring(msg)))
    end
    local head = f:read(32) or ""
    f:close()
    sniffed, fmt = core.sniff(head)
  else
    sniffed, fmt = core.sniff(data)
  end
  if not sniffed or fmt == "gif" then
    return nil, common.invalid(req, field, ("%s is not a PNG, JPEG or WebP image (checked by its first bytes)%s")
      :format(field, path and (": " .. path) or ""))
  end
  if not filename then
    if path then filename = base_name(path)
    elseif number > 0 then filename = ("image_%d.%s"):format(number, ext(fmt))
    else filename = ("%s.%s"):format(name:sub(1, 1) == "m" and "mask" or "image", ext(fmt)) end
  end
  return {name = name, image = image, data = data, path = path, filename = filename, type = mime or sniffed}
end

local MAX_FIELDS = 64

local function build_edit(req)
  local ok, err = common.check_prompt(req)
  if not ok then return nil, err end
  local model, merr = common.model(req)
  if not model then return nil, merr end
  local params = req.params
  local keys = {}
  for k in pairs(params) do
    if type(k) ~= "string" then
      return nil, common.invalid(req, "params", "params keys must be field names (strings)")
    end
    if k ~= "image" and k ~= "mask" and k ~= "model" then
      if #keys == MAX_FIELDS then return nil, common.invalid(req, "params", "too many fields") end
      keys[#keys + 1] = k
    end
  end
  sort(keys) -- model first, then the fields by name: the body is deterministic
  local parts = {{name = "model", value = model}}
  for _, k in ipairs(keys) do
    local v = common.form_value(params[k])
    if not v then
      return nil, common.invalid(req, k,
        ("params.%s must be a string, number or boolean in a multipart edit"):format(k))
    end
    parts[#parts + 1] = {name = k, value = v}
  end
  -- images: one is the part "image", several are repeated "image[]" parts
  local img = params.image
  if type(img) == "table" and img.data == nil and img.path == nil then
    local count = rawlen(img)
    if count == 0 then return nil, common.invalid(req, "image", "params.image is an empty list") end
    for i = 1, count do
      local part, perr = image_part(req, count == 1 and "image" or "image[]", img[i], count == 1 and 0 or i,
        ("image[%d]"):format(i))
      if not part then return nil, perr end
      parts[#parts + 1] = part
    end
  else
    if img == nil then return nil, common.invalid(req, "image", "params.image is required for an edit") end
    local part, perr = image_part(req, "image", img, 0, "image")
    if not part then return nil, perr end
    parts[#parts + 1] = part
  end
  if params.mask ~= nil then
    local part, perr = image_part(req, "mask", params.mask, 0, "mask")
    if not part then return nil, perr end
    parts[#parts + 1] = part
  end
  return {endpoint = "/images/edits", parts = parts, reader = M.reader}
end

--- Builds the request and starts its transfer on the core's loop.
-- @tparam table req the normalised request (`kind` "generate" or "edit", `shape` "images")
-- @treturn Transfer|nil
-- @treturn[2] table the error (nothing sent)
function M.start(req)
  local edit = req.kind == "edit"
  local shaped, err = (edit and build_edit or build_generate)(req)
  if not shaped then return nil, err end
  return (edit and core.start_edit or core.start_generate)(req.route, shaped, req.opts)
end

-- ---------------------------------------------------------------------------------------------
-- the reply

--- Reads a 2xx reply (in the loop, before any download): the images in `data[i].b64_json` and
-- the links in `data[i].url` (downloaded next, on the same transfer). Streamed: the completed
-- events' images.
-- @tparam table reply the core's reply (see `imageroute.shapes.responses` and src/api.c)
-- @treturn table|nil the plan `{images =, urls =, url_index =, body =}`
-- @treturn[2] table a `decode` error
function M.reader(reply)
  if reply.stream then
    local images = reply.images or {}
    if #images == 0 then
      return nil, core.error("decode", "the stream ended without a completed image", {status = reply.status})
    end
    return {images = images, body = reply.json}
  end
  local body, err = common.decode(reply)
  if not body then return nil, err end
  local data = body.data
  if type(data) ~= "table" or rawlen(data) == 0 then
    return nil, common.decode_error(reply, "the response has no images (data is missing or empty)")
  end
  local images, urls, uidx = {}, {}, {}
  local function failed(e)
    if #images > 0 then e.images = images end -- images already received are never lost
    return nil, e
  end
  for i = 1, rawlen(data) do
    local d = data[i]
    if type(d) ~= "table" then return failed(core.error("decode", ("data[%d] is not an object"):format(i))) end
    local img, ierr = common.take(reply, d.b64_json, ("data[%d].b64_json"):format(i))
    if img then
      img.index = i
      img.revised_prompt = d.revised_prompt
      images[#images + 1] = img
    elseif ierr then
      return failed(ierr)
    elseif type(d.url) == "string" then
      urls[#urls + 1] = d.url
      uidx[#uidx + 1] = i
    else
      return failed(core.error("decode", ("data[%d] has neither b64_json nor url"):format(i)))
    end
  end
  return {images = images, urls = urls, url_index = uidx, body = body}
end

local FIELDS = {"created", "usage", "size", "quality", "background", "output_format"}

--- The result of a done transfer (see `imageroute.generate`).
-- @tparam table req the normalised request
-- @tparam table|nil res the core's result (`reply`, `plan`, `images`)
-- @tparam[opt] table err the core's error (passed through)
-- @treturn table|nil result
-- @treturn[2] table error
function M.reply(req, res, err)
  if not res then return nil, err end
  local plan, reply = res.plan or {}, res.reply or {}
  res.plan, res.reply = nil, nil
  local body = type(plan.body) == "table" and plan.body or {}
  for _, f in ipairs(FIELDS) do res[f] = body[f] end
  if reply.stream then -- a completed event has created_at instead of created
    res.created = body.created_at
    res.stream = true
    res.partial_images_received = reply.partials_received
  end
  res.images = common.order(res.images or {})
  res.model = req.top_model
  res.shape = "images"
  return res
end

return M
