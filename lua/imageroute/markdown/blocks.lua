--- imageroute.markdown.blocks: the block structure of a text (block quotes, list items, fenced and
-- indented code, ATX and setext headings, thematic breaks, paragraphs), with tabs in the leading
-- indentation expanded to 4-column stops and at most 64 nested containers. `parse` returns the
-- paragraph-like chunks that may hold images and the reference definitions found anywhere.
-- Internal to `imageroute.markdown`.
-- @module imageroute.markdown.blocks

local escapes = require("imageroute.markdown.escapes")
local refs = require("imageroute.markdown.refs")

local tonumber = tonumber
local byte, sub, find, match, gsub, rep = string.byte, string.sub, string.find, string.match, string.gsub, string.rep
local concat = table.concat
local rtrim_from, normalize = escapes.rtrim_from, escapes.normalize
local parse_def = refs.parse_def

local MAX_CONTAINERS = 64  -- nested block quotes/list items; deeper markers are paragraph text

-- ==============================================================================================
-- Block structure
-- ==============================================================================================

-- Tabs in the leading indentation/container markers expanded to 4-column stops, for measuring
-- indentation. Returns the expanded line and, when it differs from the source line, the positions
-- of the first character after the expanded prefix in the source and in the expanded line (text
-- is taken from the source line, see source_pos, so tabs in content stay tabs).
local function expand_prefix(line)
  if not find(line, "\t", 1, true) then return line end
  local e = find(line, "[^ \t>%-+*%d.)]") or (#line + 1)
  local prefix = sub(line, 1, e - 1)
  if not find(prefix, "\t", 1, true) then return line end
  local out, col = {}, 0
  for k = 1, #prefix do
    local ch = sub(prefix, k, k)
    if ch == "\t" then
      local w = 4 - col % 4
      out[#out + 1] = rep(" ", w)
      col = col + w
    else
      out[#out + 1] = ch
      col = col + 1
    end
  end
  return concat(out) .. sub(line, e), e, col + 1
end

-- The source position of the non-blank character at position sp of the expanded line.
local function source_pos(raw, e_raw, e_exp, sp)
  if not e_raw then return sp end
  if sp >= e_exp then return sp - (e_exp - e_raw) end
  local col = 0
  for k = 1, e_raw - 1 do
    if col + 1 >= sp then return k end
    if byte(raw, k) == 9 then col = col + 4 - col % 4 else col = col + 1 end
  end
  return e_raw
end

-- Thematic break (`***`, `- - -`, `___`) at s[p], p at the first non-space character.
local function is_hr(line, p)
  local ch = match(line, "^[-*_]", p)
  if not ch then return false end
  local rest = gsub(sub(line, p), "[ \t]", "")
  return #rest >= 3 and not find(rest, "[^%" .. ch .. "]")
end

-- Setext heading underline (`===` or `---`, any length) at s[p]; it ends the paragraph above.
local function setext_underline(line, p)
  return find(line, "^=+[ \t]*$", p) or find(line, "^%-+[ \t]*$", p)
end

-- Opening code fence at s[p]: the fence string, or nil.
local function fence_open(line, p)
  local f = match(line, "^(```+)", p)
  if f then
    if find(line, "`", p + #f, true) then return nil end
    return f
  end
  return match(line, "^(~~~+)", p)
end

-- ATX heading at s[p]: its inline content (possibly ""), or nil.
local function atx_heading(line, p)
  local hashes = match(line, "^(#+)", p)
  if not hashes or #hashes > 6 then return nil end
  local q = p + #hashes
  if q <= #line and not find(line, "^[ \t]", q) then return nil end
  local text = rtrim_from(line, q, nil, true)
  text = gsub(text, "^[ \t]+", "")
  if find(text, "^#+$") then return "" end
  -- an optional closing sequence: spaces/tabs then #s at the end (scanned backwards)
  local e = #text
  while e > 0 and byte(text, e) == 35 do e = e - 1 end
  if e < #text and e > 0 and (byte(text, e) == 32 or byte(text, e) == 9) then text = rtrim_from(text, 1, e, true) end
  return text
end

-- List item marker at s[sp] (indentation already < 4): the content position, or nil.
-- `in_para`: a paragraph is open, so only non-empty items (ordered ones starting at 1) count.
local function list_item(line, sp, in_para)
  if is_hr(line, sp) then return nil end
  local e, num
  if find(line, "^[-+*]", sp) then
    e = sp
  else
    local _, e2, digits = find(line, "^(%d+)[.)]", sp)
    if not e2 or #digits > 9 then return nil end
    e, num = e2, tonumber(digits)
  end
  local after = byte(line, e + 1)
  if after and after ~= 32 then return nil end
  local first = find(line, "[^ ]", e + 1)
  if in_para and (not first or (num and num ~= 1)) then return nil end
  if not first then return e + 2 end          -- empty item: content starts one column on
  local spaces = first - e - 1
  if spaces > 4 then return e + 2 end         -- indented code inside the item
  return first
end

-- Does the text at p start a block that ends a paragraph (so it is not a lazy continuation)?
local function starts_block(line, p)
  local sp = find(line, "[^ ]", p)
  if not sp or sp - p >= 4 then return false end
  if byte(line, sp) == 62 or fence_open(line, sp) or atx_heading(line, sp) or is_hr(line, sp) then
    return true
  end
  return list_item(line, sp, false) ~= nil
end

-- Split text into inline chunks (paragraphs and headings outside code) and collect link
-- reference definitions (first definition of a label wins).
local function parse_blocks(text)
  local chunks, defs = {}, {}
  local stack = {} -- open containers: {quote = true} or {indent = columns}
  local para       -- lines of the open paragraph
  local fence      -- {char =, len =} of the open fenced code block
  local blank_matched -- how many containers a blank line matches, while the stack is unchanged

  -- Move the definitions at the start of the open paragraph into `defs`; what is left stays
  -- the paragraph (possibly empty).
  local function take_defs()
    local s = rtrim_from(concat(para, "\n"), 1, nil, true)
    local pos = 1
    while true do
      local label, url, title, nxt = parse_def(s, pos)
      if not label then break end
      local key = normalize(label)
      if defs[key] == nil then defs[key] = {url = url, title = title} end
      pos = nxt
    end
    para = {sub(s, pos)}
    if para[1] == "" then para[1] = nil end
  end

  local function close_para()
    if not para then return end
    take_defs()
    if para[1] then chunks[#chunks + 1] = para[1] end
    para = nil
  end

  -- A setext underline under a paragraph that is more than link reference definitions.
  local function setext(line, sp)
    if not (para and setext_underline(line, sp)) then return false end
    take_defs()
    return para[1] ~= nil
  end

  local function open(container)
    blank_matched = nil
    close_para()
    if stack[#stack] then stack[#stack].empty = nil end -- it now holds a block
    stack[#stack + 1] = container
  end

  local pos, n = 1, #text
  while pos <= n do
    local nl = find(text, "\n", pos, true) or (n + 1)
    local raw = sub(text, pos, nl - 1)
    local line, e_raw, e_exp = expand_prefix(raw)
    pos = nl + 1

    -- 1. match the open containers (a blank line: the items below the first quote or empty item)
    local p, matched = 1, 0
    local blank = not find(line, "[^ \t]")
    if blank and blank_matched then
      matched = blank_matched
    else
      for k = 1, #stack do
        local c = stack[k]
        if c.quote then
          local _, q = find(line, "^ ? ? ?>", p)
          if not q then break end
          p = q + 1
          if byte(line, p) == 32 then p = p + 1 end
        else
          local sp = find(line, "[^ ]", p)
          if sp then
            if sp - p < c.indent then break end
            p = p + c.indent
          elseif c.empty then -- an item that starts with a blank line ends at a second one
            break
          end
        end
        matched = k
      end
      if blank then blank_matched = matched end
    end

    local done = false
    if fence then
      if matched == #stack then
        local _, e, f = find(line, "^ ? ? ?([`~]+)[ \t]*$", p)
        if e and #f >= fence.len and f == rep(fence.char, #f) then
          fence = nil
        end
        done = true
      else
        fence = nil
      end
    end

    if not done and matched < #stack then
      if para and find(line, "[^ \t]", p) and not starts_block(line, p) then
        para[#para + 1] = sub(raw, source_pos(raw, e_raw, e_exp, (find(line, "[^ \t]", p)))) -- lazy
        done = true
      else
        close_para()
        for k = #stack, matched + 1, -1 do stack[k] = nil end
        blank_matched = nil
      end
    end

    if not done then
      -- 2. open new containers
      while true do
        local sp = find(line, "[^ ]", p)
        if not sp or sp - p >= 4 or #stack >= MAX_CONTAINERS then break end
        if byte(line, sp) == 62 then
          open({quote = true})
          p = sp + 1
          if byte(line, p) == 32 then p = p + 1 end
        else
          local content = list_item(line, sp, para ~= nil)
          if not content then break end
          open({indent = content - p, empty = true})
          p = content
        end
      end

      -- 3. the leaf block
      local sp = find(line, "[^ \t]", p)
      if sp and stack[#stack] and stack[#stack].empty then -- only the innermost can be empty
        stack[#stack].empty = nil
        blank_matched = nil
      end
      if not sp then
        close_para()
      elseif sp - p >= 4 then
        if para then para[#para + 1] = sub(raw, source_pos(raw, e_raw, e_exp, sp)) end -- else code: skipped
      else
        local f = fence_open(line, sp)
        local heading = not f and atx_heading(line, sp)
        if f then
          close_para()
          fence = {char = sub(f, 1, 1), len = #f}
        elseif heading then
          close_para()
          if heading ~= "" then chunks[#chunks + 1] = heading end
        elseif is_hr(line, sp) or setext(line, sp) then
          close_para()
        elseif para then
          para[#para + 1] = sub(raw, source_pos(raw, e_raw, e_exp, sp))
        else
          para = {sub(raw, source_pos(raw, e_raw, e_exp, sp))}
        end
      end
    end
  end
  close_para()
  return chunks, defs
end

return {parse = parse_blocks}
