-- imageroute.json: arrays stay arrays (the mark), nulls, integers, refusals; and the same functions
-- on the top module (imageroute.array / imageroute.is_array).
local json = require("imageroute.json")
local imageroute = require("imageroute")

describe("imageroute.json", function()
  it("the top module exposes the same array and is_array", function()
    assert.equal(json.array, imageroute.array)
    assert.equal(json.is_array, imageroute.is_array)
  end)

  it("an empty table is an object, a marked one an array", function()
    assert.equal("{}", json.encode({}))
    assert.equal("[]", json.encode(imageroute.array()))
    assert.equal("[]", json.encode(imageroute.array({})))
    local s = json.encode({summary = imageroute.array(), meta = {}})
    assert.truthy(s:find('"summary":[]', 1, true), s)
    assert.truthy(s:find('"meta":{}', 1, true), s)
  end)

  it("empty arrays nested at any depth are sent as []", function()
    local v = {input = {{type = "reasoning", id = "rs_1", summary = imageroute.array()},
      {type = "message", role = "assistant", content = {{type = "output_text", text = "hi",
        annotations = imageroute.array()}}}}}
    local s = assert(json.encode(v))
    assert.truthy(s:find('"summary":[]', 1, true), s)
    assert.truthy(s:find('"annotations":[]', 1, true), s)
    local back = json.decode(s)
    assert.is_true(json.is_array(back.input[1].summary))
    assert.is_true(json.is_array(back.input[2].content[1].annotations))
  end)

  it("is_array tells marked tables only", function()
    assert.is_true(imageroute.is_array(imageroute.array({1, 2})))
    assert.is_false(imageroute.is_array({1, 2}))
    assert.is_false(imageroute.is_array("[]"))
    assert.is_false(imageroute.is_array(nil))
  end)

  it("array returns the table it marks and refuses other metatables and non-tables", function()
    local t = {1}
    assert.equal(t, imageroute.array(t))
    assert.equal(t, imageroute.array(t)) -- marking twice is fine
    assert.has_error(function() imageroute.array(setmetatable({}, {})) end)
    assert.has_error(function() imageroute.array("x") end)
  end)

  it("encode never changes the caller's tables", function()
    local inner = imageroute.array()
    local v = {a = inner, b = {1, 2}}
    assert(json.encode(v))
    assert.equal(inner, v.a)
    assert.is_nil(next(inner))
    assert.is_true(json.is_array(inner))
  end)

  it("decode marks every array of the text, empty or not, whatever the field name", function()
    local v = json.decode('{"output":[{"type":"message","content":[]}],"x_unknown":[],"obj":{},"n":[1,2]}')
    assert.is_true(json.is_array(v.output))
    assert.is_true(json.is_array(v.output[1].content))
    assert.is_true(json.is_array(v.x_unknown))
    assert.is_false(json.is_array(v.obj))
    assert.is_true(json.is_array(v.n))
    -- round trip keeps [] and {} apart
    local s = json.encode(v)
    assert.truthy(s:find('"x_unknown":[]', 1, true), s)
    assert.truthy(s:find('"obj":{}', 1, true), s)
    assert.truthy(s:find('"content":[]', 1, true), s)
  end)

  it("a top-level [] decodes to a marked empty table", function()
    local v = json.decode(" [ ] ")
    assert.is_true(json.is_array(v))
    assert.equal("[]", json.encode(v))
  end)

  it("[] inside strings is text, not an array", function()
    local v = json.decode('{"text":"a [] b \\" [ ] c","list":[ ]}')
    assert.equal('a [] b " [ ] c', v.text)
    assert.is_true(json.is_array(v.list))
    assert.equal('a [] b " [ ] c', json.decode(json.encode(v)).text)
  end)

  it("null becomes nil, integral numbers integers", function()
    local v = json.decode('{"a":null,"b":3,"c":2.5,"d":[null,1]}')
    assert.is_nil(v.a)
    assert.equal("integer", math.type(v.b))
    assert.equal(2.5, v.c)
    assert.equal(1, v.d[2])
    assert.is_nil(json.decode("null"))
  end)

  it("refuses what is not JSON, and values JSON cannot hold", function()
    local v, err = json.decode("{nope")
    assert.is_nil(v)
    assert.is_string(err)
    assert.is_nil((json.encode({x = 0 / 0})))
    assert.is_nil((json.encode({x = math.huge})))
    local cyc = {}
    cyc.self = cyc
    local s, e = json.encode(cyc)
    assert.is_nil(s)
    assert.matches("itself", e)
    assert.is_nil((json.encode({f = print})))
  end)

  it("the private instance leaves the shared cjson's settings alone", function()
    local cjson = require("cjson")
    assert.equal("{}", cjson.encode({})) -- still the library default
    assert.equal("[]", json.encode(imageroute.array()))
  end)
end)
