--- imageroute.rules: stop rules, checked before anything is sent.
--
-- Each rule catches a request the API would reject (and a gateway might still bill): an image model
-- as the top-level Responses model, `response_format` to a GPT image model, a transparent JPEG,
-- transparency where unsupported or in preview, `n` out of range, `partial_images` out of range or a
-- streamed tool call without partial images, a size the model cannot take, a quality it does not
-- know, `input_fidelity` where rejected, too many edit images, an edit on a model without edits, a
-- mask that is not a PNG. The model facts come from `imageroute.models` (one data table, each entry
-- with its source and date); unknown model labels (provider aliases) are passed through.
--
-- Which request is checked follows the route's shape (see `imageroute.generate`): on `images`
-- routes the Images API fields in `params`; for `respond`, and for `generate`/`edit` on
-- `responses` routes, the top-level model and the `image_generation` tool (its options flat in
-- `params` or in `params.tool`, or the tool entry of an explicit `params.tools`; the image model is
-- `params.image_model`, else the tool's `model`, else the route's `image_model`); on `chat` routes
-- nothing (the chat body carries only the prompt and the images).
-- @module imageroute.rules

local core = require("imageroute.core")
local models = require("imageroute.models")
local request = require("imageroute.request")

local type, ipairs, tostring, getmetatable, io_open = type, ipairs, tostring, getmetatable, io.open

local function is_image(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  return mt and mt.__name == "imageroute.Image" or false
end

-- Public sources of the stop rules.
local GUIDE = "OpenAI docs, Guides > Image generation, https://platform.openai.com/docs/guides/image-generation " ..
  "(read 2026-12-01)"
local SPEC = "openai-openapi.yaml (github.com/openai/openai-openapi at f85dbe2)"

local M = {}

--- What one call will send, as the rules see it: the call's normalised request
-- (`imageroute.request.of`), or nil on a `chat` route (nothing to check).
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params
-- @treturn table|nil the view: `api` ("images" | "responses"), `kind`, `lane`, `model` (the image model
--   whose facts apply), `entry` (its capability entry or nil), `top_model` (Responses), `fields` (the
--   image options), `tool` (Responses: whether a tool is sent), `stream`, `mask`, `images` (edit
--   inputs, a list)
function M.view(kind, route, params)
  local req = request.of(kind, route, params)
  if req.shape == "chat" then return nil end
  local v = {api = req.shape, kind = kind, lane = req.lane, stream = req.stream, top_model = req.top_model,
    model = req.model, fields = req.fields, tool = req.tool ~= nil, mask = req.mask, images = req.images}
  if req.shape ~= "responses" then v.tool, v.top_model = nil, nil end
  if type(v.model) == "string" then v.entry = models.get(v.model) end
  return v
end

-- The first bytes of a mask: its sniffed format, or nil when it cannot be told here (the C core
-- then refuses what is not an image at all, with its own message).
local function mask_format(m)
  if is_image(m) then return m.format end
  if type(m) == "table" then
    if type(m.image_url) == "string" then
      local mime = m.image_url:match("^data:image/([%w.+-]+)[;,]")
      return mime and (mime == "jpg" and "jpeg" or mime) or nil
    end
    if m.data ~= nil then m = m.data
    elseif type(m.path) == "string" then m = {path = m.path}
    else return nil end
  end
  local bytes
  if type(m) == "table" then
    local f = io_open(m.path, "rb")
    if not f then return nil end
    bytes = f:read(16)
    f:close()
  elseif type(m) == "string" then
    if core.sniff(m) then
      bytes = m
    elseif #m < 4096 and not m:find("\0", 1, true) then
      local f = io_open(m, "rb")
      if not f then return nil end
      bytes = f:read(16)
      f:close()
    end
  end
  if type(bytes) ~= "string" then return nil end
  local _, fmt = core.sniff(bytes)
  return fmt
end

local function quote_list(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = s end
  return table.concat(out, ", ")
end

local function model_src(v)
  return v.entry and (v.entry.source .. ", " .. v.entry.date) or nil
end

-- The check of a field the model's entry marks unsupported (`entry[field] == false`): refused when
-- sent, with message (its %s the model).
local function unsupported(field, message)
  return function(v)
    if v.fields[field] ~= nil and v.entry and v.entry[field] == false then
      return message:format(v.model), model_src(v)
    end
  end
end

--- The stop rules, in the order they are checked. Each: `name`, `field`, `fix`, and `check(v, opts)`
-- returning nil (pass) or a message (refuse). `v` is `M.view(...)`.
M.rules = {
  {name = "image_model_on_top", field = "model",
    fix = "put the image model in the tool (params.image_model or the route's image_model) and use a text "
      .. "model such as gpt-5 on top",
    check = function(v)
      if v.api == "responses" and models.is_image_model(v.top_model) then
        return ("'%s' is an image model: the Responses API's top-level model is a text model (e.g. gpt-5); "
          .. "put the image model in the tool"):format(v.top_model), GUIDE
      end
    end},
  {name = "edit_unsupported", field = "model", fix = "edit with dall-e-2 or a GPT image model",
    check = function(v)
      if v.api == "images" and v.kind == "edit" and v.entry and v.entry.edits == false then
        return ("%s cannot edit images (/images/edits does not take it)"):format(v.model), model_src(v)
      end
    end},
  {name = "response_format_gpt_image", field = "response_format",
    fix = "drop response_format: GPT image models always return base64 (b64_json); only a provider gateway "
      .. "that documents response_format may take it (provider lane)",
    check = function(v)
      if v.api == "images" and v.fields.response_format ~= nil and v.entry and v.entry.response_format == false
        and v.lane == "official" then
        return ("response_format is not accepted by %s"):format(v.model), model_src(v)
      end
    end},
  {name = "transparent_jpeg", field = "output_format",
    fix = "use output_format = \"png\" or \"webp\" with a transparent background",
    check = function(v)
      if v.fields.background == "transparent" and v.fields.output_format == "jpeg" then
        return "a transparent background cannot be a JPEG", SPEC .. " CreateImageRequest.background"
      end
    end},
  {name = "transparent_unsupported", field = "background",
    fix = "drop background = \"transparent\", or use a GPT image model that supports it",
    check = function(v)
      if v.fields.background == "transparent" and v.entry and v.entry.transparent == "no" then
        return ("%s does not support a transparent background"):format(v.model), model_src(v)
      end
    end},
  {name = "transparent_preview", field = "background",
    fix = "pass {allow_preview = true} as the call's opts to opt in, or use gpt-image-1.5 / gpt-image-1",
    check = function(v, opts)
      if v.fields.background == "transparent" and v.entry and v.entry.transparent == "preview"
        and not opts.allow_preview then
        return ("a transparent background is in preview on %s (requests may fail)"):format(v.model), model_src(v)
      end
    end},
  {name = "n_range", field = "n", fix = "send an integer n from 1 to 10",
    check = function(v)
      local n = v.fields.n
      if v.api == "images" and n ~= nil
        and (type(n) ~= "number" or n % 1 ~= 0 or n < 1 or n > models.api.max_n) then
        return ("n = %s is outside 1..%d"):format(tostring(n), models.api.max_n), models.api.source
      end
    end},
  {name = "n_max", field = "n", fix = "send n = 1 and make one call per image",
    check = function(v)
      local n = v.fields.n
      if v.api == "images" and type(n) == "number" and v.entry and v.entry.max_n and n > v.entry.max_n then
        return ("%s takes n up to %d (got %s)"):format(v.model, v.entry.max_n, tostring(n)), model_src(v)
      end
    end},
  {name = "partial_images_range", field = "partial_images", fix = "send an integer partial_images from 0 to 3",
    check = function(v)
      local p = v.fields.partial_images
      if p ~= nil and (type(p) ~= "number" or p % 1 ~= 0 or p < models.api.partial_images_min
        or p > models.api.partial_images_max) then
        return ("partial_images = %s is outside 0..3"):format(tostring(p)), models.api.source
      end
    end},
  {name = "partial_images_unsupported", field = "partial_images",
    fix = "drop partial_images and stream: only GPT image models stream",
    check = unsupported("partial_images", "%s does not stream partial images")},
  {name = "stream_partial_images", field = "partial_images",
    fix = "send partial_images from 1 to 3 when streaming the image_generation tool, or do not stream",
    check = function(v)
      if v.api == "responses" and v.stream and v.tool then
        local p = v.fields.partial_images
        if p == nil or p == 0 then
          return "streaming the image_generation tool needs partial_images >= 1",
            GUIDE .. " (streaming, partial_images)"
        end
      end
    end},
  {name = "size", field = "size", fix = "send a size the model takes",
    check = function(v)
      local size = v.fields.size
      if size ~= nil and v.entry then
        if type(size) ~= "string" then return "size must be a string such as \"1024x1024\"", model_src(v) end
        local ok, why = models.size_ok(v.entry, size)
        if not ok then return ("%s %s (got %s)"):format(v.model, why, size), model_src(v) end
      end
    end},
  {name = "quality", field = "quality", fix = "send a quality the model knows",
    check = function(v)
      local q = v.fields.quality
      if q ~= nil and v.entry and v.entry.quality and not models.listed(v.entry.quality, q) then
        return ("%s takes quality %s (got %s)"):format(v.model, quote_list(v.entry.quality), tostring(q)),
          model_src(v)
      end
    end},
  {name = "input_fidelity_unsupported", field = "input_fidelity",
    fix = "drop input_fidelity, or use gpt-image-1 / gpt-image-1.5",
    check = unsupported("input_fidelity", "%s rejects input_fidelity")},
  {name = "edit_images_max", field = "image", fix = "send at most 16 images per edit (one for dall-e-2)",
    check = function(v)
      if v.images then
        local max = v.entry and v.entry.max_edit_images or models.api.max_edit_images
        if #v.images > max then
          return ("%s takes at most %d edit image%s (got %d)"):format(v.model or "the Images API", max,
            max == 1 and "" or "s", #v.images), v.entry and model_src(v) or models.api.source
        end
      end
    end},
  {name = "mask_not_png", field = "mask", fix = "send the mask as a PNG with an alpha channel (alpha 0 = edit here)",
    check = function(v)
      if v.mask ~= nil then
        local fmt = mask_format(v.mask)
        if fmt and fmt ~= "png" then
          return ("the mask is a %s image, not a PNG"):format(fmt:upper()), SPEC .. " CreateImageEditRequest.mask"
        end
      end
    end},
}

local function skipped(opts, name)
  local s = opts.skip_rules
  if type(s) ~= "table" then return false end
  if s[name] then return true end
  for _, n in ipairs(s) do
    if n == name then return true end
  end
  return false
end

--- Checks one call against the stop rules, before anything is sent.
--
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params the call's params, as given to `imageroute.generate` / `edit` / `respond`
-- @tparam[opt] table opts per-call options read here: `allow_preview` (boolean: opt in to features
--   the spec calls preview, such as a transparent background on gpt-image-2), `skip_rules` (a list or
--   set of rule names to waive for this call, e.g. for a gateway that documents an exception)
-- @treturn true when no rule stops the call
-- @treturn[2] nil
-- @treturn[2] table error (`core.error`): `kind = "validation"`, `rule` (the rule's name), `field`,
--   `fix` (how to fix it), `source` (where the fact comes from), and a `message` that names the
--   rule and the fix
function M.check(kind, route, params, opts)
  opts = type(opts) == "table" and opts or {}
  if type(params) ~= "table" then return true end
  local v = M.view(kind, route, params)
  if not v then return true end
  for _, rule in ipairs(M.rules) do
    if not skipped(opts, rule.name) then
      local msg, source = rule.check(v, opts)
      if msg then
        return nil, core.error("validation", ("stop rule %s: %s; fix: %s"):format(rule.name, msg, rule.fix),
          {rule = rule.name, field = rule.field, fix = rule.fix, source = source, route = route.name,
            attempts = 0})
      end
    end
  end
  return true
end

return M
