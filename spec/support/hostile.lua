--- spec/support/hostile.lua: helpers for the hostile-gateway specs (keys, leaks, child processes).
local core = require("imageroute.core")

local M = {}

--- Keys with the bytes that break naive redaction: `/` (cjson writes `\/`), `+`, `=`, `\`, `"`
-- (escaped in JSON) and non-ASCII (UTF-8 and a byte that is no UTF-8 at all). Each is long enough
-- for any host and has no 10-byte window that ordinary text would hold.
M.KEYS = {
  slash = "sk-hostile/with/slashes/Q7xK2pV9mZ4w",
  plus = "sk+hostile+plus=equals==R8yL3qW0nA5e",
  backslash = 'sk\\hostile"quote\\"S9zM4rX1oB6f',
  utf8 = "sk-h\u{f6}stile-\u{6f22}\u{5b57}-T0aN5sY2pC7g",
  bytes = "sk-hostile-\xff\xfe\x80-U1bO6tZ3qD8h",
}

--- Every place (a description) where key, or any 10-byte piece of it, or of its JSON-escaped form,
-- occurs in v: strings, table keys and values at any depth, the fields of Images (their user value),
-- and tostring of errors. Empty list: no leak.
function M.leaks(v, key)
  local escaped = assert(core.json_encode(key)):sub(2, -2)
  local needles = {}
  for _, form in ipairs{key, escaped} do
    if #form <= 10 then needles[#needles + 1] = form end
    for i = 1, #form - 9 do needles[#needles + 1] = form:sub(i, i + 9) end
  end
  local found, seen = {}, {}
  local function check(s, where)
    for _, n in ipairs(needles) do
      if s:find(n, 1, true) then
        found[#found + 1] = where .. ": " .. ("%q"):format(s):sub(1, 200)
        return
      end
    end
  end
  local function walk(x, where)
    local t = type(x)
    if t == "string" then
      check(x, where)
    elseif t == "table" then
      if seen[x] then return end
      seen[x] = true
      local mt = getmetatable(x)
      if mt and mt.__tostring then check(tostring(x), "tostring(" .. where .. ")") end
      for k, y in next, x do
        if type(k) == "string" then check(k, where .. " (a key)") end
        walk(y, where .. "." .. tostring(k))
      end
    elseif t == "userdata" then
      if seen[x] then return end
      seen[x] = true
      local uv = debug.getuservalue(x, 1)
      if type(uv) == "table" then
        for k, y in next, uv do
          if k ~= "bytes" then walk(y, where .. ":" .. tostring(k)) end
        end
      end
    end
  end
  walk(v, "value")
  return found
end

--- Asserts that the key leaks nowhere in v (with a message listing where it does).
function M.assert_no_leak(v, key, what)
  local found = M.leaks(v, key)
  assert(#found == 0, (what or "value") .. " holds the key:\n  " .. table.concat(found, "\n  "))
end


--- Writes a Lua script to a temporary file and runs it with lua5.4 under `sh -c`, with the shell
-- prefix (e.g. "umask 077;" or "env X=..."). Returns the exit status and stdout.
function M.run_lua(prefix, script)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(script)
  f:close()
  local p = assert(io.popen(("%s lua5.4 %s 2>&1; echo \"rc=$?\""):format(prefix, path), "r"))
  local out = p:read("a")
  p:close()
  os.remove(path)
  local rc = tonumber(out:match("rc=(%d+)\n?$"))
  return rc, (out:gsub("rc=%d+\n?$", ""))
end

--- A shell word for s that survives any byte (CR, LF, non-ASCII) in POSIX sh: printf with octal
-- escapes (s must not end with a newline: command substitution drops trailing newlines).
function M.shell_bytes(s)
  return "\"$(printf '" .. s:gsub(".", function(c) return ("\\%03o"):format(c:byte()) end) .. "')\""
end

return M
