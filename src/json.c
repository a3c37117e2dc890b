/*
 * json.c - JSON through lua-cjson, loaded from C through the Lua state: the decoding of the
 * image-free JSON of replies and events (the Lua layer encodes and decodes its own JSON with
 * imageroute.json).
 *
 * A private instance (cjson.new()) is kept in the registry so that settings made by other users
 * of cjson in the same state are never touched. Calls go through lua_pcall: cjson raises on bad
 * input, and a raise must never cross C code that holds resources.
 */
#include "ir.h"

static void push_cjson(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, IR_CJSON_KEY);
}

/* Replaces every cjson.null (a NULL light userdata) inside the table at idx by nil, and integral
 * floats (cjson decodes every number as a float) by integers, in place. */
static void strip_nulls(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    if (depth > 200) return;
    luaL_checkstack(L, 4, "json nesting");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL) {
            lua_pushvalue(L, -2);
            lua_pushnil(L);
            lua_rawset(L, idx); /* assigning nil to an existing field during lua_next is allowed */
        } else if (lua_istable(L, -1)) {
            strip_nulls(L, -1, depth + 1);
        } else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            lua_Integer i;
            if (lua_numbertointeger(lua_tonumber(L, -1), &i) && (lua_Number)i == lua_tonumber(L, -1)) {
                lua_pushvalue(L, -2);
                lua_pushinteger(L, i);
                lua_rawset(L, idx);
            }
        }
        lua_pop(L, 1);
    }
}

int ir_json_decode(lua_State *L, const char *s, size_t n)
{
    push_cjson(L);
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushlstring(L, s, n);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) return 0;
    if (lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL) {
        lua_pop(L, 1);
        lua_pushnil(L);
    } else if (lua_istable(L, -1)) {
        strip_nulls(L, -1, 0);
    }
    return 1;
}

void ir_json_open(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, IR_CJSON_KEY);
    lua_pop(L, 1);
}
