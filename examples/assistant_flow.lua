--- An assistant-style flow: a brief becomes a concept (text only), the concept becomes an image
-- (Responses API with the image_generation tool), a revision continues the same conversation
-- (previous_response_id), and a last touch edits the image on an Images API route.
--
-- `make demo` runs it against the bundled local server. Against the real API:
-- `OPENAI_API_KEY=... lua5.4 examples/assistant_flow.lua` (with LUA_PATH/LUA_CPATH set as in README).
local imageroute = require("imageroute")
local flow = require("imageroute.flow")

local out = os.getenv("IMAGEROUTE_OUT") or "out"
os.execute("mkdir -p '" .. out .. "'")

local assistant = assert(imageroute.route{
  name = "official-responses", shape = "responses",
  model = os.getenv("IMAGEROUTE_TEXT_MODEL") or "gpt-5",           -- the text model on top
  image_model = os.getenv("IMAGEROUTE_MODEL") or "gpt-image-1",    -- the image model in the tool
})
local images = assert(imageroute.route{
  name = "official-images", shape = "images", model = os.getenv("IMAGEROUTE_MODEL") or "gpt-image-1",
})

local f = flow.new{name = "assistant", out = out, overwrite = true}
local brief = "A poster for a small-town jazz festival in autumn, warm colours, hand-lettered title."

local concept = f:step("concept", imageroute.respond, assistant, {
  input = "Turn this brief into a one-paragraph visual concept for an illustrator: " .. brief,
  tool = false,
})
local image = concept and f:step("image", imageroute.respond, assistant, {
  input = "Draw the poster from this concept: " .. concept.output_text,
  previous_response_id = concept.id, tool_choice = "image_generation",
  size = "1024x1536", quality = "low",
})
local revision = image and f:step("revision", imageroute.respond, assistant, {
  input = "Revise the image: make the title larger and the sky a deeper orange.",
  previous_response_id = image.id, tool_choice = "image_generation",
  size = "1024x1536", quality = "low",
})
if revision then
  f:step("touch-up", imageroute.edit, images, {
    prompt = "Add a small saxophone silhouette in the lower right corner",
    image = revision.images[1], size = "1024x1536", quality = "low",
  })
end

print(f:report())
if not f:ok() then os.exit(1) end
