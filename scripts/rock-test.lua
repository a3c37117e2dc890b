-- `luarocks test` (the rockspec's test script): LuaRocks runs it with the interpreter of its
-- --lua-version, from the source tree. Builds the core for that Lua and runs the whole busted suite
-- under it (`make spec LUA=lua5.4` or `LUA=lua5.3`, through scripts/spec.sh); arguments go to busted,
-- e.g. `luarocks --lua-version 5.4 test -- spec/image_spec.lua`.
local ver = assert(_VERSION:match("^Lua (5%.[34])$"), "imageroute runs on Lua 5.3 and 5.4, not " .. _VERSION)
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local extra = {}
for i = 1, #arg do extra[i] = q(arg[i]) end
local cmd = "make --no-print-directory spec LUA=lua" .. ver
if #extra > 0 then cmd = cmd .. " SPEC_ARGS=" .. q(table.concat(extra, " ")) end
local ok, how, code = os.execute(cmd)
if ok then os.exit(0) end
os.exit(how == "exit" and code or 1)
