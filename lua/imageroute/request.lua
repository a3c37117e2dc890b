--- imageroute.request: the one normalised call request, built once per call from
-- `(kind, route, params, opts)`.
--
-- Everything that needs to know "what this call asks" reads it: the stop rules (`imageroute.rules`),
-- the price (`imageroute.cost`), budgets, the call log (`imageroute.log`) and the request shapes that
-- build the body (`imageroute.shapes.*`). Nothing else works it out again from `params`.
--
--    local req = request.of("generate", route, {prompt = "a fox", size = "1024x1024"})
--    --> req.shape == "images", req.model == "gpt-image-1", req.n == 1, req.size == "1024x1024"
--
-- Fields of a request (`req`):
--
-- * `kind` (`"generate"` | `"edit"` | `"respond"`), `shape` (`"images"` | `"responses"` | `"chat"`: the
--   request shape used; `respond` is always `"responses"`, `generate`/`edit` follow the route),
--   `route`, `params` (the caller's table, never changed), `opts`, `lane`.
-- * `top_model`: the model sent at the top of the body (the route's `model` unless `params.model`);
--   on a Responses request the text model.
-- * `model`: the image model whose facts apply (Images API and chat: `top_model`; Responses: the
--   tool's model: `params.image_model`, else the tool's `model`, else the route's `image_model`).
-- * `tool_model`: Responses only, the same as `model`.
-- * `fields`: the image options as sent (Images API: `params`; Responses: the `image_generation`
--   tool, merged; chat: an empty table), and from them `size`, `quality`, `background`,
--   `output_format`, `partial_images` (on chat, as asked in `params`: a chat body has no place for them).
-- * `tool`: Responses, the `image_generation` tool object that is sent (flat options and `params.tool`
--   merged, or the entry of an explicit `params.tools`), or nil when none is (`params.tool = false`).
-- * `n`: images the call asks for (Images API: `params.n`, default 1; Responses and chat: 1), and
--   `n_asked` (`params.n`, default 1, on the Images API and chat; nil on Responses).
-- * `stream` (boolean), `need_image` (generate and edit: a reply without an image is an error).
-- * `prompt`: the prompt's text (`params.prompt`, or the text parts of a Responses `input`).
-- * `images`: the edit's input images (Images API edits, a list), `mask` (the edit mask, or the tool's
--   `input_image_mask`).
-- * `send` (Responses): the body's fields before its images are encoded: API field names, the tools
--   in `tools` (placed by `imageroute.assistant.place`: the app's tools as given, the image tool added
--   unless the list holds one), `input` as items, every other field as given; and `problem` (a
--   validation error: `{field =, message =, fix =, rule =}`) when the params cannot make a request (no
--   prompt, no model, an option whose place is ambiguous or that would be dropped, ...).
--   The shape turns `send` into the wire body (`imageroute.shapes.responses.build`).
-- @module imageroute.request

local type, ipairs, rawlen, setmetatable, concat = type, ipairs, rawlen, setmetatable, table.concat

local assistant = require("imageroute.assistant")

local M = {}

--- The options of the `image_generation` tool that may be given flat in params (the `ImageGenTool`
-- schema of https://github.com/openai/openai-openapi at f85dbe2, 2026-08-21).
M.TOOL_FIELDS = {"size", "quality", "background", "output_format", "output_compression", "moderation",
  "partial_images", "input_fidelity", "input_image_mask", "action"}

local copy = require("imageroute.shapes.common").copy

local function nonempty_string(v)
  return type(v) == "string" and v ~= ""
end

-- The text of the prompt: params.prompt, or the text parts of a Responses input.
local function prompt_text(kind, params)
  if kind ~= "respond" then return type(params.prompt) == "string" and params.prompt or nil end
  local input = params.input
  if type(input) == "string" then return input end
  if type(input) ~= "table" then return nil end
  local parts = {}
  local function add(item)
    if type(item) == "string" then parts[#parts + 1] = item
    elseif type(item) == "table" then
      if type(item.text) == "string" then parts[#parts + 1] = item.text end
      if type(item.content) == "string" then parts[#parts + 1] = item.content
      elseif type(item.content) == "table" then
        for _, c in ipairs(item.content) do add(c) end
      end
    end
  end
  for _, item in ipairs(input) do add(item) end
  if #parts == 0 then return nil end
  return concat(parts, "\n")
end

-- The Responses body fields (see the module doc), the tool, and a problem if any.
local function responses_send(kind, route, params)
  local body, problem = copy(params), nil
  local function fail(field, message)
    problem = problem or {field = field, message = message}
  end
  if kind == "generate" or kind == "edit" then
    if not nonempty_string(params.prompt) then fail("prompt", "params.prompt must be a non-empty string") end
    if kind == "generate" then
      body.input = params.prompt
    else
      local content = {params.prompt}
      local img = params.image
      if img == nil then
        fail("image", "params.image is required for an edit")
      elseif type(img) == "table" and rawlen(img) > 0 then
        for i = 1, rawlen(img) do content[#content + 1] = {image = img[i]} end
      else
        content[#content + 1] = {image = img}
      end
      body.input = content
      body.image = nil
      if params.mask ~= nil then body.input_image_mask = params.mask end
      body.mask = nil
    end
    body.prompt = nil
    if body.tool_choice == nil then body.tool_choice = "image_generation" end
  end
  if type(body.model) ~= "string" and body.model ~= nil then fail("model", "params.model must be a string") end
  if body.model == nil then
    if type(route.model) == "string" then body.model = route.model
    else fail("model", "no model: give the route a model or pass params.model") end
  end
  local input = body.input
  if not ((type(input) == "string" and input ~= "") or (type(input) == "table" and rawlen(input) > 0)) then
    fail("input", "params.input must be a non-empty string or list")
  end
  -- the tools: placed by imageroute.assistant (the app's tools as given plus the image tool; every
  -- option sent where the caller put it, an ambiguous one refused naming both places)
  local placed, added = assistant.place(route, body)
  if not placed then
    problem = problem or {field = added.field, message = added.message, fix = added.fix, rule = added.rule}
    return body, nil, problem
  end
  local sent_tool = added or (type(placed.tools) == "table" and assistant.image_tool_in(placed.tools)) or nil
  return placed, sent_tool, problem
end

--- Builds the normalised request of one call (see the module doc for its fields).
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params the call's params (not changed)
-- @tparam[opt] table opts the call's options
-- @treturn table the request
function M.normalise(kind, route, params, opts)
  params = type(params) == "table" and params or {}
  local shape = kind == "respond" and "responses" or route.shape or "images"
  local req = {kind = kind, shape = shape, route = route, params = params, opts = opts, lane = route.lane,
    stream = params.stream == true, need_image = kind ~= "respond", prompt = prompt_text(kind, params)}
  if shape == "responses" then
    local send, tool, problem = responses_send(kind, route, params)
    req.send, req.tool, req.problem = send, tool, problem
    req.top_model = params.model
    if req.top_model == nil then req.top_model = route.model end
    req.fields = tool or {}
    req.model = tool and tool.model
    req.tool_model = req.model
    req.mask = tool and tool.input_image_mask
    req.n = 1
  else
    req.top_model = params.model
    if req.top_model == nil then req.top_model = route.model end
    req.model = req.top_model
    req.n_asked = type(params.n) == "number" and params.n or 1
    if shape == "images" then
      req.fields = params
      req.n = req.n_asked
      if kind == "edit" then
        req.mask = params.mask
        local img = params.image
        if type(img) == "table" and img.data == nil and img.path == nil then req.images = img
        elseif img ~= nil then req.images = {img} end
      end
    else -- chat: the body carries the prompt and the images only (the options are asked, not sent)
      req.fields = {}
      req.n = 1
    end
  end
  local f = shape == "chat" and params or req.fields
  req.size, req.quality, req.background = f.size, f.quality, f.background
  req.output_format, req.partial_images = f.output_format, f.partial_images
  return req
end

-- One request per params table and call: rules, cost, budgets and the log of one call share it.
local cache = setmetatable({}, {__mode = "k"})

--- The normalised request of a call, built once: the same `(kind, route, params)` gives the same
-- table (kept while `params` lives), so every reader of one call sees one request.
-- @tparam string kind
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn table the request (see the module doc)
function M.of(kind, route, params, opts)
  if type(params) ~= "table" then return M.normalise(kind, route, params, opts) end
  local c = cache[params]
  if c and c.kind == kind and c.route == route then
    if opts ~= nil then c.opts = opts end
    return c
  end
  local req = M.normalise(kind, route, params, opts)
  cache[params] = req
  return req
end

--- Forgets the request kept for params (a caller that changes params between calls).
-- @tparam table params
function M.forget(params)
  if type(params) == "table" then cache[params] = nil end
end


return M
