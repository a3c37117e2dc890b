--- imageroute.types: the values the API hands out: Route, Image, Transfer, Error, Stream.
--
-- This file holds documentation only: it is read by LDoc (`make doc`, listed in config.ld),
-- never loaded, required or installed (it sits outside `lua/`, which holds the installed modules
-- and which spec/packaging_spec.lua checks against the rockspec). Each type's methods are defined
-- once, where the type is: Route in src/route.c (fields, `config`) and lua/imageroute/route.lua
-- (its Lua methods: `check`), Image in src/image.c, Transfer in src/xfer.c, Error in src/error.c,
-- Stream in lua/imageroute/stream.lua. No other module adds or wraps a method.
--
-- Facts about the API cite their public source: the OpenAI API reference
-- (https://platform.openai.com/docs/api-reference, read 2026-12-01) and OpenAI's OpenAPI
-- description (https://github.com/openai/openai-openapi, commit f85dbe2 of 2026-08-21), by
-- section or schema name.
-- @module imageroute.types

--- A route: one validated, immutable route configuration (a userdata), made by `imageroute.route`.
--
-- Every field given to `imageroute.route` can be read back as `route.FIELD` (`route.name`,
-- `route.lane`, `route.provider`, `route.shape`, `route.base_url`, `route.model`, `route.billing`, ...;
-- tables come back as copies), with the defaults filled in, plus `route.host` (the host of
-- `base_url`, e.g. `"api.openai.com"`). A key given as `api_key` reads back as `"<set>"`, never the
-- key. Assigning a field raises ("routes are immutable"): build a new route instead.
-- `tostring(route)` is `imageroute.Route(name=..., lane=..., provider=..., shape=..., model=...)`.
-- @type Route

--- The route's configuration as a plain table (a copy; `api_key` shown as `"<set>"`).
-- @function Route:config
-- @treturn table

--- The acceptance report of the route: its lane, host and contract gates (see `imageroute.contract.check`;
-- defined in lua/imageroute/route.lua).
-- @function Route:check
-- @treturn table report: `allowed`, `ok`, `rows`, `reason`, ...

--- An image: decoded bytes held in C memory (a userdata), in a result's `images`, a partial image, or
-- made by `imageroute.image` / `imageroute.load_image`.
--
-- Fields:
--
-- * `bytes` (string): the image bytes (made on first read and cached; raises once released)
-- * `length` (integer, bytes), also `#image`
-- * `mime` (`"image/png"` | `"image/jpeg"` | `"image/webp"` | `"image/gif"`) and `format` (`"png"` |
--   `"jpeg"` | `"webp"` | `"gif"`): sniffed from the magic bytes, never taken from the server
-- * `width`, `height` (pixels, from the image header; nil when unknown)
-- * `sha256` (hex string of the bytes)
-- * `path`: the file the image was last saved to (or decoded into, with `save_to`)
-- * from the reply: `index` (1-based position in `data`), `revised_prompt`, `url` (when downloaded),
--   `call_id`, `status`, `size`, `quality`, `output_format`, `background` (Responses tool results)
-- * a partial image: `partial_image_index` (0-based, as the API numbers them: OpenAI API
--   reference, Images > Streaming events, `image_generation.partial_image`; Responses > Streaming
--   events, `response.image_generation_call.partial_image`) and `event` (the event's other fields)
--
-- `image:release()` (and `<close>`) frees the bytes at once.
-- @type Image

--- Saves the image atomically: a temporary file in the target's directory, renamed into place.
-- After a save, `image.path` is the path, and a function in `image.on_save` (the call log sets one
-- on a logged call's images) is called as `on_save(image, path, bytes)`; its errors never fail the save.
-- @function Image:save
-- @tparam string path
-- @tparam[opt] table opts `overwrite` (replace an existing file), `durable` (fsync before the rename)
-- @treturn string|nil the path
-- @treturn integer|table bytes written, or the error (`kind = "io"`, `path`, `errno`)

--- Frees the bytes now, keeping `length`, `sha256`, `format`, `mime`, `width`, `height` and the reply's
-- fields; reading `bytes` or saving afterwards raises "image was released". Idempotent.
-- @function Image:release

--- A transfer: one call in flight on the C core's libcurl multi loop (a userdata), made by
-- `imageroute.dispatch.start(kind, route, params [, opts])` (a call without the policy around it: no
-- gates, stop rules, cost or log; its request shaped by `imageroute.shapes.*`), by the core's
-- `start_generate`, `start_edit` or `start_respond` given a shaped request (`{endpoint =, body = |
-- parts =, reader =}`, see src/api.c), or by `imageroute.core.start_api(route, req [, opts])` (a
-- generic API request, the arguments and result of `imageroute.api` except the decoded `body`).
-- A call's transfer's result is the core's reply for its shape to read (`imageroute.dispatch.finish`). The loop keeps it alive until it is done; `imageroute.step` drives it.
-- `transfer:__close()` (a `<close>` variable, or the collector) stops a transfer that is still
-- running and frees its connection.
--
-- `imageroute.start_background` returns a Transfer of the same methods for a Responses call in
-- background mode (a Lua table, see `imageroute.background`): `cancel` there also cancels the response
-- on the API (`POST /responses/{id}/cancel`), and `response_id`, `status` and `polls` follow it.
-- @type Transfer

--- True when the transfer has finished (with a result or an error).
-- @function Transfer:done
-- @treturn boolean

--- The outcome of a finished transfer; raises when it is not done.
-- @function Transfer:result
-- @treturn table|nil the result, as `imageroute.generate` returns it
-- @treturn[2] table the error

--- Steps the loop until this transfer is done, then returns its outcome (other transfers progress meanwhile).
-- @function Transfer:wait
-- @treturn table|nil result
-- @treturn[2] table error

--- Bytes received so far (all attempts), seconds since the start (until the end once done), and the
-- attempt number.
-- @function Transfer:progress
-- @treturn integer bytes
-- @treturn number seconds
-- @treturn integer attempt

--- The partial images received since the last call, oldest first (empty when none), each with
-- `partial_image_index`; their fields are redacted with the call's key.
-- @function Transfer:take_partials
-- @treturn {Image,...}

--- An error: a plain table every failed call returns as its second value (`nil, err`).
--
-- Fields:
--
-- * `kind`: `"api"` (the API answered with an error body), `"http"` (a status without a usable
--   body, or a cap reached), `"timeout"`, `"connection"`, `"decode"` (a reply that cannot be read:
--   bad JSON, bad base64, no image), `"validation"` (refused before sending: arguments, stop rules,
--   the key), `"route"` (a contract gate, or a refused download), `"io"` (saving)
-- * `message` (string, one line), `tostring(err)` (`imageroute <kind> error: <message> [fields]`)
-- * from the API's error object: `status` (HTTP), `type`, `code`, `param` (OpenAI API reference,
--   Errors; the `Error` schema of the OpenAPI description), and `request_id` (the `x-request-id`
--   response header, OpenAI API reference, Introduction > Debugging requests)
-- * refusals: `field` (the offending field), `rule` (a stop rule's name), `gate` (a contract gate),
--   `fix` (what to change), `source` (where the rule's fact comes from)
-- * `attempts` (HTTP attempts made: 0 when nothing was sent), `attempt_log` (one table per attempt),
--   `retry_skipped`, `route` (name), `cost` (see `imageroute.cost.of`), `images` (those received
--   before the failure), `latency` (seconds)
--
-- No string in an error holds the API key (the C core redacts every call's outcome).
-- @type Error

--- `tostring(err)`: the error as one line, `imageroute <kind> error: <message> [field=value, ...]`
-- (the fields that help: `status`, `code`, `field`, `route`, `attempts`, ...), never the key.
-- @function Error:__tostring
-- @treturn string

--- The stream of one call, from `imageroute.stream`: the iterator's state and its to-be-closed value.
-- After the end it holds `res` (the result) or `err` (the error).
-- @type Stream

--- Ends the stream's call now; see `imageroute.stream`. A transfer still running is stopped (its
-- connection closed) and the call is logged as a `connection` error with `code = "stream_closed"`
-- (the request was sent and may be billed: its cost follows the route's
-- `failed_calls_billed.timeout`). Called by the generic `for` on Lua 5.4 when the loop is left early
-- (`break`, `return`, an error); call it yourself on Lua 5.3 or without a `for`. Idempotent; a
-- stream that already ended is left as is.
-- @function Stream:close
