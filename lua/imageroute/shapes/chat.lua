--- imageroute.shapes.chat: the chat shape, both ways: provider gateways that answer Chat
-- Completions with a Markdown image link (a provider's own contract, not OpenAI's API: the route's
-- `accepted` records it).
--
--    POST {base_url}/chat/completions
--    {"model": ..., "messages": [{"role": "user", "content": <prompt> | [text part, image_url parts...]}]}
--
-- Contract: `start(req)` builds the body from the normalised request and hands it to the core
-- (`core.start_generate(route, {endpoint = "/chat/completions", body =, reader =})`); `reader(reply)`
-- runs when the 2xx reply is in (in the loop, never inside libcurl): the first choice's
-- `message.content` is parsed for Markdown image links (`imageroute.markdown`), and
-- `message.images` (image parts some gateways put beside the content, e.g. OpenRouter: "Image
-- Generation", https://openrouter.ai/docs/features/multimodal/image-generation, read 2026-12-02;
-- streamed: each delta's `images`) is read after it. Streamed, the core hands over each chunk's
-- first-choice `delta` (`reply.deltas`) and their content is joined here. data: URLs are decoded
-- in place (`core.image_from_data_url`), and the other links go back to the core to be downloaded
-- on the same transfer (the download policy applies to each). A content given as a list of parts
-- contributes its text parts as the text and its `image_url` parts as image links, in document
-- order with the Markdown links. `reply(req, res, err)` builds the result.
-- @module imageroute.shapes.chat

local core = require("imageroute.core")
local common = require("imageroute.shapes.common")
local markdown = require("imageroute.markdown")

local type, pairs, ipairs, rawlen, concat, pcall, tonumber =
  type, pairs, ipairs, rawlen, table.concat, pcall, tonumber

local M = {}

-- Fields of the Images API with no place in a chat request: not sent, listed in result.unsent.
local CHAT_KEYS = {prompt = true, model = true, image = true, chat = true}

-- An image_url content part: an http(s) or data: URL string as given, anything else (bytes, a
-- path, an Image) as a data URL.
local function image_part(v, field)
  local url
  if type(v) == "string" and (v:sub(1, 8) == "https://" or v:sub(1, 7) == "http://" or v:sub(1, 11) == "data:image/")
  then
    url = v
  else
    local err
    url, err = core.data_url(v, field)
    if not url then return nil, err end
  end
  return {type = "image_url", image_url = {url = url}}
end

--- The params a chat request has no place for (result.unsent).
function M.unsent(kind, params)
  local out = {}
  for k in pairs(params) do
    if type(k) == "string" and not CHAT_KEYS[k] and not (kind == "generate" and k == "mask") then out[#out + 1] = k end
  end
  return out
end

local function build(req)
  local ok, err = common.check_prompt(req)
  if not ok then return nil, err end
  local params = req.params
  local body = {}
  if type(params.chat) == "table" then -- sent as they are at the top of the chat body (temperature, ...)
    for k, v in pairs(params.chat) do body[k] = v end
  end
  local model, merr = common.model(req)
  if not model then return nil, merr end
  body.model = model
  if params.mask ~= nil then
    return nil, common.invalid(req, "mask", "the chat shape has no mask: use an images or responses route")
  end
  local content = params.prompt
  if req.kind == "edit" then
    content = {{type = "text", text = params.prompt}}
    local img = params.image
    if img == nil then return nil, common.invalid(req, "image", "params.image is required for an edit") end
    if type(img) == "table" and rawlen(img) > 0 then
      for i = 1, rawlen(img) do
        local part, perr = image_part(img[i], ("image[%d]"):format(i))
        if not part then return nil, perr end
        content[#content + 1] = part
      end
    else
      local part, perr = image_part(img, "image")
      if not part then return nil, perr end
      content[#content + 1] = part
    end
  end
  body.messages = {{role = "user", content = content}}
  local text, jerr = common.encode(req, body)
  if not text then return nil, jerr end
  return {endpoint = "/chat/completions", body = text, reader = M.reader}
end

--- Builds the body and starts the transfer on the core's loop.
-- @tparam table req the normalised request (`shape` "chat")
-- @treturn Transfer|nil
-- @treturn[2] table the error (nothing sent)
function M.start(req)
  local shaped, err = build(req)
  if not shaped then return nil, err end
  return core.start_generate(req.route, shaped, req.opts)
end

-- ---------------------------------------------------------------------------------------------
-- the reply

-- The Markdown stand-in of content part K (an image_url part) in the text given to the Markdown
-- parser, so the part's image keeps its place among the Markdown links.
local PART_MARK = "imageroute-part:"

-- The URL of an image_url content part: part.image_url as a string, or part.image_url.url.
local function part_url(part)
  local u = part.image_url
  if type(u) == "string" then return u end
  if type(u) == "table" and type(u.url) == "string" then return u.url end
  return nil
end

-- Walks message.content given as a list of parts: text parts ({type = "text", text =} or a bare
-- string) are the text, image_url parts are image links, anything else is skipped. Returns the
-- text (each text part followed by "\n") and the text for the Markdown parser (the same, with a
-- Markdown image standing in for each image_url part), appending the parts' URLs to part_urls.
local function walk_parts(parts, part_urls)
  local plain, md = {}, {}
  local function link(url)
    part_urls[#part_urls + 1] = url
    md[#md + 1] = ("\n\n![](" .. PART_MARK .. "%d)\n\n"):format(#part_urls)
  end
  for k = 1, rawlen(parts) do
    local part, text = parts[k], nil
    if type(part) == "string" then
      text = part
    elseif type(part) == "table" then
      local pt = part.type
      if pt == "image_url" then
        local url = part_url(part)
        if url then link(url) end
      elseif (pt == nil or pt == "text") and type(part.text) == "string" then
        text = part.text
      elseif pt == nil then -- {image_url = ...} without a type
        local url = part_url(part)
        if url then link(url) end
      end
    end
    if text then
      plain[#plain + 1], plain[#plain + 2] = text, "\n"
      md[#md + 1], md[#md + 2] = text, "\n"
    end
  end
  return concat(plain), concat(md)
end

-- The Markdown links and the image_url parts in document order: {url =, alt =, title =} or
-- {url =, type = "image_url"}. A stand-in the parser did not see as an image (inside a code block
-- the text opened) still counts: its part goes at the end.
local function merge_links(links, part_urls)
  local out, used = {}, {}
  local np = #part_urls
  for i = 1, rawlen(links) do
    local l = links[i]
    local url = type(l) == "table" and type(l.url) == "string" and l.url or nil
    if url and #url > #PART_MARK and url:sub(1, #PART_MARK) == PART_MARK then
      local k = url:sub(#PART_MARK + 1):match("^%d+$") and tonumber(url:sub(#PART_MARK + 1))
      if k and k >= 1 and k <= np and not used[k] then
        used[k] = true
        out[#out + 1] = {url = part_urls[k], type = "image_url"}
      end
    elseif url then
      out[#out + 1] = l
    end
  end
  for i = 1, np do
    if not used[i] then out[#out + 1] = {url = part_urls[i], type = "image_url"} end
  end
  return out
end

-- The text of streamed chunks: each delta's `content` (a string, or a list of parts as in a
-- message), in order, then the image parts of every delta's `images` (as `message.images`).
-- Returns the text and the text for the Markdown parser, appending image URLs to part_urls.
local function stream_content(deltas, part_urls)
  local plain, md, images = {}, {}, {}
  for k = 1, type(deltas) == "table" and rawlen(deltas) or 0 do
    local d = deltas[k]
    local c = type(d) == "table" and d.content or nil
    if type(c) == "string" then
      plain[#plain + 1], md[#md + 1] = c, c
    elseif type(c) == "table" then
      plain[#plain + 1], md[#md + 1] = walk_parts(c, part_urls)
    end
    local im = type(d) == "table" and d.images or nil
    if type(im) == "table" then
      for i = 1, rawlen(im) do images[#images + 1] = im[i] end
    end
  end
  if #images > 0 then
    plain[#plain + 1], md[#md + 1] = walk_parts(images, part_urls)
  end
  return concat(plain), concat(md)
end

local function content_error(kind, code, what, content, status)
  local e = core.error(kind, ('%s: "%s"'):format(what, common.excerpt(content, 200)), {code = code, status = status})
  if type(content) == "string" then e.content = content end
  return nil, e
end

--- Reads a 2xx reply (in the loop, before any download): the content, its links, the data: URL
-- images; the other links are handed back to be downloaded.
-- @tparam table reply the core's reply (see src/api.c)
-- @treturn table|nil the plan `{images =, urls =, url_index =, body =, content =, links =}`
-- @treturn[2] table the error: `decode` (`code` `no_image_link`, `empty_content`), `api` (`code =
--   "refusal"`), with `content`
function M.reader(reply)
  local body, content, md
  local part_urls = {}
  if reply.stream then -- streamed chunks: their deltas' content joined, their images after it
    body = type(reply.json) == "table" and reply.json or {}
    content, md = stream_content(reply.deltas, part_urls)
  else
    local err
    body, err = common.decode(reply)
    if not body then return nil, err end
    local choices = body.choices
    local msg = type(choices) == "table" and type(choices[1]) == "table" and choices[1].message
    if type(msg) ~= "table" then
      return nil, common.decode_error(reply, "the chat completion has no choices[1].message")
    end
    if type(msg.refusal) == "string" and msg.refusal ~= "" then
      return content_error("api", "refusal", "the model refused", msg.refusal, reply.status)
    end
    local c = msg.content
    if type(c) == "string" then content, md = c, c
    elseif type(c) == "table" then content, md = walk_parts(c, part_urls)
    else content, md = "", "" end
    if type(msg.images) == "table" then -- a gateway's image parts beside the content
      local plain, marked = walk_parts(msg.images, part_urls)
      content, md = content .. plain, md .. marked
    end
  end
  if #content == 0 and #part_urls == 0 then
    return content_error("decode", "empty_content", "the chat completion's content is empty", content, reply.status)
  end
  local ok, found = pcall(markdown.images, md)
  if not ok or type(found) ~= "table" then
    return nil, core.error("decode", "parsing the chat reply's Markdown failed")
  end
  local links = merge_links(found, part_urls)
  if #links == 0 then
    return content_error("decode", "no_image_link", "the chat reply holds no Markdown image link", content,
      reply.status)
  end
  local images, urls, uidx = {}, {}, {}
  for i, l in ipairs(links) do
    local url = l.url
    if #url > 5 and url:sub(1, 5) == "data:" then
      local img, ierr = core.image_from_data_url(url, ("link %d"):format(i))
      if not img then
        if #images > 0 then ierr.images = images end
        return nil, ierr
      end
      img.index = i
      img.alt = l.alt
      images[#images + 1] = img
    else
      urls[#urls + 1] = url
      uidx[#uidx + 1] = i
    end
  end
  return {images = images, urls = urls, url_index = uidx, body = body, content = content, links = links}
end

--- The result of a done transfer (see `imageroute.generate`): `content`, `links`, `unsent`,
-- `served_model`, `images` in document order.
-- @tparam table req the normalised request
-- @tparam table|nil res the core's result (`reply`, `plan`, `images`)
-- @tparam[opt] table err the core's error (passed through)
-- @treturn table|nil result
-- @treturn[2] table error
function M.reply(req, res, err)
  if not res then return nil, err end
  local plan = res.plan or {}
  res.plan, res.reply = nil, nil
  local body = type(plan.body) == "table" and plan.body or {}
  res.id, res.created, res.usage = body.id, body.created, body.usage
  res.model = req.top_model
  res.served_model = body.model
  res.content = plan.content
  res.links = plan.links
  res.unsent = M.unsent(req.kind, req.params)
  res.images = common.order(res.images or {})
  res.shape = "chat"
  return res
end

return M
