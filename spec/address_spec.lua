--- The download policy's address classifier (src/addr.c) over every spelling a reply can use.
-- core.address_class(text) parses text as the resolver would (inet_aton forms for IPv4,
-- inet_pton for IPv6) and classifies the address; no connection is made here. The policy itself
-- applies the same classifier to the resolved socket address of every download connection
-- (spec/hostile_downloads_spec.lua).

local core = require("imageroute.core")

local function class(text)
  return (core.address_class(text))
end

describe("address classifier", function()
  it("classifies the IPv4 ranges", function()
    local cases = {
      {"8.8.8.8", "public"}, {"1.1.1.1", "public"}, {"172.32.0.1", "public"}, {"172.15.255.255", "public"},
      {"100.63.255.255", "public"}, {"100.128.0.0", "public"}, {"169.253.1.1", "public"},
      {"127.0.0.1", "loopback"}, {"127.255.255.254", "loopback"},
      {"10.0.0.1", "private"}, {"10.255.255.255", "private"}, {"172.16.0.1", "private"},
      {"172.31.255.255", "private"}, {"192.168.1.1", "private"},
      {"169.254.169.254", "link_local"}, {"169.254.0.1", "link_local"},
      {"100.64.0.1", "cgnat"}, {"100.127.255.255", "cgnat"},
      {"0.0.0.0", "unspecified"}, {"0.1.2.3", "unspecified"},
      {"224.0.0.1", "multicast"}, {"239.255.255.250", "multicast"},
      {"240.0.0.1", "reserved"}, {"255.255.255.255", "reserved"}, {"192.0.2.1", "reserved"},
      {"198.18.0.1", "reserved"}, {"198.51.100.7", "reserved"}, {"203.0.113.9", "reserved"},
      {"192.0.0.8", "reserved"},
    }
    for _, c in ipairs(cases) do assert.equal(c[2], class(c[1]), c[1]) end
  end)

  it("reads integer, octal, hex and short IPv4 spellings as the resolver does", function()
    local cases = {
      {"167772161", "private", "10.0.0.1"},
      {"012.0.0.1", "private", "10.0.0.1"},
      {"0xa.0.0.1", "private", "10.0.0.1"},
      {"0XA.0X0.0.01", "private", "10.0.0.1"},
      {"0x0a000001", "private", "10.0.0.1"},
      {"012.00.00.01", "private", "10.0.0.1"},
      {"10.1", "private", "10.0.0.1"},
      {"10.0.1", "private", "10.0.0.1"},
      {"127.1", "loopback", "127.0.0.1"},
      {"2130706433", "loopback", "127.0.0.1"},
      {"0x7f.1", "loopback", "127.0.0.1"},
      {"0177.0.0.1", "loopback", "127.0.0.1"},
      {"2852039166", "link_local", "169.254.169.254"},
      {"0xa9.0xfe.0xa9.0xfe", "link_local", "169.254.169.254"},
      {"0", "unspecified", "0.0.0.0"},
      {"3232235777", "private", "192.168.1.1"},
    }
    for _, c in ipairs(cases) do
      local cl, canon = core.address_class(c[1])
      assert.equal(c[2], cl, c[1])
      assert.equal(c[3], canon, c[1])
    end
  end)

  it("classifies the IPv6 ranges, bracketed or not, with a zone id dropped", function()
    local cases = {
      {"2606:4700:4700::1111", "public"}, {"[2a00:1450:4001::1]", "public"},
      {"::1", "loopback"}, {"[::1]", "loopback"}, {"0:0:0:0:0:0:0:1", "loopback"},
      {"::", "unspecified"}, {"[::]", "unspecified"},
      {"fe80::1", "link_local"}, {"fe80::1%eth0", "link_local"}, {"[fe80::1%25lo]", "link_local"},
      {"febf::1", "link_local"},
      {"fc00::1", "unique_local"}, {"fd00::1", "unique_local"}, {"[fd12:3456::1]", "unique_local"},
      {"fec0::1", "private"},
      {"ff02::1", "multicast"}, {"ff05::2", "multicast"},
      {"2001:db8::1", "reserved"}, {"2001::1", "reserved"}, {"100::1", "reserved"}, {"4000::1", "reserved"},
      {"64:ff9b:1::1", "private"},
    }
    for _, c in ipairs(cases) do assert.equal(c[2], class(c[1]), c[1]) end
  end)

  it("classifies IPv4 carried in IPv6 as that IPv4 address (mapped, compatible, NAT64, 6to4)", function()
    local cases = {
      {"::ffff:10.0.0.1", "private"}, {"[::ffff:10.0.0.1]", "private"}, {"::ffff:a00:1", "private"},
      {"::ffff:127.0.0.1", "loopback"}, {"::ffff:7f00:1", "loopback"}, {"::ffff:169.254.169.254", "link_local"},
      {"::ffff:0.0.0.0", "unspecified"}, {"::ffff:8.8.8.8", "public"}, {"0:0:0:0:0:ffff:10.0.0.1", "private"},
      {"::10.0.0.1", "private"}, {"::127.0.0.1", "loopback"}, {"::0.0.0.2", "unspecified"},
      {"::ffff:0:10.0.0.1", "private"},
      {"64:ff9b::10.0.0.1", "private"}, {"64:ff9b::8.8.8.8", "public"}, {"64:ff9b::7f00:1", "loopback"},
      {"2002:a00:1::", "private"}, {"2002:7f00:1::1", "loopback"}, {"2002:808:808::1", "public"},
    }
    for _, c in ipairs(cases) do assert.equal(c[2], class(c[1]), c[1]) end
  end)

  it("refuses garbage rather than guessing", function()
    for _, text in ipairs{"", "garbage", "10.0.0.1 ", " 10.0.0.1", "10.0.0.1\n", "256.0.0.1", "10.0.0.0.1",
      "1.2.3.4.5", "0x1g.0.0.1", "09.0.0.1", "[10.0.0.1]", "[::1", "::1]", ":::1", "fe80::1%", "::ffff:10.0.0.256",
      "gggg::1", "10.0.0.1/8", "example.com", "[]", "1.2.3.4:80"} do
      local cl, msg = core.address_class(text)
      assert.is_nil(cl, text)
      assert.equal("not an IP address", msg)
    end
  end)
end)
