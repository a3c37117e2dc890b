/*
 * redis.c - imageroute.redis: a minimal Redis client for the shared state store
 * (imageroute.state.redis), over hiredis (Debian libhiredis-dev 0.14).
 *
 * An optional module, built apart from imageroute.core (build/imageroute/redis.so, its own
 * rockspec): an install without hiredis builds and runs everything else, and imageroute.state
 * loads this module only when a Redis store is asked for.
 *
 * Lua API (runtime failures return nil, message, kind; wrong argument types raise):
 *
 *   redis.connect(host, port, connect_timeout, timeout) -> conn | nil, msg, "io"
 *       blocking TCP connect bounded by connect_timeout (seconds); every later command is
 *       bounded by timeout (seconds) for its write and its reply. Host names are resolved by the
 *       system resolver (use an address to avoid a lookup).
 *   conn:call(arg, ...) -> true, value | nil, msg, kind
 *       one command (at most MAX_ARGS string or number arguments), sent and its whole reply read
 *       before returning. value: string (bulk or status), integer, nil (nil reply), or a table
 *       (array reply, nil elements as false, `n` the count). kind "reply": the server answered
 *       with an error (the connection stays usable); kind "io": the connection failed or timed
 *       out, and is closed (every later call returns nil, msg, "io").
 *   conn:close()            closes the connection (idempotent; also __gc and __close)
 *   conn:closed() -> boolean
 *   redis.hiredis_version   "major.minor.patch" of the hiredis it was built with
 *
 * No Lua error is raised while a hiredis context is in use: arguments are checked before the
 * command is sent, and the reply is turned into Lua values under lua_pcall after hiredis has
 * returned it whole, then freed whatever happened.
 */
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <string.h>
#include <sys/time.h>

/* -DIR_STACK_CHECK (make check-asan): every pushed reply is exactly one value, or abort */
#ifdef IR_STACK_CHECK
#include <stdio.h>
#include <stdlib.h>
#define STACK_MARK(L, name) int name = lua_gettop(L)
#define STACK_EXPECT(L, name, delta)                                                             \
    do {                                                                                         \
        if (lua_gettop(L) != (name) + (delta)) {                                                 \
            fprintf(stderr, "%s:%d: Lua stack %d, expected %d\n", __FILE__, __LINE__,              \
                    lua_gettop(L), (name) + (delta));                                            \
            abort();                                                                             \
        }                                                                                        \
    } while (0)
#else
#define STACK_MARK(L, name) ((void)0)
#define STACK_EXPECT(L, name, delta) ((void)0)
#endif

#define CONN_MT "imageroute.RedisConn"
#define MAX_ARGS 64
#define MAX_DEPTH 8

#if defined(__GNUC__)
#define IR_EXPORT __attribute__((visibility("default")))
#else
#define IR_EXPORT
#endif

int luaopen_imageroute_redis(lua_State *L) IR_EXPORT;

typedef struct {
    redisContext *c;
} conn_t;

static struct timeval to_tv(double s)
{
    struct timeval tv;
    if (s < 0.001) s = 0.001;
    if (s > 3600) s = 3600;
    tv.tv_sec = (long)s;
    tv.tv_usec = (long)((s - (double)tv.tv_sec) * 1e6);
    return tv;
}

static conn_t *check_conn(lua_State *L)
{
    return (conn_t *)luaL_checkudata(L, 1, CONN_MT);
}

static void conn_free(conn_t *cn)
{
    if (cn->c) {
        redisFree(cn->c);
        cn->c = NULL;
    }
}

/* redis.connect(host, port, connect_timeout, timeout) */
static int l_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    double cto = luaL_optnumber(L, 3, 0.2);
    double to = luaL_optnumber(L, 4, 0.05);
    conn_t *cn;
    redisContext *c;
    luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
    /* the userdata first: a memory error here raises before any context exists */
    cn = (conn_t *)lua_newuserdata(L, sizeof *cn);
    cn->c = NULL;
    luaL_setmetatable(L, CONN_MT);
    c = redisConnectWithTimeout(host, (int)port, to_tv(cto));
    if (!c) {
        lua_pushnil(L);
        lua_pushstring(L, "cannot allocate a Redis context");
        lua_pushstring(L, "io");
        return 3;
    }
    if (c->err || redisSetTimeout(c, to_tv(to)) != REDIS_OK) {
        char msg[160];
        memcpy(msg, c->errstr, sizeof msg - 1);
        msg[sizeof msg - 1] = '\0';
        redisFree(c);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot connect to Redis at %s:%d: %s", host, (int)port, msg[0] ? msg : "error");
        lua_pushstring(L, "io");
        return 3;
    }
    cn->c = c;
    return 1;
}

/* pushes reply r (depth-bounded); raises on memory errors only (run under lua_pcall) */
static void push_reply(lua_State *L, const redisReply *r, int depth)
{
    size_t i;
    STACK_MARK(L, top);
    luaL_checkstack(L, 3, "Redis reply");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        if (depth >= MAX_DEPTH) luaL_error(L, "Redis reply nested too deep");
        lua_createtable(L, (int)(r->elements > 1000000 ? 0 : r->elements), 1);
        for (i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_NIL) lua_pushboolean(L, 0);
            else push_reply(L, r->element[i], depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_pushinteger(L, (lua_Integer)r->elements);
        lua_setfield(L, -2, "n");
        break;
    default: /* REDIS_REPLY_NIL */
        lua_pushnil(L);
        break;
    }
    STACK_EXPECT(L, top, 1);
}

static int push_reply_protected(lua_State *L)
{
    const redisReply *r = (const redisReply *)lua_touserdata(L, 1);
    push_reply(L, r, 0);
    return 1;
}

/* conn:call(arg, ...) */
static int l_call(lua_State *L)
{
    conn_t *cn = check_conn(L);
    int argc = lua_gettop(L) - 1, i, st;
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    redisReply *r;
    luaL_argcheck(L, argc >= 1, 2, "a command expected");
    luaL_argcheck(L, argc <= MAX_ARGS, MAX_ARGS + 2, "too many arguments");
    for (i = 0; i < argc; i++) {
        int t = lua_type(L, i + 2);
        if (t != LUA_TSTRING && t != LUA_TNUMBER) luaL_argerror(L, i + 2, "string or number expected");
        argv[i] = lua_tolstring(L, i + 2, &lens[i]); /* numbers become strings in place: kept on the stack */
    }
    if (!cn->c) {
        lua_pushnil(L);
        lua_pushstring(L, "the Redis connection is closed");
        lua_pushstring(L, "io");
        return 3;
    }
    /* from here to freeReplyObject nothing may raise */
    r = (redisReply *)redisCommandArgv(cn->c, argc, argv, lens);
    if (!r) {
        char msg[160];
        memcpy(msg, cn->c->errstr, sizeof msg - 1);
        msg[sizeof msg - 1] = '\0';
        conn_free(cn); /* a half-read reply cannot be resynchronised: the context is dropped */
        lua_pushnil(L);
        lua_pushfstring(L, "Redis: %s", msg[0] ? msg : "connection lost");
        lua_pushstring(L, "io");
        return 3;
    }
    lua_pushcfunction(L, push_reply_protected);
    lua_pushlightuserdata(L, r);
    st = lua_pcall(L, 1, 1, 0);
    if (st != LUA_OK) {
        freeReplyObject(r);
        return lua_error(L); /* memory error or a reply nested too deep: the reply is freed */
    }
    if (r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        lua_pushnil(L);
        lua_insert(L, -2);
        lua_pushstring(L, "reply");
        return 3;
    }
    freeReplyObject(r);
    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}

static int l_close(lua_State *L)
{
    conn_free(check_conn(L));
    return 0;
}

static int l_closed(lua_State *L)
{
    lua_pushboolean(L, check_conn(L)->c == NULL);
    return 1;
}

static int l_tostring(lua_State *L)
{
    conn_t *cn = check_conn(L);
    lua_pushstring(L, cn->c ? "imageroute.RedisConn(open)" : "imageroute.RedisConn(closed)");
    return 1;
}

int luaopen_imageroute_redis(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"call", l_call}, {"close", l_close}, {"closed", l_closed}, {NULL, NULL}
    };
    static const luaL_Reg meta[] = {
        {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}
    };
    static const luaL_Reg fns[] = {{"connect", l_connect}, {NULL, NULL}};
    luaL_newmetatable(L, CONN_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    lua_pushfstring(L, "%d.%d.%d", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    lua_setfield(L, -2, "hiredis_version");
    return 1;
}
