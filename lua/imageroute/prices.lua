--- imageroute.prices: OpenAI's published image prices, as one data table (USD).
--
-- USD, as published; re-check before relying on them: the per-1M-token rows from OpenAI's
-- pricing page (https://platform.openai.com/docs/pricing, Image tokens) and the per-image rows
-- from the cost calculator of OpenAI's image generation guide
-- (https://platform.openai.com/docs/guides/image-generation, Cost and latency), both read in May
-- 2026. Every row carries its `source` and `date`; `imageroute.cost` copies them into each cost it
-- computes. A changed price is one line here.
--
-- A provider's price (per call, per image, credit) belongs to that route's `billing`, never here.
-- @module imageroute.prices

local models = require("imageroute.models")

local M = {}

local TOKEN_SOURCE = "OpenAI pricing page, per 1M tokens, https://platform.openai.com/docs/pricing (May 2026)"
local IMAGE_SOURCE = "OpenAI image generation guide, cost per image, " ..
  "https://platform.openai.com/docs/guides/image-generation (May 2026)"

--- Per 1M tokens, USD. Fields: `text_in`, `text_in_cached`, `text_out`, `image_in`, `image_in_cached`,
-- `image_out` (absent = not published in the notes, so not priced).
M.tokens = {
  ["gpt-image-2"] = {text_in = 5.00, text_in_cached = 1.25, text_out = 10.00, image_in = 8.00,
    image_in_cached = 2.00, image_out = 30.00, per = 1e6, currency = "USD", source = TOKEN_SOURCE, date = "2026-05"},
  ["gpt-image-1.5"] = {text_in = 5.00, text_in_cached = 1.25, image_in = 8.00, image_out = 32.00,
    per = 1e6, currency = "USD", source = TOKEN_SOURCE, date = "2026-05"},
  ["gpt-image-1"] = {text_in = 5.00, text_in_cached = 1.25, image_in = 10.00, image_in_cached = 2.50,
    image_out = 40.00, per = 1e6, currency = "USD", source = TOKEN_SOURCE, date = "2026-05"},
  ["gpt-image-1-mini"] = {text_in = 2.00, text_in_cached = 0.20, image_in = 2.50, image_in_cached = 0.25,
    image_out = 8.00, per = 1e6, currency = "USD", source = TOKEN_SOURCE, date = "2026-05"},
}

--- Per image, USD, by size then quality. `1024x1536` and `1536x1024` share a price.
M.images = {
  ["gpt-image-2"] = {currency = "USD", source = IMAGE_SOURCE, date = "2026-05",
    ["1024x1024"] = {low = 0.006, medium = 0.053, high = 0.211},
    ["1024x1536"] = {low = 0.005, medium = 0.041, high = 0.165},
    ["1536x1024"] = {low = 0.005, medium = 0.041, high = 0.165}},
  ["gpt-image-1.5"] = {currency = "USD", source = IMAGE_SOURCE, date = "2026-05",
    ["1024x1024"] = {low = 0.009, medium = 0.034, high = 0.133},
    ["1024x1536"] = {low = 0.013, medium = 0.05, high = 0.20},
    ["1536x1024"] = {low = 0.013, medium = 0.05, high = 0.20}},
  ["gpt-image-1"] = {currency = "USD", source = IMAGE_SOURCE, date = "2026-05",
    ["1024x1024"] = {low = 0.011, medium = 0.042, high = 0.167},
    ["1024x1536"] = {low = 0.016, medium = 0.063, high = 0.25},
    ["1536x1024"] = {low = 0.016, medium = 0.063, high = 0.25}},
  ["gpt-image-1-mini"] = {currency = "USD", source = IMAGE_SOURCE, date = "2026-05",
    ["1024x1024"] = {low = 0.005, medium = 0.011, high = 0.036},
    ["1024x1536"] = {low = 0.006, medium = 0.015, high = 0.052},
    ["1536x1024"] = {low = 0.006, medium = 0.015, high = 0.052}},
}

--- The per-1M-token row of a model (aliases such as dated snapshots resolved).
-- @tparam string model
-- @treturn table|nil the row (do not modify it)
function M.token_row(model)
  if type(model) ~= "string" then return nil end
  return M.tokens[models.canonical(model)]
end

--- The per-image price of one image.
-- @tparam string model
-- @tparam string size e.g. "1024x1024"
-- @tparam string quality "low" | "medium" | "high"
-- @treturn number|nil USD per image
-- @treturn table|string the model's row (for `source`, `date`), or why there is no price
function M.image_price(model, size, quality)
  if type(model) ~= "string" then return nil, "no model" end
  local row = M.images[models.canonical(model)]
  if not row then return nil, "no per-image price row for " .. model end
  local by_size = type(size) == "string" and size ~= "auto" and rawget(row, size)
  if type(by_size) ~= "table" then
    return nil, "no per-image price for " .. model .. " at size " .. tostring(size)
  end
  local p = type(quality) == "string" and by_size[quality]
  if type(p) ~= "number" then
    return nil, "no per-image price for " .. model .. " at quality " .. tostring(quality)
  end
  return p, row
end

return M
