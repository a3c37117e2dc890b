-- The C core's surface: the shared object exports luaopen_imageroute_core and nothing else, so no
-- internal symbol can clash with the host program's or another module's.
describe("the C core's exported symbols", function()
  it("are luaopen_* only", function()
    local so = assert(package.searchpath("imageroute.core", package.cpath))
    local p = assert(io.popen("nm -D --defined-only '" .. so .. "' 2>&1"))
    local out = p:read("a")
    p:close()
    local names = {}
    for name in out:gmatch("%x+ %a ([%w_]+)") do names[#names + 1] = name end
    assert.is_true(#names > 0, out)
    for _, name in ipairs(names) do assert.matches("^luaopen_", name) end
  end)
end)

-- The objects the core is linked from (build/obj/*.o next to build/imageroute/core.so).
local function objects()
  local so = assert(package.searchpath("imageroute.core", package.cpath))
  local dir = so:gsub("/imageroute/core%.so$", "") .. "/obj"
  local p = assert(io.popen("ls '" .. dir .. "'/*.o 2>/dev/null"))
  local list = {}
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

-- file -> {defined = set, undefined = set} from nm.
local function symbols()
  local out = {}
  for _, o in ipairs(objects()) do
    local name = o:match("([%w_]+)%.o$")
    local t = {defined = {}, undefined = {}}
    local p = assert(io.popen("nm '" .. o .. "'"))
    for line in p:lines() do
      local kind, sym = line:match("^%x*%s+(%a)%s+([%w_]+)$")
      if kind == "U" then t.undefined[sym] = true
      elseif kind and kind:match("[TDRB]") then t.defined[sym] = true end
    end
    p:close()
    out[name] = t
  end
  return out
end

describe("the C core's files", function()
  local syms = symbols()
  -- an installed rock has no objects next to its core: nothing to read there
  local function need_objects()
    if not (syms.xfer and syms.sse and syms.api) then
      pending("no objects next to the core (an installed rock?)")
      return false
    end
    return true
  end

  -- who calls whom: file -> the files whose functions it calls
  local function calls(from)
    local set = {}
    for sym in pairs(syms[from] and syms[from].undefined or {}) do
      for f, t in pairs(syms) do
        if f ~= from and t.defined[sym] then set[f] = true end
      end
    end
    return set
  end

  it("call one way: the transport (xfer, loop, sse, extract) never calls the request shapes (api, respond, request)",
    function()
      if not need_objects() then return end
      for _, low in ipairs{"xfer", "loop", "sse", "extract"} do
        local c = calls(low)
        assert.truthy(next(c), low .. ".c calls nothing: the symbols were not read")
        for _, high in ipairs{"api", "respond", "request"} do
          assert.is_nil(c[high], low .. ".c calls into " .. high .. ".c")
        end
      end
    end)

  it("call each other without a circle (file A calls B calls ... A never happens)", function()
    if not need_objects() then return end
    local graph = {}
    for f in pairs(syms) do graph[f] = calls(f) end
    local state = {} -- nil: not seen, 1: on the path, 2: done
    local function visit(f, path)
      state[f] = 1
      for g in pairs(graph[f]) do
        assert.is_not.equal(1, state[g], "a call circle: " .. table.concat(path, " -> ") .. " -> " .. g)
        if not state[g] then
          path[#path + 1] = g
          visit(g, path)
          path[#path] = nil
        end
      end
      state[f] = 2
    end
    for f in pairs(graph) do
      if not state[f] then visit(f, {f}) end
    end
  end)

  it("declare no function that is not defined", function()
    if not need_objects() then return end
    local defined, checked = {}, 0
    for _, t in pairs(syms) do for s in pairs(t.defined) do defined[s] = true end end
    for _, h in ipairs{"src/ir.h", "src/xfer.h"} do
      local f = assert(io.open(h))
      local text = f:read("a")
      f:close()
      for line in text:gmatch("[^\n]+") do
        if not line:find("static inline", 1, true) and not line:find("^%s*#") and not line:find("^%s*/?%*") then
          local name = line:match("[%w_%*]+%s+%**(ir_[%w_]+)%s*%(")
          if name then
            checked = checked + 1
            assert.is_true(defined[name] == true, h .. " declares " .. name .. ", defined nowhere")
          end
        end
      end
    end
    assert.truthy(checked > 40, checked) -- the headers were read
  end)
end)

-- The one-way rule for modules: the C core loads no module of imageroute's Lua layer. Its one
-- require is lua-cjson (a C library), for the image-free JSON of replies and events.
describe("the C core's sources", function()
  it("require lua-cjson and no other module (no imageroute Lua module among them)", function()
    local p = assert(io.popen("ls src/*.c src/*.h src/*/*.c 2>/dev/null"))
    local required, uses = {}, 0
    for path in p:lines() do
      local f = assert(io.open(path))
      local text = f:read("a")
      f:close()
      for _ in text:gmatch('"require"') do uses = uses + 1 end
      for _ in text:gmatch("luaL_requiref") do uses = uses + 1 end
      for _ in text:gmatch("LUA_LOADED_TABLE") do uses = uses + 1 end
      for name in text:gmatch('lua_getglobal%(L, "require"%);%s*lua_pushliteral%(L, "([^"]+)"%)') do
        required[#required + 1] = name
      end
    end
    p:close()
    assert.equal(uses, #required, "a require the check cannot read: keep the form lua_getglobal + lua_pushliteral")
    assert.same({"cjson"}, required)
  end)
end)
