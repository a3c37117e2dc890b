-- imageroute.markdown: Markdown images in chat-completions replies (CommonMark subset).

local markdown = require("imageroute.markdown")

local function img(url, alt, title)
  return {url = url, alt = alt, title = title}
end

-- {name, input, expected list of images}
local cases = {
  -- the gateway format and the basic forms
  {"gateway reply", "\n\n![image](https://cdn.example/abc.png)\n\n",
    {img("https://cdn.example/abc.png", "image")}},
  {"inline image", "![alt](url)", {img("url", "alt")}},
  {"double-quoted title", '![alt](url "a title")', {img("url", "alt", "a title")}},
  {"single-quoted title", "![alt](url 'a title')", {img("url", "alt", "a title")}},
  {"parenthesised title", "![alt](url (a title))", {img("url", "alt", "a title")}},
  {"spaces and a line ending around the parts", '![alt](  url\n  "t"  )', {img("url", "alt", "t")}},
  {"angle-bracket destination with spaces", "![alt](<url with spaces>)", {img("url with spaces", "alt")}},
  {"angle destination and title", "![a](<x y.png> 'T')", {img("x y.png", "a", "T")}},
  {"empty alt", "![](https://x/y.png)", {img("https://x/y.png", "")}},
  {"empty destination", "![a]()", {img("", "a")}},
  {"balanced parentheses in the destination", "![a](https://x/a_(1).png)", {img("https://x/a_(1).png", "a")}},
  {"several links, in document order",
    "Here: ![one](https://a/1.png) and ![two](https://a/2.png \"2\")\n\nthen ![three](https://a/3.png)",
    {img("https://a/1.png", "one"), img("https://a/2.png", "two", "2"), img("https://a/3.png", "three")}},
  {"images in a list", "- ![a](u1)\n- ![b](u2)\n  ![c](u3)",
    {img("u1", "a"), img("u2", "b"), img("u3", "c")}},
  {"image in a block quote and a heading", "> ![q](u1)\n\n# Title ![h](u2) #",
    {img("u1", "q"), img("u2", "h")}},
  {"image inside a link", "[![logo](https://x/logo.png)](https://x/)", {img("https://x/logo.png", "logo")}},
  {"CRLF line endings", "text\r\n![a](u)\r\n", {img("u", "a")}},
  {"alt text across lines", "![a\nb](u)", {img("u", "a\nb")}},

  -- alt text
  {"nested brackets in alt", "![a [b] c](u)", {img("u", "a [b] c")}},
  {"link inside alt becomes its text", "![foo [bar](/url)](/url2)", {img("/url2", "foo bar")}},
  {"image inside alt: both, outer first", "![foo ![bar](/u1)](/u2)",
    {img("/u2", "foo bar"), img("/u1", "bar")}},
  {"code span in alt", "![a `b` c](u)", {img("u", "a b c")}},
  {"escapes and entities", "![a \\* &amp; &#65;&#x42;](u?x=1&amp;y=2 \"q&quot;\\\"\")",
    {img("u?x=1&y=2", "a * & AB", 'q""')}},
  {"no links inside links (CommonMark example 520)", "![[[foo](uri1)](uri2)](uri3)",
    {img("uri3", "[foo](uri2)")}},
  {"escaped bracket in alt", "![a\\]b](u)", {img("u", "a]b")}},
  {"escaped parenthesis in destination", "![a](u\\)v)", {img("u)v", "a")}},

  -- reference images
  {"full reference", "![alt][ref]\n\n[ref]: https://x/r.png", {img("https://x/r.png", "alt")}},
  {"definition before use, with title", '[ref]: https://x/r.png "T"\n\n![alt][ref]',
    {img("https://x/r.png", "alt", "T")}},
  {"collapsed reference", "![Foo][]\n\n[foo]: /u 'T'", {img("/u", "Foo", "T")}},
  {"shortcut reference", "![foo]\n\n[foo]: /u (T)", {img("/u", "foo", "T")}},
  {"labels: case-insensitive, whitespace collapsed", "![x][Foo \n  BAR]\n\n[ foo bar ]: /u",
    {img("/u", "x")}},
  {"angle destination in a definition", "![x][r]\n\n[r]: <a b.png>", {img("a b.png", "x")}},
  {"title on the next line", '![x][r]\n\n[r]: /u\n  "T"', {img("/u", "x", "T")}},
  {"several definitions, first one wins", "![x][r]\n\n[r]: /first\n[R]: /second", {img("/first", "x")}},
  {"definition in a list item", "- [r]: /u\n\n![x][r]", {img("/u", "x")}},
  {"undefined reference", "![alt][nope]\n\n[ref]: /u", {}},
  {"undefined full reference does not fall back to the shortcut", "![foo][bar]\n\n[foo]: /u", {}},
  {"a definition cannot interrupt a paragraph", "text\n[r]: /u\n\n![x][r]", {}},
  {"definition with trailing text is not one", "[r]: /u junk\n\n![x][r]", {}},
  {"definition inside a code block is ignored", "```\n[r]: /u\n```\n![x][r]", {}},
  {"inline wins over reference", "![x](/inline)\n\n[x]: /ref", {img("/inline", "x")}},

  -- not images
  {"plain link", "[text](https://x/y.png)", {}},
  {"escaped bang", "\\![a](u)", {}},
  {"escaped bracket", "!\\[a](u)", {}},
  {"escaped bang and bracket", "\\!\\[a](u)", {}},
  {"entity for the bang", "&#33;[a](u)", {}},
  {"space before the parenthesis", "![a] (u)", {}},
  {"space inside a bare destination", "![a](u v)", {}},
  {"unclosed title", '![a](u "t)', {}},
  {"line ending inside an angle destination", "![a](<u\nv>)", {}},
  {"escaped line ending inside an angle destination", "![a](<u\\\nv>)", {}},
  {"code span", "`![x](y)`", {}},
  {"double-backtick code span", "``a ` ![x](y)``", {}},
  {"autolink", "<https://x/![a](u)>", {}},
  {"fenced code block", "```\n![x](y)\n```", {}},
  {"tilde fence with info string", "~~~markdown\n![x](y)\n~~~", {}},
  {"unclosed fence runs to the end", "```\n![x](y)\n\n![z](w)", {}},
  {"fence in a list item", "- ```\n  ![x](y)\n  ```\n- ![ok](u)", {img("u", "ok")}},
  {"a tilde line does not close a backtick fence", "```\n~~~\n![x](y)\n```", {}},
  {"indented code block", "    ![x](y)", {}},
  {"an empty list item ends at a blank line", "-\n\n    ![x](y)", {}},
  {"indented code after a setext heading", "Title\n-\n    ![x](y)", {}},
  {"indented code after a thematic break", "text\n***\n    ![x](y)", {}},
  {"indented code after a blank line", "text\n\n    ![x](y)", {}},
  {"tab-indented code block", "\t![x](y)", {}},
  {"mixed: only the real image", "`![a](b)`\n\n```\n![c](d)\n```\n\n    ![e](f)\n\n[g](h) ![i](j)",
    {img("j", "i")}},

  -- indentation that is not code
  {"indented continuation line of a paragraph", "text\n    ![x](y)", {img("y", "x")}},
  {"only 1. starts a list inside a paragraph", "text\n2.     ![x](y)", {img("y", "x")}},
  {"two stars are not a thematic break", "text\n**\n    ![x](y)", {img("y", "x")}},
  {"indented paragraph in a list item", "1. Here:\n\n   ![x](y)", {img("y", "x")}},
  {"lazy block quote continuation", "> text ![x\nlazy](y)", {img("y", "x\nlazy")}},
  {"lazy list item continuation", "- text ![x\nlazy](y)", {img("y", "x\nlazy")}},
  {"a blank line ends the paragraph", "![x\n\n](y)", {}},
  {"unmatched backtick is literal", "`![a](u)", {img("u", "a")}},

  -- malformed and empty input
  {"empty string", "", {}},
  {"text without links", "Here is your image, enjoy.", {}},
  {"bang alone", "!", {}},
  {"opener only", "![", {}},
  {"unclosed alt", "![alt", {}},
  {"unclosed destination", "![alt](url", {}},
  {"stray brackets", "]![](()[", {}},
  {"unbalanced parentheses", "![a](u(v)", {}},
}

describe("imageroute.markdown.images", function()
  for _, case in ipairs(cases) do
    local name, input, expected = case[1], case[2], case[3]
    it(name, function()
      assert.same(expected, markdown.images(input))
    end)
  end

  -- {name, argument}: anything but a string raises a luaL-style argument error
  local bad = {
    {"nil", nil}, {"number", 42}, {"table", {}}, {"boolean", true}, {"function", print},
  }
  for _, case in ipairs(bad) do
    it("raises on " .. case[1], function()
      local ok, err = pcall(markdown.images, case[2])
      assert.is_false(ok)
      assert.equal("bad argument #1 to 'images' (string expected, got " .. type(case[2]) .. ")", err)
    end)
  end

  it("points the argument error at the caller", function()
    local ok, err = pcall(function()
      local found = markdown.images(nil) -- not a tail call, so the caller's frame is there
      return found
    end)
    assert.is_false(ok)
    assert.matches("^.-markdown_spec%.lua:%d+: bad argument #1 to 'images'", err)
  end)

  describe("1 MB inputs complete", function()
    local MB = 1024 * 1024
    local function fill(unit) return string.rep(unit, MB // #unit + 1) end
    local unit = "\n\n![image](https://cdn.example/abc.png)\n\n"

    it("many gateway links", function()
      local count = MB // #unit + 1
      local found = markdown.images(fill(unit))
      assert.equal(count, #found)
      assert.same(img("https://cdn.example/abc.png", "image"), found[count])
    end)

    -- {name, input, expected number of images}
    local big = {
      {"one long line of text then a link", fill("lorem ipsum ") .. "![a](u)", 1},
      {"openers", fill("!["), 0},
      {"closers", "![" .. fill("]"), 0},
      {"unterminated destinations", fill("![a]("), 0},
      {"nested parentheses", fill("![a](()"), 0},
      {"unterminated titles", fill('![a](u "'), 0},
      {"unterminated angle destinations", fill("![a](<"), 0},
      {"backticks", "![" .. fill("` `` ```"), 0},
      {"shortcut references", "[a]: /u\n\n" .. fill("![a]"), MB // 4 + 1},
      {"unterminated labels", "[a]: /u\n\n" .. fill("![b][a"), 0},
      {"deeply nested images", string.rep("![", MB // 8) .. string.rep("](u)", MB // 8), 32},
      {"deeply nested containers", string.rep("> - ", MB // 8) .. "![a](u)" .. string.rep("\n", MB // 2), 1},
      {"spaces", "x" .. fill(" ") .. "![a](u)", 1},
      {"fences", fill("```\n![a](u)\n"), (MB // 12 + 1) // 2},
    }
    for _, case in ipairs(big) do
      it(case[1], function()
        assert.equal(case[3], #markdown.images(case[2]))
      end)
    end
  end)
end)
