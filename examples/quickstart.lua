--- The main job: generate an image on an official-lane route, edit it with a mask, save both.
--
-- Against the bundled local server: `make demo` (it sets OPENAI_BASE_URL to the server).
-- Against the real API: `OPENAI_API_KEY=... make demo-live` (OPENAI_BASE_URL unset: api.openai.com).
-- Environment: IMAGEROUTE_MODEL (default gpt-image-1), IMAGEROUTE_OUT (default ./out).
local imageroute = require("imageroute")

local out = os.getenv("IMAGEROUTE_OUT") or "out"
os.execute("mkdir -p '" .. out .. "'")
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local log_path = out .. "/imageroute-calls.jsonl"
local route = assert(imageroute.route{
  name = "official-images",
  lane = "official",
  shape = "images",
  model = os.getenv("IMAGEROUTE_MODEL") or "gpt-image-1",
  log = log_path, -- one JSON line per attempt: route, model, request id, status, latency, cost, files
})

--- Prints one line per call: route, shape, model, request id, file, bytes, latency, cost.
local function report(call, res, path, bytes)
  local cost = res.cost or {}
  print(string.format("%-8s route=%s shape=%s model=%s request_id=%s file=%s bytes=%d latency=%.3fs attempts=%d "
    .. "cost=%s %s (%s)", call, res.route, res.shape, res.model, res.request_id or "-", path, bytes, res.latency,
    res.attempts, cost.amount and string.format("%.6f", cost.amount) or "unknown", cost.currency or "",
    cost.basis or "-"))
end

local function fail(what, err)
  io.stderr:write(what, " failed: ", tostring(err), "\n")
  os.exit(1)
end

--- Stops on a failed call; else saves its first image as out/file and reports it.
local function keep(call, file, res, err)
  if not res then fail(call, err) end
  local path, bytes = res.images[1]:save(out .. "/" .. file, {overwrite = true})
  if not path then fail("save", bytes) end
  report(call, res, path, bytes)
  return res
end

-- 1. generate
local gen = keep("generate", "quickstart-generate.png", imageroute.generate(route, {
  prompt = "A lighthouse on a rocky cliff at dawn, watercolor",
  size = "1024x1024",
  quality = "low",
}))

-- 2. edit the generated image with a mask (alpha 0 in the top half marks the area to change)
keep("edit", "quickstart-edit.png", imageroute.edit(route, {
  prompt = "Add a red sailboat on the sea below the lighthouse",
  image = {data = gen.images[1].bytes, filename = "lighthouse.png"},
  mask = here .. "/assets/mask-1024.png",
  size = "1024x1024",
  quality = "low",
}))

-- 3. what the log says: per-route totals
for name, t in pairs(imageroute.log.summary(log_path)) do
  print(string.format("log      route=%s calls=%d failures=%d images=%d cost=%s p50=%.3fs p95=%.3fs file=%s",
    name, t.calls, t.failures, t.images, tostring(t.cost), t.p50_latency or 0, t.p95_latency or 0, log_path))
end
