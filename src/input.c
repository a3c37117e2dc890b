/*
 * input.c - images given as input (bytes, a path, an Image, a table), and data: URLs (RFC 2397).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "xfer.h"

static int read_file(lua_State *L, const char *path, const char *field)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ir_push_error(L, "validation", "cannot read %s file %s: %s", field, path, strerror(errno));
        ir_setfield_str(L, "field", field);
        return 0;
    }
    ir_push_file(L, f);
    return 1;
}

int ir_image_bytes(lua_State *L, int idx, const char *field, const char **mime)
{
    const char *fmt = NULL, *s;
    size_t n;
    ir_image *im;
    idx = lua_absindex(L, idx);
    if ((im = (ir_image *)luaL_testudata(L, idx, IR_IMAGE_MT)) != NULL) {
        lua_pushlstring(L, im->p ? (const char *)im->p : "", im->n);
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        s = lua_tolstring(L, idx, &n);
        if (ir_sniff((const unsigned char *)s, n, NULL)) lua_pushvalue(L, idx);
        else if (n < 4096 && !memchr(s, '\0', n)) { if (!read_file(L, s, field)) return 0; }
        else lua_pushvalue(L, idx);
    } else if (lua_istable(L, idx)) {
        if (lua_getfield(L, idx, "data") == LUA_TSTRING) {
        } else {
            lua_pop(L, 1);
            if (lua_getfield(L, idx, "path") != LUA_TSTRING) {
                lua_pop(L, 1);
                ir_push_validation(L, field, "%s must give data (the bytes) or path", field);
                return 0;
            }
            s = lua_tostring(L, -1);
            if (!read_file(L, s, field)) return 0;
            lua_remove(L, -2);
        }
    } else {
        ir_push_validation(L, field, "%s must be the image bytes, a path, an Image or {data =|path =}", field);
        return 0;
    }
    s = lua_tolstring(L, -1, &n);
    *mime = ir_sniff((const unsigned char *)s, n, &fmt);
    if (!*mime || strcmp(fmt, "gif") == 0) {
        lua_pop(L, 1);
        ir_push_validation(L, field, "%s is not a PNG, JPEG or WebP image (checked by its first bytes)", field);
        return 0;
    }
    return 1;
}

int ir_push_data_url(lua_State *L, int idx, const char *field)
{
    const char *mime, *s;
    size_t n;
    ir_buf out = {0};
    if (!ir_image_bytes(L, idx, field, &mime)) return 0;
    s = lua_tolstring(L, -1, &n);
    if (ir_buf_addstr(&out, "data:") || ir_buf_addstr(&out, mime) || ir_buf_addstr(&out, ";base64,") ||
        ir_b64_encode(s, n, &out)) {
        ir_buf_free(&out);
        lua_pop(L, 1);
        ir_push_validation(L, field, "out of memory encoding %s", field);
        return 0;
    }
    lua_pop(L, 1);
    lua_pushlstring(L, out.p, out.n);
    ir_buf_free(&out);
    return 1;
}

int ir_image_from_data_url(lua_State *L, const char *url, size_t n, const char *field)
{
    const char *comma, *why = NULL, *fmt = NULL;
    ir_b64dec d;
    ir_buf out = {0};
    size_t hlen;
    if (n < 5 || memcmp(url, "data:", 5) != 0 || !(comma = memchr(url, ',', n))) {
        ir_push_error(L, "decode", "%s is not a data: URL", field);
        return 0;
    }
    hlen = (size_t)(comma - url);
    if (hlen < 11 || memcmp(url + 5, "image/", 6) != 0) {
        ir_push_error(L, "decode", "%s is a data: URL that is not an image", field);
        return 0;
    }
    if (hlen < 7 || memcmp(comma - 7, ";base64", 7) != 0) {
        ir_push_error(L, "decode", "%s is a data: URL that is not base64", field);
        return 0;
    }
    ir_b64dec_init(&d);
    if (ir_b64dec_feed(&d, comma + 1, n - hlen - 1, &out) || ir_b64dec_finish(&d, &out, &why)) {
        ir_buf_free(&out);
        ir_push_error(L, "decode", "%s holds invalid base64 (%s)", field, why ? why : "out of memory");
        return 0;
    }
    if (!ir_sniff((const unsigned char *)out.p, out.n, &fmt)) {
        ir_buf_free(&out);
        ir_push_error(L, "decode", "%s does not hold a PNG, JPEG, WebP or GIF image", field);
        return 0;
    }
    ir_image_push(L, &out);
    return 1;
}

/* core.data_url(image [, field]) -> "data:<mime>;base64,..." | nil, err  (image: bytes, path, Image,
 * table; field: how the error names it, default "image") */
static int l_data_url(lua_State *L)
{
    const char *field = luaL_optstring(L, 2, "image");
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    if (ir_push_data_url(L, 1, field)) return 1;
    return ir_nil_err(L);
}

/* core.image_from_data_url(url [, field]) -> Image | nil, err: a data: URL holding a base64 PNG,
 * JPEG, WebP or GIF image, decoded (err: kind "decode", the message naming field, default "image") */
static int l_image_from_data_url(lua_State *L)
{
    size_t n;
    const char *url = luaL_checklstring(L, 1, &n);
    const char *field = luaL_optstring(L, 2, "image");
    if (ir_image_from_data_url(L, url, n, field)) return 1;
    return ir_nil_err(L);
}

/* core.c registers these into the module table */
const luaL_Reg ir_input_fns[] = {
    {"data_url", l_data_url},
    {"image_from_data_url", l_image_from_data_url},
    {NULL, NULL}
};
