--- A provider-lane route on the chat shape: an OpenAI-compatible gateway that answers Chat
-- Completions with a Markdown image link. Text-to-image, then an edit whose input image is sent
-- as a data URL.
--
-- `make demo` runs it against the bundled local server (which answers like such a gateway).
-- For a real gateway:
--   PROVIDER_BASE_URL=https://gateway.example/v1 PROVIDER_API_KEY=... lua5.4 examples/provider_chat.lua
local imageroute = require("imageroute")
local dataurl = require("imageroute.dataurl")

local out = os.getenv("IMAGEROUTE_OUT") or "out"
os.execute("mkdir -p '" .. out .. "'")

local gateway = assert(imageroute.route{
  name = "gateway-chat", lane = "provider", provider = os.getenv("PROVIDER_NAME") or "example-gateway",
  shape = "chat", model = os.getenv("PROVIDER_MODEL") or "gpt-image-2",
  base_url = os.getenv("PROVIDER_BASE_URL") or os.getenv("OPENAI_BASE_URL"),
  api_key_env = os.getenv("PROVIDER_BASE_URL") and "PROVIDER_API_KEY" or "OPENAI_API_KEY",
  billing = {unit = "call", price = 0.03, currency = "USD", source = "the gateway's pricing page",
    date = "2026-05-12"},
  -- the contract, written down from the gateway's own docs (its model list, price page and terms)
  contract = {
    owner = {endpoint = "the gateway operator", account = "our team account", billing = "the gateway operator",
      support = "the gateway's support desk", abuse = "the gateway's abuse desk"},
    model_mapping = "the gateway's model list maps gpt-image-2 to OpenAI gpt-image-2",
    failed_calls_billed = {rejected = "no", moderation = "no", timeout = "unknown", server_error = "no"},
    output_rights = {store = "yes", sell = "yes", delete = "on request"},
    observability = {request_ids = "x-request-id", error_types = "OpenAI-style error bodies",
      usage = "chat usage block", dashboard = "the gateway's dashboard"},
  },
  accepted = "timeout billing is unknown; at a flat $0.03 per call with retries off the exposure is small",
  max_retries = 0,
})

-- the gates, before any call: one row per gate
for _, row in ipairs(gateway:check().rows) do
  print(string.format("check    %-20s %-7s %s", row.gate, row.status, row.reason or ""))
end

local function report(call, res, path, bytes)
  local cost = res.cost or {}
  print(string.format("%-8s route=%s shape=%s model=%s request_id=%s link=%s file=%s bytes=%d latency=%.3fs "
    .. "cost=%s %s (%s)", call, res.route, res.shape, res.model, res.request_id or "-",
    res.images[1].url or "(data URL)", path, bytes, res.latency, tostring(cost.amount), cost.currency or "",
    cost.basis or "-"))
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
