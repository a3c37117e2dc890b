--- imageroute.markdown.escapes: the text rules shared by the Markdown scanners. Backslash escapes
-- and character references (numeric, and the named ones in ENTITIES) resolved, label matching keys
-- (whitespace collapsed, ASCII case folding), trailing blanks trimmed.
-- Internal to `imageroute.markdown`.
-- @module imageroute.markdown.escapes

local tonumber = tonumber
local byte, sub, find, gsub, lower = string.byte, string.sub, string.find, string.gsub, string.lower
local concat = table.concat
local utf8char = utf8.char

-- Named character references decoded in alt text, destinations and titles.
local ENTITIES = {
  amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = "\u{A0}",
  copy = "\u{A9}", reg = "\u{AE}", trade = "\u{2122}", deg = "\u{B0}", middot = "\u{B7}",
  laquo = "\u{AB}", raquo = "\u{BB}", times = "\u{D7}", euro = "\u{20AC}", hellip = "\u{2026}",
  ndash = "\u{2013}", mdash = "\u{2014}", lsquo = "\u{2018}", rsquo = "\u{2019}",
  ldquo = "\u{201C}", rdquo = "\u{201D}",
}

-- line[p..last] with trailing spaces (and tabs, if `tabs`) removed (linear, no backtracking).
local function rtrim_from(line, p, last, tabs)
  local e = last or #line
  while e >= p do
    local b = byte(line, e)
    if b ~= 32 and (b ~= 9 or not tabs) then break end
    e = e - 1
  end
  return sub(line, p, e)
end

local function codepoint(n)
  if n == 0 or n > 0x10FFFF or (n >= 0xD800 and n <= 0xDFFF) then return "\u{FFFD}" end
  return utf8char(n)
end

-- A character reference starting at s[j] == "&": decoded text and its last position, or nil.
local function entity(s, j)
  local _, e, hex = find(s, "^&#[xX](%x+);", j)
  if e then
    if #hex <= 6 then return codepoint(tonumber(hex, 16)), e end
    return nil
  end
  local dec
  _, e, dec = find(s, "^&#(%d+);", j)
  if e then
    if #dec <= 7 then return codepoint(tonumber(dec)), e end
    return nil
  end
  local name
  _, e, name = find(s, "^&(%w+);", j)
  if e and ENTITIES[name] then return ENTITIES[name], e end
  return nil
end

-- The escape at s[j] (a backslash or "&"): the text it stands for and the index after it. A
-- backslash escapes a character matching `escapable` (default: ASCII punctuation), a character
-- reference is decoded; anything else stands for itself.
local function escape_at(s, j, escapable)
  if byte(s, j) == 92 then
    local c = sub(s, j + 1, j + 1)
    if c ~= "" and find(c, escapable or "^%p") then return c, j + 2 end
    return "\\", j + 1
  end
  local text, e = entity(s, j)
  if text then return text, e + 1 end
  return "&", j + 1
end

-- Backslash escapes and character references resolved, as CommonMark does for destinations,
-- titles and text.
local function unescape(s)
  if not find(s, "[\\&]") then return s end
  local out, i = {}, 1
  while true do
    local j = find(s, "[\\&]", i)
    if not j then
      out[#out + 1] = sub(s, i)
      break
    end
    out[#out + 1] = sub(s, i, j - 1)
    out[#out + 1], i = escape_at(s, j)
  end
  return concat(out)
end

-- Label matching key: whitespace runs collapsed, trimmed, case-folded (ASCII).
local function normalize(label)
  label = gsub(label, "%s+", " ")
  label = gsub(label, "^ ", "")
  label = gsub(label, " $", "")
  return lower(label)
end

return {rtrim_from = rtrim_from, codepoint = codepoint, entity = entity, escape_at = escape_at, unescape = unescape,
  normalize = normalize}
