--- A provider-lane route on the chat shape: an OpenAI-compatible gateway that answers Chat
-- Completions with a Markdown image link. Text-to-image, then an edit whose input image is sent
-- as a data URL.
--
-- `make demo` runs it against the bundled local server (which answers like such a gateway).
-- For a real gateway:
--   PROVIDER_BASE_URL=https://gateway.example/v1 PROVIDER_API_KEY=... lua5.4 examples/provider_chat.lua
local imageroute = require "imageroute"
local dataurl = require "imageroute.dataurl"

local out = os.getenv("IMAGEROUTE_OUT") or "out"
os.execute("mkdir -p '" .. out .. "'")

local gateway = assert(imageroute.route{
  name = "gateway-chat", lane = "provider", provider = os.getenv("PROVIDER_NAME") or "example-gateway",
  shape = "chat", model = os.getenv("PROVIDER_MODEL") or "gpt-image-2",
  base_url = os.getenv("PROVIDER_BASE_URL") or os.getenv("OPENAI_BASE_URL"),
  api_key_env = os.getenv("PROVIDER_BASE_URL") and "PROVIDER_API_KEY" or "OPENAI_API_KEY",
  billing = {unit = "call", price = 0.03, currency = "USD", failed_calls_billed = "unknown"},
})

local function report(call, res, path, bytes)
  print(string.format("%-8s route=%s shape=%s model=%s request_id=%s link=%s file=%s bytes=%d latency=%.3fs",
    call, res.route, res.shape, res.model, res.request_id or "-", res.images[1].url or "(data URL)", path, bytes,
    res.latency))
end

local gen, err = imageroute.generate(gateway, {prompt = "A paper boat on a rainy street, photo"})
if not gen then io.stderr:write("generate failed: ", tostring(err), "\n") os.exit(1) end
local path, bytes = assert(gen.images[1]:save(out .. "/provider-chat-generate.png", {overwrite = true}))
report("generate", gen, path, bytes)

-- the edit sends the image back as a data URL content part
local url = assert(dataurl.encode(gen.images[1].bytes))
local edited
edited, err = imageroute.edit(gateway, {prompt = "Make the boat bright yellow", image = url})
if not edited then io.stderr:write("edit failed: ", tostring(err), "\n") os.exit(1) end
path, bytes = assert(edited.images[1]:save(out .. "/provider-chat-edit.png", {overwrite = true}))
report("edit", edited, path, bytes)
