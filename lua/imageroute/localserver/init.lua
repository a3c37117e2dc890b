--- imageroute.localserver: a small OpenAI-compatible image API server for the demo, the tests and
-- the benchmarks. One thread, non-blocking luasocket sockets, `socket.select` and one coroutine per
-- connection, so slow (`delay`) or large requests never hold up the others.
--
-- Endpoints under `/v1`: `POST images/generations` (JSON), `POST images/edits` (multipart or JSON),
-- `POST responses` (with the `image_generation` tool), `GET responses/{id}` and `POST
-- responses/{id}/cancel` (background mode), `POST chat/completions` (gateway style: a Markdown image
-- link), `GET models/{model}`, `GET organization/usage/images` and `GET organization/costs` (the Usage
-- and Costs API, from the calls served: `imageroute.localserver.organization`). `GET /files/<name>`
-- serves stored images. Control endpoints (not recorded):
-- `GET /__requests`, `POST /__reset`, `POST /__script`, `GET /__stats`, `GET /__health`.
--
-- Images are real PNGs (64x64 RGB, zlib "stored" blocks, CRC32 and Adler32 computed here) whose
-- pixels come from a hash of the prompt, the image index and the input images.
--
-- Token rule (deterministic, documented for the tests):
--
--  * text tokens = ceil(#text / 4);
--  * image input tokens = 256 per input image (edits, Responses input_image, chat image_url);
--  * image output tokens per image = ceil(base * W * H / 1024^2) with base low 272, medium 1056,
--    high 4160 (auto = medium; size auto = 1024x1024).
--
-- Behaviours (a JSON object per /v1 request, from the `POST /__script` queue or the
-- `x-imageroute-test` request header; the queue wins) are described on `M.serve`.
--
-- The modules, one concern each: `http` (connections, reading requests, writing responses),
-- `loop` (the select loop and the coroutine waits), `multipart`, `png` (CRC, Adler, PRNG, PNG
-- fixtures), `json` (JSON as the API writes it), `state` (recorded requests, queue, files, ids),
-- `faults` (behaviours, rate limits), `serve` (the flow of one connection), `control` (`/__*`,
-- `/files/`), `dispatch` (the endpoint table), `mock` (what the mocks share) and one mock per API:
-- `images`, `responses`, `chat`. `process` starts and stops a server in another process.
--
-- Adding an endpoint: write its handler (`function(ctx, B)`, see `imageroute.localserver.dispatch`)
-- in the mock of its API or in a module of its own (listed in the rockspec), and add ONE line to the
-- endpoint table below, e.g.
--
--    dispatch.add("GET", "/v1/responses/{id}", responses.retrieve)            -- ctx.params.id
--    dispatch.add("GET", "/v1/organization/costs", require("imageroute.localserver.billing").costs)
--
-- Every `/v1` endpoint is recorded (`GET /__requests`), takes behaviours (the queue, the
-- `x-imageroute-test` header: errors, delays, drops, truncation...) and rate limits like the others.
-- @module imageroute.localserver

local J = require("imageroute.localserver.json")
local fixtures = require("imageroute.localserver.png")
local multipart = require("imageroute.localserver.multipart")
local mock = require("imageroute.localserver.mock")
local dispatch = require("imageroute.localserver.dispatch")
local loop = require("imageroute.localserver.loop")
local serve = require("imageroute.localserver.serve")
local images = require("imageroute.localserver.images")
local responses = require("imageroute.localserver.responses")
local chat = require("imageroute.localserver.chat")
local organization = require("imageroute.localserver.organization")

-- The /v1 endpoints: one line each.
dispatch.add("POST", "/v1/images/generations", images.generations)
dispatch.add("POST", "/v1/images/edits", images.edits)
dispatch.add("POST", "/v1/responses", responses.create)
dispatch.add("POST", "/v1/chat/completions", chat.completions)
dispatch.add("GET", "/v1/organization/usage/images", organization.usage_images)
dispatch.add("GET", "/v1/organization/costs", organization.costs)
dispatch.add("GET", "/v1/responses/{id}", responses.retrieve)
dispatch.add("POST", "/v1/responses/{id}/cancel", responses.cancel)
dispatch.add("GET", "/v1/models/{model}", require("imageroute.localserver.models").retrieve)

local M = {}

-- The fixtures and parsers the specs use, documented where they live: `EMPTY_ARRAY` (marker for an
-- empty JSON array) and `json_encode` (JSON as the OpenAI API writes it) from
-- `imageroute.localserver.json`; `crc32`, `adler32`, `png_encode`, `image` (a seeded 64x64 PNG) and
-- `random_png` from `imageroute.localserver.png`; `parse_multipart` from
-- `imageroute.localserver.multipart`; `image_output_tokens` (the token rule) from `imageroute.localserver.mock`.
M.EMPTY_ARRAY, M.json_encode = J.EMPTY_ARRAY, J.encode
for _, name in ipairs{"crc32", "adler32", "png_encode", "image", "random_png"} do M[name] = fixtures[name] end
M.parse_multipart, M.image_output_tokens = multipart.parse_multipart, mock.image_output_tokens

--- Run the server forever (never returns; raises if it cannot listen).
--
-- Behaviours: a JSON object B per /v1 request, taken from the `POST /__script` queue (one per
-- request, in head-arrival order) or else from the `x-imageroute-test: <B as JSON>` header.
-- Fields: `status`, `headers`, `error` {message,type,param,code} (status default 400), `html`
-- (2 KB HTML page, status default 200), `body` + `content_type` (raw body, status default 200),
-- `delay` (s, before answering), `drop`, `truncate`, `b64_mode` ("dataurl"|"url"), `png_bytes`,
-- `chat_content` ({URL}, {URL2}), `chat_images` (N image parts in `message.images`; `chat_images_as`
-- "url" for links), `refusal`, `response_status` ("failed"|"incomplete"), `pace` (s),
-- `drip` ({bytes =, interval =}: the body a few bytes at a time), `reset` (half the body or events,
-- then a TCP reset), `rate_limit` ({requests =, window = s}: 429s like the real API past that many
-- requests in the window; every answer carries x-ratelimit-* headers), `unverified` (the 403 of an
-- organization not verified for the image model), and for Responses `function_arguments`,
-- `background_polls`, `moderation_block`, `format_switch` (see `imageroute.localserver.responses`),
-- for Models and chat `models` (extra labels to serve).
-- A `status` >= 400 alone gives an OpenAI error body; a `status` < 400 only changes the status of
-- the normal answer.
--
-- @tparam[opt] table opts `host` (default "127.0.0.1"), `port` (0 = any free port), `port_file`
--   (the bound port is written there, atomically, once listening), `quiet` (no log on stderr),
--   `owner_pid` (exit when this process is gone).
function M.serve(opts)
  return loop.run(opts, serve.connection)
end

return M
