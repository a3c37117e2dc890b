/*
 * util.c - small facilities the Lua layer needs from C: whole-line appends that several processes
 * can share, and SHA-256 (OpenSSL's libcrypto, EVP interface); and two helpers of the C files'
 * Lua functions: the (nil, err) return, a userdata type's metatable, a file read into a Lua string.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "ir.h"

/* core.append(path, data) -> true | nil, err
 * One write(2) on a descriptor opened with O_APPEND: the data lands whole at the end of the file
 * even when several processes append to it at once (Linux serialises O_APPEND writes to a regular
 * file). Short writes are retried. err.kind = "io". */
static int l_append(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), e = 0;
    if (fd < 0) {
        e = errno;
    } else {
        while (n) {
            ssize_t w = write(fd, s, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                e = errno;
                break;
            }
            s += w;
            n -= (size_t)w;
        }
        if (close(fd) != 0 && !e) e = errno;
    }
    if (e) {
        lua_pushnil(L);
        ir_push_error(L, "io", "cannot append to %s: %s", path, strerror(e));
        lua_pushstring(L, path);
        lua_setfield(L, -2, "path");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static void hex_of(const unsigned char *md, unsigned int len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned int i;
    for (i = 0; i < len && i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

void *ir_sha256_begin(void)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    return c;
}

void ir_sha256_add(void *ctx, const void *p, size_t n)
{
    if (ctx && n) EVP_DigestUpdate((EVP_MD_CTX *)ctx, p, n);
}

void ir_sha256_end(void *ctx, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    out[0] = '\0';
    if (!ctx) return;
    if (out && EVP_DigestFinal_ex((EVP_MD_CTX *)ctx, md, &len) == 1) hex_of(md, len, out);
    EVP_MD_CTX_free((EVP_MD_CTX *)ctx);
}

void ir_sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0, i;
    static const char hex[] = "0123456789abcdef";
    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    for (i = 0; i < len && i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

/* core.sha256(data) -> 64 lower-case hex digits */
static int l_sha256(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char hex[65];
    ir_sha256_hex(s, n, hex);
    lua_pushstring(L, hex);
    return 1;
}

/* Returns nil, err: the value on top of the stack becomes the second result. */
int ir_nil_err(lua_State *L)
{
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* Reads the open file f to its end into a Lua string (pushed) and closes it; returns the bytes read. */
size_t ir_push_file(lua_State *L, FILE *f)
{
    luaL_Buffer b;
    size_t got = 0, r;
    luaL_buffinit(L, &b);
    do {
        char *dst = luaL_prepbuffer(&b);
        r = fread(dst, 1, LUAL_BUFFERSIZE, f);
        luaL_addsize(&b, r);
        got += r;
    } while (r == LUAL_BUFFERSIZE);
    fclose(f);
    luaL_pushresult(&b);
    return got;
}

/* Makes the metatable mt (the registry's luaL_newmetatable name) with the metamethods meta and a
 * table of methods stored in it as field ("__index", or "methods" for an __index function that
 * reads it). The stack is left as it was. */
void ir_new_type(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods, const char *field)
{
    luaL_newmetatable(L, mt);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, field);
    lua_pop(L, 1);
}

/* core.c registers these into the module table */
const luaL_Reg ir_util_fns[] = {
    {"append", l_append},
    {"sha256", l_sha256},
    {NULL, NULL}
};
