/*
 * error.c - structured error values.
 *
 * Runtime failures are returned as `nil, err` where err is a table:
 *   kind       "api" | "http" | "timeout" | "connection" | "decode" | "validation" | "io"
 *   message    one line
 *   status     HTTP status (integer) when there was a response
 *   type, code, param   from the API's JSON error body
 *   request_id the x-request-id response header
 *   attempts   how many HTTP attempts were made
 * with a __tostring that reads as one line. No error ever carries the API key: every field of a
 * call's error (nested tables included) goes through the redaction step (below) when the call's
 * outcome is finalized, so __tostring, which only joins fields, cannot show it either.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"
#include "xfer.h"

void ir_setfield_str(lua_State *L, const char *k, const char *v)
{
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

void ir_push_excerpt(lua_State *L, const char *s, size_t n, size_t max)
{
    luaL_Buffer b;
    size_t i, lim = n < max ? n : max;
    int space = 0;
    luaL_buffinit(L, &b);
    for (i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            if (!space) luaL_addchar(&b, ' ');
            space = 1;
            continue;
        }
        space = 0;
        luaL_addchar(&b, (c < 32 || c == 127) ? '?' : (char)c);
    }
    if (n > lim) luaL_addstring(&b, "...");
    luaL_pushresult(&b);
}

void ir_push_error(lua_State *L, const char *kind, const char *fmt, ...)
{
    va_list ap;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, IR_ERROR_MT);
}

/* Pushes " [label=value" or ", label=value" when field k is set; returns how many strings it pushed. */
static int add_field(lua_State *L, int t, const char *k, int *first)
{
    if (lua_getfield(L, t, k) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    lua_pushfstring(L, "%s%s=", *first ? " [" : ", ", k);
    lua_insert(L, -2);
    *first = 0;
    return 2;
}

/* __tostring: "imageroute api error (429 rate_limit_exceeded): message [type=..., request_id=..., attempts=3]" */
static int error_tostring(lua_State *L)
{
    static const char *const fields[] = {"type", "param", "field", "route", "request_id", "attempts", NULL};
    int first = 1, n = 0, i;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "kind");
    lua_pushfstring(L, "imageroute %s error", luaL_tolstring(L, -1, NULL));
    lua_replace(L, 2);
    lua_settop(L, 2);
    n = 1;
    if (lua_getfield(L, 1, "status") != LUA_TNIL) {
        const char *st = luaL_tolstring(L, -1, NULL);
        if (lua_getfield(L, 1, "code") != LUA_TNIL) {
            const char *code = luaL_tolstring(L, -1, NULL);
            lua_pushfstring(L, " (%s %s)", st, code);
        } else {
            lua_pushfstring(L, " (%s)", st);
        }
        lua_replace(L, 3);
        lua_settop(L, 3);
        n++;
    } else {
        lua_pop(L, 1);
    }
    lua_pushliteral(L, ": ");
    n++;
    if (lua_getfield(L, 1, "message") != LUA_TNIL) {
        luaL_tolstring(L, -1, NULL);
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
        lua_pushliteral(L, "(no message)");
    }
    n++;
    for (i = 0; fields[i]; i++) n += add_field(L, 1, fields[i], &first);
    if (!first) { lua_pushliteral(L, "]"); n++; }
    lua_concat(L, n);
    return 1;
}

/* core.error(kind, message [, fields]) -> err : builds an error value for the Lua layer */
static int l_error(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    ir_push_error(L, kind, "%s", msg);
    if (lua_istable(L, 3)) {
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/*
 * The redaction step: no string that leaves a call holds the API key.
 *
 * ir_redact(L, idx, key, n) walks the value at idx (a string, a table, an Image's fields) and
 * replaces the key in every string value and every string table key, in place, at any depth up to
 * IR_REDACT_DEPTH (deeper tables are replaced by a marker string; a table seen twice is walked
 * once, so cycles are safe). It runs once where a call's outcome is finalized (xfer.c finish), and
 * the call log runs it on its records before they are JSON-encoded (core.redact).
 *
 * What counts as the key in a string:
 *   - every occurrence of the whole key;
 *   - a piece of the key cut by a size cap (a header kept to 127 bytes, a 200-byte body excerpt, a
 *     truncated message): any run that starts with the key's first IR_REDACT_PIECE bytes and goes on
 *     as the key does, and any run that ends with the key's last IR_REDACT_PIECE bytes (for a key
 *     shorter than that, only the whole key);
 * each such run becomes "[redacted]" (or another marker when the key itself occurs in that one).
 * There is no length minimum: a 1-byte key is redacted too (which turns every such byte of the
 * outcome into the marker). Routes refuse keys shorter than IR_KEY_MIN for non-loopback hosts
 * (route.c ir_key_problem), because redacting a short key leaks it through the text around it.
 * Image bytes (an Image's cached `bytes`) are never touched.
 */

#define IR_REDACT_DEPTH 64
#define IR_REDACT_PIECE 8

static const char *find(const char *h, size_t hn, const char *k, size_t kn)
{
    const char *end;
    if (kn == 0 || hn < kn) return NULL;
    end = h + (hn - kn);
    while (h <= end) {
        const char *p = (const char *)memchr(h, (unsigned char)k[0], (size_t)(end - h) + 1);
        if (!p) return NULL;
        if (memcmp(p, k, kn) == 0) return p;
        h = p + 1;
    }
    return NULL;
}

static const char *marker_for(const char *key, size_t kn)
{
    static const char *const M[] = {"[redacted]", "[REDACTED]", "***", "###", "?"};
    size_t i;
    for (i = 0; i < sizeof M / sizeof M[0] - 1; i++)
        if (!find(M[i], strlen(M[i]), key, kn)) break;
    return M[i];
}

/* Marks in mask every byte of s that is part of the key (whole, or a piece cut at either end).
 * Returns how many runs were found. */
static int mark(const char *s, size_t n, const char *key, size_t kn, unsigned char *mask)
{
    size_t piece = kn < IR_REDACT_PIECE ? kn : IR_REDACT_PIECE, i, j;
    const char *p;
    int runs = 0;
    for (i = 0; (p = find(s + i, n - i, key, piece)); i = (size_t)(p - s) + 1) { /* head pieces */
        size_t at = (size_t)(p - s);
        for (j = piece; j < kn && at + j < n && s[at + j] == key[j]; j++) {}
        memset(mask + at, 1, j);
        runs++;
    }
    for (i = 0; (p = find(s + i, n - i, key + (kn - piece), piece)); i = (size_t)(p - s) + 1) { /* tail pieces */
        size_t at = (size_t)(p - s), m = 0;
        while (m < kn - piece && at > m && s[at - m - 1] == key[kn - piece - m - 1]) m++;
        memset(mask + at - m, 1, piece + m);
        runs++;
    }
    return runs;
}

/* Pushes s with the key redacted and returns 1, or pushes nothing and returns 0 when s holds none
 * of it. Never raises except on memory errors of the Lua allocator. */
static int redact_string(lua_State *L, const char *s, size_t n, const char *key, size_t kn)
{
    size_t piece = kn < IR_REDACT_PIECE ? kn : IR_REDACT_PIECE;
    const char *marker = marker_for(key, kn);
    int rounds, pushed = 0;
    if (!kn || (!find(s, n, key, piece) && !find(s, n, key + (kn - piece), piece))) return 0;
    for (rounds = 0; rounds < 4; rounds++) { /* a marker next to text can never rebuild the key... */
        unsigned char *mask = (unsigned char *)calloc(n ? n : 1, 1);
        luaL_Buffer b;
        size_t i = 0;
        if (!mask) { /* out of memory: drop the whole string rather than risk it */
            if (pushed) lua_pop(L, 1);
            lua_pushstring(L, marker);
            return 1;
        }
        if (!mark(s, n, key, kn, mask)) {
            free(mask);
            break;
        }
        luaL_buffinit(L, &b);
        while (i < n) {
            if (mask[i]) {
                luaL_addstring(&b, marker);
                while (i < n && mask[i]) i++;
            } else {
                size_t j = i;
                while (j < n && !mask[j]) j++;
                luaL_addlstring(&b, s + i, j - i);
                i = j;
            }
        }
        free(mask);
        luaL_pushresult(&b);
        if (pushed) lua_remove(L, -2);
        pushed = 1;
        s = lua_tolstring(L, -1, &n);
    }
    if (pushed && (find(s, n, key, piece) || find(s, n, key + (kn - piece), piece))) { /* ...but be sure */
        lua_pop(L, 1);
        lua_pushstring(L, marker);
    }
    return pushed;
}

static void walk(lua_State *L, int t, const char *key, size_t kn, int seen, int depth, int image_fields);

/* The value on top of the stack, found under a table: returns 1 and replaces it on the stack when
 * it was changed (a redacted string, or a marker for a table nested too deep). */
static int redact_top(lua_State *L, const char *key, size_t kn, int seen, int depth)
{
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (redact_string(L, s, n, key, kn)) { lua_remove(L, -2); return 1; }
    } else if (t == LUA_TTABLE) {
        if (depth >= IR_REDACT_DEPTH) {
            lua_pop(L, 1);
            lua_pushliteral(L, "[removed: nested deeper than the redaction walks]");
            return 1;
        }
        walk(L, lua_gettop(L), key, kn, seen, depth + 1, 0);
    } else if (t == LUA_TUSERDATA && luaL_testudata(L, -1, IR_IMAGE_MT)) {
        if (lua_getiuservalue(L, -1, 1) == LUA_TTABLE) walk(L, lua_gettop(L), key, kn, seen, depth + 1, 1);
        lua_pop(L, 1);
    }
    return 0;
}

static void walk(lua_State *L, int t, const char *key, size_t kn, int seen, int depth, int image_fields)
{
    int renames = 0, i;
    luaL_checkstack(L, 8, "redaction walk");
    lua_pushvalue(L, t);
    if (lua_rawget(L, seen) != LUA_TNIL) { lua_pop(L, 1); return; }
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (image_fields && lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "bytes") == 0) {
            lua_pop(L, 1);
            continue;
        }
        if (redact_top(L, key, kn, seen, depth)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t); /* assigning to an existing field during lua_next is allowed */
        } else {
            lua_pop(L, 1);
        }
        if (lua_type(L, -1) == LUA_TSTRING) { /* a key holding the key: renamed after the traversal */
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            if (redact_string(L, s, n, key, kn)) {
                luaL_checkstack(L, 4, "redaction walk");
                lua_pushvalue(L, -2);
                lua_insert(L, -3); /* ... old new key */
                lua_insert(L, -3); /* ... new old key */
                renames++;
            }
        }
    }
    for (i = 0; i < renames; i++) { /* stack: ... [new old] * renames */
        lua_pushvalue(L, -1);
        lua_rawget(L, t);         /* new old value */
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_rawset(L, t);         /* t[old] = nil */
        lua_remove(L, -2);        /* new value */
        lua_rawset(L, t);         /* t[new] = value */
    }
}

void ir_redact(lua_State *L, int idx, const char *key, size_t kn)
{
    int seen;
    if (!key || !kn) return;
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 8, "redaction");
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (redact_string(L, s, n, key, kn)) lua_replace(L, idx);
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE && !luaL_testudata(L, idx, IR_IMAGE_MT)) return;
    lua_newtable(L);
    seen = lua_gettop(L);
    lua_pushvalue(L, idx);
    redact_top(L, key, kn, seen, 0);
    lua_pop(L, 2);
}


/* core.c registers these into the module table */
const luaL_Reg ir_error_fns[] = {
    {"error", l_error},
    {NULL, NULL}
};

void ir_error_open(lua_State *L)
{
    luaL_newmetatable(L, IR_ERROR_MT);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "imageroute.Error");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_getmetatable(L, IR_ERROR_MT);
    lua_setfield(L, -2, "Error");
}
