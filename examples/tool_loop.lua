--- A tool loop on the Responses API: the model calls a function of the app's own (next to the
-- image_generation tool), the app runs it and answers with a `function_call_output` input item and
-- `previous_response_id`, and the model then draws the image. A last step runs in background mode
-- (created, polled, the same result as a foreground call). imageroute.flow records each step.
--
-- `make demo` runs it against the bundled local server (whose mock model calls a function when the
-- input names it). Against the real API:
-- `OPENAI_API_KEY=... lua5.4 examples/tool_loop.lua` (with LUA_PATH/LUA_CPATH set as in README).
local imageroute = require("imageroute")
local json = require("imageroute.json")

local out = os.getenv("IMAGEROUTE_OUT") or "out"
os.execute("mkdir -p '" .. out .. "'")

local assistant = assert(imageroute.route{
  name = "official-responses", shape = "responses",
  model = os.getenv("IMAGEROUTE_TEXT_MODEL") or "gpt-5",          -- the text model on top
  image_model = os.getenv("IMAGEROUTE_MODEL") or "gpt-image-1",   -- the image model in the tool
})

-- The app's own function, offered to the model next to the image tool.
local WEATHER = {type = "function", name = "get_weather", description = "Tomorrow's weather in a city",
  parameters = {type = "object", properties = {city = {type = "string"}}, required = {"city"},
    additionalProperties = false}, strict = true}
local function get_weather(args)
  return {city = args and args.city or "?", forecast = "light snow, -3 C, calm wind"}
end

local f = imageroute.flow.new{name = "toolloop", out = out, overwrite = true}

-- 1. The model asks for the function (result.function_calls).
local ask = f:step("ask", imageroute.respond, assistant, {
  input = "Draw a small poster of tomorrow's weather in Oslo. Use get_weather for the forecast.",
  tools = {WEATHER}, size = "1024x1024", quality = "low",
})
local calls = ask and ask.function_calls or {}

-- 2. The app answers each call; the model then draws.
local answers = {}
for i, call in ipairs(calls) do
  answers[i] = {type = "function_call_output", call_id = call.call_id,
    output = json.encode(get_weather(call.args))}
end
local drawn = #answers > 0 and f:step("answer", imageroute.respond, assistant, {
  previous_response_id = ask.id, input = answers, tools = {WEATHER}, size = "1024x1024", quality = "low",
})

-- 3. A revision in background mode: created, polled on the loop, cancellable (t:cancel()).
if drawn then
  f:step("revision", function(route, params, opts)
    return imageroute.start_background(route, params, opts):wait()
  end, assistant, {previous_response_id = drawn.id, input = "Make the snow heavier", tool_choice = "image_generation",
    size = "1024x1024", quality = "low"}, {poll_interval = tonumber(os.getenv("IMAGEROUTE_POLL")) or 2})
end

print(f:report())
if not f:ok() or #calls == 0 then os.exit(1) end
