-- The packaging as a user meets it: the rockspec builds what the tree holds, names the Lua versions
-- the core runs on and checks curl by library (Debian keeps its header under the multiarch include
-- directory, where LuaRocks does not look); LICENSE matches it; the User-Agent names the running
-- Lua. The installs themselves run in `make rock-check` (luarocks make, install, a call, test).
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")

local src = debug.getinfo(1, "S").source
local ROOT = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/[^/]*$") or "."
local ROCKSPEC = ROOT .. "/rockspec/imageroute-scm-1.rockspec"

local function rockspec()
  local env = {}
  assert(loadfile(ROCKSPEC, "t", env))()
  return env
end

local function lines(cmd)
  local p = assert(io.popen(cmd))
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

describe("the rockspec", function()
  it("builds every Lua module and C source of the tree, and nothing that is not there", function()
    local rs = rockspec()
    local want_lua, want_c = {}, {}
    for _, f in ipairs(lines("cd " .. ROOT .. " && find lua -name '*.lua' | sort")) do
      local mod = f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      want_lua[mod] = f
    end
    for _, f in ipairs(lines("cd " .. ROOT .. " && ls src/*.c | sort")) do want_c[f] = true end
    local got_lua, got_c = {}, {}
    for mod, v in pairs(rs.build.modules) do
      if type(v) == "string" then got_lua[mod] = v
      else for _, f in ipairs(v.sources) do got_c[f] = true end end
    end
    assert.same(want_lua, got_lua)
    assert.same(want_c, got_c)
    assert.same({"curl", "b64", "crypto"}, rs.build.modules["imageroute.core"].libraries)
    for _, f in pairs(rs.build.install.bin) do assert.truthy(io.open(ROOT .. "/" .. f), f) end
  end)

  it("leaves the optional Redis module to a rockspec of its own, building every C source of src/redis/", function()
    local env = {}
    assert(loadfile(ROOT .. "/rockspec/imageroute-redis-scm-1.rockspec", "t", env))()
    local want, got = {}, {}
    for _, f in ipairs(lines("cd " .. ROOT .. " && ls src/redis/*.c | sort")) do want[f] = true end
    local names = {}
    for mod, v in pairs(env.build.modules) do
      names[#names + 1] = mod
      for _, f in ipairs(v.sources) do got[f] = true end
    end
    assert.same({"imageroute.redis"}, names)
    assert.same(want, got)
    assert.same({"hiredis"}, env.build.modules["imageroute.redis"].libraries)
    assert.equal("hiredis", env.external_dependencies.HIREDIS.library)
    assert.is_nil(env.external_dependencies.HIREDIS.header)
    assert.equal("lua >= 5.3, < 5.5", env.dependencies[1])
    assert.equal("imageroute", env.dependencies[2])
    -- the main rock needs no hiredis: no module of it links it, and imageroute.state loads it lazily
    for _, dep in pairs(rockspec().external_dependencies) do assert.not_equal("hiredis", dep.library) end
    assert.is_nil(rockspec().build.modules["imageroute.redis"])
  end)

  it("says Lua 5.3 to 5.4, checks its C libraries by library, and has the fields of a published rock", function()
    local rs = rockspec()
    assert.equal("lua >= 5.3, < 5.5", rs.dependencies[1])
    assert.truthy(rs.dependencies[2]:find("^lua%-cjson"))
    for name, dep in pairs(rs.external_dependencies) do
      assert.is_nil(dep.header, name .. " checked by header")
      assert.is_string(dep.library, name)
    end
    assert.equal("MIT", rs.description.license)
    assert.is_string(rs.description.summary)
    assert.truthy(#rs.description.summary <= 100)
    assert.truthy(rs.description.detailed:find("Lua 5.3 and 5.4", 1, true))
    assert.truthy(#rs.description.labels >= 3)
    assert.equal("command", rs.test.type)
    assert.truthy(io.open(ROOT .. "/" .. rs.test.script), rs.test.script)
    -- the source rock `make rock` builds carries the archive this URL names
    assert.equal("imageroute-scm-1.tar.gz", rs.source.url)
  end)

  it("has the MIT LICENSE it declares", function()
    local text = fx.read(ROOT .. "/LICENSE")
    assert.truthy(text:find("^MIT License\n"))
    assert.truthy(text:find("Copyright (c) 2026 the imageroute authors", 1, true))
    assert.truthy(text:find("WITHOUT WARRANTY OF ANY KIND", 1, true))
  end)
end)

describe("the User-Agent", function()
  it("names the Lua running the call", function()
    local s = server.start()
    local ok, err = pcall(function()
      assert(imageroute.generate(fx.route(s), {prompt = "p"}))
      local ua = s:requests()[1].headers["user-agent"]
      local want = ("imageroute/%s (%s; libcurl/"):format(imageroute._VERSION, _VERSION)
      assert.equal(want, ua:sub(1, #want))
    end)
    s:stop()
    assert(ok, err)
  end)
end)
