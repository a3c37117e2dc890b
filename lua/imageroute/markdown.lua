--- Markdown image links in chat-completions replies.
--
-- Chat Completions routes return generated images as Markdown inside
-- `choices[0].message.content`, e.g. `"\n\n![image](https://cdn.example/abc.png)\n\n"`.
-- This module finds the image links in such text the way a CommonMark parser would: inline images
-- `![alt](url "title")` (also `'title'`, `(title)` and `<url with spaces>`), full, collapsed and
-- shortcut reference images `![alt][ref]`, `![alt][]`, `![alt]` resolved against definitions
-- `[ref]: url "title"` anywhere in the text. Plain links `[text](url)`, escaped `\![`, code spans,
-- fenced and indented code blocks and autolinks are not images.
--
-- It is a subset of CommonMark 0.31 aimed at finding images, not a renderer: block structure
-- (block quotes, list items, fences, indented code, headings, thematic breaks, paragraphs) and the
-- link/image bracket algorithm follow the spec; emphasis is not interpreted (alt text keeps `*`
-- and `_`), raw HTML is not recognised, label case folding is ASCII-only, and only numeric
-- character references and a small set of named ones (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`,
-- `&nbsp;`, ...) are decoded. All scans are linear in the input apart from bounded look-ups
-- (labels up to 999 characters, at most 32 nested parentheses in a destination and at most
-- 32 levels of links nested in image descriptions, at most 64 nested block quotes/list items).
-- @module imageroute.markdown

local type, error, next, tonumber = type, error, next, tonumber
local byte, sub, find, match, gsub, lower, rep, format =
  string.byte, string.sub, string.find, string.match, string.gsub, string.lower, string.rep, string.format
local concat, sort = table.concat, table.sort
local utf8char = utf8.char

local M = {}

local MAX_LABEL = 999      -- CommonMark: a link label holds at most 999 characters
local MAX_PARENS = 32      -- nesting of unescaped parentheses in a bare destination
local MAX_NESTING = 32     -- links/images nested inside one image description
local MAX_CONTAINERS = 64  -- nested block quotes/list items; deeper markers are paragraph text

-- Named character references decoded in alt text, destinations and titles.
local ENTITIES = {
  amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = "\u{A0}",
  copy = "\u{A9}", reg = "\u{AE}", trade = "\u{2122}", deg = "\u{B0}", middot = "\u{B7}",
  laquo = "\u{AB}", raquo = "\u{BB}", times = "\u{D7}", euro = "\u{20AC}", hellip = "\u{2026}",
  ndash = "\u{2013}", mdash = "\u{2014}", lsquo = "\u{2018}", rsquo = "\u{2019}",
  ldquo = "\u{201C}", rdquo = "\u{201D}",
}

-- ==============================================================================================
-- Inline helpers
-- ==============================================================================================

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
    if byte(s, j) == 92 then
      local c = sub(s, j + 1, j + 1)
      if c ~= "" and find(c, "^%p") then
        out[#out + 1] = c
        i = j + 2
      else
        out[#out + 1] = "\\"
        i = j + 1
      end
    else
      local text, e = entity(s, j)
      if text then
        out[#out + 1] = text
        i = e + 1
      else
        out[#out + 1] = "&"
        i = j + 1
      end
    end
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

-- Maximal backtick runs of a chunk by length, for finding code span closers in linear time.
local function backtick_runs(s)
  local by_len, ptr, p = {}, {}, 1
  while true do
    local a, b = find(s, "`+", p)
    if not a then break end
    local k = b - a + 1
    local l = by_len[k]
    if not l then
      l = {}
      by_len[k] = l
      ptr[k] = 1
    end
    l[#l + 1] = a
    p = b + 1
  end
  return {by_len = by_len, ptr = ptr}
end

-- Start of the first run of exactly k backticks after position `after`, or nil. Calls come
-- with increasing `after`, so each list is walked once.
local function next_run(runs, k, after)
  local l = runs.by_len[k]
  if not l then return nil end
  local x = runs.ptr[k]
  while l[x] and l[x] <= after do x = x + 1 end
  runs.ptr[k] = x
  return l[x]
end

-- What follows the `]` at s[p - 1] of a bracket opened by `op`: url, title and the position after
-- the link, or nil when it is not a link.
local function link_tail(s, p, op, defs, has_defs)
  if byte(s, p) == 40 then -- inline: (dest "title")
    local q = skip_spnl(s, p + 1)
    local dest, q2 = parse_dest(s, q)
    if dest then
      local r = skip_spnl(s, q2)
      local title, r2
      if r > q2 then title, r2 = parse_title(s, r) end
      if title then r = skip_spnl(s, r2) end
      if byte(s, r) == 41 then return dest, title, r + 1 end
    end
  end
  if not has_defs then return nil end
  local key, after
  local label, q
  if byte(s, p) == 91 then label, q = parse_label(s, p) end
  if label and label ~= "" then -- full reference: only this label counts
    key, after = label, q
  elseif not op.bracket_after then -- collapsed [] or shortcut: the bracket text is the label
    key, after = sub(s, op.text, p - 2), label and q or p
  end
  if key and #key <= MAX_LABEL then
    local d = defs[normalize(key)]
    if d then return d.url, d.title, after end
  end
  return nil
end

-- Images in one inline chunk (a paragraph or heading), appended to `out` in document order.
local function inline_images(s, defs, has_defs, out)
  local nodes, nn = {}, 0 -- plain-text pieces; an image's alt is the text of its pieces
  local stack, ns = {}, 0 -- bracket openers
  local inactive = 0      -- "[" openers at stack index <= inactive may not form links
  local found = {}
  local runs
  local i, n = 1, #s

  local function push(t)
    nn = nn + 1
    nodes[nn] = t
  end

  local function opener(image, start, text)
    push(image and "![" or "[")
    if ns > 0 then stack[ns].bracket_after = true end
    if inactive > ns then inactive = ns end
    ns = ns + 1
    stack[ns] = {image = image, node = nn, start = start, text = text, depth = 0}
  end

  local function pop(depth)
    stack[ns] = nil
    ns = ns - 1
    local parent = stack[ns]
    if parent and depth > parent.depth then parent.depth = depth end
  end

  while i <= n do
    local j = find(s, "[%[%]!\\`<&\n]", i)
    if not j then
      push(sub(s, i))
      break
    end
    local c = byte(s, j)
    if j > i then push(c == 10 and rtrim_from(s, i, j - 1) or sub(s, i, j - 1)) end
    if c == 10 then -- line ending: the spaces before it were dropped
      push("\n")
      i = j + 1
    elseif c == 92 then -- backslash
      local d = sub(s, j + 1, j + 1)
      if d ~= "" and find(d, "^[%p\n]") then
        push(d)
        i = j + 2
      else
        push("\\")
        i = j + 1
      end
    elseif c == 96 then -- code span
      local _, e = find(s, "^`+", j)
      runs = runs or backtick_runs(s)
      local close = next_run(runs, e - j + 1, e)
      if close then
        local code = gsub(sub(s, e + 1, close - 1), "\n", " ")
        if find(code, "^ ") and find(code, " $") and find(code, "[^ ]") then code = sub(code, 2, -2) end
        push(code)
        i = close + (e - j + 1)
      else
        push(sub(s, j, e))
        i = e + 1
      end
    elseif c == 60 then -- autolink: its text is literal
      local _, e, uri = find(s, "^<(%a[%w+.%-]+:[^%c <>]*)>", j)
      if e then
        push(uri)
        i = e + 1
      else
        push("<")
        i = j + 1
      end
    elseif c == 38 then -- character reference
      local text, e = entity(s, j)
      if text then
        push(text)
        i = e + 1
      else
        push("&")
        i = j + 1
      end
    elseif c == 33 then -- "!"
      if byte(s, j + 1) == 91 then
        opener(true, j, j + 2)
        i = j + 2
      else
        push("!")
        i = j + 1
      end
    elseif c == 91 then -- "["
      opener(false, j, j + 1)
      i = j + 1
    else -- "]"
      local op = stack[ns]
      i = j + 1
      if not op then
        push("]")
      elseif (not op.image and ns <= inactive) or op.depth >= MAX_NESTING then
        pop(op.depth)
        push("]")
      else
        local url, title, after = link_tail(s, j + 1, op, defs, has_defs)
        if not after then
          pop(op.depth)
          push("]")
        else
          local plain = concat(nodes, "", op.node + 1, nn)
          for k = nn, op.node, -1 do nodes[k] = nil end
          nn = op.node - 1
          push(plain)
          pop(op.depth + 1)
          if op.image then
            found[#found + 1] = {pos = op.start, url = url, alt = plain, title = title}
          else
            inactive = ns -- no links inside links: earlier "[" openers are dead
          end
          i = after
        end
      end
    end
  end

  sort(found, function(a, b) return a.pos < b.pos end)
  for k = 1, #found do
    local f = found[k]
    out[#out + 1] = {url = f.url, alt = f.alt, title = f.title}
  end
end

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

-- ==============================================================================================
-- Public API
-- ==============================================================================================

--- Find the Markdown images in a text, in document order.
-- Recognises inline images `![alt](url)`, `![alt](url "title")` (or `'title'`, `(title)`),
-- `![alt](<url with spaces>)`, and reference images `![alt][ref]`, `![alt][]`, `![alt]` whose
-- definition `[ref]: url "title"` may appear anywhere in the text (labels match case-insensitively
-- with whitespace collapsed; the first definition of a label wins). Not images: plain links
-- `[text](url)`, escaped `\![`, anything in code spans, fenced or indented code blocks.
-- An image inside a link (`[![a](img)](href)`) is found. Backslash escapes and character
-- references are resolved in the url, title and alt; the url is returned as written (not
-- percent-encoded, possibly empty for `![a]()`), the alt is the description as plain text.
-- @tparam string text the message content, e.g. `"\n\n![image](https://cdn.example/abc.png)\n\n"`
-- @treturn table a list (possibly empty) of `{url = string, alt = string, title = string|nil}`
-- @raise `bad argument #1 to 'images' (string expected, got <type>)` when `text` is not a string
function M.images(text)
  if type(text) ~= "string" then
    error(format("bad argument #1 to 'images' (string expected, got %s)", type(text)), 2)
  end
  local out = {}
  if not find(text, "![", 1, true) then return out end
  if find(text, "\r", 1, true) then text = gsub(text, "\r\n?", "\n") end
  local chunks, defs = parse_blocks(text)
  local has_defs = next(defs) ~= nil
  for k = 1, #chunks do
    if find(chunks[k], "![", 1, true) then inline_images(chunks[k], defs, has_defs, out) end
  end
  return out
end

return M
