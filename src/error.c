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
 * call's error (nested tables included) goes through the redaction step (redact.c) when the call's
 * outcome is finalized, so __tostring, which only joins fields, cannot show it either.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "ir.h"

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
