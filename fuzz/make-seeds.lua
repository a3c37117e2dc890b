-- make-seeds.lua: writes the seed corpora fuzz/corpus/<harness>/ (small, deterministic files).
-- Run from the repo root: lua5.4 fuzz/make-seeds.lua. Seeds found by fuzzing (crashes that were
-- fixed, or interesting inputs) are added to the corpus directories by hand as crash-* / found-*
-- files and are not touched by this script.
--
-- Layouts (see fuzz/fuzz_common.h): chunked input = <k % 8> <k plan bytes> <payload>;
-- sse prefixes one cap byte (< 128 default cap), extract one flags byte (bit 0: discard).

local ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = (a << 16) | ((b or 0) << 8) | (c or 0)
    local q = {}
    for k = 3, 0, -1 do
      local idx = (v >> (6 * k)) & 63
      q[#q + 1] = ALPHA:sub(idx + 1, idx + 1)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

local function hex(h) return (h:gsub("%s", ""):gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end

local function le32(n) return string.pack("<I4", n) end

-- deterministic pseudo-random bytes
local seed = 12345
local function rnd_bytes(n)
  local t = {}
  for i = 1, n do
    seed = (seed * 1103515245 + 12345) % 2147483648
    t[i] = string.char((seed >> 16) & 255)
  end
  return table.concat(t)
end

-- tiny images
local PNG = hex[[89504E470D0A1A0A0000000D4948445200000001000000010806000000
  1F15C4890000000D49444154789C636001000000050001 0D0A2DB40000000049454E44AE426082]]
local GIF = hex"47494638396101000100800000FFFFFF00000021F90401000000002C00000000010001000002024401003B"
local JPEG = hex"FFD8FFE000104A46494600010100000100010000" ..
  hex"FFDB004300" .. string.rep("\8", 64) ..                       -- one quantization table
  hex"FFC0001108000200030301220002110103110 1" .. hex"FFD9"          -- SOF0: 3x2, 3 components
local JPEG_PROG = hex"FFD8FFFE0003 41 FFC2000B08004000800111 00FFD9"
local function webp(chunk, body)
  local riff = "WEBP" .. chunk .. le32(#body) .. body
  return "RIFF" .. le32(#riff) .. riff
end
local WEBP_VP8X = webp("VP8X", hex"10000000" .. hex"FF0300" .. hex"FF0100") -- 1024x512, flags alpha
local WEBP_VP8L = webp("VP8L", hex"2F" .. hex"3FC00F00" .. "\0\0\0") -- 64x64-ish header
local WEBP_VP8 = webp("VP8 ", hex"300100" .. hex"9D012A" .. hex"0004" .. hex"0002" .. "\0\0")

local files = {}
local function seed_file(h, name, data) files[#files + 1] = {h, name, data} end

-- sniff: raw bytes
seed_file("sniff", "png-1x1", PNG)
seed_file("sniff", "gif-1x1", GIF)
seed_file("sniff", "jpeg-sof0", JPEG)
seed_file("sniff", "jpeg-sof2-comment", JPEG_PROG)
seed_file("sniff", "webp-vp8x", WEBP_VP8X)
seed_file("sniff", "webp-vp8l", WEBP_VP8L)
seed_file("sniff", "webp-vp8", WEBP_VP8)
seed_file("sniff", "png-truncated", PNG:sub(1, 20))
seed_file("sniff", "jpeg-fill-bytes", hex"FFD8FFFFFFFFD0FF01FFC4000400FFC000110800100020")
seed_file("sniff", "riff-not-webp", "RIFF\0\0\0\0WAVEfmt ")
seed_file("sniff", "gif87a", "GIF87a\1\0\1\0")

-- b64: chunked text
local function chunked(plan, payload) return string.char(#plan) .. plan .. payload end
local png64, gif64, jpeg64 = b64(PNG), b64(GIF), b64(JPEG)
seed_file("b64", "plain", chunked("", "aGVsbG8gd29ybGQ="))
seed_file("b64", "whitespace-chunks", chunked("\1\2\5", "aGVs bG8\nd29y\r\nbGQ\t="))
seed_file("b64", "unpadded", chunked("\3", "YWJjZA"))
seed_file("b64", "pad-one", chunked("", "YWI="))
seed_file("b64", "bad-char", chunked("", "YW*j"))
seed_file("b64", "data-after-pad", chunked("", "YQ==YQ=="))
seed_file("b64", "too-much-pad", chunked("", "YQ==="))
seed_file("b64", "truncated", chunked("", "YWJjZ"))
seed_file("b64", "dataurl-png", chunked("", "data:image/png;base64," .. png64))
seed_file("b64", "dataurl-gif-chunks", chunked("\7\0", "data:image/gif;base64," .. gif64))
seed_file("b64", "dataurl-jpeg", chunked("\4\4\4", "data:image/jpeg;base64," .. jpeg64))
seed_file("b64", "dataurl-webp", chunked("", "data:image/webp;base64," .. b64(WEBP_VP8X)))
seed_file("b64", "dataurl-not-image", chunked("", "data:text/plain;base64,aGk="))
seed_file("b64", "dataurl-not-base64", chunked("", "data:image/png," .. png64))
seed_file("b64", "dataurl-params", chunked("", "data:image/png;name=a.png;base64," .. png64))
seed_file("b64", "long-past-stage", chunked("\0", b64(rnd_bytes(3300))))

-- extract: flags byte, chunked JSON
local function ex(flags, plan, payload) return string.char(flags) .. chunked(plan, payload) end
local body_images = '{"created":1713833628,"data":[{"b64_json":"' .. png64 ..
  '","revised_prompt":"a lighthouse"}],"usage":{"total_tokens":100}}'
seed_file("extract", "images", ex(0, "", body_images))
seed_file("extract", "images-chunks", ex(0, "\1\3\7\15\31", body_images))
seed_file("extract", "images-two", ex(0, "\0", '{"data":[{"b64_json":"' .. png64 .. '"},{"b64_json": "' ..
  gif64 .. '"}]}'))
seed_file("extract", "escaped-slash", ex(0, "\2\5", '{"data":[{"b64_json":"' .. png64:gsub("/", "\\/") .. '"}]}'))
seed_file("extract", "escaped-newlines", ex(0, "", '{"b64_json":"' .. png64:sub(1, 20) .. '\\n' ..
  png64:sub(21) .. '"}'))
seed_file("extract", "responses", ex(0, "\6", '{"id":"resp_1","output":[{"type":"image_generation_call","id":"ig_1",' ..
  '"status":"completed","result":"' .. png64 .. '"}],"usage":{}}'))
seed_file("extract", "result-dataurl", ex(0, "", '{"result":"data:image/png;base64,' .. png64 .. '"}'))
seed_file("extract", "chat-dataurl", ex(0, "\3", '{"choices":[{"message":{"images":[{"type":"image_url","image_url":' ..
  '{"url":"data:image/jpeg;base64,' .. jpeg64 .. '"}}]}}]}'))
seed_file("extract", "partial", ex(0, "", '{"type":"image_generation.partial_image","partial_image_index":0,' ..
  '"partial_image_b64":"' .. gif64 .. '"}'))
seed_file("extract", "discard", ex(1, "\4", '{"type":"response.completed","response":{"output":[{"result":"' ..
  png64 .. '"}]}}'))
seed_file("extract", "bad-values", ex(0, "", '{"b64_json":"not*base64","result":123,"b64\\u005fjson":"x",' ..
  '"b64_json" : "YQ\\u003d\\u003d","result":"data:image/png,AAAA","result":"data:' .. ("x"):rep(80) .. ',AAAA"}'))
seed_file("extract", "key-not-key", ex(0, "", '["b64_json","YWJj",{"b64_json":null},{"b64_json":"YWJj"}]'))
seed_file("extract", "unterminated", ex(0, "\2", '{"data":[{"b64_json":"' .. png64:sub(1, 30)))
seed_file("extract", "long-value", ex(0, "\0\200", '{"b64_json":"' .. b64(rnd_bytes(3200)) .. '"}'))

-- sse: cap byte, chunked event stream
local function sse(cap, plan, payload) return string.char(cap) .. chunked(plan, payload) end
local partial = '{"type":"image_generation.partial_image","b64_json":"' .. gif64 .. '","partial_image_index":0}'
local completed = '{"type":"image_generation.completed","b64_json":"' .. png64 .. '","usage":{}}'
local stream_images = "event: image_generation.partial_image\ndata: " .. partial ..
  "\n\nevent: image_generation.completed\ndata: " .. completed .. "\n\n"
seed_file("sse", "images", sse(0, "", stream_images))
seed_file("sse", "images-chunks", sse(0, "\1\2\3\5\7\11\13", stream_images))
seed_file("sse", "images-crlf", sse(0, "\5", (stream_images:gsub("\n", "\r\n"))))
seed_file("sse", "images-cr", sse(0, "\1", (stream_images:gsub("\n", "\r"))))
seed_file("sse", "responses", sse(0, "\0", "event: response.created\ndata: {\"type\":\"response.created\"}\n\n" ..
  "event: response.image_generation_call.partial_image\n" ..
  "data: {\"type\":\"response.image_generation_call.partial_image\"," ..
  "\"item_id\":\"ig_1\",\"partial_image_index\":0,\"partial_image_b64\":\"" .. gif64 .. "\"}\n\n" ..
  "event: response.output_item.done\n" ..
  "data: {\"item\":{\"type\":\"image_generation_call\",\"id\":\"ig_1\",\"result\":\"" .. png64 .. "\"}}\n\n" ..
  "event: response.completed\n" ..
  "data: {\"response\":{\"output\":[{\"result\":\"" .. png64 .. "\"}]}}\n\n"))
seed_file("sse", "chat-done", sse(0, "\3", 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n' ..
  'data: {"choices":[{"delta":{"images":[{"image_url":{"url":"data:image/gif;base64,' .. gif64 .. '"}}]}}]}\n\n' ..
  "data: [DONE]\n\n"))
seed_file("sse", "fields", sse(0, "", ": keep-alive\nid: 7\nretry: 1000\nevent:error\ndata\ndata:{\"error\":\n" ..
  "data: {\"message\":\"x\"}}\nunknown: y\nevent\n\n\n"))
seed_file("sse", "multiline-image", sse(0, "\4", "event: image_edit.completed\ndata: {\"b64_json\":\"" ..
  png64:sub(1, 40) .. "\ndata: " .. png64:sub(41) .. "\"}\n\n"))
seed_file("sse", "cap-small", sse(130, "\2", stream_images))
seed_file("sse", "unfinished", sse(0, "", "event: image_generation.partial_image\r\ndata: {\"b64_json\":\"" ..
  gif64:sub(1, 20)))
seed_file("sse", "long-event-name", sse(0, "", "event: " .. ("e"):rep(120) .. "\ndata: {}\n\n"))

-- walk: option byte (bits 0-1 call: 0 images generate, 1 respond, 2 responses generate, 3 chat;
-- bit 2 event stream; bit 3 edit), then a chunked reply body
local function walk(opt, plan, payload) return string.char(opt) .. chunked(plan, payload) end
local dpng = "data:image/png;base64," .. png64
seed_file("walk", "images", walk(0, "", '{"created":1,"data":[{"b64_json":"' .. png64 .. '","revised_prompt":"r"}]}'))
seed_file("walk", "images-url", walk(8, "\7", '{"data":[{"url":"http://127.0.0.1:9/a.png"},{"b64_json":"' ..
  png64 .. '"}]}'))
seed_file("walk", "images-empty", walk(0, "", '{"data":[],"usage":{"total_tokens":1e400}}'))
seed_file("walk", "images-junk", walk(0, "\3", '{"data":[7,{"b64_json":5},{"url":{}}]}'))
seed_file("walk", "images-stream", walk(4, "\5\9", "event: image_generation.partial_image\ndata: " ..
  '{"type":"image_generation.partial_image","b64_json":"' .. gif64 .. '","partial_image_index":0}\n\n' ..
  "event: image_generation.completed\ndata: " ..
  '{"type":"image_generation.completed","b64_json":"' .. png64 .. '","created_at":3}\n\n'))
seed_file("walk", "stream-error", walk(4, "\11", "event: response.created\ndata: " ..
  '{"type":"response.created","response":{"id":"resp_1"}}\n\nevent: error\ndata: ' ..
  '{"type":"error","error":{"message":"boom","code":{"x":1},"type":"server_error"}}\n\n'))
seed_file("walk", "stream-notjson", walk(6, "\2", "event: response.created\ndata: {\"response\":{\"id\":7}}\n\n" ..
  "data: {not json\n\n"))
local resp = '{"id":"resp_1","status":"completed","output":[{"type":"message","content":[' ..
  '{"type":"output_text","text":"hello"},{"type":"output_text","text":5}]},' ..
  '{"type":"image_generation_call","id":"ig_1","status":"completed","result":"' .. png64 .. '"}]}'
seed_file("walk", "respond", walk(1, "", resp))
seed_file("walk", "responses-generate", walk(2, "\1\2\3", resp))
seed_file("walk", "responses-text-only", walk(2, "", '{"id":"resp_2","status":"completed","output":[' ..
  '{"type":"message","content":[{"type":"output_text","text":"I cannot draw that."}]}]}'))
seed_file("walk", "responses-junk", walk(1, "", '{"id":{},"status":9,"output":[1,"x",{"type":7},' ..
  '{"type":"image_generation_call","result":null,"status":{}},{"type":"message","content":"x"}]}'))
seed_file("walk", "responses-stream", walk(6, "\13", "event: response.created\ndata: " ..
  '{"type":"response.created","response":{"id":"resp_3"}}\n\n' ..
  "event: response.image_generation_call.partial_image\ndata: " ..
  '{"item_id":"ig_1","partial_image_index":0,"partial_image_b64":"' .. gif64 .. '"}\n\n' ..
  "event: response.output_item.done\ndata: " ..
  '{"item":{"type":"image_generation_call","id":"ig_1","result":"' .. png64 .. '"}}\n\n' ..
  "event: response.completed\ndata: " ..
  '{"response":{"id":"resp_3","status":"completed","output":[{"type":"image_generation_call","result":"' ..
  png64 .. '"}]}}\n\n'))
seed_file("walk", "stream-cancelled", walk(6 + 16, "\50", "event: response.created\ndata: " ..
  '{"type":"response.created","response":{"id":"resp_4"}}\n\nevent: response.output_item.done\ndata: ' ..
  '{"item":{"type":"image_generation_call","id":"ig_1","result":"' .. png64 .. '"}}\n\n'))
seed_file("walk", "stream-closed", walk(4 + 16 + 32, "\40", "event: image_generation.partial_image\ndata: " ..
  '{"type":"image_generation.partial_image","b64_json":"' .. gif64 .. '","partial_image_index":0}\n\n'))
seed_file("walk", "chat-markdown", walk(3, "", '{"id":"c1","choices":[{"message":{"content":' ..
  '"![a](' .. dpng .. ') and ![b](http://127.0.0.1:9/b.png)"}}]}'))
seed_file("walk", "chat-parts", walk(3, "\4\4", '{"choices":[{"message":{"content":[' ..
  '{"type":"text","text":"' .. ("long text "):rep(40) .. '"},' ..
  '{"type":"image_url","image_url":{"url":"' .. dpng .. '"}},' ..
  '{"type":"image_url","image_url":"' .. dpng .. '"},{"type":"text","text":"![c](' .. dpng .. ')"},' ..
  '"bare",7,{"type":"image_url","image_url":{"url":5}},{"type":"text","text":{}},[[["deep"]]]]}}]}'))
seed_file("walk", "chat-parts-short", walk(11, "", '{"choices":[{"message":{"content":[' ..
  '{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"' .. dpng .. '"}},' ..
  '{"type":"text","text":"b"}]}}]}'))
seed_file("walk", "chat-fence", walk(3, "", '{"choices":[{"message":{"content":[' ..
  '{"type":"text","text":"```"},{"type":"image_url","image_url":"' .. dpng .. '"},' ..
  '{"type":"text","text":"![](imageroute-part:1) ![](imageroute-part:9)"}]}}]}'))
seed_file("walk", "chat-junk", walk(3, "", '{"choices":[{"message":{"content":12,"refusal":""}}]}'))
seed_file("walk", "chat-refusal", walk(3, "", '{"choices":[{"message":{"content":null,"refusal":"no"}}]}'))
seed_file("walk", "chat-no-choices", walk(3, "", '{"choices":{"1":{}}}'))
seed_file("walk", "chat-stream", walk(7, "\6", 'data: {"choices":[{"delta":{"content":"![x]("}}]}\n\n' ..
  'data: {"choices":[{"delta":{"content":"' .. dpng .. ')"}}]}\n\ndata: {"choices":[{"delta":{"content":5}}]}\n\n' ..
  "data: [DONE]\n\n"))
seed_file("walk", "chat-images", walk(3, "", '{"choices":[{"message":{"content":"Here.","images":[' ..
  '{"type":"image_url","image_url":{"url":"' .. dpng .. '"}},{"type":"image_url","image_url":"' .. dpng .. '"},' ..
  '{"type":"image_url","image_url":{"url":"http://127.0.0.1:9/c.png"}},7,"bare",{"type":"text","text":"t"}]}}]}'))
seed_file("walk", "chat-stream-images", walk(7, "\6", 'data: {"choices":[{"delta":{"content":"Here."}}]}\n\n' ..
  'data: {"choices":[{"delta":{"images":[{"type":"image_url","image_url":{"url":"' .. dpng .. '"}}]}}]}\n\n' ..
  'data: {"choices":[{"delta":{"images":{"1":5}}}]}\n\ndata: {"choices":[{"delta":7}]}\n\ndata: [DONE]\n\n'))

local n = 0
for _, f in ipairs(files) do
  local dir = "fuzz/corpus/" .. f[1]
  os.execute("mkdir -p " .. dir)
  local fh = assert(io.open(dir .. "/" .. f[2], "wb"))
  fh:write(f[3])
  fh:close()
  n = n + 1
end
print(("make-seeds: wrote %d seeds"):format(n))
