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
