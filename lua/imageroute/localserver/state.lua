--- imageroute.localserver.state: the server's state, shared by its modules: the recorded /v1
-- requests, the behaviour queue, counters, the stored files (served under /files/), the stored
-- Responses turns; unique ids; the stderr log.
-- @module imageroute.localserver.state

local format = string.format
local os_time = os.time
local stderr = io.stderr

local state = {
  port = 0,
  quiet = false,
  log = {},            -- recorded /v1 requests
  queue = {},          -- behaviours
  requests = 0,        -- /v1 requests since reset
  in_flight = 0,
  max_in_flight = 0,
  files = {},          -- name -> bytes
  file_order = {},     -- names, oldest first
  responses = {},      -- resp id -> stored turn
}
local MAX_FILES = 256

local id_counter = 0
-- Lua seeds math.random from the time and its state's address, which repeats across processes
-- started in the same second where addresses are not randomised: seed from the kernel instead.
do
  local f = io.open("/dev/urandom", "rb")
  local seed = f and f:read(8)
  if f then f:close() end
  if seed and #seed == 8 then math.randomseed(string.unpack("<I4I4", seed)) end
end
--- A unique id: prefix .. 24 hex digits.
local function new_id(prefix)
  id_counter = id_counter + 1
  return format("%s%08x%06x%010x", prefix, os_time() & 0xFFFFFFFF, id_counter & 0xFFFFFF,
    math.random(0, 0xFFFFFFFFFF))
end

local function store_file(bytes)
  local name = new_id("img_") .. ".png"
  state.files[name] = bytes
  state.file_order[#state.file_order + 1] = name
  while #state.file_order > MAX_FILES do
    state.files[table.remove(state.file_order, 1)] = nil
  end
  return name
end

local function logf(...)
  if not state.quiet then stderr:write(format(...), "\n") end
end

return {state = state, new_id = new_id, store_file = store_file, logf = logf}
