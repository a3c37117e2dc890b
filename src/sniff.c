/*
 * sniff.c - image type and dimensions from magic bytes.
 *
 * Signatures: PNG (RFC 2083 section 3.1: 89 50 4E 47 0D 0A 1A 0A), JPEG (FF D8 FF),
 * WebP (RIFF....WEBP, RFC 9649), GIF (GIF87a / GIF89a).
 */
#include <string.h>
#include "ir.h"

const char *ir_sniff(const unsigned char *p, size_t n, const char **format)
{
    const char *fmt = NULL, *mime = NULL;
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) {
        fmt = "png"; mime = "image/png";
    } else if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
        fmt = "jpeg"; mime = "image/jpeg";
    } else if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
        fmt = "webp"; mime = "image/webp";
    } else if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0)) {
        fmt = "gif"; mime = "image/gif";
    }
    if (format) *format = fmt;
    return mime;
}

static unsigned long be32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

void ir_dimensions(const unsigned char *p, size_t n, long *w, long *h)
{
    const char *fmt = NULL;
    *w = *h = 0;
    ir_sniff(p, n, &fmt);
    if (!fmt) return;
    if (strcmp(fmt, "png") == 0) {
        /* IHDR is the first chunk: width and height at offsets 16 and 20 */
        if (n >= 24 && memcmp(p + 12, "IHDR", 4) == 0) {
            *w = (long)be32(p + 16);
            *h = (long)be32(p + 20);
        }
    } else if (strcmp(fmt, "jpeg") == 0) {
        size_t i = 2;
        while (i + 9 < n) {
            unsigned m;
            size_t len;
            if (p[i] != 0xFF) { i++; continue; }
            m = p[i + 1];
            if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7) || m == 0xFF) { i++; continue; }
            len = ((size_t)p[i + 2] << 8) | p[i + 3];
            if ((m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC) {
                *h = (long)(((unsigned)p[i + 5] << 8) | p[i + 6]);
                *w = (long)(((unsigned)p[i + 7] << 8) | p[i + 8]);
                return;
            }
            i += 2 + len;
        }
    } else if (strcmp(fmt, "webp") == 0 && n >= 30) {
        if (memcmp(p + 12, "VP8X", 4) == 0) {
            *w = 1 + (long)(p[24] | (p[25] << 8) | (p[26] << 16));
            *h = 1 + (long)(p[27] | (p[28] << 8) | (p[29] << 16));
        } else if (memcmp(p + 12, "VP8L", 4) == 0 && n >= 25) {
            unsigned long b = p[21] | ((unsigned long)p[22] << 8) | ((unsigned long)p[23] << 16) |
                              ((unsigned long)p[24] << 24);
            *w = 1 + (long)(b & 0x3FFF);
            *h = 1 + (long)((b >> 14) & 0x3FFF);
        } else if (memcmp(p + 12, "VP8 ", 4) == 0) {
            *w = (long)((p[26] | (p[27] << 8)) & 0x3FFF);
            *h = (long)((p[28] | (p[29] << 8)) & 0x3FFF);
        }
    } else if (strcmp(fmt, "gif") == 0 && n >= 10) {
        *w = (long)(p[6] | (p[7] << 8));
        *h = (long)(p[8] | (p[9] << 8));
    }
}

/* core.sniff(bytes) -> mime, format | nil */
static int l_sniff(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *fmt = NULL;
    const char *mime = ir_sniff((const unsigned char *)s, n, &fmt);
    if (!mime) { lua_pushnil(L); return 1; }
    lua_pushstring(L, mime);
    lua_pushstring(L, fmt);
    return 2;
}

/* core.dimensions(bytes) -> width, height | nil */
static int l_dimensions(lua_State *L)
{
    size_t n;
    long w, h;
    const char *s = luaL_checklstring(L, 1, &n);
    ir_dimensions((const unsigned char *)s, n, &w, &h);
    if (w <= 0 || h <= 0) { lua_pushnil(L); return 1; }
    lua_pushinteger(L, w);
    lua_pushinteger(L, h);
    return 2;
}

/* core.c registers these into the module table */
const luaL_Reg ir_sniff_fns[] = {
    {"sniff", l_sniff},
    {"dimensions", l_dimensions},
    {NULL, NULL}
};
