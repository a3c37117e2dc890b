--- An application's routes, in one reviewed place (load with `require("imageroute.routes").get`).
--
--    local routes = require("imageroute.routes")
--    local official = assert(routes.get("examples/routes.lua", "official-images"))
--    print(official:check().ok)
--
-- The file is data: it runs with nothing but `os.getenv` in scope. Each entry is what
-- `imageroute.route{...}` takes; the key is the route's name.
return {
  -- The official Images API. Passes its gates by construction (host api.openai.com, or a loopback
  -- host standing in for it); costs come from the published price rows (imageroute.prices).
  ["official-images"] = {
    lane = "official", shape = "images", model = "gpt-image-1",
    description = "OpenAI Images API: generations and edits",
    billing = {unit = "token", currency = "USD",
      -- not published by the provider: recorded as unknown so failed calls are never priced as free
      failed_calls_billed = {rejected = "unknown", moderation = "unknown", timeout = "unknown",
        server_error = "unknown"}},
    log = "out/imageroute-calls.jsonl",
  },

  -- The official Responses API: a text model on top, the image model in the image_generation tool.
  ["official-responses"] = {
    lane = "official", shape = "responses", model = "gpt-5", image_model = "gpt-image-2",
    description = "OpenAI Responses API with the image_generation tool",
    billing = {unit = "token", currency = "USD"},
    log = "out/imageroute-calls.jsonl",
  },

  -- A provider gateway on the chat shape (Chat Completions answering with a Markdown image link),
  -- billed a flat price per call. Its contract is written down from the gateway's own docs; the gate
  -- that is still open (failed-call billing on timeouts) is accepted with a reason, logged with
  -- every call.
  ["acme-chat"] = {
    lane = "provider", provider = "acme", shape = "chat", model = "gpt-image-2",
    base_url = os.getenv("ACME_BASE_URL") or "https://gateway.example/v1", api_key_env = "ACME_API_KEY",
    timeout = 300, max_retries = 0, -- no idempotency key: a retry could bill twice
    billing = {unit = "call", price = 0.03, currency = "USD", source = "acme pricing page",
      date = "2026-05-12"},
    contract = {
      owner = {endpoint = "Acme Ltd", account = "our team account (billing@example.com)", billing = "Acme Ltd",
        support = "support@gateway.example, 1 business day", abuse = "abuse@gateway.example"},
      model_mapping = "Acme model list 2026-05-12 maps gpt-image-2 to OpenAI gpt-image-2; test image reviewed",
      failed_calls_billed = {rejected = "no", moderation = "no", timeout = "unknown", server_error = "no"},
      output_rights = {store = "yes", sell = "yes", delete = "on request, within 30 days"},
      observability = {request_ids = "x-request-id header", error_types = "OpenAI-style error bodies",
        usage = "chat usage block", dashboard = "https://gateway.example/dashboard"},
      docs = "https://gateway.example/docs",
    },
    accepted = "timeout billing unknown; retries off, flat $0.03 per call caps the exposure (reviewed 2026-05-12)",
    log = "out/imageroute-calls.jsonl",
  },
}
