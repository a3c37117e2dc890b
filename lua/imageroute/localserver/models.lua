--- imageroute.localserver.models: the Models API mock, `GET /v1/models/{model}` (OpenAI API
-- reference, Models > Retrieve model, https://platform.openai.com/docs/api-reference/models/retrieve,
-- read 2026-12-01): 200 with the model object (`id`, `object = "model"`, `created`, `owned_by`) for
-- the labels in `KNOWN` (and any listed by the behaviour `models`), else 404 with the API's
-- `model_not_found` error body. Nothing is made, nothing is billed. `serves` is the one list of
-- served labels: the chat gateway mock refuses the others the same way.
-- @module imageroute.localserver.models

local J = require("imageroute.localserver.json")
local http = require("imageroute.localserver.http")

local format = string.format
local type, ipairs = type, ipairs
local NULL, field = J.NULL, J.field

--- The model labels the local server knows.
local KNOWN = {
  ["gpt-image-2"] = "system", ["gpt-image-1.5"] = "system", ["gpt-image-1"] = "system",
  ["gpt-image-1-mini"] = "system", ["dall-e-3"] = "system", ["dall-e-2"] = "system",
  ["gpt-5"] = "system", ["gpt-5-mini"] = "system", ["gpt-4.1"] = "system", ["gpt-4.1-mini"] = "system",
  ["gpt-4o"] = "system", ["gpt-4o-mini"] = "system",
}

--- Whether the local server serves a model label: one of `KNOWN`, or one the request's behaviour
-- lists in `models`. The Models mock and the chat gateway mock both ask this.
-- @tparam string id the model label
-- @tparam[opt] table B the request's behaviour
-- @treturn boolean
local function serves(id, B)
  if KNOWN[id] ~= nil then return true end
  local extra = field(B, "models")
  if type(extra) == "table" then
    for _, m in ipairs(extra) do
      if m == id then return true end
    end
  end
  return false
end

--- The 404 of a label the server does not serve, as the API writes it (`model_not_found`).
-- @tparam string id the model label
-- @treturn table a response table
local function not_found(id)
  return http.error_response(404, format("The model '%s' does not exist or you do not have access to it.", id),
    NULL, "model_not_found", "invalid_request_error")
end

local function retrieve(ctx, B)
  local id = ctx.params.model
  if not serves(id, B) then return not_found(id) end
  return http.json_response(200, {id = id, object = "model", created = 1698785189, owned_by = KNOWN[id] or "user"})
end

return {retrieve = retrieve, KNOWN = KNOWN, serves = serves, not_found = not_found}
