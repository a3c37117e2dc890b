--- imageroute.models: what each image model accepts, as one data table.
--
-- Every entry says where its facts come from (`source`) and when they were read (`date`). The
-- public source: OpenAI's OpenAPI description of its API, https://github.com/openai/openai-openapi
-- (file openai-openapi.yaml at commit f85dbe2 of 2026-08-21; the schema names in `source` are that
-- file's at that commit), cited below by schema and field, the same facts as the OpenAI API
-- reference pages Images > Create image and Create image edit
-- (https://platform.openai.com/docs/api-reference/images, read 2026-12-01). A new model or a
-- changed rule is one line here;
-- `imageroute.rules` turns these facts into stop rules checked before anything is sent.
--
-- Fields of an entry (absent = not known, and then never refused):
--
-- * `family`: `"gpt-image"` | `"dall-e"`.
-- * `sizes`: a list of accepted `size` strings, or `"multiple_of_16"` for the gpt-image-2 rule:
--   width and height divisible by 16, aspect ratio between 1:3 and 3:1, longest side at most 3840
--   and at most 3840x2160 pixels in all (above 2560x1440 is experimental), or `"auto"`
--   (`CreateImageRequest.size`).
-- * `max_n`: the largest `n` (`CreateImageRequest.n`: 1..10; dall-e-3 only 1).
-- * `transparent`: `background = "transparent"` is `"yes"` (supported), `"no"` (not supported:
--   dall-e), or `"preview"` (refused unless the caller opts in); `CreateImageRequest.background`.
-- * `input_fidelity`: true when the model takes `input_fidelity`, false when it rejects it
--   (the `InputFidelity` schema).
-- * `response_format`: true when `response_format` may be sent (dall-e only; `CreateImageRequest.response_format`).
-- * `partial_images`: true when the model streams with partial images (GPT image models;
--   `CreateImageRequest.stream`).
-- * `quality`: the accepted `quality` values (`CreateImageRequest.quality`).
-- * `edits`: false when `/images/edits` does not take the model (the enum of `CreateImageEditRequest.model`).
-- * `max_edit_images`: how many images one edit takes (`CreateImageEditRequest.image`: up to 16; dall-e-2 one).
-- * `source`, `date`: where the facts were read, and when.
-- @module imageroute.models

local type, pairs, tonumber = type, pairs, tonumber

local M = {}

local SPEC = "openai-openapi.yaml (github.com/openai/openai-openapi at f85dbe2, 2026-08-21):"

--- A source string: the spec, then the schema fields that say it.
local function src(...)
  return SPEC .. " " .. table.concat({...}, ", ")
end
local GPT_SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}
local GPT_QUALITY = {"low", "medium", "high", "auto"}

--- The capability table: model label -> entry, or -> another label (an alias, e.g. a dated snapshot).
M.models = {
  ["gpt-image-2"] = {family = "gpt-image", sizes = "multiple_of_16", max_n = 10, transparent = "preview",
    input_fidelity = true, response_format = false, partial_images = true, quality = GPT_QUALITY, edits = true,
    max_edit_images = 16, date = "2026-08-21",
    source = src("CreateImageRequest.size", "CreateImageRequest.background (transparent in preview)",
      "ImageGenTool.input_fidelity ('gpt-image-1.5 and later'; users report gpt-image-2 rejecting it: "
        .. "set false once confirmed)",
      "CreateImageRequest.response_format", "CreateImageRequest.n",
      "CreateImageEditRequest.image (up to 16 edit images)")},
  ["gpt-image-2-2026-04-21"] = "gpt-image-2",
  ["gpt-image-1.5"] = {family = "gpt-image", sizes = GPT_SIZES, max_n = 10, transparent = "yes",
    input_fidelity = true, response_format = false, partial_images = true, quality = GPT_QUALITY, edits = true,
    max_edit_images = 16, date = "2026-08-21",
    source = src("CreateImageRequest.size", "CreateImageRequest.background", "ImageGenTool.input_fidelity",
      "CreateImageRequest.response_format", "CreateImageRequest.n")},
  ["gpt-image-1"] = {family = "gpt-image", sizes = GPT_SIZES, max_n = 10, transparent = "yes",
    input_fidelity = true, response_format = false, partial_images = true, quality = GPT_QUALITY, edits = true,
    max_edit_images = 16, date = "2026-08-21",
    source = src("CreateImageRequest.size", "CreateImageRequest.background", "ImageGenTool.input_fidelity",
      "CreateImageRequest.response_format", "CreateImageRequest.n")},
  ["gpt-image-1-mini"] = {family = "gpt-image", sizes = GPT_SIZES, max_n = 10, transparent = "yes",
    input_fidelity = false, response_format = false, partial_images = true, quality = GPT_QUALITY, edits = true,
    max_edit_images = 16, date = "2026-08-21",
    source = src("CreateImageRequest.size", "CreateImageRequest.background",
      "ImageGenTool.input_fidelity (unsupported for gpt-image-1-mini)", "CreateImageRequest.response_format",
      "CreateImageRequest.n")},
  -- Only in the edit and tool enums; "follows the same input constraints as GPT image models"
  -- (CreateImageEditRequest.model).
  -- Transparency and input_fidelity are not stated for it: left unknown, so never refused.
  ["chatgpt-image-latest"] = {family = "gpt-image", sizes = GPT_SIZES, max_n = 10, response_format = false,
    partial_images = true, quality = GPT_QUALITY, edits = true, max_edit_images = 16, date = "2026-08-21",
    source = src("CreateImageEditRequest.model (same input constraints as GPT image models)",
      "CreateImageEditRequest.response_format", "ImageGenTool.model")},
  ["dall-e-3"] = {family = "dall-e", sizes = {"1024x1024", "1792x1024", "1024x1792"}, max_n = 1, transparent = "no",
    input_fidelity = false, response_format = true, partial_images = false, quality = {"standard", "hd", "auto"},
    edits = false, date = "2026-08-21",
    source = src("CreateImageRequest.size", "CreateImageRequest.n (only n=1)", "CreateImageRequest.quality",
      "CreateImageRequest.background (GPT image models only)", "CreateImageEditRequest.model (no dall-e-3)")},
  ["dall-e-2"] = {family = "dall-e", sizes = {"256x256", "512x512", "1024x1024"}, max_n = 10, transparent = "no",
    input_fidelity = false, response_format = true, partial_images = false, quality = {"standard", "auto"},
    edits = true, max_edit_images = 1, date = "2026-08-21",
    source = src("CreateImageRequest.size", "CreateImageRequest.quality (standard only)",
      "CreateImageRequest.background (GPT image models only)", "CreateImageEditRequest.image (one square PNG)")},
}

--- The Images API's own limits, whatever the model (`CreateImageRequest.n` 1..10,
-- `CreateImageEditRequest.image` at most 16 edit images, `CreateImageRequest.partial_images` and
-- the `PartialImages` schema 0..3).
M.api = {max_n = 10, max_edit_images = 16, partial_images_min = 0, partial_images_max = 3,
  source = SPEC .. " CreateImageRequest.n, CreateImageEditRequest.image, PartialImages", date = "2026-08-21"}

--- The largest size gpt-image-2 takes, and where it turns experimental (`CreateImageRequest.size`).
M.multiple_of_16 = {multiple = 16, min_ratio = 1 / 3, max_ratio = 3, max_side = 3840, max_pixels = 3840 * 2160,
  experimental_pixels = 2560 * 1440, source = SPEC .. " CreateImageRequest.size", date = "2026-08-21"}

--- The canonical label of a model (an alias such as a dated snapshot resolved), or the label itself.
-- @tparam string label
-- @treturn string
function M.canonical(label)
  local seen = 0
  while type(M.models[label]) == "string" and seen < 8 do
    label = M.models[label]
    seen = seen + 1
  end
  return label
end

--- The capability entry of a model label, or nil for an unknown label (a provider alias, say:
-- unknown labels are passed through, never refused).
-- @tparam string label
-- @treturn table|nil the entry (see the module doc); do not modify it
-- @treturn string the canonical label
function M.get(label)
  if type(label) ~= "string" then return nil end
  local name = M.canonical(label)
  local e = M.models[name]
  if type(e) == "table" then return e, name end
  return nil
end

--- True when the label names an image model: a known entry, or a `gpt-image-*`, `dall-e-*` or
-- `chatgpt-image-*` label (an image model must never be the top-level Responses model: the image
-- model goes in the tool, OpenAI API reference, Responses > Create a response, `tools`, image
-- generation tool `model`, https://platform.openai.com/docs/api-reference/responses/create, read
-- 2026-12-01; the `ImageGenTool` schema of the OpenAPI description).
-- @tparam string label
-- @treturn boolean
function M.is_image_model(label)
  if type(label) ~= "string" then return false end
  if M.get(label) then return true end
  return label:find("^gpt%-image%-") ~= nil or label:find("^dall%-e%-") ~= nil
    or label:find("^chatgpt%-image%-") ~= nil
end

--- Parses a `WIDTHxHEIGHT` size string.
-- @tparam string size
-- @treturn integer|nil width (pixels)
-- @treturn integer height (pixels)
function M.parse_size(size)
  if type(size) ~= "string" then return nil end
  local w, h = size:match("^(%d+)x(%d+)$")
  if not w then return nil end
  return tonumber(w) // 1, tonumber(h) // 1
end

--- Whether a model takes a size.
-- @tparam table entry a capability entry
-- @tparam string size
-- @treturn boolean ok
-- @treturn string|nil why not (or, when ok, a note such as "experimental")
function M.size_ok(entry, size)
  local rule = entry.sizes
  if rule == nil then return true end
  if type(rule) == "table" then
    for _, s in pairs(rule) do
      if s == size then return true end
    end
    local list = {}
    for i, s in pairs(rule) do list[i] = s end
    return false, "takes only " .. table.concat(list, ", ")
  end
  if size == "auto" then return true end
  local r = M.multiple_of_16
  local w, h = M.parse_size(size)
  if not w then return false, "takes WIDTHxHEIGHT (or auto)" end
  if w == 0 or h == 0 or w % r.multiple ~= 0 or h % r.multiple ~= 0 then
    return false, "needs both sides divisible by " .. r.multiple
  end
  local ratio = w / h
  if ratio < r.min_ratio - 1e-9 or ratio > r.max_ratio + 1e-9 then
    return false, "needs an aspect ratio between 1:3 and 3:1"
  end
  if w > r.max_side or h > r.max_side or w * h > r.max_pixels then
    return false, "takes at most 3840x2160"
  end
  if w * h > r.experimental_pixels then return true, "experimental (above 2560x1440)" end
  return true
end

--- True when `value` is in the list.
-- @tparam table list
-- @param value
-- @treturn boolean
function M.listed(list, value)
  for _, v in pairs(list) do
    if v == value then return true end
  end
  return false
end

return M
