/*
 * addr.c - which addresses an image download may connect to.
 *
 * The download policy (xfer.c) is enforced on the resolved socket address of every connection a
 * download makes, redirects included, before the socket exists (CURLOPT_OPENSOCKETFUNCTION).
 * Since the check sees the address the kernel would connect to, every spelling of a host in a URL
 * (integer 167772161, octal 012.0.0.1, hex 0xa.0.0.1, short 10.1, IPv4-mapped ::ffff:10.0.0.1,
 * a name that resolves to a private address) is covered by construction.
 *
 * Classes (ir_addr_class):
 *   "public"        globally routable unicast
 *   "loopback"      127.0.0.0/8, ::1
 *   "private"       10/8, 172.16/12, 192.168/16, fec0::/10 (deprecated site-local), 64:ff9b:1::/48
 *   "link_local"    169.254/16, fe80::/10
 *   "unique_local"  fc00::/7
 *   "cgnat"         100.64/10 (shared address space)
 *   "unspecified"   0.0.0.0/8, ::
 *   "multicast"     224/4, ff00::/8
 *   "reserved"      240/4 (with 255.255.255.255), documentation, benchmarking and protocol ranges,
 *                   2001::/23 (Teredo, ORCHID...), 2001:db8::/32, 100::/64, and any IPv6 outside
 *                   2000::/3
 * IPv4 embedded in IPv6 (mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, translated ::ffff:0:a.b.c.d,
 * NAT64 64:ff9b::/96, 6to4 2002::/16) is classified as the IPv4 address it carries, so
 * ::ffff:10.0.0.1 is "private" like 10.0.0.1.
 *
 * core.address_class(text) -> class, canonical | nil, message   (for the specs: no connection is
 * made) parses text the way the resolver would (inet_aton forms for IPv4, inet_pton for IPv6,
 * optionally bracketed, an optional %zone stripped).
 */
#define _DEFAULT_SOURCE
#include <string.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "ir.h"

static const char *class4(unsigned long a)
{
    unsigned b1 = (unsigned)(a >> 24) & 255, b2 = (unsigned)(a >> 16) & 255, b3 = (unsigned)(a >> 8) & 255;
    if (b1 == 0) return "unspecified";
    if (b1 == 127) return "loopback";
    if (b1 == 10) return "private";
    if (b1 == 172 && (b2 & 0xf0) == 16) return "private";
    if (b1 == 192 && b2 == 168) return "private";
    if (b1 == 169 && b2 == 254) return "link_local";
    if (b1 == 100 && (b2 & 0xc0) == 64) return "cgnat";
    if ((b1 & 0xf0) == 224) return "multicast";
    if ((b1 & 0xf0) == 240) return "reserved"; /* 240/4, 255.255.255.255 (broadcast) */
    if (b1 == 192 && b2 == 0 && (b3 == 0 || b3 == 2)) return "reserved"; /* 192.0.0/24, TEST-NET-1 */
    if (b1 == 192 && b2 == 88 && b3 == 99) return "reserved";             /* 6to4 relay anycast */
    if (b1 == 198 && (b2 & 0xfe) == 18) return "reserved";                /* 198.18/15 benchmarking */
    if (b1 == 198 && b2 == 51 && b3 == 100) return "reserved";            /* TEST-NET-2 */
    if (b1 == 203 && b2 == 0 && b3 == 113) return "reserved";             /* TEST-NET-3 */
    return "public";
}

static unsigned long be32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

static int all_zero(const unsigned char *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static const char *class6(const unsigned char *a)
{
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (all_zero(a, 15)) return a[15] == 0 ? "unspecified" : a[15] == 1 ? "loopback" : class4(be32(a + 12));
    if (all_zero(a, 10) && a[10] == 0xff && a[11] == 0xff) return class4(be32(a + 12)); /* ::ffff:a.b.c.d */
    if (all_zero(a, 12)) return class4(be32(a + 12));                                    /* ::a.b.c.d */
    if (all_zero(a, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 && a[11] == 0)
        return class4(be32(a + 12));                                                     /* ::ffff:0:a.b.c.d */
    if (memcmp(a, nat64, 12) == 0) return class4(be32(a + 12));                          /* 64:ff9b::/96 */
    if (a[0] == 0 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b && a[4] == 0 && a[5] == 1) return "private";
    if (a[0] == 0xff) return "multicast";
    if ((a[0] & 0xfe) == 0xfc) return "unique_local";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) return "link_local";
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0) return "private";
    if (a[0] == 0x20 && a[1] == 0x02) return class4(be32(a + 2));                       /* 6to4 */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 2) return "reserved";                     /* 2001::/23 */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return "reserved"; /* 2001:db8::/32 */
    if ((a[0] & 0xe0) != 0x20) return "reserved";                                        /* outside 2000::/3 */
    return "public";
}

const char *ir_addr_class(const struct sockaddr *sa)
{
    if (!sa) return "reserved";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        return class4(ntohl(s4->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        return class6(s6->sin6_addr.s6_addr);
    }
    return "reserved"; /* AF_UNIX or anything else: never a download target */
}

int ir_addr_parse(const char *text, struct sockaddr_storage *out)
{
    char buf[INET6_ADDRSTRLEN + 64];
    size_t n;
    const char *p = text;
    if (!text) return 0;
    n = strlen(text);
    if (n == 0 || n >= sizeof buf) return 0;
    if (strpbrk(text, " \t\r\n\v\f")) return 0; /* inet_aton would stop at whitespace: not an address */
    memset(out, 0, sizeof *out);
    if (p[0] == '[') { /* a bracketed IPv6 literal, as in a URL */
        if (p[n - 1] != ']' || n < 3) return 0;
        memcpy(buf, p + 1, n - 2);
        buf[n - 2] = '\0';
    } else {
        memcpy(buf, p, n + 1);
    }
    if (strchr(buf, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)out;
        char *zone = strchr(buf, '%');
        if (zone) {
            if (!zone[1]) return 0;
            *zone = '\0';
        }
        if (inet_pton(AF_INET6, buf, &s6->sin6_addr) != 1) return 0;
        s6->sin6_family = AF_INET6;
        return 1;
    }
    if (p[0] == '[') return 0;
    {
        struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)out;
        if (inet_aton(buf, &s4->sin_addr) == 0) return 0;
        s4->sin_family = AF_INET;
        return 1;
    }
}

/* core.address_class(text) -> class, canonical text | nil, message */
static int l_address_class(lua_State *L)
{
    struct sockaddr_storage ss;
    char out[INET6_ADDRSTRLEN];
    const char *text = luaL_checkstring(L, 1);
    if (!ir_addr_parse(text, &ss)) {
        lua_pushnil(L);
        lua_pushliteral(L, "not an IP address");
        return 2;
    }
    lua_pushstring(L, ir_addr_class((const struct sockaddr *)(const void *)&ss));
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)&ss)->sin_addr, out, sizeof out);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)&ss)->sin6_addr, out, sizeof out);
    lua_pushstring(L, out);
    return 2;
}

/* core.c registers these into the module table: core.address_class, the classifier of the download
 * policy */
const luaL_Reg ir_addr_fns[] = {
    {"address_class", l_address_class},
    {NULL, NULL}
};
