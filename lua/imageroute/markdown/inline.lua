--- imageroute.markdown.inline: the images of one paragraph-like chunk. Code spans (backtick runs
-- indexed by length, so closers are found in linear time) and the CommonMark link/image bracket
-- algorithm: inline `![alt](url "title")` and reference `![alt][ref]`, `![alt][]`, `![alt]`
-- images, links nested in image descriptions (at most 32 levels), alt text as plain text.
-- Internal to `imageroute.markdown`.
-- @module imageroute.markdown.inline

local escapes = require("imageroute.markdown.escapes")
local refs = require("imageroute.markdown.refs")

local byte, sub, find, gsub = string.byte, string.sub, string.find, string.gsub
local concat, sort = table.concat, table.sort
local rtrim_from, escape_at, normalize = escapes.rtrim_from, escapes.escape_at, escapes.normalize
local MAX_LABEL, skip_spnl, parse_label, parse_dest, parse_title =
  refs.MAX_LABEL, refs.skip_spnl, refs.parse_label, refs.parse_dest, refs.parse_title

local MAX_NESTING = 32     -- links/images nested inside one image description

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
    elseif c == 92 or c == 38 then -- backslash escape (of punctuation or a line ending), character reference
      local text
      text, i = escape_at(s, j, "^[%p\n]")
      push(text)
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

return {images = inline_images}
