-- imageroute.dataurl: RFC 2397 data URLs, base64 through the C core.

local dataurl = require("imageroute.dataurl")

-- Magic-byte prefixes (base64 of each checked with an independent encoder).
local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR"        -- iVBORw0KGgoAAAANSUhEUg==
local JPEG = "\255\216\255\224\0\16JFIF\0"           -- /9j/4AAQSkZJRgA=
local WEBP = "RIFF\30\0\0\0WEBPVP8L"                -- UklGRh4AAABXRUJQVlA4TA==
local GIF = "GIF89a\1\0\1\0"                        -- R0lGODlhAQABAA==

describe("imageroute.dataurl", function()
  describe("decode", function()
    -- {name, input, bytes, mime, params}
    local cases = {
      {"base64 PNG", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==", PNG, "image/png", {}},
      {"base64 JPEG", "data:image/jpeg;base64,/9j/4AAQSkZJRgA=", JPEG, "image/jpeg", {}},
      {"RFC 2397 example: defaults", "data:,A%20brief%20note", "A brief note", "text/plain",
        {charset = "US-ASCII"}},
      {"empty media type with charset", "data:;charset=utf-8,caf%C3%A9", "caf\195\169", "text/plain",
        {charset = "utf-8"}},
      {"empty media type, base64", "data:;base64,aGVsbG8=", "hello", "text/plain", {charset = "US-ASCII"}},
      {"charset on a given type", "data:text/plain;charset=UTF-8,hi", "hi", "text/plain", {charset = "UTF-8"}},
      {"given text/plain gets no default charset", "data:text/plain,hi", "hi", "text/plain", {}},
      {"case-insensitive scheme, type, names and base64", "DATA:Image/PNG;Name=a.png;BASE64,YWI=", "ab",
        "image/png", {name = "a.png"}},
      {"parameters and base64", "data:image/svg+xml;charset=utf-8;base64,PHN2Zy8+", "<svg/>",
        "image/svg+xml", {charset = "utf-8"}},
      {"percent-escaped parameter value", "data:text/plain;name=a%20b.txt,x", "x", "text/plain",
        {name = "a b.txt"}},
      {"quoted parameter value", 'data:text/plain;name="a b",x', "x", "text/plain", {name = "a b"}},
      {"quoted-pair in a quoted value", 'data:text/plain;name="a\\"b",x', "x", "text/plain", {name = 'a"b'}},
      {"first repeated parameter wins", "data:text/plain;charset=a;CHARSET=b,x", "x", "text/plain",
        {charset = "a"}},
      {"whitespace around header parts", "data: image/gif ; base64 ,R0lGODlhAQABAA==", GIF, "image/gif", {}},
      {"line breaks in the base64", "data:image/webp;base64,UklGRh4A\r\nAABXRUJQ\nVlA4TA==", WEBP, "image/webp",
        {}},
      {"percent-escaped base64", "data:application/octet-stream;base64,AP%2F%2B", "\0\255\254",
        "application/octet-stream", {}},
      {"comma in the data", "data:,a,b", "a,b", "text/plain", {charset = "US-ASCII"}},
      {"empty data", "data:image/png;base64,", "", "image/png", {}},
      {"binary percent escapes", "data:application/octet-stream,%00%FF", "\0\255", "application/octet-stream",
        {}},
      {"plus is not a space", "data:,a+b", "a+b", "text/plain", {charset = "US-ASCII"}},
    }
    for _, case in ipairs(cases) do
      local name, input, bytes, mime, params = case[1], case[2], case[3], case[4], case[5]
      it(name, function()
        assert.same({bytes, mime, params}, {dataurl.decode(input)})
      end)
    end

    -- {name, input, error message}
    local malformed = {
      {"not a data URL", "https://cdn.example/abc.png", "not a data URL"},
      {"empty string", "", "not a data URL"},
      {"scheme only", "data:", "malformed data URL: missing comma"},
      {"no comma", "data:image/png;base64", "malformed data URL: missing comma"},
      {"media type without subtype", "data:png;base64,AAAA", "malformed data URL: invalid media type"},
      {"media type with a space", "data:image/p ng,x", "malformed data URL: invalid media type"},
      {"base64 token alone is not a media type", "data:base64,AAAA", "malformed data URL: invalid media type"},
      {"parameter without value", "data:text/plain;charset,x", "malformed data URL: invalid parameter"},
      {"empty parameter", "data:text/plain;;base64,AAAA", "malformed data URL: invalid parameter"},
      {"base64 not last", "data:image/png;base64;x=y,AAAA", "malformed data URL: invalid parameter"},
      {"RFC 2397's own example has a bad escape (%fg)", "data:text/plain;charset=iso-8859-7,%be%fg%be",
        "malformed data URL: bad percent escape"},
      {"truncated escape", "data:,abc%4", "malformed data URL: bad percent escape"},
      {"bad escape in a parameter", "data:text/plain;name=%zz,x", "malformed data URL: bad percent escape"},
      {"base64 alphabet", "data:image/png;base64,YWJj!!ZGVm",
        "invalid base64: a character outside the base64 alphabet"},
      {"base64 truncated length", "data:image/png;base64,YWJjZ", "invalid base64: a truncated base64 length"},
      {"base64 padding", "data:image/png;base64,YWI==", "invalid base64: wrong base64 padding"},
      {"base64 data after padding", "data:image/png;base64,YQ==YQ==",
        "invalid base64: a character outside the base64 alphabet"},
    }
    for _, case in ipairs(malformed) do
      local name, input, message = case[1], case[2], case[3]
      it("rejects: " .. name, function()
        assert.same({nil, message}, {dataurl.decode(input)})
      end)
    end
  end)

  describe("encode", function()
    -- {name, bytes, mime (or nil), expected URL}
    local cases = {
      {"sniffs PNG", PNG, nil, "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="},
      {"sniffs JPEG", JPEG, nil, "data:image/jpeg;base64,/9j/4AAQSkZJRgA="},
      {"sniffs WebP", WEBP, nil, "data:image/webp;base64,UklGRh4AAABXRUJQVlA4TA=="},
      {"sniffs GIF", GIF, nil, "data:image/gif;base64,R0lGODlhAQABAA=="},
      {"given mime", "hello", "text/plain", "data:text/plain;base64,aGVsbG8="},
      {"given mime with a parameter", "hello", "text/plain;charset=utf-8",
        "data:text/plain;charset=utf-8;base64,aGVsbG8="},
      {"given mime beats sniffing", PNG, "application/octet-stream",
        "data:application/octet-stream;base64,iVBORw0KGgoAAAANSUhEUg=="},
      {"empty bytes with mime", "", "image/png", "data:image/png;base64,"},
      {"binary bytes", "\0\255\254", "application/octet-stream", "data:application/octet-stream;base64,AP/+"},
    }
    for _, case in ipairs(cases) do
      local name, bytes, mime, expected = case[1], case[2], case[3], case[4]
      it(name, function()
        assert.equal(expected, dataurl.encode(bytes, mime))
      end)
    end

    -- {name, bytes}: no mime given and nothing to sniff
    local unsniffable = {
      {"text", "hello"}, {"empty", ""}, {"short PNG prefix", "\137PNG"}, {"RIFF that is not WebP", "RIFF\0\0\0\0WAVE"},
    }
    for _, case in ipairs(unsniffable) do
      it("cannot sniff: " .. case[1], function()
        assert.same({nil, "cannot sniff media type: pass mime"}, {dataurl.encode(case[2])})
      end)
    end

    it("has no line breaks in a long payload", function()
      local url = dataurl.encode(string.rep("\0", 3000), "application/octet-stream")
      assert.equal("data:application/octet-stream;base64," .. string.rep("A", 4000), url)
    end)
  end)

  describe("round trip", function()
    local all = {}
    for b = 0, 255 do all[#all + 1] = string.char(b) end
    -- {name, bytes, mime passed to encode (nil: sniff), mime decode returns}
    local cases = {
      {"PNG, sniffed", PNG .. string.rep("\0\1\2\255", 100), nil, "image/png"},
      {"every byte value", table.concat(all), "application/octet-stream", "application/octet-stream"},
      {"1 MB JPEG, sniffed", JPEG .. string.rep("x", 1024 * 1024), nil, "image/jpeg"},
    }
    for _, case in ipairs(cases) do
      local name, bytes, mime, expected_mime = case[1], case[2], case[3], case[4]
      it(name, function()
        local url = assert(dataurl.encode(bytes, mime))
        assert.same({bytes, expected_mime, {}}, {dataurl.decode(url)})
      end)
    end
  end)

  describe("argument errors", function()
    -- {name, function, arguments, message}
    local cases = {
      {"decode(nil)", dataurl.decode, {}, "bad argument #1 to 'decode' (string expected, got nil)"},
      {"decode(number)", dataurl.decode, {42}, "bad argument #1 to 'decode' (string expected, got number)"},
      {"decode(table)", dataurl.decode, {{}}, "bad argument #1 to 'decode' (string expected, got table)"},
      {"encode(nil)", dataurl.encode, {}, "bad argument #1 to 'encode' (string expected, got nil)"},
      {"encode(number)", dataurl.encode, {42, "image/png"},
        "bad argument #1 to 'encode' (string expected, got number)"},
      {"encode(bytes, number)", dataurl.encode, {"x", 42}, "bad argument #2 to 'encode' (string expected, got number)"},
      {"encode(bytes, false)", dataurl.encode, {"x", false},
        "bad argument #2 to 'encode' (string expected, got boolean)"},
      {"encode(bytes, '')", dataurl.encode, {"x", ""}, "bad argument #2 to 'encode' (invalid media type '')"},
      {"encode(bytes, 'png')", dataurl.encode, {"x", "png"}, "bad argument #2 to 'encode' (invalid media type 'png')"},
      {"encode(bytes, 'a/b,c')", dataurl.encode, {"x", "a/b,c"},
        "bad argument #2 to 'encode' (invalid media type 'a/b,c')"},
      {"encode(bytes, 'a/b;c')", dataurl.encode, {"x", "a/b;c"},
        "bad argument #2 to 'encode' (invalid media type 'a/b;c')"},
      {"encode(bytes, 'a/b;c=d e')", dataurl.encode, {"x", "a/b;c=d e"},
        "bad argument #2 to 'encode' (invalid media type 'a/b;c=d e')"},
    }
    for _, case in ipairs(cases) do
      local name, fn, args, message = case[1], case[2], case[3], case[4]
      it("raises: " .. name, function()
        local ok, err = pcall(fn, table.unpack(args, 1, 2))
        assert.is_false(ok)
        assert.equal(message, err)
      end)
    end
  end)
end)
