-- Specs for the bundled local server (lua/imageroute/localserver/, bin/imageroute-localserver)
-- and its test helper (spec/support/server.lua).

local socket = require("socket")
local cjson = require("cjson")
local core = require("imageroute.core")
local server = require("support.server")

local json = cjson.new()

-------------------------------------------------------------------------------------------------
-- An independent PNG checker: chunk CRCs, IHDR, zlib stored blocks, Adler-32, scanline length.
-------------------------------------------------------------------------------------------------

local CRC = {}
for n = 0, 255 do
  local c = n
  for _ = 1, 8 do
    c = (c & 1 ~= 0) and (0xEDB88320 ~ (c >> 1)) or (c >> 1)
  end
  CRC[n] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = CRC[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end

local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return (b << 16) | a
end

--- Check a PNG; returns info {width, height, raw_len, chunks} or raises with the reason.
local function check_png(png)
  assert(type(png) == "string", "PNG must be a string")
  assert(png:sub(1, 8) == "\137PNG\r\n\26\n", "bad PNG signature")
  local pos, chunks, idat = 9, {}, {}
  local info = {chunks = chunks}
  while pos <= #png do
    assert(pos + 11 <= #png, "truncated chunk header at " .. pos)
    local len, kind = string.unpack(">I4c4", png, pos)
    local data = png:sub(pos + 8, pos + 7 + len)
    assert(#data == len, "truncated chunk " .. kind)
    local crc = string.unpack(">I4", png, pos + 8 + len)
    assert(crc == crc32(kind .. data), "bad CRC in chunk " .. kind)
    chunks[#chunks + 1] = kind
    if kind == "IHDR" then
      local w, h, depth, ctype, comp, filter, interlace = string.unpack(">I4I4BBBBB", data)
      assert(depth == 8 and ctype == 2 and comp == 0 and filter == 0 and interlace == 0, "unexpected IHDR")
      info.width, info.height = w, h
    elseif kind == "IDAT" then
      idat[#idat + 1] = data
    end
    pos = pos + 12 + len
  end
  assert(chunks[1] == "IHDR" and chunks[#chunks] == "IEND", "IHDR first and IEND last")
  local z = table.concat(idat)
  local cmf, flg = z:byte(1, 2)
  assert(cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0, "bad zlib header")
  -- stored blocks only (what the server writes)
  local p, raw, final = 3, {}, false
  while not final do
    local hdr = z:byte(p)
    assert(hdr, "truncated deflate stream")
    final = hdr & 1 == 1
    assert((hdr >> 1) & 3 == 0, "expected a stored block")
    local len, nlen = string.unpack("<I2I2", z, p + 1)
    assert(len == (~nlen & 0xFFFF), "LEN/NLEN mismatch")
    raw[#raw + 1] = z:sub(p + 5, p + 4 + len)
    p = p + 5 + len
  end
  local data = table.concat(raw)
  assert(string.unpack(">I4", z, p) == adler32(data), "bad Adler-32")
  assert(p + 4 == #z + 1, "bytes after the zlib stream")
  info.raw_len = #data
  assert(#data == info.height * (1 + info.width * 3), "scanline data has the wrong length")
  for y = 0, info.height - 1 do
    assert(data:byte(y * (1 + info.width * 3) + 1) <= 4, "bad filter byte")
  end
  return info
end

-------------------------------------------------------------------------------------------------
-- Raw HTTP helpers (for what socket.http hides: truncation, keep-alive, overlap)
-------------------------------------------------------------------------------------------------

local function connect(s)
  local c = assert(socket.connect("127.0.0.1", s.port))
  c:settimeout(10)
  return c
end

-- Read everything until the server closes. Returns text, error ("closed" is normal).
local function read_all(c)
  local data, err, partial = c:receive("*a")
  return data or partial, err
end

local function parse_response(text)
  local head_end = assert(text:find("\r\n\r\n", 1, true), "no response head")
  local head, body = text:sub(1, head_end - 1), text:sub(head_end + 4)
  local status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
  local headers = {}
  for name, value in head:gmatch("\r\n([^:]+):%s*([^\r]*)") do headers[name:lower()] = value end
  if (headers["transfer-encoding"] or ""):find("chunked") then
    local out, pos = {}, 1
    while true do
      local line_end = body:find("\r\n", pos, true)
      if not line_end then break end
      local size = tonumber(body:sub(pos, line_end - 1), 16)
      if not size or size == 0 then break end
      out[#out + 1] = body:sub(line_end + 2, line_end + 1 + size)
      pos = line_end + 4 + size
    end
    body = table.concat(out)
  end
  return status, headers, body
end

local function raw_request(s, text)
  local c = connect(s)
  assert(c:send(text))
  local resp = read_all(c)
  c:close()
  return parse_response(resp)
end

local function post_json_text(path, body, extra)
  return "POST " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    .. (extra or "") .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

-- Parse an SSE body into a list of {event = name, data = decoded}.
local function parse_sse(body)
  local events = {}
  for frame in body:gmatch("(.-)\n\n") do
    local name = frame:match("^event: ([^\n]*)")
    local data = frame:match("data: (.*)$")
    events[#events + 1] = {event = name, data = data == "[DONE]" and data or json.decode(data)}
  end
  return events
end

local function multipart(boundary, parts)
  local out = {}
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. boundary .. "\r\n"
    local disp = 'Content-Disposition: form-data; name="' .. p.name .. '"'
    if p.filename then disp = disp .. '; filename="' .. p.filename .. '"' end
    out[#out + 1] = disp .. "\r\n"
    if p.content_type then out[#out + 1] = "Content-Type: " .. p.content_type .. "\r\n" end
    out[#out + 1] = "\r\n" .. p.data .. "\r\n"
  end
  out[#out + 1] = "--" .. boundary .. "--\r\n"
  return table.concat(out)
end

local function random_bytes(n, seed)
  local x, t = seed or 12345, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    t[i] = string.char((x >> 16) & 0xFF)
  end
  return table.concat(t)
end

local function b64png(s)
  local png = assert(core.b64decode(s))
  check_png(png)
  return png
end

-------------------------------------------------------------------------------------------------

describe("local server", function()
  local s = server.for_block()

  local function post(path, body, headers)
    local status, text, h = s:request("POST", path, body, headers)
    local ok, decoded = pcall(json.decode, text)
    return status, ok and decoded or text, h
  end

  describe("helper and process", function()
    it("starts on a free port and answers /__health", function()
      assert.is_number(s.port)
      assert.equal("http://127.0.0.1:" .. s.port .. "/v1", s.base_url)
      assert.equal("http://127.0.0.1:" .. s.port .. "/v1/x", s.url("/v1/x"))
      assert.equal("http://127.0.0.1:" .. s.port .. "/v1/x", s:url("/v1/x"))
      local status, body = s:request("GET", "/__health")
      assert.equal(200, status)
      assert.equal(s.port, json.decode(body).port)
    end)

    it("stops: the process goes away and the port refuses connections", function()
      local s2 = server.start()
      local port, pid = s2.port, s2.pid
      assert.equal(200, (s2:request("GET", "/__health")))
      s2:stop()
      local f = io.open("/proc/" .. pid .. "/stat")
      local state = f and f:read("a"):match("^%d+ %b() (%a)")
      if f then f:close() end
      assert.is_true(state == nil or state == "Z")
      assert.is_nil(socket.connect("127.0.0.1", port))
      s2:stop() -- idempotent
    end)
  end)

  describe("images/generations", function()
    it("returns valid PNGs with the documented fields and headers", function()
      local status, body, h = post("/v1/images/generations",
        {model = "gpt-image-2", prompt = "a red fox in the snow", n = 2, size = "1536x1024", quality = "high"})
      assert.equal(200, status)
      assert.matches("^req_%x+$", h["x-request-id"])
      assert.matches("^application/json", h["content-type"])
      assert.is_number(body.created)
      assert.matches('"created":%d+[,}]', (select(2, s:request("POST", "/v1/images/generations", {prompt = "i"}))))
      assert.equal(2, #body.data)
      assert.equal("png", body.output_format)
      assert.equal("1536x1024", body.size)
      assert.equal("high", body.quality)
      assert.equal("opaque", body.background)
      local a, b = b64png(body.data[1].b64_json), b64png(body.data[2].b64_json)
      assert.are_not.equal(a, b)
      local info = check_png(a)
      assert.equal(64, info.width)
      assert.equal(64, info.height)
      -- usage: text ceil(#prompt/4); output per image ceil(4160 * 1536*1024 / 1024^2) = 6240
      local u = body.usage
      assert.equal(math.ceil(#"a red fox in the snow" / 4), u.input_tokens)
      assert.equal(u.input_tokens, u.input_tokens_details.text_tokens)
      assert.equal(0, u.input_tokens_details.image_tokens)
      assert.equal(2 * 6240, u.output_tokens)
      assert.equal(u.input_tokens + u.output_tokens, u.total_tokens)
    end)

    it("defaults: n 1, size 1024x1024, quality medium", function()
      local status, body = post("/v1/images/generations", {prompt = "x"})
      assert.equal(200, status)
      assert.equal(1, #body.data)
      assert.equal("1024x1024", body.size)
      assert.equal("medium", body.quality)
      assert.equal(1056, body.usage.output_tokens)
    end)

    it("different prompts give different bytes; the same prompt the same bytes", function()
      local _, one = post("/v1/images/generations", {prompt = "a cat"})
      local _, two = post("/v1/images/generations", {prompt = "a dog"})
      local _, again = post("/v1/images/generations", {prompt = "a cat"})
      assert.are_not.equal(one.data[1].b64_json, two.data[1].b64_json)
      assert.equal(one.data[1].b64_json, again.data[1].b64_json)
    end)

    it("validates prompt, n and size with OpenAI error bodies", function()
      local status, body, h = post("/v1/images/generations", {model = "gpt-image-2"})
      assert.equal(400, status)
      assert.equal("prompt", body.error.param)
      assert.equal("invalid_request_error", body.error.type)
      assert.matches("^req_", h["x-request-id"])
      status, body = post("/v1/images/generations", {prompt = "x", n = 11})
      assert.equal(400, status)
      assert.equal("n", body.error.param)
      status, body = post("/v1/images/generations", {prompt = "x", size = "big"})
      assert.equal(400, status)
      assert.equal("size", body.error.param)
      status, body = post("/v1/images/generations", "{not json", {["content-type"] = "application/json"})
      assert.equal(400, status)
      assert.equal("invalid_json", body.error.code)
    end)

    it("response_format url returns data[].url served under /files", function()
      local _, body = post("/v1/images/generations", {prompt = "x", response_format = "url"})
      local url = body.data[1].url
      assert.matches("^http://127%.0%.0%.1:%d+/files/img_%x+%.png$", url)
      assert.is_nil(body.data[1].b64_json)
      local status, png, h = s:request("GET", url:match("^http://[^/]+(/.*)$"))
      assert.equal(200, status)
      assert.equal("image/png", h["content-type"])
      check_png(png)
    end)
  end)

  describe("images/edits", function()
    local input1, input2 = random_bytes(3000, 1), random_bytes(5000, 2)

    it("parses multipart with binary parts and records them", function()
      local boundary = "----imageroute-test-boundary"
      local body = multipart(boundary, {
        {name = "model", data = "gpt-image-2"},
        {name = "prompt", data = "make it blue"},
        {name = "n", data = "1"},
        {name = "image[]", filename = "a.png", content_type = "image/png", data = input1},
        {name = "image[]", filename = "b.png", content_type = "image/png", data = input2},
        {name = "mask", filename = "m.png", content_type = "image/png", data = "\r\n--" .. boundary .. "x"},
      })
      local status, resp = post("/v1/images/edits", body,
        {["content-type"] = "multipart/form-data; boundary=" .. boundary})
      assert.equal(200, status)
      local png = b64png(resp.data[1].b64_json)
      assert.are_not.equal(input1, png)
      assert.equal(512, resp.usage.input_tokens_details.image_tokens) -- 256 per image part, not the mask
      local rec = s:requests()[1]
      assert.equal("/v1/images/edits", rec.path)
      assert.equal(#body, rec.body_bytes)
      assert.equal(6, #rec.parts)
      assert.equal("model", rec.parts[1].name)
      assert.equal("gpt-image-2", rec.parts[1].value)
      assert.equal(cjson.null, rec.parts[1].filename)
      assert.equal("image[]", rec.parts[4].name)
      assert.equal("a.png", rec.parts[4].filename)
      assert.equal("image/png", rec.parts[4].content_type)
      assert.equal(3000, rec.parts[4].size)
      assert.equal(input1, core.b64decode(rec.parts[4].data_b64))
      assert.equal(input2, core.b64decode(rec.parts[5].data_b64))
      assert.equal("\r\n--" .. boundary .. "x", core.b64decode(rec.parts[6].data_b64))
      local lean = s:requests({data = false})[1]
      assert.equal(cjson.null, lean.parts[4].data_b64)
    end)

    it("the output depends on the input images", function()
      local boundary = "b0undary"
      local function edit(img)
        local _, resp = post("/v1/images/edits", multipart(boundary, {
          {name = "prompt", data = "same prompt"},
          {name = "image", filename = "x.png", content_type = "image/png", data = img},
        }), {["content-type"] = 'multipart/form-data; boundary="' .. boundary .. '"'})
        return resp.data[1].b64_json
      end
      assert.are_not.equal(edit(input1), edit(input2))
    end)

    it("answers 400 without an image part", function()
      local status, resp = post("/v1/images/edits", multipart("zz", {{name = "prompt", data = "p"}}),
        {["content-type"] = "multipart/form-data; boundary=zz"})
      assert.equal(400, status)
      assert.equal("image", resp.error.param)
      status = post("/v1/images/edits", "--zz\r\nbroken", {["content-type"] = "multipart/form-data; boundary=zz"})
      assert.equal(400, status)
    end)

    it("accepts a large (20 MB) upload", function()
      local big = string.rep(random_bytes(4096, 7), 5 * 1024)
      local boundary = "bigboundary"
      local t0 = socket.gettime()
      local status, resp = post("/v1/images/edits", multipart(boundary, {
        {name = "prompt", data = "big"},
        {name = "image", filename = "big.png", content_type = "image/png", data = big},
      }), {["content-type"] = "multipart/form-data; boundary=" .. boundary})
      assert.equal(200, status)
      b64png(resp.data[1].b64_json)
      assert.is_true(socket.gettime() - t0 < 10)
      assert.equal(#big, s:requests({data = false})[1].parts[2].size)
    end)
  end)

  describe("responses", function()
    local tool = {{type = "image_generation", model = "gpt-image-2", size = "1024x1536", quality = "low"}}

    it("generates an image_generation_call item and a message", function()
      local status, r = post("/v1/responses", {model = "gpt-5", input = "Draw a lighthouse", tools = tool})
      assert.equal(200, status)
      assert.matches("^resp_%x+$", r.id)
      assert.equal("response", r.object)
      assert.equal("completed", r.status)
      assert.equal("gpt-5", r.model)
      assert.equal(cjson.null, r.error)
      assert.equal(2, #r.output)
      local call, msg = r.output[1], r.output[2]
      assert.equal("image_generation_call", call.type)
      assert.matches("^ig_%x+$", call.id)
      assert.equal("completed", call.status)
      assert.equal("1024x1536", call.size)
      assert.equal("low", call.quality)
      b64png(call.result)
      assert.equal("message", msg.type)
      assert.equal("output_text", msg.content[1].type)
      assert.same({}, msg.content[1].annotations)
      assert.equal(r.usage.input_tokens + r.usage.output_tokens, r.usage.total_tokens)
    end)

    it("accepts item-list input with input_image data URLs", function()
      local img = core.b64encode(random_bytes(100))
      local status, r = post("/v1/responses", {model = "gpt-5", tools = tool, input = {
        {role = "user", content = {
          {type = "input_text", text = "make this a picture of a boat"},
          {type = "input_image", image_url = "data:image/png;base64," .. img},
        }},
      }})
      assert.equal(200, status)
      assert.equal("image_generation_call", r.output[1].type)
      assert.equal("edit", r.output[1].action)
    end)

    it("answers with a message only without the tool, or with tool_choice none", function()
      local _, r = post("/v1/responses", {model = "gpt-5", input = "hello there"})
      assert.equal(1, #r.output)
      assert.equal("message", r.output[1].type)
      assert.matches("hello there", r.output[1].content[1].text)
      _, r = post("/v1/responses", {model = "gpt-5", input = "draw a cat", tools = tool, tool_choice = "none"})
      assert.equal(1, #r.output)
      _, r = post("/v1/responses", {model = "gpt-5", input = "a cat", tools = tool})
      assert.equal(1, #r.output)
      _, r = post("/v1/responses", {model = "gpt-5", input = "a cat", tools = tool,
        tool_choice = {type = "image_generation"}})
      assert.equal(2, #r.output)
    end)

    it("chains previous_response_id and rejects unknown ids", function()
      local _, first = post("/v1/responses", {model = "gpt-5", input = "draw a red boat", tools = tool})
      local _, second = post("/v1/responses", {model = "gpt-5", input = "now make the image blue", tools = tool,
        previous_response_id = first.id})
      assert.equal(first.id, second.previous_response_id)
      assert.are_not.equal(first.output[1].result, second.output[1].result)
      assert.matches(first.id, second.output[2].content[1].text, 1, true)
      local status, err = post("/v1/responses", {model = "gpt-5", input = "x", previous_response_id = "resp_nope"})
      assert.equal(400, status)
      assert.equal("previous_response_id", err.error.param)
    end)

    it("rejects an image model as the top-level model", function()
      local status, err = post("/v1/responses", {model = "gpt-image-2", input = "draw", tools = tool})
      assert.equal(400, status)
      assert.equal("model", err.error.param)
    end)

    it("response_status failed and incomplete", function()
      s:script({{response_status = "failed"}, {response_status = "incomplete"}})
      local _, r = post("/v1/responses", {model = "gpt-5", input = "draw", tools = tool})
      assert.equal("failed", r.status)
      assert.equal("server_error", r.error.code)
      assert.equal("failed", r.output[1].status)
      assert.equal(cjson.null, r.output[1].result)
      _, r = post("/v1/responses", {model = "gpt-5", input = "draw", tools = tool})
      assert.equal("incomplete", r.status)
      assert.equal("max_output_tokens", r.incomplete_details.reason)
    end)
  end)

  describe("chat/completions", function()
    it("answers a Markdown link to a served image", function()
      local img = core.b64encode(random_bytes(200, 3))
      local status, r = post("/v1/chat/completions", {model = "gpt-image-2", messages = {
        {role = "user", content = {
          {type = "text", text = "a watercolor fox"},
          {type = "image_url", image_url = {url = "data:image/png;base64," .. img}},
        }},
      }})
      assert.equal(200, status)
      assert.matches("^chatcmpl%-", r.id)
      assert.equal("chat.completion", r.object)
      local m = r.choices[1].message
      assert.equal("assistant", m.role)
      assert.equal(cjson.null, m.refusal)
      assert.equal("stop", r.choices[1].finish_reason)
      local url = m.content:match("^\n\n!%[image%]%((http://127%.0%.0%.1:%d+/files/[%w_]+%.png)%)\n\n$")
      assert.truthy(url)
      local st, png = s:request("GET", url:match("^http://[^/]+(/.*)$"))
      assert.equal(200, st)
      check_png(png)
      assert.equal(r.usage.prompt_tokens + r.usage.completion_tokens, r.usage.total_tokens)
    end)

    it("chat_content with {URL} and {URL2}, and refusal", function()
      s:script({{chat_content = "first {URL} then {URL2}."}, {refusal = "I can't help with that."}})
      local _, r = post("/v1/chat/completions", {model = "gpt-image-2", messages = {{role = "user", content = "two"}}})
      local u1, u2 = r.choices[1].message.content:match("^first (%S+) then (%S+)%.$")
      assert.truthy(u1 and u2)
      assert.are_not.equal(u1, u2)
      _, r = post("/v1/chat/completions", {model = "gpt-image-2", messages = {{role = "user", content = "bad"}}})
      assert.equal(cjson.null, r.choices[1].message.content)
      assert.equal("I can't help with that.", r.choices[1].message.refusal)
    end)

    it("400 on a bad data URL", function()
      local status = post("/v1/chat/completions", {model = "m", messages = {{role = "user", content = {
        {type = "image_url", image_url = {url = "data:image/png;base64"}}}}}})
      assert.equal(400, status)
    end)
  end)

  describe("files", function()
    it("404 JSON for unknown files", function()
      local status, body, h = s:request("GET", "/files/none.png")
      assert.equal(404, status)
      assert.truthy(json.decode(body).error)
      assert.matches("^req_", h["x-request-id"])
    end)
  end)

  describe("behaviours", function()
    it("status and headers", function()
      s:script({{status = 429, headers = {["retry-after"] = "1", ["x-should-retry"] = "false"}}})
      local status, body, h = post("/v1/images/generations", {prompt = "x"})
      assert.equal(429, status)
      assert.equal("1", h["retry-after"])
      assert.equal("false", h["x-should-retry"])
      assert.equal("rate_limit_error", body.error.type)
      assert.matches("^req_", h["x-request-id"])
    end)

    it("error body, default status 400", function()
      s:script({{error = {message = "blocked", type = "image_generation_user_error", code = "moderation_blocked"}}})
      local status, body = post("/v1/images/generations", {prompt = "x"})
      assert.equal(400, status)
      assert.same({message = "blocked", type = "image_generation_user_error", param = cjson.null,
        code = "moderation_blocked"}, body.error)
    end)

    it("html and raw body", function()
      s:script({{html = true, status = 502}, {body = "not json at all", content_type = "text/plain", status = 200}})
      local status, text, h = s:request("POST", "/v1/images/generations", {prompt = "x"})
      assert.equal(502, status)
      assert.matches("^text/html", h["content-type"])
      assert.is_true(#text > 1500 and #text < 4000)
      status, text, h = s:request("POST", "/v1/images/generations", {prompt = "x"})
      assert.equal(200, status)
      assert.equal("not json at all", text)
      assert.equal("text/plain", h["content-type"])
    end)

    it("status < 400 only changes the status of the normal answer", function()
      s:script({{status = 201}})
      local status, body = post("/v1/images/generations", {prompt = "x"})
      assert.equal(201, status)
      b64png(body.data[1].b64_json)
    end)

    it("b64_mode dataurl and url", function()
      s:script({{b64_mode = "dataurl"}, {b64_mode = "url"}})
      local _, body = post("/v1/images/generations", {prompt = "x"})
      local b64 = body.data[1].b64_json:match("^data:image/png;base64,(.*)$")
      b64png(b64)
      _, body = post("/v1/images/generations", {prompt = "x"})
      assert.matches("/files/", body.data[1].url)
    end)

    it("png_bytes gives a big valid incompressible PNG (cached)", function()
      s:script({{png_bytes = 3000000}, {png_bytes = 3000000}})
      local _, body = post("/v1/images/generations", {prompt = "x"})
      local png = assert(core.b64decode(body.data[1].b64_json))
      assert.is_true(#png >= 3000000)
      assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
      -- incompressible: byte values spread evenly
      local counts = {}
      for i = 1000, 200000 do local c = png:byte(i); counts[c] = (counts[c] or 0) + 1 end
      for v = 0, 255 do assert.is_true((counts[v] or 0) > 500) end
      local t0 = socket.gettime()
      local _, again = post("/v1/images/generations", {prompt = "y"})
      assert.equal(body.data[1].b64_json, again.data[1].b64_json)
      assert.is_true(socket.gettime() - t0 < 2)
    end)

    it("png_bytes image passes the full checker", function()
      s:script({{png_bytes = 200000}})
      local _, body = post("/v1/images/generations", {prompt = "x"})
      local info = check_png(assert(core.b64decode(body.data[1].b64_json)))
      assert.is_true(info.raw_len >= 200000)
    end)

    it("drop closes without an answer", function()
      s:script({{drop = true}})
      local status, err = s:request("POST", "/v1/images/generations", {prompt = "x"})
      assert.is_nil(status)
      assert.equal("closed", err)
      assert.equal(1, #s:requests())
    end)

    it("truncate sends the full Content-Length and half the body", function()
      s:script({{truncate = true}})
      local c = connect(s)
      c:send(post_json_text("/v1/images/generations", '{"prompt":"x"}'))
      local text = read_all(c)
      c:close()
      local head_end = text:find("\r\n\r\n", 1, true)
      local length = tonumber(text:sub(1, head_end):match("[Cc]ontent%-[Ll]ength: (%d+)"))
      local got = #text - head_end - 3
      assert.is_true(got < length)
      assert.is_true(got >= length // 2 - 1)
    end)

    it("the x-imageroute-test header applies; the queue wins over it", function()
      local hdr = {["x-imageroute-test"] = '{"status": 503}'}
      local status = post("/v1/images/generations", {prompt = "x"}, hdr)
      assert.equal(503, status)
      s:script({{status = 418}})
      status = post("/v1/images/generations", {prompt = "x"}, hdr)
      assert.equal(418, status)
      status = post("/v1/images/generations", {prompt = "x"}, {["x-imageroute-test"] = "{oops"})
      assert.equal(400, status)
    end)

    it("delay waits without blocking other connections", function()
      s:script({{delay = 0.6}})
      local slow = connect(s)
      slow:send(post_json_text("/v1/images/generations", '{"prompt":"slow"}'))
      socket.sleep(0.05)
      local t0 = socket.gettime()
      local status = post("/v1/images/generations", {prompt = "fast"})
      assert.equal(200, status)
      assert.is_true(socket.gettime() - t0 < 0.4)
      local st = parse_response(read_all(slow))
      slow:close()
      assert.equal(200, st)
    end)
  end)

  describe("control API", function()
    it("records requests in order with times, and resets", function()
      post("/v1/images/generations", {prompt = "one"}, {["X-Custom"] = "A"})
      post("/v1/responses", {model = "gpt-5", input = "two"})
      local log = s:requests()
      assert.equal(2, #log)
      assert.equal("POST", log[1].method)
      assert.equal("/v1/images/generations", log[1].path)
      assert.equal("one", log[1].json.prompt)
      assert.equal("A", log[1].headers["x-custom"])
      assert.equal("application/json", log[1].headers["content-type"])
      assert.equal(#'{"prompt":"one"}', log[1].body_bytes)
      assert.is_nil(log[1].parts)
      assert.is_true(log[1].t_start <= log[1].t_end)
      assert.is_true(log[1].t_end <= log[2].t_start)
      assert.equal("two", log[2].json.input)
      local st = s:stats()
      assert.equal(2, st.requests)
      assert.equal(0, st.in_flight)
      assert.equal(1, st.max_in_flight)
      s:script({{status = 500}})
      s:reset()
      assert.same({}, s:requests())
      assert.equal(0, s:stats().requests)
      assert.equal(0, s:stats().queued)
      assert.equal(200, (post("/v1/images/generations", {prompt = "x"})))
    end)

    it("control and /files calls are not recorded and do not take behaviours", function()
      s:script({{status = 500}})
      s:stats()
      s:request("GET", "/files/x.png")
      assert.equal(0, #s:requests())
      assert.equal(500, (post("/v1/images/generations", {prompt = "x"})))
    end)

    it("two slow requests overlap", function()
      s:script({{delay = 0.5}, {delay = 0.5}})
      local t0 = socket.gettime()
      local a, b = connect(s), connect(s)
      a:send(post_json_text("/v1/images/generations", '{"prompt":"a"}'))
      b:send(post_json_text("/v1/images/generations", '{"prompt":"b"}'))
      local sa = parse_response(read_all(a))
      local sb = parse_response(read_all(b))
      a:close(); b:close()
      assert.equal(200, sa)
      assert.equal(200, sb)
      assert.is_true(socket.gettime() - t0 < 0.9)
      local log = s:requests()
      assert.equal(2, #log)
      assert.is_true(log[1].t_end - log[1].t_start >= 0.5)
      assert.is_true(log[2].t_start < log[1].t_end and log[1].t_start < log[2].t_end)
      assert.equal(2, s:stats().max_in_flight)
    end)
  end)

  describe("HTTP handling", function()
    it("answers 400 to garbage and keeps serving", function()
      local status, h = raw_request(s, "THIS IS NOT HTTP\r\n\r\n")
      assert.equal(400, status)
      assert.matches("^req_", h["x-request-id"])
      status = raw_request(s, "POST /v1/images/generations HTTP/1.1\r\nContent-Length: abc\r\n\r\n")
      assert.equal(400, status)
      status = raw_request(s, "POST /v1/images/generations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
      assert.equal(400, status)
      local c = connect(s)
      c:send("POST /v1/images/generations HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort")
      c:close()
      assert.equal(200, (post("/v1/images/generations", {prompt = "still alive"})))
    end)

    it("404 for unknown /v1 paths, 405 for wrong methods", function()
      assert.equal(404, (post("/v1/nope", {})))
      assert.equal(405, (s:request("GET", "/v1/images/generations")))
    end)

    it("reads chunked request bodies", function()
      local body = '{"prompt":"chunked prompt"}'
      local status, _, resp = raw_request(s, "POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n"
        .. "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. string.format("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", 10, body:sub(1, 10), #body - 10, body:sub(11)))
      assert.equal(200, status)
      b64png(json.decode(resp).data[1].b64_json)
      assert.equal("chunked prompt", s:requests()[1].json.prompt)
    end)

    it("answers Expect: 100-continue", function()
      local body = '{"prompt":"expect"}'
      local c = connect(s)
      c:send("POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        .. "Expect: 100-continue\r\nContent-Length: " .. #body .. "\r\n\r\n")
      assert.equal("HTTP/1.1 100 Continue", c:receive("*l"))
      assert.equal("", c:receive("*l"))
      c:send(body)
      local status = parse_response(read_all(c))
      c:close()
      assert.equal(200, status)
    end)

    it("closes keep-alive connections after one response", function()
      local one = post_json_text("/v1/images/generations", '{"prompt":"k1"}', "Connection: keep-alive\r\n")
      local c = connect(s)
      c:send(one .. one)
      local text, err = read_all(c) -- returns when the server closes
      c:close()
      assert.is_nil(err)
      local _, h = parse_response(text)
      assert.equal("close", h.connection)
      local _, count = text:gsub("HTTP/1%.1 200", "")
      assert.equal(1, count)
    end)

    it("serves big responses to many concurrent clients", function()
      local n = 8
      local queue = {}
      for k = 1, n do queue[k] = {png_bytes = 3000000, delay = 0.1} end
      s:script(queue)
      local conns = {}
      for k = 1, n do
        conns[k] = connect(s)
        conns[k]:send(post_json_text("/v1/images/generations", '{"prompt":"c' .. k .. '"}'))
      end
      for k = 1, n do
        local status, _, body = parse_response(read_all(conns[k]))
        conns[k]:close()
        assert.equal(200, status)
        assert.is_true(#body > 4000000)
      end
      assert.equal(n, s:stats().max_in_flight)
    end)
  end)

  describe("streaming", function()
    it("images: partial images then completed, paced, with server_time", function()
      s:script({{pace = 0.1}})
      local status, h, body = raw_request(s, post_json_text("/v1/images/generations",
        json.encode({prompt = "x", stream = true, partial_images = 2})))
      assert.equal(200, status)
      assert.matches("^text/event%-stream", h["content-type"])
      local ev = parse_sse(body)
      assert.equal(3, #ev)
      assert.equal("image_generation.partial_image", ev[1].event)
      assert.equal(0, ev[1].data.partial_image_index)
      assert.equal(1, ev[2].data.partial_image_index)
      assert.equal("image_generation.completed", ev[3].event)
      assert.equal(ev[3].event, ev[3].data.type)
      b64png(ev[1].data.b64_json)
      b64png(ev[3].data.b64_json)
      assert.truthy(ev[3].data.usage)
      assert.is_true(ev[3].data.server_time - ev[1].data.server_time >= 0.19)
    end)

    it("edits stream image_edit events", function()
      local body = multipart("sb", {
        {name = "prompt", data = "p"}, {name = "stream", data = "true"}, {name = "partial_images", data = "1"},
        {name = "image", filename = "a.png", content_type = "image/png", data = "abc"},
      })
      local status, _, text = raw_request(s, "POST /v1/images/edits HTTP/1.1\r\nHost: x\r\n"
        .. "Content-Type: multipart/form-data; boundary=sb\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
      assert.equal(200, status)
      local ev = parse_sse(text)
      assert.equal("image_edit.partial_image", ev[1].event)
      assert.equal("image_edit.completed", ev[#ev].event)
    end)

    it("responses stream", function()
      local status, _, text = raw_request(s, post_json_text("/v1/responses", json.encode({model = "gpt-5",
        input = "draw a cat", stream = true, tools = {{type = "image_generation", partial_images = 2}}})))
      assert.equal(200, status)
      local ev = parse_sse(text)
      local names, by = {}, {}
      for k, e in ipairs(ev) do
        names[k] = e.event
        by[e.event] = by[e.event] or e.data
        assert.equal(e.event, e.data.type)
        assert.equal(k - 1, e.data.sequence_number)
      end
      assert.equal("response.created", names[1])
      assert.equal("response.completed", names[#names])
      local partials = 0
      for _, e in ipairs(ev) do
        if e.event == "response.image_generation_call.partial_image" then
          partials = partials + 1
          b64png(e.data.partial_image_b64)
          assert.equal(partials - 1, e.data.partial_image_index)
          assert.matches("^ig_", e.data.item_id)
        end
      end
      assert.equal(2, partials)
      assert.truthy(by["response.image_generation_call.in_progress"])
      assert.truthy(by["response.image_generation_call.generating"])
      local done = by["response.output_item.done"]
      assert.equal("image_generation_call", done.item.type)
      b64png(done.item.result)
      assert.equal("completed", by["response.completed"].response.status)
    end)

    it("truncate cuts a stream short", function()
      s:script({{truncate = true}})
      local c = connect(s)
      c:send(post_json_text("/v1/images/generations", json.encode({prompt = "x", stream = true, partial_images = 3})))
      local text = read_all(c)
      c:close()
      assert.is_nil(text:find("\r\n0\r\n\r\n", 1, true))
      local _, _, body = parse_response(text)
      assert.equal(2, #parse_sse(body))
    end)
  end)
end)
