--- imageroute: image generation and editing through OpenAI's image APIs and OpenAI-compatible
-- provider gateways, with the route (who owns the contract, which request shape, which model
-- label, how it bills) as a first-class object.
--
-- The C core (`imageroute.core`) does transport and bytes: libcurl, multipart, base64 through
-- libb64, saving. This module is the public API on top of it.
--
--    local imageroute = require("imageroute")
--    local route = imageroute.route{name = "official", model = "gpt-image-1"}
--    local res, err = imageroute.generate(route, {prompt = "a lighthouse at dawn", size = "1024x1024"})
--    if not res then error(tostring(err)) end
--    print(res.request_id, res.images[1]:save("out/lighthouse.png"))
--
-- @module imageroute

local core = require("imageroute.core")
local policy = require("imageroute.policy") -- gates, stop rules, cost, the call log
local route_type = require("imageroute.route") -- the Route type's Lua half: route:check()
local dispatch = require("imageroute.dispatch") -- a call's normalised request, body and reply, by shape
local router = require("imageroute.router") -- explicit fallback across routes
local limits = require("imageroute.limits") -- client-side rate limits of routes
local budget = require("imageroute.budget") -- spending limits in USD
local state = require("imageroute.state") -- where limits and budgets live (memory, Redis)
local request = require("imageroute.request") -- the normalised call request
local background = require("imageroute.background") -- Responses background mode: create, poll, cancel

local M = {
  _VERSION = core._VERSION,
  core = core,
  log = require("imageroute.log"),         -- the call log: set_default, read, summary
  routes = require("imageroute.routes"),   -- routes files: load, get
  contract = require("imageroute.contract"),
  markdown = require("imageroute.markdown"), -- Markdown image links in chat replies
  dataurl = require("imageroute.dataurl"),   -- data: URLs
  flow = require("imageroute.flow"),         -- records of multi-step flows
  state = state,                            -- state stores: memory(), redis{url =}
}

--- Marks a table (empty or not) as a JSON array, sent as `[]` when empty (`imageroute.json.array`).
-- Replies are decoded with every array of the text marked, so an echoed `summary: []` stays `[]`.
-- @function array
M.array = require("imageroute.json").array
M.is_array = require("imageroute.json").is_array -- is_array(v): true when v is marked as a JSON array

--- Builds a route: one validated, immutable route configuration (a userdata).
--
-- Fields (all optional; the defaults follow OpenAI's official SDKs: the Retries and Timeouts
-- sections of the READMEs of https://github.com/openai/openai-python (3.x) and
-- https://github.com/openai/openai-node (6.x)):
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
--   time; default `"OPENAI_API_KEY"` (when `api_key` is not given).
-- * `api_key` (string or function): the key itself, or a function `api_key(route) -> key` called
--   once per call when its request is set up (never inside a transfer callback), for keys held in a
--   secret store or a config file. Give `api_key` or `api_key_env`, not both (`field = "api_key"`).
--   A string is copied into the route's C memory: `route.api_key`, `route:config()` and
--   `tostring(route)` show `"<set>"`, never the key (and `"<set>"` handed back is refused). A
--   function's result is used for that call's Authorization header and its redaction, then
--   dropped: never stored on the route, printed or logged. When the function raises, or returns
--   anything but a usable key, the call is a `validation` error with `field = "api_key"` whose
--   message never holds what it returned. Every key, from any source, is refused (`validation`,
--   naming the field or the variable, never the value) when it holds a CR, LF, NUL, another control
--   byte or a space, and, to a non-loopback host, when it is shorter than 8 bytes. Example:
--
--        local vault = require("my.vault")
--        local route = imageroute.route{name = "official", model = "gpt-image-1",
--          api_key = function(r) return vault.read("openai/" .. r.name) end}
--
--   No string that leaves a call (an error's fields at any depth, `tostring(err)`, a result's
--   fields, headers echoed back, SSE error events, body excerpts, the call log) holds the key: the
--   C core redacts each call's whole outcome with the key it sent (`core.redact`).
-- * `headers` (table): extra request headers, name = value (never `Authorization`); a name must be
--   a token and a value must not hold CR, LF, NUL or other control bytes (tab allowed), checked here.
--   `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` are checked the same way at call time.
-- * `timeout` (number, seconds): total time per attempt, default 600.
-- * `connect_timeout` (number, seconds): default 5.
-- * `max_retries` (integer): retries after the first attempt, default 2.
-- * `budget` (Budget, from `imageroute.budget`): a spending limit checked before every call.
-- * `limits` (table): client-side rate limits, `{requests_per_minute =, images_per_minute =,
--   max_in_flight =}` or `{requests =, images =, window = seconds}`; a call over them waits
--   (yielding to the loop) instead of being sent into a 429 (see `imageroute.limits`).
-- * `state` (store or URL string): where the route's limits live: `imageroute.state.memory()` (the
--   default, this process), `imageroute.state.redis{url = "redis://host:port/db"}` or that URL (shared
--   by every process and machine naming it; see `imageroute.state`).
-- * `on_state_error` (string): `"refuse"` (default: a store that cannot be reached refuses the call,
--   `kind = "state"`, `code = "state_unreachable"`, nothing sent) or `"local"` (this process's memory
--   store stands in for that call; the result and the log carry `state_fallback`).
-- * `retry_policy` (string): `"sdk"` (default: retry as the official SDKs do) or `"safe"`: retry
--   only an attempt that provably was not billed, one that never reached the server (DNS, connect
--   or TLS handshake failure, nothing sent) or that the server said it did not process (429,
--   `x-should-retry: true`). Whatever the policy, each attempt records `may_have_billed`.
-- * `retry_initial_delay`, `retry_max_delay` (seconds): backoff `min(initial * 2^n, max)` times a
--   random factor in [0.75, 1]; defaults 0.5 and 8.
-- * `retry_after_max` (seconds): a server-asked delay above this is ignored; default 60.
-- * `max_response_bytes` (integer, bytes): the cap of one response or download, default 512 MiB.
-- * `max_event_bytes` (integer, bytes): the cap of one server-sent event's data, default 64 MiB.
-- * `low_speed_limit` (integer, bytes per second) and `low_speed_time` (integer, seconds): abort an
--   attempt that moves fewer bytes per second than the limit for that long (a server that drips);
--   off by default, since an image call may legitimately send nothing for minutes.
-- * `ca_file` (string): a CA bundle path for TLS verification (verification is always on), for the
--   API request and for image downloads alike.
-- * `deadline` (number, seconds): the whole call, all attempts, retry waits and image downloads;
--   default 1800. Each attempt's timeouts are cut to what remains, and a retry whose delay would
--   pass the deadline is not made (the last attempt's error then has `retry_skipped = "deadline"`).
--   A call stopped by it is `kind = "timeout"`, `code = "deadline_exceeded"`.
-- * `max_images` (integer): how many images a reply may make the client fetch or decode (base64
--   images, data URLs and links together); default 16. A reply with more is `kind = "decode"`,
--   `code = "too_many_images"`, and nothing beyond the cap is downloaded or decoded.
-- * `max_call_bytes` (integer, bytes): all response and download bytes held for one call; default
--   1 GiB. Over it: `kind = "http"`, `code = "call_bytes_exceeded"`. (`max_response_bytes` caps each
--   one response or download.)
--   `deadline`, `max_images` and `max_call_bytes` are also per-call options (`opts`).
-- * Image downloads (`data[].url`, Markdown links, `image_url` parts) are fetched over `https`
--   (plain `http` only to a loopback host), without the key, without a proxy, and never from a
--   loopback, private, link-local, unique-local, CGNAT, unspecified, multicast or reserved address:
--   the check runs on the resolved address of every connection, redirects included (at most 5,
--   https only, each checked again), so no spelling of an address (integer, octal, IPv4-mapped
--   IPv6, a name that resolves to it) gets around it. Loopback is allowed when the route's own
--   `base_url` host is loopback (the local server). A refused download is `kind = "route"`,
--   `code = "download_refused"`, with one message for every refused address; a download that
--   cannot connect (refused, filtered, TLS failure) is `kind = "connection"`,
--   `code = "download_failed"`, with one message whatever the port did; more than 5 redirects is
--   `code = "too_many_redirects"`.
-- * `download_hosts` (list of strings): host names (`"cdn.example.com"`) or `"*.suffix"` patterns
--   (`"*.example.com"` matches `a.example.com`, not `example.com`); when set, no other host is
--   fetched, and the address rule above still applies to the listed ones.
-- * `allow_private_downloads` (boolean, default false): also allow loopback, private, link-local,
--   unique-local and CGNAT addresses for downloads (a gateway whose images are on an internal
--   host). Unspecified, multicast and reserved addresses stay refused.
-- * `send_openai_ids` (boolean, default false): send `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` (as
--   `OpenAI-Organization` / `OpenAI-Project`) on a route that is not on the official lane; official
--   routes always send them when set, other routes never do unless they ask.
-- * `resolve` (list of strings): `"HOST:PORT:ADDRESS"` entries in the manner of `curl --resolve`
--   (one IP address per entry, IPv6 bare or in brackets): a connection to HOST:PORT goes to
--   ADDRESS instead, while TLS still verifies HOST (e.g. a test gateway
--   `{"api.test:443:127.0.0.1"}`). Applies to the API request and the downloads of this route's
--   calls only (never to other routes'); the download policy still checks the address.
-- * `billing` (table): `unit` (`"token"` | `"image"` | `"call"` | `"credit"` | `"quote"`), `price`
--   (number, `currency` per unit), `currency` (default `"USD"`), `failed_calls_billed`.
-- * `contract`, `accepted`, `risk_exception`, `description`, `image_model`, `log`: kept for the
--   contract checks and the call log.
--
-- @tparam table config
-- @treturn Route|nil the route
-- @treturn[2] table an error with `kind = "validation"` and `field` naming the offending field
-- @raise when config is not a table
-- @function route
M.route = route_type.new

--- Builds a router: an explicit fallback across routes, usable wherever a route is (see
-- `imageroute.router`).
-- @tparam table config `name`, `routes` (list of Route, tried in order), `fallback_on` (list of
--   `"rate_limit"` | `"server_error"` | `"timeout"` | `"connection"`; default all four)
-- @treturn Router|nil
-- @treturn[2] table a `validation` error with `field`
-- @function router
M.router = router.new

--- Builds a budget: a spending limit in USD per run, day or month (UTC), checked before each call
-- of the routes (or router) it is attached to with `budget = b` (see `imageroute.budget`).
-- @tparam table config `name`, `usd`, `per` ("run" | "day" | "month"), `unknown_price`
-- @treturn Budget|nil
-- @treturn[2] table a `validation` error with `field`
-- @function budget
M.budget = budget.new

--- True when v is a Router.
-- @param v any value
-- @treturn boolean
-- @function is_router
M.is_router = router.is_router

--- True when v is a Route.
-- @param v any value
-- @treturn boolean
-- @function is_route
M.is_route = core.is_route

-- ------------------------------------------------------------------------------------------
-- The scheduler (imageroute.scheduler), image files (imageroute.save), streams (imageroute.stream)
-- and the generic API request (imageroute.api) are their own modules; their public functions are
-- this module's.

local hostloop = require("imageroute.hostloop")
local scheduler = require("imageroute.scheduler")
local save = require("imageroute.save")
local wait_until, await, reraise = scheduler.wait_until, scheduler.await, scheduler.reraise
local check_save_to, save_rest = save.check_save_to, save.save_rest

M.step, M.fds, M.pending, M.spawn, M.run = scheduler.step, scheduler.fds, scheduler.pending, scheduler.spawn,
  scheduler.run
M.on_socket, M.on_timer = hostloop.on_socket, hostloop.on_timer
M.socket_action, M.timer_action = hostloop.socket_action, hostloop.timer_action
M.safe_name, M.save = save.safe_name, save.save
M.stream = require("imageroute.stream").stream
M.api = require("imageroute.api").request

--- Runs a list of calls with at most `max_in_flight` in flight (`imageroute.batch.batch`).
-- @function batch
M.batch = require("imageroute.batch").batch

--- The raw call of one shape: start its transfer on the loop, then wait for it (yielding inside
-- the scheduler's coroutines).
local in_flight = {} -- route name -> calls in flight (the scale rule for routes without observability)

local function raw_call(kind)
  return function(route, params, opts)
    local ok, serr = check_save_to(params, opts)
    if not ok then return nil, serr end
    local name = core.is_route(route) and route.name
    if name and (in_flight[name] or 0) > 0 then -- a second call at once is scale-up
      local sok, scale_err = M.contract.scale_allowed(route)
      if not sok then return nil, scale_err end
    end
    local waited, release, keepalive, lerr, state_fallback = limits.before(route, kind, params, wait_until,
      tonumber(opts and opts.deadline) or tonumber(route.deadline))
    if lerr then return nil, lerr end -- the state store failed, or the limits would pass the deadline: nothing sent
    if name then in_flight[name] = (in_flight[name] or 0) + 1 end
    local ok2, res, e
    if background.wanted(request.of(kind, route, params, opts)) then -- created, then polled on the loop
      ok2, res, e = pcall(background.call, kind, route, params, opts, keepalive)
    else
      local x, err, req = dispatch.start(kind, route, params, opts)
      ok2, res, e = pcall(await, x, err, opts, keepalive)
      if ok2 then res, e = dispatch.finish(req, res, e) end
    end
    if name then in_flight[name] = in_flight[name] - 1 end
    if not ok2 then release(); error(res, 0) end
    release(res, e)
    if res and opts and opts.save_to then res, e = save_rest(res, opts) end
    local target = res or e
    if waited > 0 and type(target) == "table" then target.limit_wait = waited end
    if state_fallback and type(target) == "table" then target.state_fallback = state_fallback end
    return res, e
  end
end

-- The public call of one shape: a router's fallback, or the policy (gates, stop rules, cost, log) around
-- the raw call.
local function public_call(kind)
  local raw = raw_call(kind)
  local function call(route, params, opts)
    if router.is_router(route) then return router.call(kind, call, route, params, opts) end
    return reraise(policy.call(kind, raw, route, params, opts))
  end
  return call
end

--- Generates images. On an `images` route: `POST {base_url}/images/generations` (JSON). On a
-- `chat` route: `POST {base_url}/chat/completions` with the prompt as one user message; the images
-- are the Markdown image links of the reply, downloaded (result `content`, `links`, and `unsent`:
-- the params a chat request has no place for); a `content` given as a list of parts gives its
-- text parts as the text and its `image_url` parts as image links, in document order with the
-- Markdown links (`links[i].type = "image_url"`). On a `responses` route: `respond` with the
-- prompt as input and the tool forced.
--
-- On every shape, a 2xx reply without an image is a `decode` error that carries the text that came
-- back: `err.content` (chat, code `no_image_link` or `empty_content`), `err.output_text` and
-- `err.response_id` (responses, code `no_image`); the message quotes an excerpt. (`respond`, unlike
-- `generate` and `edit`, may end with text or tool calls only, and then succeeds.)
--
-- The body holds exactly the fields the caller set in `params` (API field names: `prompt`, `n`,
-- `size`, `quality`, `background`, `output_format`, `output_compression`, `moderation`, `user`,
-- ...; OpenAI API reference, Images > Create image,
-- https://platform.openai.com/docs/api-reference/images/create, read 2026-12-01; schema
-- `CreateImageRequest` of https://github.com/openai/openai-openapi at f85dbe2, 2026-08-21), plus
-- `model` from the route when
-- `params.model` is not set. Nothing is defaulted, nothing is sent as null.
--
-- Before sending, the route's contract gates and the stop rules are checked (`imageroute.policy`;
-- a refusal is a `route` or `validation` error and nothing is sent); after, the result or error
-- gets its `cost` and the call is logged when a log file applies (`imageroute.log`).
--
-- @tparam Route route
-- @tparam table params API fields; `prompt` (non-empty string) is required
-- @tparam[opt] table opts per-call options: `timeout`, `connect_timeout` (seconds), `max_retries`,
--   `deadline` (seconds), `max_images`, `max_call_bytes` (bytes) (see `route`),
--   `log` (a log path for this call, or false), `allow_preview`, `skip_rules` (see imageroute.rules),
--   `on_partial(image, index)` (with `params.stream = true` and `params.partial_images`: each
--   partial image as its event arrives, index 0-based; `image.event` holds the event's other fields),
--   `on_progress(bytes, elapsed_seconds)`, `save_to` (a file path: each final image is decoded
--   straight into a temporary file in that directory as its base64 arrives and renamed to the
--   path at the end, with n > 1 to `name-1.ext`, `name-2.ext`, ...; nothing is left behind on
--   failure; the result's Images carry `path` and read their bytes from the file only when asked;
--   images that arrive otherwise, streamed events or downloaded links, are saved at the end under
--   the same names), `overwrite` (with `save_to`: replace existing files; without it a call whose
--   target exists is refused before sending)
--   A callback (on_partial, on_progress) that raises stops the transfer at once (its
--   connection closed, nothing more buffered); the call is priced and logged as a `cancelled` error,
--   then the callback's error is raised to the caller (inside `run`/`spawn`/`batch` coroutines too).
-- @treturn table result:
--
-- * `images` (list of Image): decoded bytes (`image.bytes`, `image.length` in bytes), `mime`,
--   `format` (sniffed from magic bytes), `width`, `height`, `sha256`, `index` (1-based position in
--   `data`), `revised_prompt`, `url` (when downloaded), `data_url_mime` (when `b64_json` held a
--   data URL: the MIME type it declared, e.g. "image/png"), and `image:save(path [, opts])`: atomic
--   (a temporary file renamed into place), `opts.overwrite` to replace a file, `opts.durable` to
--   fsync before the rename; returns path, bytes or nil, err (`kind = "io"`).
-- * `request_id` (the `x-request-id` header), `http_status`, `created` (Unix seconds), `usage`,
--   `size`, `quality`, `background`, `output_format` (as the API returned them), `model` (sent),
--   `shape`, `endpoint`, `route` (name), `latency` (seconds, all attempts and downloads),
--   `attempts` (HTTP attempts made), `attempt_log` (one table per attempt), `bytes_received`.
-- @treturn[2] nil
-- @treturn[2] table error: `kind` (`"api"` | `"http"` | `"timeout"` | `"connection"` |
--   `"decode"` | `"validation"` | `"route"` | `"cancelled"`), `message`, `cost`, `status`, `type`,
--   `code`, `param`, `request_id`, `response_id` (responses, when known), `attempts`, `attempt_log`,
--   `route`, and `images` when some were received before the failure; `tostring(err)` is
--   one line and never holds the key.
-- @raise when route is not a Route or params is not a table
-- @function generate
M.generate = public_call("generate")

--- Edits images. On an `images` route: `POST {base_url}/images/edits` (multipart,
-- OpenAI API reference, Images > Create image edit,
-- https://platform.openai.com/docs/api-reference/images/createEdit, read 2026-12-01; schema
-- `CreateImageEditRequest` of https://github.com/openai/openai-openapi at f85dbe2, 2026-08-21). On a
-- `chat` route: one user message with
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
-- @function edit
M.edit = public_call("edit")

--- Calls the Responses API with the `image_generation` tool: `POST {base_url}/responses`
-- (OpenAI API reference, Responses > Create a response,
-- https://platform.openai.com/docs/api-reference/responses, read 2026-12-01; the function calling
-- guide, https://platform.openai.com/docs/guides/function-calling; schema `CreateResponse` of
-- https://github.com/openai/openai-openapi).
--
-- The route's `model` (or `params.model`) is the top-level TEXT model, e.g. `gpt-5`; an image
-- model there (`gpt-image-*`, `dall-e-*`, `chatgpt-image-*`) is refused before sending. The image
-- model goes in the tool: `params.image_model`, else `params.tool.model`, else the route's
-- `image_model`. Tool options may be given flat in `params` or in `params.tool` (not both):
-- `size`, `quality`, `background`, `output_format`, `output_compression`, `moderation`,
-- `partial_images`, `input_fidelity`, `input_image_mask` (an image: bytes, path or Image; or
-- `{image_url =}` / `{file_id =}`), `action`. `tool_choice = "image_generation"` forces the tool.
--
-- The app's own tools: `params.tools` (e.g. `{type = "function", name =, parameters =}`) is sent as
-- given, and the `image_generation` tool is added to it from the flat / `params.tool` options, unless
-- the list already holds an `image_generation` tool (then options outside it are refused: they would
-- not be sent). `params.tool = false` sends no image tool (options for it are refused).
--
-- A parameter is sent exactly where the caller put it. `moderation` and `background` are both
-- top-level `CreateResponse` fields and tool options, told apart by type: `moderation = {model =,
-- policy =}` (an object) and `background = true` (background mode, see `start_background`) stay at
-- the top level; `moderation = "low"` and `background = "transparent"` (strings) are the tool's. A
-- value of neither type, or the same option both flat and in `params.tool`, is refused before sending
-- (`validation`, `rule = "ambiguous_placement"`) with an error naming both places, e.g.
-- `params.tool.moderation` vs top-level `moderation`. Nothing is dropped without an error.
--
-- `params.input` is a string, or a list of content items (strings become `input_text`; Images,
-- and `{type = "input_image", image = bytes|path}`, become `input_image` with a data URL;
-- `{type = "input_image", image_url = "https://...", detail = "high"}` is sent as is), or a list of
-- input items: messages `{role =, content = {...}}`, `{type = "function_call_output", call_id =,
-- output =}` (the tool loop's answer), reply items echoed back from `result.output` (their empty
-- arrays stay `[]`: see `imageroute.array`). `previous_response_id` continues a conversation. Every
-- other field is sent as given.
--
-- The tool loop: the model asks for a function (`result.function_calls`), the app runs it and calls
-- `respond` again with `previous_response_id = result.id` and one `function_call_output` item per
-- call; the model then goes on (draws the image). See `examples/tool_loop.lua`.
--
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts as for `generate`, and for background mode `poll_interval` (seconds between
--   polls, default 2; the call's `deadline` bounds creation and polls)
-- @treturn table result: `id` (= `response_id`), `status`, `output_text` (string, the message
--   text joined), `images` (Image list; each with `call_id`, `status`, `revised_prompt`, `size`,
--   `quality`, `output_format`, `background`, and `format_mismatch = {requested =, got =}` when its
--   bytes are not the `output_format` asked), `output` (every output item in order as returned; an
--   `image_generation_call` has `image`, the Image, instead of its base64 `result`),
--   `function_calls` (one `{call_id =, name =, arguments =, args =}` per `function_call` item:
--   `arguments` the JSON string as returned, `args` its decoded table or nil when it is not valid
--   JSON), `image_calls` (one `{id, status[, error]}` per `image_generation_call`), `moderation` (the
--   response's moderation results, when it has them), `usage`, `incomplete_details`, `model`,
--   `tool_model`, `request_id`, `latency` (seconds), `attempts`, `attempt_log`, `route`,
--   `shape = "responses"`, `format_mismatch` (the first one, for the log), and in background mode
--   `background_mode = {response_id =, polls =, poll_log =, created_status =}`.
-- @treturn[2] nil
-- @treturn[2] table error as for `generate`; a response with `status = "failed"`, or an
--   `image_generation_call` with no image, is an `api` error with `code`, `response_id`,
--   `output_text`, `image_calls`, `output`, `function_calls`, and the `images` that did arrive; a
--   response blocked by moderation (`incomplete_details.reason = "content_filter"`, or flagged with
--   nothing produced) is an `api` error with `code = "moderation_blocked"` and `moderation =
--   {blocked = true, reason =, input =, output =}`, never retried and priced as a moderation outcome,
--   never as a success; the 403 of an organization that must be verified is an `api` error with
--   `code = "organization_not_verified"` and a `fix` naming
--   https://platform.openai.com/settings/organization/general, never retried.
-- @raise when route is not a Route or params is not a table
-- @function respond
M.respond = public_call("respond")

--- Starts a `respond` call in background mode (`background = true`: for long generations; a
-- high-quality image can take minutes) without waiting for it, and returns its Transfer: created on
-- the loop, then polled (`GET /responses/{id}`) every `opts.poll_interval` seconds (default 2)
-- within the call's deadline (`opts.deadline`, else the route's), with the gates, stop rules, cost
-- and log of every call. `transfer:wait()` returns the same result as a foreground `respond` (plus
-- `background_mode`); `transfer:cancel([reason])` stops it (`POST /responses/{id}/cancel` once the
-- response exists; the outcome is a `cancelled` error with `response_id` and `cancel_status`);
-- `transfer.response_id` and `transfer.status` follow it. `respond(route, {..., background = true})`
-- is the same call, waited for. See `imageroute.background` (OpenAI API reference, Responses,
-- https://platform.openai.com/docs/api-reference/responses, and the background mode guide,
-- https://platform.openai.com/docs/guides/background, read 2026-12-01).
--
--    local t = imageroute.start_background(assistant, {input = "A detailed city map", quality = "high"})
--    local res, err = t:wait()   -- or, from another flow or a timer: t:cancel()
--
-- @tparam Route route a route (not a router: a fallback cannot take over a response in flight)
-- @tparam table params as for `respond` (copied; `background = true` is set)
-- @tparam[opt] table opts as for `respond` (copied), `poll_interval`
-- @treturn table the Transfer (`done`, `result`, `wait`, `cancel`, `progress`, `take_partials`,
--   `response_id`, `status`, `polls`)
-- @raise when route is not a Route or params is not a table
function M.start_background(route, params, opts)
  assert(core.is_route(route), "start_background: a Route expected")
  assert(type(params) == "table", "start_background: params must be a table")
  return background.start(M.respond, route, params, opts)
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
