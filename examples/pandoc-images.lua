--- examples/pandoc-images.lua: a pandoc Lua filter that generates the images a document asks for.
--
-- In the document, an image whose target is `gen:` is generated from its alt text:
--
--     ![a lighthouse on a cliff at dawn, watercolor](gen:)
--     ![a paper boat on a rainy street](gen:){size=1024x1536 quality=low}
--
-- Every such image is generated through imageroute (all of them at once, at most 4 in flight),
-- saved under IMAGEROUTE_IMAGE_DIR (default `images`, created if missing) as
-- `<prompt>-<hash>.<format>`, and the image's target is rewritten to that file (its alt text and
-- title stay; the attributes below are consumed). Other images are left alone. The hash covers the
-- route, the model, the prompt and the attributes: identical links share one image, and running pandoc
-- again reuses the files already there and pays for nothing (IMAGEROUTE_REFRESH=1 generates them
-- again). A failed call fails the run: pandoc exits non-zero with one line per failure, and the
-- images that did arrive stay saved. One line per image goes to stderr (file, request id, cost).
--
-- Attributes, sent as API fields: `size`, `quality`, `background`, `output_format`,
-- `output_compression` (a number), `moderation`.
--
-- The route: IMAGEROUTE_ROUTES (a route file, see examples/routes.lua) with IMAGEROUTE_ROUTE (the
-- route's name); else an official-lane Images route on $OPENAI_BASE_URL (default the OpenAI API)
-- with the model IMAGEROUTE_MODEL (default gpt-image-1) and the key from OPENAI_API_KEY.
--
-- Debian's pandoc (2.17) embeds Lua 5.3, so the filter needs the core built for Lua 5.3 and the
-- Lua paths pointing at it. From the source tree:
--
--     make build LUA=lua5.3
--     LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build-5.3/?.so;;" \
--       pandoc --lua-filter examples/pandoc-images.lua notes.md -o notes.html
--
-- Installed with `luarocks --lua-version 5.3 install ...`: `eval "$(luarocks --lua-version 5.3 path)"`
-- instead of the two variables. `make demo` runs it against the bundled local server.

-- luacheck: read globals pandoc
local imageroute = require("imageroute")
local core = require("imageroute.core")

local FIELDS = {size = "string", quality = "string", background = "string", output_format = "string",
  output_compression = "number", moderation = "string"}
local MAX_IN_FLIGHT = 4

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

local function get_route()
  local file = env("IMAGEROUTE_ROUTES")
  if file then
    local name = env("IMAGEROUTE_ROUTE")
    if not name then
      error("pandoc-images: IMAGEROUTE_ROUTES is set but IMAGEROUTE_ROUTE (the route's name) is not", 0)
    end
    local r, err = imageroute.routes.get(file, name)
    if not r then error("pandoc-images: route " .. name .. " in " .. file .. ": " .. tostring(err), 0) end
    return r
  end
  local r, err = imageroute.route{name = "official", lane = "official", shape = "images",
    model = env("IMAGEROUTE_MODEL") or "gpt-image-1"}
  if not r then error("pandoc-images: " .. tostring(err), 0) end
  return r
end

local dir = env("IMAGEROUTE_IMAGE_DIR") or "images"
local refresh = env("IMAGEROUTE_REFRESH") == "1"
local route          -- made when the first `gen:` image is seen
local wanted = {}    -- key -> {prompt =, params =, base =, ext =, path = (once saved)}
local order = {}     -- keys in document order

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The request an image element asks for: prompt, API params, the attributes it keeps, its key.
local function describe(img)
  local prompt = pandoc.utils.stringify(img.caption)
  if prompt == "" then error("pandoc-images: an image with target gen: needs alt text (the prompt)", 0) end
  local params, kept, names = {prompt = prompt}, {}, {}
  for k, v in pairs(img.attributes) do
    local kind = FIELDS[k]
    if kind == "number" then
      params[k] = tonumber(v) or error("pandoc-images: attribute " .. k .. " must be a number, got " .. v, 0)
      names[#names + 1] = k
    elseif kind then
      params[k] = v
      names[#names + 1] = k
    else
      kept[#kept + 1] = {k, v}
    end
  end
  table.sort(names)
  route = route or get_route()
  local cfg = route:config()
  local parts = {tostring(cfg.name), tostring(cfg.base_url), tostring(cfg.model), prompt}
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. tostring(params[k]) end
  local key = core.sha256(table.concat(parts, "\n"))
  return params, kept, key
end

local function collect(img)
  if img.src ~= "gen:" then return nil end
  local params, _, key = describe(img)
  if not wanted[key] then
    local ext = params.output_format or "png"
    local base = dir .. "/" .. imageroute.safe_name(params.prompt:sub(1, 40)) .. "-" .. key:sub(1, 12)
    wanted[key] = {prompt = params.prompt, params = params, base = base, ext = ext}
    order[#order + 1] = key
  end
  return nil
end

local function generate(doc)
  if #order == 0 then return nil end
  os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  local jobs, job_keys = {}, {}
  for _, key in ipairs(order) do
    local w = wanted[key]
    local cached = w.base .. "." .. w.ext
    if not refresh and file_exists(cached) then
      w.path = cached
      io.stderr:write(("pandoc-images: %s (already there, no call)\n"):format(cached))
    else
      jobs[#jobs + 1] = {route = route, params = w.params}
      job_keys[#jobs] = key
    end
  end
  local failures = {}
  imageroute.batch(jobs, {max_in_flight = MAX_IN_FLIGHT, keep_results = false, on_done = function(i, res, err)
    local w = wanted[job_keys[i]]
    if not res then
      failures[#failures + 1] = ("pandoc-images: %q: %s"):format(w.prompt, tostring(err))
      return
    end
    local img = res.images[1]
    local p = w.base .. "." .. (img.format or w.ext)
    local ok, serr = img:save(p, {overwrite = true})
    if not ok then
      failures[#failures + 1] = ("pandoc-images: %q: %s"):format(w.prompt, tostring(serr))
      return
    end
    w.path = p
    local cost = res.cost or {}
    io.stderr:write(("pandoc-images: %s (%d bytes, request %s, %s %s)\n"):format(p, img.length,
      tostring(res.request_id), cost.amount and ("%.4f"):format(cost.amount) or "cost unknown", cost.currency or ""))
  end})
  if #failures > 0 then error(table.concat(failures, "\n"), 0) end
  return doc
end

local function rewrite(img)
  if img.src ~= "gen:" then return nil end
  local _, kept, key = describe(img)
  img.src = assert(wanted[key] and wanted[key].path, "pandoc-images: an image was not generated")
  img.attr = pandoc.Attr(img.identifier, img.classes, kept)
  return img
end

-- three passes: find the `gen:` images, generate them all at once, point the images at the files
return {
  {Image = collect},
  {Pandoc = generate},
  {Image = rewrite},
}
