-- scripts/rock-check.sh's call from an installed tree: run with LUA_PATH/LUA_CPATH from
-- `luarocks path --tree TREE` and outside the source tree.
--   lua5.x scripts/rock-call.lua TREE BASE_URL OUTDIR
-- Checks that imageroute and its core load from TREE, makes one generate call (n = 2) against the
-- local server at BASE_URL, saves both images into OUTDIR, reads them back (PNG signature, the same
-- bytes, sha256 and dimensions as the result), and checks what the server received: one request
-- with the key in Authorization and a User-Agent naming this Lua. Exits 1 with the reason otherwise.
local tree, base_url, outdir = arg[1], arg[2], arg[3]
assert(tree and base_url and outdir, "usage: rock-call.lua TREE BASE_URL OUTDIR")
local function fail(msg) io.stderr:write("rock-call: ", msg, "\n"); os.exit(1) end
local function from_tree(what, path)
  local p = package.searchpath(what, path)
  if not p or p:sub(1, #tree + 1) ~= tree .. "/" then
    fail(what .. " does not load from " .. tree .. ": " .. tostring(p))
  end
  return p
end
local mod_path = from_tree("imageroute", package.path)
local core_path = from_tree("imageroute.core", package.cpath)
local imageroute = require("imageroute")
local http = require("socket.http")
local cjson = require("cjson")

local route = assert(imageroute.route{name = "rock-check", base_url = base_url, model = "gpt-image-1",
  api_key_env = "ROCK_CHECK_KEY", max_retries = 0, timeout = 20})
local res, err = imageroute.generate(route, {prompt = "a lighthouse at dawn", n = 2, size = "1024x1024"})
if not res then fail("generate failed: " .. tostring(err)) end
if #res.images ~= 2 then fail("expected 2 images, got " .. #res.images) end
local bytes = 0
for i, img in ipairs(res.images) do
  local p = outdir .. "/rock-" .. i .. ".png"
  local saved, serr = img:save(p)
  if not saved then fail("save failed: " .. tostring(serr)) end
  local f = assert(io.open(p, "rb"))
  local data = f:read("a")
  f:close()
  if data:sub(1, 8) ~= "\137PNG\r\n\26\n" then fail(p .. " is not a PNG") end
  if data ~= img.bytes or #data ~= img.length then fail(p .. " differs from the image's bytes") end
  local again = imageroute.image(data)
  if again.sha256 ~= img.sha256 or again.width ~= img.width or again.height ~= img.height then
    fail(p .. ": sha256 or dimensions differ")
  end
  bytes = bytes + #data
end

local root = base_url:gsub("/v1$", "")
local body, status = http.request(root .. "/__requests")
if status ~= 200 then fail("GET /__requests: " .. tostring(status)) end
local reqs = cjson.decode(body)
if #reqs ~= 1 then fail("the server received " .. #reqs .. " requests, expected 1") end
local h = reqs[1].headers
local want_ua = "^imageroute/" .. imageroute._VERSION:gsub("%p", "%%%0") .. " %(Lua "
  .. _VERSION:match("%d+%.%d+"):gsub("%.", "%%.") .. "; libcurl/"
if not (h["user-agent"] or ""):find(want_ua) then
  fail("User-Agent does not name " .. _VERSION .. ": " .. tostring(h["user-agent"]))
end
if h.authorization ~= "Bearer " .. os.getenv("ROCK_CHECK_KEY") then fail("the key did not reach Authorization") end
print(("rock-check: %s: imageroute %s from %s (core %s): generate -> %d PNGs, %d bytes, saved and read back; "
  .. "%s %s, User-Agent %q"):format(_VERSION, imageroute._VERSION, mod_path, core_path, #res.images, bytes,
  reqs[1].method or "POST", reqs[1].path or "?", h["user-agent"]))
