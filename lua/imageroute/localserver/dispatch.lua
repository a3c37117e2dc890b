--- imageroute.localserver.dispatch: the table of `/v1` endpoints, (method, path) -> handler.
--
-- A path is literal, or has `{name}` segments that match one path segment (`[^/]+`) and reach the
-- handler as `ctx.params.name`:
--
--    dispatch.add("POST", "/v1/images/generations", images.generations)
--    dispatch.add("GET", "/v1/responses/{id}", responses.retrieve)  -- ctx.params.id
--
-- A handler is `function(ctx, B)` returning a response table: `{status =, body =, content_type =}`
-- (see `imageroute.localserver.http.json_response` / `error_response`) or an event stream
-- `{status =, events = {{name|false, table|string}, ...}, blobs =}`. `ctx` holds the request
-- (`method`, `path`, `query`, `headers`, `body`, and `json` or `parts` once parsed, `blobs`,
-- `request_id`); `B` is the request's behaviour (a table, maybe empty). An error raised by a
-- handler becomes a 500 OpenAI error body. The endpoints are registered in
-- `imageroute.localserver` (its init module), one line each.
-- @module imageroute.localserver.dispatch

local ipairs, type = ipairs, type

local D = {}

local exact = {}    -- method .. " " .. path -> handler
local patterns = {} -- {method =, pattern =, names = {...}, handler =}, in registration order
local known = {}    -- literal path -> true (for 405 versus 404)

--- Register an endpoint.
-- @tparam string method "GET", "POST", ...
-- @tparam string path literal, or with `{name}` segments
-- @tparam function handler `function(ctx, B)` returning a response table
function D.add(method, path, handler)
  assert(type(handler) == "function", "dispatch.add: handler must be a function")
  if not path:find("{", 1, true) then
    exact[method .. " " .. path] = handler
    known[path] = true
    return
  end
  local names = {}
  local pattern = "^" .. path:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"):gsub("{(%w+)}", function(name)
    names[#names + 1] = name
    return "([^/]+)"
  end) .. "$"
  patterns[#patterns + 1] = {method = method, pattern = pattern, names = names, handler = handler}
end

--- Find the handler of a request.
-- @tparam string method
-- @tparam string path the request path (no query)
-- @treturn[1] function handler
-- @treturn[1] table the `{name}` segments of the path (empty for a literal path)
-- @treturn[2] nil no endpoint for this method
-- @treturn[2] boolean true when the path has an endpoint under another method (405, else 404)
function D.find(method, path)
  local handler = exact[method .. " " .. path]
  if handler then return handler, {} end
  local other = known[path] or false
  for _, p in ipairs(patterns) do
    local caps = {path:match(p.pattern)}
    if caps[1] then
      if p.method == method then
        local params = {}
        for k, name in ipairs(p.names) do params[name] = caps[k] end
        return p.handler, params
      end
      other = true
    end
  end
  return nil, other
end

return D
