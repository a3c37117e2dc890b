--- imageroute.assistant: assistant flows on the Responses API, as the API answers them.
--
-- Two halves, both plain functions over tables (no I/O):
--
-- * the request side, `place`: where each option of a `respond` call goes. An app's own tools
--   (`params.tools`) are sent as given and the `image_generation` tool is added to them from the
--   flat / `params.tool` options, unless the list already holds one. A parameter is sent exactly
--   where the caller put it: the names that `CreateResponse` and the `image_generation` tool share
--   (`moderation`, `background`) are taken by their type (top level: `moderation` an object
--   `{model =, policy =}`, `background` a boolean, run in background mode; tool: `"auto"`/`"low"`
--   and `"transparent"`/`"opaque"`/`"auto"`), and a call that leaves any doubt (an option both flat
--   and in `params.tool`, a tool option with no tool to carry it, a value of neither type) is
--   refused before sending with an error naming both places. Nothing is dropped without an error.
-- * the reply side, `decorate`: `result.output` (every output item in order; an
--   `image_generation_call` has its base64 `result` replaced by `image`, the decoded Image, also in
--   `result.images`), `result.function_calls` (`{call_id, name, arguments, args}`), the moderation
--   outcome (`result.moderation`, and a moderation block as an error that is never retried and never
--   billed as a success), the organization-verification 403 (an `api` error with a `fix`), and a
--   returned image format that differs from the requested one (`image.format_mismatch`).
--
-- Sources (read 2026-12-01): OpenAI API reference, Responses (Create a response, the Response
-- object and its output items), https://platform.openai.com/docs/api-reference/responses; the
-- function calling guide, https://platform.openai.com/docs/guides/function-calling; the image
-- generation tool guide, https://platform.openai.com/docs/guides/tools-image-generation; schemas
-- `CreateResponse`, `ImageGenTool`, `FunctionToolCall`, `FunctionCallOutputItemParam`, `Moderation`
-- of https://github.com/openai/openai-openapi (openai-openapi.yaml).
-- @module imageroute.assistant

local core = require("imageroute.core")
local json = require("imageroute.json")

local type, pairs, ipairs, tostring, next = type, pairs, ipairs, tostring, next

local M = {}

--- The `image_generation` tool options that may be given flat in `params` (schema `ImageGenTool`).
M.TOOL_OPTIONS = {"size", "quality", "background", "output_format", "output_compression", "moderation",
  "partial_images", "input_fidelity", "input_image_mask", "action"}

--- The names `CreateResponse` and `ImageGenTool` share, with the Lua type each side takes.
-- `top`: the top-level field's type and meaning; `tool`: the tool option's.
M.SHARED = {
  moderation = {top = "table", tool = "string",
    top_what = "an object {model =, policy =} configuring moderated completions",
    tool_what = "\"auto\" | \"low\", the image's moderation level"},
  background = {top = "boolean", tool = "string",
    top_what = "a boolean, run the response in background mode",
    tool_what = "\"transparent\" | \"opaque\" | \"auto\", the image's background"},
}

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

local function refuse(msg, field, fix, rule)
  return nil, core.error("validation", msg .. "; fix: " .. fix, {field = field, fix = fix,
    rule = rule or "ambiguous_placement", attempts = 0})
end

--- Whether a list of tools already holds an `image_generation` tool (returns it).
-- @tparam table tools
-- @treturn table|nil
function M.image_tool_in(tools)
  for _, t in ipairs(tools) do
    if type(t) == "table" and t.type == "image_generation" then return t end
  end
  return nil
end

--- Decides where every option of a Responses call goes, before anything is sent.
--
-- Returns a copy of `params` with the placement done: `tools` (a JSON array: the app's tools as
-- given, then the `image_generation` tool built from the flat and `params.tool` options when the
-- list holds none; absent when nothing is to be sent), the tool options consumed (removed from the
-- top level), `params.tool` and `params.image_model` removed, and `tool_choice =
-- "image_generation"` turned into `{type = "image_generation"}`. Fields of the top level
-- (`moderation` as an object, `background` as a boolean, `input`, `previous_response_id`, ...)
-- stay where they are.
-- @tparam Route|table route the route (its `image_model` is the tool's default model)
-- @tparam table params the call's params
-- @treturn[1] table the placed params (a new table; `params` is not changed)
-- @treturn[1] table|nil the image tool that was added (nil when none)
-- @treturn[2] nil
-- @treturn[2] table a `validation` error (`rule = "ambiguous_placement"`, `field`, `fix`) whose message
--   names both places, e.g. `params.tool.moderation` vs top-level `moderation`
function M.place(route, params)
  local out = copy(params)
  local given_tool = params.tool
  if given_tool ~= nil and given_tool ~= false and type(given_tool) ~= "table" then
    return refuse("params.tool must be a table of image_generation options or false", "tool",
      "pass params.tool = {size =, quality =, ...} or params.tool = false")
  end
  local tool = type(given_tool) == "table" and copy(given_tool) or {}
  out.tool = nil
  -- the flat options: the tool's, unless a shared name's value has the top level's type
  local flat = {}
  for _, k in ipairs(M.TOOL_OPTIONS) do
    local v = params[k]
    local shared = M.SHARED[k]
    if v ~= nil then
      if shared and type(v) == shared.top then
        if type(given_tool) == "table" and given_tool[k] ~= nil and type(given_tool[k]) == shared.top then
          return refuse(("params.tool.%s and top-level %s are both %ss: top-level %s is %s; params.tool.%s " ..
            "is the tool's (%s)"):format(k, k, shared.top, k, shared.top_what, k, shared.tool_what),
            k, ("put %s where you mean it: top level (%s) or params.tool (%s)"):format(k, shared.top_what,
              shared.tool_what))
        end
        -- stays at the top level, as given
      elseif shared and type(v) ~= shared.tool then
        return refuse(("params.%s is a %s: neither top-level %s (%s) nor params.tool.%s (%s)"):format(k, type(v),
          k, shared.top_what, k, shared.tool_what), k, ("pass %s as %s, or as %s"):format(k, shared.top_what,
          shared.tool_what))
      else
        flat[k] = v
        out[k] = nil
      end
    end
  end
  for k, v in pairs(flat) do
    if tool[k] ~= nil then
      local shared = M.SHARED[k]
      local where = shared and (" vs top-level " .. k) or ""
      return refuse(("params.%s and params.tool.%s are both set%s: which one is meant is not clear"):format(k, k,
        where), k, ("give %s once: in params.tool.%s (the image tool's option)%s"):format(k, k,
        shared and (", or at the top level as " .. shared.top_what) or ", or flat"))
    end
    tool[k] = v
  end
  -- the image model: params.image_model, else tool.model, else the route's image_model
  if params.image_model ~= nil then
    if type(params.image_model) ~= "string" then
      return refuse("params.image_model must be a string", "image_model", "pass the image model's label")
    end
    if tool.model ~= nil and tool.model ~= params.image_model then
      return refuse(("params.image_model (%s) and params.tool.model (%s) differ"):format(params.image_model,
        tostring(tool.model)), "image_model", "name the image model once")
    end
    tool.model = params.image_model
    out.image_model = nil
  end
  local has_options = next(tool) ~= nil
  local names = {}
  for k in pairs(tool) do names[#names + 1] = k end
  table.sort(names)
  if tool.model == nil and route and type(route.image_model) == "string" then tool.model = route.image_model end
  -- the tools to send
  local added
  if params.tools ~= nil then
    if type(params.tools) ~= "table" then
      return refuse("params.tools must be a list of tool objects", "tools", "pass params.tools = {{type = ...}, ...}")
    end
    local list = json.array({})
    for i, t in ipairs(params.tools) do list[i] = t end
    local present = M.image_tool_in(list)
    if present then
      if has_options then
        return refuse(("params.tools holds an image_generation tool, so the image options given outside it (%s) " ..
          "would not be sent"):format(table.concat(names, ", ")), names[1] or "tools",
          "put them in the image_generation tool of params.tools, or leave that tool out of the list")
      end
    elseif given_tool ~= false then
      added = tool
    end
    out.tools = list
  elseif given_tool ~= false then
    added = tool
    out.tools = json.array({})
  end
  if given_tool == false and has_options then
    return refuse(("params.tool = false sends no image tool, so its options (%s) would be dropped"):format(
      table.concat(names, ", ")), names[1], "remove them, or drop params.tool = false")
  end
  if added then
    added.type = "image_generation"
    out.tools[#out.tools + 1] = added
  end
  if out.tools and #out.tools == 0 and params.tools == nil then out.tools = nil end
  if out.tool_choice == "image_generation" then out.tool_choice = {type = "image_generation"} end
  return out, added
end

-- --------------------------------------------------------------------------------------------
-- The reply side

--- Decodes a function call's `arguments` (a JSON string): the table, or nil when it is not valid
-- JSON (or not a string).
-- @param arguments
-- @treturn table|nil
function M.decode_arguments(arguments)
  if type(arguments) ~= "string" then return nil end
  local v = json.decode(arguments)
  if type(v) ~= "table" then return nil end
  return v
end

--- The function calls among the output items, in order.
-- @tparam table output the response's `output` items (decoded)
-- @treturn table a JSON-array-marked list of `{call_id =, name =, arguments =, args =, id =, status =}`
--   (`arguments` the JSON string as returned, `args` its decoded table or nil when it is not valid JSON)
function M.function_calls(output)
  local calls = json.array({})
  for _, item in ipairs(type(output) == "table" and output or {}) do
    if type(item) == "table" and item.type == "function_call" then
      calls[#calls + 1] = {call_id = item.call_id, name = item.name, arguments = item.arguments,
        args = M.decode_arguments(item.arguments), id = item.id, status = item.status, namespace = item.namespace}
    end
  end
  return calls
end

--- The output items in order, as returned, with each `image_generation_call`'s base64 `result`
-- replaced by `image`: the decoded Image whose `call_id` is the item's `id` (the same Image as in
-- `result.images`). Items are copied one level deep; arrays stay marked (see `imageroute.json`).
-- @tparam table output the response's `output` items (decoded)
-- @tparam table images the result's Images (each with `call_id`)
-- @treturn table the items, a JSON-array-marked list
function M.output(output, images)
  local by_call = {}
  for _, img in ipairs(images or {}) do
    local id = img.call_id
    if id ~= nil and by_call[id] == nil then by_call[id] = img end
  end
  local items = json.array({})
  for i, item in ipairs(type(output) == "table" and output or {}) do
    if type(item) == "table" then
      local c = copy(item)
      if json.is_array(item) then json.array(c) end
      if c.type == "image_generation_call" then
        c.result = nil
        c.image = by_call[c.id]
      end
      items[i] = c
    else
      items[i] = item
    end
  end
  return items
end

local function flagged(m)
  return type(m) == "table" and m.flagged == true
end

--- Whether a decoded response reports a moderation block, and its details.
-- A block is: `incomplete_details.reason = "content_filter"`, or a `moderation` result flagged
-- while the response holds no output but refusals (the response's input or output was stopped),
-- or an `image_generation_call` whose error code says `moderation_blocked`.
-- @tparam table resp the decoded response
-- @treturn table|nil `{blocked = true, reason =, input =, output =}` (input / output: the response's
--   moderation results, when it has any)
function M.moderation_block(resp)
  if type(resp) ~= "table" then return nil end
  local m = type(resp.moderation) == "table" and resp.moderation or {}
  local details = resp.incomplete_details
  local reason
  if type(details) == "table" and details.reason == "content_filter" then reason = "content_filter" end
  if not reason and type(resp.error) == "table" and resp.error.code == "moderation_blocked" then
    reason = "moderation_blocked"
  end
  if not reason and (flagged(m.input) or flagged(m.output)) then
    local produced = false
    for _, item in ipairs(type(resp.output) == "table" and resp.output or {}) do
      if type(item) == "table" and (item.type == "function_call" or item.type == "image_generation_call" and
        item.status == "completed") then produced = true end
    end
    if not produced and resp.status ~= "completed" then reason = "flagged" end
  end
  if not reason then return nil end
  return {blocked = true, reason = reason, input = m.input, output = m.output}
end

--- The settings page a 403 "organization must be verified" points to (OpenAI's answer names it).
M.VERIFY_PAGE = "https://platform.openai.com/settings/organization/general"

--- Whether an error is the 403 an organization gets before it is verified for a model.
-- @tparam table err
-- @treturn boolean
function M.is_verification(err)
  return type(err) == "table" and err.status == 403 and type(err.message) == "string"
    and err.message:lower():find("must be verified", 1, true) ~= nil
end

--- Gives an error its honest outcome: the verification 403 gets `code =
-- "organization_not_verified"` (when the API sent none), `fix` naming the settings page and
-- `retryable = false`; a moderation block gets `moderation` (`{blocked = true, ...}`) and
-- `retryable = false`. Other errors are returned as they are.
-- @tparam table err
-- @treturn table err
function M.classify_error(err)
  if type(err) ~= "table" then return err end
  if M.is_verification(err) then
    err.code = err.code or "organization_not_verified"
    err.fix = "verify the organization on " .. M.VERIFY_PAGE .. " (Verify Organization; access can take up to "
      .. "15 minutes to propagate), or use a model the organization may use; retrying does not help"
    err.retryable = false
  elseif err.code == "moderation_blocked" or err.type == "image_generation_user_error" then
    err.moderation = err.moderation or {blocked = true, reason = err.code or err.type, message = err.message}
    err.retryable = false
  end
  return err
end

--- Marks images whose sniffed format differs from the one requested: `image.format_mismatch =
-- {requested =, got =}` (not an error: the bytes are what they are, and `image.format` says so).
-- @tparam table images Images
-- @tparam string|nil requested the `output_format` asked for (`png`, `jpeg`, `webp`)
-- @treturn table|nil the first mismatch `{requested =, got =, count =}`, for the call log
function M.format_mismatch(images, requested)
  if type(requested) ~= "string" then return nil end
  local want = requested:lower()
  if want == "jpg" then want = "jpeg" end
  local first
  for _, img in ipairs(images or {}) do
    local got = img.format
    if type(got) == "string" and got ~= want then
      img.format_mismatch = {requested = want, got = got}
      first = first or {requested = want, got = got, count = 0}
      first.count = first.count + 1
    end
  end
  return first
end

--- Adds the assistant-flow fields to a Responses result, from the decoded reply.
-- @tparam table res the result (`images` already set)
-- @tparam table resp the decoded response body
-- @tparam[opt] string requested_format the tool's `output_format` as sent
-- @treturn table res, with `output`, `function_calls`, `moderation` (when the response has it) and
--   `format_mismatch` (when an image differs)
function M.decorate(res, resp, requested_format)
  local output = type(resp) == "table" and resp.output or nil
  res.output = M.output(output, res.images)
  res.function_calls = M.function_calls(output)
  if type(resp) == "table" and type(resp.moderation) == "table" then res.moderation = resp.moderation end
  res.format_mismatch = M.format_mismatch(res.images, requested_format)
  return res
end

return M
