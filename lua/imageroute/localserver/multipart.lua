--- imageroute.localserver.multipart: parsing multipart/form-data request bodies (the Images edits
-- form) and the `; key=value` parameters of a header value (Content-Type boundary,
-- Content-Disposition name and filename).
-- @module imageroute.localserver.multipart

local concat, find, sub = table.concat, string.find, string.sub

-- Parse `; key=value; key="quoted"` parameters of a header value. Keys are lowercased.
local function header_params(value)
  local params = {}
  local n = #value
  local first = value:match("^%s*([^;]*)")
  params[""] = first and first:match("^(.-)%s*$") or ""
  local i = (find(value, ";", 1, true) or n + 1) + 1
  while i <= n do
    local ks, ke, key = find(value, "^%s*([^=;%s]+)%s*=%s*", i)
    if not ks then
      local semi = find(value, ";", i, true)
      if not semi then break end
      i = semi + 1
    else
      i = ke + 1
      local v
      if sub(value, i, i) == '"' then
        local buf = {}
        i = i + 1
        while i <= n do
          local c = sub(value, i, i)
          if c == "\\" and i < n then buf[#buf + 1] = sub(value, i + 1, i + 1); i = i + 2
          elseif c == '"' then i = i + 1; break
          else buf[#buf + 1] = c; i = i + 1 end
        end
        v = concat(buf)
      else
        local vs, ve = find(value, "^[^;]*", i)
        v = sub(value, vs, ve):match("^(.-)%s*$")
        i = ve + 1
      end
      params[key:lower()] = v
      local semi = find(value, ";", i, true)
      if not semi then break end
      i = semi + 1
    end
  end
  return params
end

--- Parse a multipart/form-data body.
-- @tparam string body
-- @tparam string boundary
-- @treturn table list of parts {name, filename, content_type, data, headers} or nil, message
local function parse_multipart(body, boundary)
  local delim = "--" .. boundary
  local s, e = find(body, delim, 1, true)
  if not s then return nil, "multipart boundary not found in the body" end
  local parts = {}
  local pos = e + 1
  while true do
    if sub(body, pos, pos + 1) == "--" then break end
    local _, le = find(body, "^[ \t]*\r?\n", pos)
    if not le then return nil, "malformed multipart delimiter line" end
    pos = le + 1
    local headers_text, dstart
    if sub(body, pos, pos + 1) == "\r\n" then
      headers_text, dstart = "", pos + 2
    else
      local hs, he = find(body, "\r\n\r\n", pos, true)
      if not hs then return nil, "malformed multipart part headers" end
      headers_text, dstart = sub(body, pos, hs - 1), he + 1
    end
    -- the next delimiter: CRLF--boundary followed by "--" or by optional blanks and CRLF
    local ns, ne
    local from = dstart
    while true do
      ns, ne = find(body, "\r\n" .. delim, from, true)
      if not ns then return nil, "unterminated multipart part" end
      if sub(body, ne + 1, ne + 2) == "--" or find(body, "^[ \t]*\r?\n", ne + 1) then break end
      from = ne + 1
    end
    local part = {headers = {}, data = sub(body, dstart, ns - 1)}
    for line in (headers_text .. "\r\n"):gmatch("(.-)\r\n") do
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then part.headers[name:lower()] = value end
    end
    local disp = part.headers["content-disposition"]
    if disp then
      local p = header_params(disp)
      part.name = p.name
      part.filename = p.filename or p["filename*"]
    end
    part.content_type = part.headers["content-type"]
    parts[#parts + 1] = part
    pos = ne + 1
  end
  return parts
end

return {header_params = header_params, parse_multipart = parse_multipart}
