--- Try a provider route against the official one before moving traffic: the same prompt, size and
-- quality to both, once, at the same time; an HTML page with the images side by side (route, lane,
-- provider, model, request id, latency, attempts, cost and its basis under each) and the JSON record.
--
-- `make demo` runs it against the bundled local server (OPENAI_BASE_URL points at it; the server also
-- answers like a chat-shaped gateway). For real endpoints:
--   OPENAI_API_KEY=... PROVIDER_BASE_URL=https://gateway.example/v1 PROVIDER_API_KEY=... lua5.4 examples/compare.lua
-- The same from the command line: imageroute compare PROMPT --route A --route B (--routes FILE names the routes file).
local imageroute = require("imageroute")
local compare = require("imageroute.compare")

local out = os.getenv("IMAGEROUTE_OUT") or "out"
local report_dir = out .. "/compare"
assert(compare.mkdir(out))

-- the reference: the official Images API
local official = assert(imageroute.route{
  name = "official-images", lane = "official", shape = "images", model = "gpt-image-1",
  log = out .. "/imageroute-calls.jsonl",
})

-- the candidate: a provider gateway on the chat shape, its contract written down and accepted
local gateway = assert(imageroute.route{
  name = "gateway-chat", lane = "provider", provider = os.getenv("PROVIDER_NAME") or "example-gateway",
  shape = "chat", model = os.getenv("PROVIDER_MODEL") or "gpt-image-1",
  base_url = os.getenv("PROVIDER_BASE_URL") or os.getenv("OPENAI_BASE_URL"),
  api_key_env = os.getenv("PROVIDER_BASE_URL") and "PROVIDER_API_KEY" or "OPENAI_API_KEY",
  max_retries = 0, -- no idempotency key: a retry could bill twice
  billing = {unit = "call", price = 0.03, currency = "USD", source = "the gateway's pricing page", date = "2026-05-12"},
  contract = {
    owner = {endpoint = "the gateway operator", account = "our team account", billing = "the gateway operator",
      support = "the gateway's support desk", abuse = "the gateway's abuse desk"},
    model_mapping = "to be verified by this comparison",
    failed_calls_billed = {rejected = "no", moderation = "no", timeout = "unknown", server_error = "no"},
    output_rights = {store = "yes", sell = "yes", delete = "on request"},
    observability = {request_ids = "x-request-id", error_types = "OpenAI-style error bodies",
      usage = "chat usage block", dashboard = "the gateway's dashboard"},
  },
  accepted = "trial: one comparison call at a flat $0.03, retries off",
  log = out .. "/imageroute-calls.jsonl",
})

local record, err = compare.run("A lighthouse on a rocky cliff at dawn, watercolor", {official, gateway},
  {size = "1024x1024", quality = "low"})
if not record then
  io.stderr:write("compare failed: ", tostring(err), "\n")
  os.exit(1)
end

for _, e in ipairs(record.entries) do
  print(string.format("compare  route=%s lane=%s provider=%s model=%s request_id=%s latency=%.3fs attempts=%s "
    .. "cost=%s (%s)%s", e.route, e.lane, e.provider, tostring(e.model), tostring(e.request_id or "-"),
    e.latency or 0, tostring(e.attempts), compare.cost_text(e.cost), e.cost and e.cost.basis or "-",
    e.ok and "" or (" error: " .. tostring(e.error and e.error.text))))
end

local html, json = compare.write(record, report_dir)
if not html then
  io.stderr:write("writing the report failed: ", tostring(json), "\n")
  os.exit(1)
end
print("compare  report=" .. html .. " record=" .. json .. " (open the page in a browser: no network needed)")
if not record.ok then os.exit(1) end
