-- examples/pandoc-images.lua run by Debian's pandoc, whose embedded Lua is 5.3: so this runs in the
-- Lua 5.3 suite (make test-5.3), where the core of this process is the 5.3 build, and is pending in
-- the 5.4 one. pandoc's Lua loads imageroute from this tree and the core this process loaded, and
-- calls the bundled local server.
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")
local cjson = require("cjson")

local src = debug.getinfo(1, "S").source
local ROOT = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/[^/]*$") or "."
if ROOT:sub(1, 1) ~= "/" then ROOT = os.getenv("PWD") .. "/" .. ROOT end
local FILTER = ROOT .. "/examples/pandoc-images.lua"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function have_pandoc()
  local p = io.popen("command -v pandoc 2>/dev/null")
  local out = p:read("a")
  p:close()
  return out ~= ""
end

--- Runs pandoc with the filter in dir on doc.md (-t json); returns ok, the AST (or nil), stderr.
local function run_pandoc(dir, base_url, extra_env)
  local core_path = assert(package.searchpath("imageroute.core", package.cpath))
  local cpath = core_path:gsub("imageroute/core%.so$", "?.so") .. ";;"
  local lpath = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"
  local err = os.tmpname()
  local cmd = ("cd %s && env -u OPENAI_API_KEY -u IMAGEROUTE_ROUTES -u IMAGEROUTE_REFRESH LUA_PATH=%s LUA_CPATH=%s "
    .. "OPENAI_BASE_URL=%s IMAGEROUTE_IMAGE_DIR=img %s pandoc --lua-filter %s -f markdown -t json doc.md "
    .. "-o out.json 2>%s"):format(q(dir), q(lpath), q(cpath), q(base_url), extra_env or "", q(FILTER), q(err))
  local ok = os.execute(cmd)
  local stderr = fx.read(err)
  os.remove(err)
  local f = io.open(dir .. "/out.json", "rb")
  local ast = f and cjson.decode(f:read("a"))
  if f then f:close() end
  os.remove(dir .. "/out.json")
  return ok, ast, stderr
end

--- Every Image of a pandoc JSON AST, in document order: {src =, alt =, attrs = {k = v}}.
local function images_of(ast)
  local out = {}
  local function text(inlines)
    local t = {}
    for _, il in ipairs(inlines) do
      if il.t == "Str" then t[#t + 1] = il.c elseif il.t == "Space" then t[#t + 1] = " " end
    end
    return table.concat(t)
  end
  local function walk(v)
    if type(v) ~= "table" then return end
    if v.t == "Image" then
      local attrs = {}
      for _, kv in ipairs(v.c[1][3]) do attrs[kv[1]] = kv[2] end
      out[#out + 1] = {src = v.c[3][1], alt = text(v.c[2]), attrs = attrs}
    end
    for _, x in pairs(v) do walk(x) end
  end
  walk(ast.blocks)
  return out
end

local DOC = table.concat({
  "# Notes", "",
  "![a lighthouse at dawn](gen:)", "",
  "A boat: ![a paper boat](gen:){size=1024x1536 quality=low width=50%}", "",
  "![a lighthouse at dawn](gen:) again, and a plain image: ![keep](other.png)", "",
}, "\n")

describe("examples/pandoc-images.lua in pandoc (Lua 5.3)", function()
  if _VERSION ~= "Lua 5.3" or not have_pandoc() then
    pending(_VERSION ~= "Lua 5.3" and "pandoc embeds Lua 5.3: this runs in `make test-5.3`"
      or "pandoc is not installed (make deps)")
    return
  end
  local s = server.for_block()

  it("turns gen: links into generated files and points the images at them; a second run calls nothing", function()
    local dir = fx.tmpdir()
    local f = assert(io.open(dir .. "/doc.md", "w"))
    f:write(DOC)
    f:close()
    local ok, ast, stderr = run_pandoc(dir, s.base_url)
    assert.is_true(ok, stderr)
    local imgs = images_of(ast)
    assert.equal(4, #imgs)
    -- two distinct requests, the attributes sent as API fields, the User-Agent of pandoc's Lua
    local reqs = s:requests()
    assert.equal(2, #reqs)
    local by_prompt = {}
    for _, r in ipairs(reqs) do
      by_prompt[r.json.prompt] = r
      assert.truthy(r.headers["user-agent"]:find("(Lua 5.3; libcurl/", 1, true), r.headers["user-agent"])
    end
    assert.same({model = "gpt-image-1", prompt = "a lighthouse at dawn"}, by_prompt["a lighthouse at dawn"].json)
    assert.same({model = "gpt-image-1", prompt = "a paper boat", size = "1024x1536", quality = "low"},
      by_prompt["a paper boat"].json)
    -- the images point at real PNGs holding the bytes the server generates for those prompts
    assert.equal(imgs[1].src, imgs[3].src)
    assert.equal("other.png", imgs[4].src)
    assert.same({width = "50%"}, imgs[2].attrs)
    local expect = {{1, "a lighthouse at dawn", {}}, {2, "a paper boat", {size = "1024x1536", quality = "low"}}}
    for i, want in ipairs(expect) do
      local img = imgs[want[1]]
      assert.equal(want[2], img.alt)
      assert.truthy(img.src:find("^img/[%w%-]+%-%x+%.png$"), img.src)
      local data = fx.read(dir .. "/" .. img.src)
      assert.equal("\137PNG\r\n\26\n", data:sub(1, 8))
      local params = {prompt = want[2]}
      for k, v in pairs(want[3]) do params[k] = v end
      local res = assert(imageroute.generate(fx.route(s), params))
      assert.equal(res.images[1].sha256, imageroute.image(data).sha256, "image " .. i)
      assert.equal(res.images[1].bytes, data)
    end
    assert.truthy(stderr:find("pandoc-images: " .. imgs[1].src, 1, true), stderr)
    -- again: the files are there, so no call is made and the output is the same
    s:reset()
    local ok2, ast2, stderr2 = run_pandoc(dir, s.base_url)
    assert.is_true(ok2, stderr2)
    assert.same(imgs, images_of(ast2))
    assert.equal(0, #s:requests())
    assert.truthy(stderr2:find("already there, no call", 1, true))
    os.execute("rm -rf " .. q(dir))
  end)

  it("uses the route file's route, and fails the run on a failed call, leaving no file", function()
    local dir = fx.tmpdir()
    local f = assert(io.open(dir .. "/doc.md", "w"))
    f:write("![a red fox](gen:)\n")
    f:close()
    f = assert(io.open(dir .. "/routes.lua", "w"))
    f:write(("return {['pandoc-local'] = {lane = 'official', base_url = %q, model = 'gpt-image-2', max_retries = 0, "
      .. "api_key_env = %q}}\n"):format(s.base_url, fx.KEY_ENV))
    f:close()
    s:script({{status = 400, error = {message = "Your prompt was rejected", type = "invalid_request_error",
      code = "moderation_blocked"}}})
    local env = "IMAGEROUTE_ROUTES=routes.lua IMAGEROUTE_ROUTE=pandoc-local"
    local ok, _, stderr = run_pandoc(dir, "http://127.0.0.1:9/v1", env)
    assert.is_falsy(ok)
    assert.truthy(stderr:find('"a red fox"', 1, true), stderr)
    assert.truthy(stderr:find("rejected", 1, true), stderr)
    local reqs = s:requests()
    assert.equal(1, #reqs)
    assert.equal("gpt-image-2", reqs[1].json.model)
    assert.equal("Bearer " .. fx.KEY, reqs[1].headers.authorization)
    local p = io.popen("ls -A " .. q(dir .. "/img") .. " 2>/dev/null")
    assert.equal("", p:read("a"))
    p:close()
    -- the same document once the server answers: the file arrives
    local ok2, ast, stderr2 = run_pandoc(dir, "http://127.0.0.1:9/v1", env)
    assert.is_true(ok2, stderr2)
    assert.equal("\137PNG\r\n\26\n", fx.read(dir .. "/" .. images_of(ast)[1].src):sub(1, 8))
    os.execute("rm -rf " .. q(dir))
  end)
end)
