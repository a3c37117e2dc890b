--- imageroute.markdown.refs: the pieces of a link after its text, and reference definitions.
-- Link labels `[ref]` (at most 999 characters), destinations (`<...>` or bare, at most 32 nested
-- parentheses), titles (`"..."`, `'...'`, `(...)`), and the definitions `[ref]: url "title"` that
-- reference images resolve against. Internal to `imageroute.markdown`.
-- @module imageroute.markdown.refs

local escapes = require("imageroute.markdown.escapes")

local byte, sub, find = string.byte, string.sub, string.find
local unescape = escapes.unescape

local MAX_LABEL = 999      -- CommonMark: a link label holds at most 999 characters
local MAX_PARENS = 32      -- nesting of unescaped parentheses in a bare destination

-- Spaces/tabs, at most one line ending, spaces/tabs: the position after them.
local function skip_spnl(s, p)
  local _, e = find(s, "^[ \t]*\n?[ \t]*", p)
  return e + 1
end

-- `[label]` at s[p]: the raw label and the position after `]`, or nil.
local function parse_label(s, p)
  local limit, q = p + MAX_LABEL + 1, p + 1
  while true do
    local r = find(s, "[%[%]\\]", q)
    if not r or r > limit then return nil end
    local c = byte(s, r)
    if c == 92 then
      q = r + 2
    elseif c == 91 then
      return nil
    else
      return sub(s, p + 1, r - 1), r + 1
    end
  end
end

-- A link destination at s[p]: the unescaped destination and the position after it, or nil.
-- The bare form may be empty (the caller decides whether that is allowed).
local function parse_dest(s, p)
  if byte(s, p) == 60 then -- <...>
    local q = p + 1
    while true do
      local r = find(s, "[<>\\\n]", q)
      if not r then return nil end
      local c = byte(s, r)
      if c == 62 then return unescape(sub(s, p + 1, r - 1)), r + 1 end
      if c ~= 92 or byte(s, r + 1) == 10 then return nil end
      q = r + 2
    end
  end
  local q, depth = p, 0
  while true do
    local r = find(s, "[%c ()\\]", q)
    if not r then
      q = #s + 1
      break
    end
    local c = byte(s, r)
    if c == 92 then
      q = r + 1
      if find(s, "^%p", q) then q = q + 1 end
    elseif c == 40 then
      depth = depth + 1
      if depth > MAX_PARENS then return nil end
      q = r + 1
    elseif c == 41 and depth > 0 then
      depth = depth - 1
      q = r + 1
    else -- space, control character or an unbalanced ")"
      q = r
      break
    end
  end
  if depth ~= 0 then return nil end
  return unescape(sub(s, p, q - 1)), q
end

-- A link title ("...", '...' or (...)) at s[p]: the unescaped title and the position after it.
local function parse_title(s, p)
  local c = byte(s, p)
  local set
  if c == 34 then
    set = '["\\]'
  elseif c == 39 then
    set = "['\\]"
  elseif c == 40 then
    set = "[()\\]"
  else
    return nil
  end
  local q = p + 1
  while true do
    local r = find(s, set, q)
    if not r then return nil end
    local b = byte(s, r)
    if b == 92 then
      q = r + 2
    elseif b == 40 then -- an unescaped "(" inside a (title)
      return nil
    else
      return unescape(sub(s, p + 1, r - 1)), r + 1
    end
  end
end

-- Position after optional spaces/tabs and the end of the line, or nil if more text follows.
local function line_end(s, p)
  local _, e = find(s, "^[ \t]*", p)
  e = e + 1
  if e > #s then return e end
  if byte(s, e) == 10 then return e + 1 end
  return nil
end

-- A link reference definition at s[p]: label, destination, title and the next position.
local function parse_def(s, p)
  if byte(s, p) ~= 91 then return nil end
  local label, q = parse_label(s, p)
  if not label or not find(label, "%S") or byte(s, q) ~= 58 then return nil end
  q = skip_spnl(s, q + 1)
  local dest, dend = parse_dest(s, q)
  if not dest or (dend == q) then return nil end
  local r = skip_spnl(s, dend)
  if r > dend then
    local title, tend = parse_title(s, r)
    if title then
      local nxt = line_end(s, tend)
      if nxt then return label, dest, title, nxt end
    end
  end
  local nxt = line_end(s, dend)
  if nxt then return label, dest, nil, nxt end
  return nil
end

return {MAX_LABEL = MAX_LABEL, skip_spnl = skip_spnl, parse_label = parse_label, parse_dest = parse_dest,
  parse_title = parse_title, line_end = line_end, parse_def = parse_def}
