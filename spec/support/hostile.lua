--- spec/support/hostile.lua: helpers for the hostile-gateway specs (keys, leaks, child processes).
local core = require("imageroute.core")
local json = require("imageroute.json")

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
  escapes = "sk-hostile%41%2Fpct\\u0041\\/-V2cP7uA4rE9i", -- what a decoder of %XX or JSON would read otherwise
}

--- s as a JSON string's contents the way some servers write them (PHP's json_encode): `"`, `\` and
-- `/` escaped, and non-ASCII as \uXXXX when s is UTF-8 (raw bytes otherwise).
function M.json_escaped(s)
  local out = s:gsub('[\\"/]', "\\%0")
  if not utf8.len(out) then return out end
  local parts = {}
  for _, cp in utf8.codes(out) do
    if cp < 0x80 then
      parts[#parts + 1] = string.char(cp)
    elseif cp < 0x10000 then
      parts[#parts + 1] = ("\\u%04x"):format(cp)
    else
      cp = cp - 0x10000
      parts[#parts + 1] = ("\\u%04x\\u%04x"):format(0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF))
    end
  end
  return table.concat(parts)
end

-- Every string in v with where it was found: string values and string keys at any depth, tostring
-- of a table with __tostring, an Image's fields but its bytes; a table seen twice is walked once.
local function strings(v, out)
  local seen = {}
  local function walk(x, where)
    local t = type(x)
    if t == "string" then
      out[#out + 1] = {x, where}
    elseif t == "table" then
      if seen[x] then return end
      seen[x] = true
      local mt = getmetatable(x)
      if mt and mt.__tostring then out[#out + 1] = {tostring(x), "tostring(" .. where .. ")"} end
      for k, y in next, x do
        if type(k) == "string" then out[#out + 1] = {k, where .. " (a key)"} end
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
  return out
end

--- Every place (a description) where key, or any 10-byte piece of it, or of its JSON-escaped form,
-- occurs in v: strings, table keys and values at any depth, the fields of Images (their user value),
-- and tostring of errors. Empty list: no leak.
function M.leaks(v, key)
  local escaped = assert(json.encode(key)):sub(2, -2)
  local needles = {}
  for _, form in ipairs{key, escaped} do
    if #form <= 10 then needles[#needles + 1] = form end
    for i = 1, #form - 9 do needles[#needles + 1] = form:sub(i, i + 9) end
  end
  local found = {}
  for _, e in ipairs(strings(v, {})) do
    local str, where = e[1], e[2]
    for _, n in ipairs(needles) do
      if str:find(n, 1, true) then
        found[#found + 1] = where .. ": " .. ("%q"):format(str):sub(1, 200)
        break
      end
    end
  end
  return found
end

--- The forms a server may echo the key in, transformed: base64 of the key after a prefix of 0, 1 and
-- 2 bytes (the 3 alignments) and as HTTP Basic credentials, URL-safe base64 without padding, the key
-- upper-cased, and percent-encoded (every byte, upper-case hex; or only the bytes outside the
-- unreserved set, lower-case hex). A list of {name, text, what the text is once redacted}.
function M.forms(key)
  local function b64url(s) return (core.b64encode(s):gsub("[+/=]", {["+"] = "-", ["/"] = "_", ["="] = ""})) end
  local function pct(s, pattern, fmt)
    return (s:gsub(pattern, function(c) return fmt:format(c:byte()) end))
  end
  return {
    {"base64(key)", core.b64encode(key)},
    {"base64(':' .. key)", core.b64encode(":" .. key)},
    {"base64('x:' .. key)", core.b64encode("x:" .. key)},
    {"Basic base64('user:' .. key)", "Basic " .. core.b64encode("user:" .. key), "Basic [redacted]"},
    {"URL-safe base64(key)", b64url(key)},
    {"URL-safe base64(':' .. key)", b64url(":" .. key)},
    {"URL-safe base64('x:' .. key)", b64url("x:" .. key)},
    {"upper-cased key", key:upper()},
    {"every byte percent-encoded", pct(key, ".", "%%%02X")},
    {"reserved bytes percent-encoded", pct(key, "[^%w%-%._~]", "%%%02x")},
  }
end

local function windows(key)
  local w = {}
  if #key <= 10 then w[1] = key end
  for i = 1, #key - 9 do w[#w + 1] = key:sub(i, i + 9) end
  return w
end

local function holds(s, needles)
  for _, n in ipairs(needles) do
    if s:find(n, 1, true) then return true end
  end
  return false
end

--- Every place where the key, or a 10-byte piece of it, can be read back from v by undoing a
-- transformation: ASCII case folded, %XX decoded, JSON string escapes decoded, or base64 decoded
-- (each run of base64 characters of either alphabet, at each of its 4 character offsets, after
-- those decodings too). The plain forms are M.leaks'. Empty list: no leak.
function M.transformed_leaks(v, key)
  local plain, folded = windows(key), windows(key:lower())
  local found = {}
  for _, e in ipairs(strings(v, {})) do
    local s, where = e[1], e[2]
    local function unpct(x) return (x:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
    local unjson = s:gsub("\\u(%x%x%x%x)", function(h) return utf8.char(tonumber(h, 16)) end)
    unjson = unjson:gsub('\\(["\\/])', "%1")
    local views, why = {s, unpct(s), unjson, unpct(unjson)}, nil
    for _, text in ipairs(views) do
      if holds(text:lower(), folded) then why = "the key, any case, %XX or JSON escapes" end
    end
    for _, text in ipairs(views) do
      for run in text:gmatch("[%w+/_%-]+") do
        run = run:gsub("[-_]", {["-"] = "+", ["_"] = "/"})
        for o = 1, math.min(4, #run) do
          local part = run:sub(o)
          part = part:sub(1, #part - #part % 4)
          local bytes = #part > 0 and core.b64decode(part)
          if bytes and holds(bytes, plain) then why = "base64 of the key" end
        end
      end
    end
    if why then found[#found + 1] = where .. " (" .. why .. "): " .. ("%q"):format(s):sub(1, 200) end
  end
  return found
end

--- Asserts that the key leaks nowhere in v, plainly or transformed (M.leaks, M.transformed_leaks).
function M.assert_no_transformed_leak(v, key, what)
  local found = M.leaks(v, key)
  for _, f in ipairs(M.transformed_leaks(v, key)) do found[#found + 1] = f end
  assert(#found == 0, (what or "value") .. " holds the key:\n  " .. table.concat(found, "\n  "))
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
