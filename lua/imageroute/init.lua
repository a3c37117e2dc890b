--- imageroute: image generation and editing through OpenAI's image APIs and OpenAI-compatible
-- provider gateways, with the route (who owns the contract, which request shape, which model
-- label, how it bills) as a first-class object.
--
-- The C core (`imageroute.core`) does transport and bytes: libcurl, multipart, base64 through
-- libb64, saving. This module is the public API on top of it.
--
--    local imageroute = require "imageroute"
--    local route = imageroute.route{name = "official", model = "gpt-image-1"}
--    local res, err = imageroute.generate(route, {prompt = "a lighthouse at dawn", size = "1024x1024"})
--    if not res then error(tostring(err)) end
--    print(res.request_id, res.images[1]:save("out/lighthouse.png"))
--
-- @module imageroute

local core = require "imageroute.core"

local M = {
  _VERSION = core._VERSION,
  core = core,
}

--- Builds a route: one validated, immutable route configuration (a userdata).
--
-- Fields (all optional; defaults follow the official SDKs, api-notes section 4):
--
-- * `name` (string): how logs and errors name the route; default `"lane/provider/model"`.
-- * `lane` (string): `"official"` (default) | `"provider"` | `"account_pool"`.
-- * `provider` (string): who runs the endpoint; default `"openai"` on the official lane, required otherwise.
-- * `shape` (string): `"images"` (default) | `"responses"` | `"chat"`.
-- * `base_url` (string): the API root; default `$OPENAI_BASE_URL` or `https://api.openai.com/v1`.
--   Must be `https://` (plain `http://` only for loopback hosts), not an endpoint and not a
--   model-level path such as `/v1beta/models/...:generateContent`.
-- * `model` (string): the model label sent when a call does not name one.
-- * `api_key_env` (string): the NAME of the environment variable holding the key, read at call
--   time; default `"OPENAI_API_KEY"`. The route never holds the key.
-- * `headers` (table): extra request headers, name = value (never `Authorization`).
-- * `timeout` (number, seconds): total time per attempt, default 600.
-- * `connect_timeout` (number, seconds): default 5.
-- * `max_retries` (integer): retries after the first attempt, default 2.
-- * `retry_initial_delay`, `retry_max_delay` (seconds): backoff `min(initial * 2^n, max)` times a
--   random factor in [0.75, 1]; defaults 0.5 and 8.
-- * `retry_after_max` (seconds): a server-asked delay above this is ignored; default 60.
-- * `max_response_bytes` (integer, bytes): default 512 MiB.
-- * `ca_file` (string): a CA bundle path for TLS verification (verification is always on).
-- * `billing` (table): `unit` (`"token"` | `"image"` | `"call"` | `"credit"` | `"quote"`), `price`
--   (number, `currency` per unit), `currency` (default `"USD"`), `failed_calls_billed`.
-- * `contract`, `accepted`, `risk_exception`, `description`, `image_model`, `log`: kept for the
--   contract checks and the call log.
--
-- @tparam table config
-- @treturn Route|nil the route
-- @treturn[2] table an error with `kind = "validation"` and `field` naming the offending field
-- @raise when config is not a table
function M.route(config)
  return core.route(config)
end

--- True when v is a Route.
-- @param v any value
-- @treturn boolean
function M.is_route(v)
  return core.is_route(v)
end

--- Waits for a transfer: yields to the scheduler inside `imageroute.run` coroutines (later), steps
-- the loop otherwise.
local function await(xfer, err)
  if not xfer then return nil, err end
  return xfer:wait()
end

--- Generates images. On an `images` route: `POST {base_url}/images/generations` (JSON). On a
-- `chat` route: `POST {base_url}/chat/completions` with the prompt as one user message; the images
-- are the Markdown image links of the reply, downloaded (result `content`, `links`, and `unsent`:
-- the params a chat request has no place for). On a `responses` route: `respond` with the prompt
-- as input and the tool forced.
--
-- The body holds exactly the fields the caller set in `params` (API field names: `prompt`, `n`,
-- `size`, `quality`, `background`, `output_format`, `output_compression`, `moderation`, `user`,
-- ...; openai-openapi.yaml `CreateImageRequest`, L35461), plus `model` from the route when
-- `params.model` is not set. Nothing is defaulted, nothing is sent as null.
--
-- @tparam Route route
-- @tparam table params API fields; `prompt` (non-empty string) is required
-- @tparam[opt] table opts per-call options: `timeout`, `connect_timeout` (seconds), `max_retries`
-- @treturn table result:
--
-- * `images` (list of Image): decoded bytes (`image.bytes`, `image.length` in bytes), `mime`,
--   `format` (sniffed from magic bytes), `width`, `height`, `index` (1-based position in `data`),
--   `revised_prompt`, `url` (when downloaded), and `image:save(path [, {overwrite = true}])`.
-- * `request_id` (the `x-request-id` header), `http_status`, `created` (Unix seconds), `usage`,
--   `size`, `quality`, `background`, `output_format` (as the API returned them), `model` (sent),
--   `shape`, `endpoint`, `route` (name), `latency` (seconds, all attempts and downloads),
--   `attempts` (HTTP attempts made), `attempt_log` (one table per attempt), `bytes_received`.
-- @treturn[2] nil
-- @treturn[2] table error: `kind` (`"api"` | `"http"` | `"timeout"` | `"connection"` |
--   `"decode"` | `"validation"`), `message`, `status`, `type`, `code`, `param`, `request_id`,
--   `attempts`, `attempt_log`, `route`, and `images` when some were received before the failure;
--   `tostring(err)` is one line and never holds the key.
-- @raise when route is not a Route or params is not a table
function M.generate(route, params, opts)
  return await(core.start_generate(route, params, opts))
end

--- Edits images. On an `images` route: `POST {base_url}/images/edits` (multipart,
-- openai-openapi.yaml `CreateImageEditRequest`, L35251). On a `chat` route: one user message with
-- the prompt as a text part and each image as an `image_url` part (an http(s) or data: URL string
-- as given; bytes, paths and Images as data URLs); no mask. On a `responses` route: the prompt and
-- images as `input_text`/`input_image` items, the mask as the tool's `input_image_mask`.
--
-- `params.image` is one image or a list of up to 16; each is a file path, the image bytes, or
-- `{data = bytes | path = path, filename =, mime =}`. One image is sent as the part `image`,
-- several as repeated `image[]` parts. `params.mask` takes the same forms. The type is sniffed
-- from the first bytes; anything but PNG, JPEG or WebP is refused before sending. Every other
-- field is sent as a form field (numbers without a decimal point when integral, booleans as
-- `true`/`false`), `model` first.
--
-- @tparam Route route
-- @tparam table params API fields; `prompt` and `image` are required
-- @tparam[opt] table opts as for `generate`
-- @treturn table result, as for `generate`
-- @treturn[2] nil
-- @treturn[2] table error, as for `generate`
-- @raise when route is not a Route or params is not a table
function M.edit(route, params, opts)
  return await(core.start_edit(route, params, opts))
end

--- Calls the Responses API with the `image_generation` tool: `POST {base_url}/responses`.
--
-- The route's `model` (or `params.model`) is the top-level TEXT model, e.g. `gpt-5`; an image
-- model there (`gpt-image-*`, `dall-e-*`, `chatgpt-image-*`) is refused before sending. The image
-- model goes in the tool: `params.image_model`, else `params.tool.model`, else the route's
-- `image_model`. Tool options may be given flat in `params` or in `params.tool`: `size`, `quality`,
-- `background`, `output_format`, `output_compression`, `moderation`, `partial_images`,
-- `input_fidelity`, `input_image_mask` (an image: bytes, path or Image; or `{image_url =}` /
-- `{file_id =}`), `action`. `params.tool = false` sends no tool (a text-only turn); `params.tools`
-- given explicitly is sent as is. `tool_choice = "image_generation"` forces the tool.
--
-- `params.input` is a string, or a list of content items (strings become `input_text`; Images,
-- and `{type = "input_image", image = bytes|path}`, become `input_image` with a data URL;
-- `{type = "input_image", image_url = "https://...", detail = "high"}` is sent as is), or a list of
-- messages `{role =, content = {...}}`. `previous_response_id` continues a conversation. Every
-- other field is sent as given.
--
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts as for `generate`
-- @treturn table result: `id` (= `response_id`), `status`, `output_text` (string, the message
--   text joined), `images` (Image list; each with `call_id`, `status`, `revised_prompt`, `size`,
--   `quality`, `output_format`, `background`), `image_calls` (one `{id, status[, error]}` per
--   `image_generation_call`), `usage`, `incomplete_details`, `model`, `tool_model`, `request_id`,
--   `latency` (seconds), `attempts`, `attempt_log`, `route`, `shape = "responses"`.
-- @treturn[2] nil
-- @treturn[2] table error as for `generate`; a response with `status = "failed"`, or an
--   `image_generation_call` with no image, is an `api` error with `code`, `response_id`,
--   `output_text`, `image_calls`, and the `images` that did arrive.
-- @raise when route is not a Route or params is not a table
function M.respond(route, params, opts)
  return await(core.start_respond(route, params, opts))
end

--- Wraps image bytes (read from a file, say) as an Image, with `save`, `mime`, `format`.
-- @tparam string bytes
-- @treturn Image
function M.image(bytes)
  return core.image(bytes)
end

--- Reads an image file into an Image.
-- @tparam string path
-- @treturn Image|nil
-- @treturn[2] table error with `kind = "io"`
function M.load_image(path)
  local f, msg = io.open(path, "rb")
  if not f then return nil, core.error("io", msg, {path = path}) end
  local bytes = f:read("a")
  f:close()
  return core.image(bytes)
end

return M
