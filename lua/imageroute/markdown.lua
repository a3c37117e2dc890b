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
--
-- The scanners live in `imageroute.markdown.blocks` (block structure, reference definitions
-- collected), `imageroute.markdown.inline` (code spans and the link/image bracket algorithm),
-- `imageroute.markdown.refs` (labels, destinations, titles, definitions) and
-- `imageroute.markdown.escapes` (escapes, character references, label keys).
-- @module imageroute.markdown

local type, error, next = type, error, next
local find, gsub, format = string.find, string.gsub, string.format
local inline_images = require("imageroute.markdown.inline").images
local parse_blocks = require("imageroute.markdown.blocks").parse

local M = {}

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
