/*
 * request.c - a generic API request on a route's transport: core.api and core.start_api.
 *
 * The same transfer as every call (the one libcurl loop, the route's key, headers, timeouts,
 * retries, deadline, redaction and size caps, the same typed errors), for any endpoint under the
 * route's base_url: GET /models/{model}, GET /responses/{id}, POST /responses/{id}/cancel, the
 * organization usage and cost endpoints, ... The reply is handed back as it came (status,
 * headers, body text): nothing is read for images or events here, and the JSON is decoded by the
 * Lua layer (imageroute.api).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include "xfer.h"

#define MAX_QUERY_NAMES 64

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends "name=value" (both escaped by libcurl) to the query on top of the stack. 0 / -1 (oom). */
static int add_pair(lua_State *L, CURL *easy, const char *name, const char *value, size_t vn, int first)
{
    char *en = curl_easy_escape(easy, name, 0), *ev = curl_easy_escape(easy, value, (int)vn);
    if (!en || !ev) { curl_free(en); curl_free(ev); return -1; }
    lua_pushfstring(L, "%s%s=%s", first ? "?" : "&", en, ev);
    curl_free(en);
    curl_free(ev);
    lua_concat(L, 2);
    return 0;
}

/* The value at idx as query text, pushed (strings as they are, integers without a decimal point,
 * booleans as true/false); NULL (nothing pushed) for any other type. */
static const char *query_value(lua_State *L, int idx, size_t *n)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        lua_pushvalue(L, idx);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) lua_pushfstring(L, "%I", lua_tointeger(L, idx));
        else lua_pushfstring(L, "%f", lua_tonumber(L, idx));
        break;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        break;
    default:
        return NULL;
    }
    return lua_tolstring(L, -1, n);
}

/* Pushes "?a=1&b=x" for the table at q (names sorted; a list value repeats its name), "" for none.
 * 0 with a validation error pushed instead on a bad name or value. */
static int push_query(lua_State *L, int q, CURL *easy)
{
    const char *names[MAX_QUERY_NAMES];
    int count = 0, i, first = 1;
    lua_pushliteral(L, "");
    if (q == 0) return 1;
    lua_pushnil(L);
    while (lua_next(L, q)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
            lua_pop(L, 2);
            ir_push_validation(L, "query", "req.query names must be non-empty strings%s", "");
            return 0;
        }
        if (count == MAX_QUERY_NAMES) {
            lua_pop(L, 2);
            ir_push_validation(L, "query", "req.query has more than 64 names%s", "");
            return 0;
        }
        names[count++] = lua_tostring(L, -1); /* alive: a key of the query table */
    }
    qsort(names, (size_t)count, sizeof names[0], cmp_name);
    for (i = 0; i < count; i++) {
        int v, list;
        lua_Integer k, m;
        lua_getfield(L, q, names[i]);
        v = lua_gettop(L);
        list = lua_type(L, v) == LUA_TTABLE;
        m = list ? (lua_Integer)lua_rawlen(L, v) : 1;
        for (k = 1; k <= m; k++) {
            const char *s;
            size_t n;
            if (list) lua_rawgeti(L, v, k);
            else lua_pushvalue(L, v);
            s = query_value(L, -1, &n);
            if (!s) {
                lua_settop(L, v - 2);
                ir_push_validation(L, "query", "req.query.%s must be a string, number or boolean (or a list of them)",
                                   names[i]);
                return 0;
            }
            lua_pushvalue(L, v - 1); /* the query so far */
            if (add_pair(L, easy, names[i], s, n, first)) {
                lua_settop(L, v - 2);
                ir_push_validation(L, "query", "out of memory%s", "");
                return 0;
            }
            first = 0;
            lua_replace(L, v - 1);
            lua_pop(L, 2); /* the value and its text */
        }
        lua_pop(L, 1);
    }
    return 1;
}

static int build_api(lua_State *L, ir_xfer *x, int xi, int route, int req, int opts)
{
    static const char *const METHODS[] = {"GET", "POST", "DELETE", NULL};
    const char *method, *path, *body = NULL;
    size_t pn, bn = 0;
    int m, q = 0, top = lua_gettop(L);
    CURL *esc;
    (void)xi;
    lua_getfield(L, req, "method");
    if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushliteral(L, "GET"); }
    method = lua_tostring(L, -1);
    for (m = 0; METHODS[m] && (!method || lua_type(L, -1) != LUA_TSTRING || strcmp(method, METHODS[m])); m++) {}
    if (!METHODS[m]) {
        ir_push_validation(L, "method", "req.method must be \"GET\", \"POST\" or \"DELETE\"%s", "");
        return 0;
    }
    path = ir_req_path(L, req, "path", "req.path must be a string such as \"/models/gpt-image-2\"", &pn);
    if (!path) return 0;
    switch (lua_getfield(L, req, "body")) {
    case LUA_TNIL:
        break;
    case LUA_TSTRING:
        body = lua_tolstring(L, -1, &bn);
        if (m == 0) {
            ir_push_validation(L, "body", "req.body is not sent with GET%s", "");
            return 0;
        }
        break;
    default:
        ir_push_validation(L, "body", "req.body must be the JSON text (a string) or nil%s", "");
        return 0;
    }
    switch (lua_getfield(L, req, "query")) {
    case LUA_TNIL:
        break;
    case LUA_TTABLE:
        q = lua_gettop(L);
        break;
    default:
        ir_push_validation(L, "query", "req.query must be a table of name = value%s", "");
        return 0;
    }
    esc = curl_easy_init(); /* for curl_easy_escape only */
    if (!esc) {
        ir_push_validation(L, "query", "out of memory%s", "");
        return 0;
    }
    m = push_query(L, q, esc);
    curl_easy_cleanup(esc);
    if (!m) return 0;
    /* path + query: what goes after base_url */
    lua_pushvalue(L, top + 2);
    lua_insert(L, -2);
    lua_concat(L, 2);
    if (lua_rawlen(L, -1) > 1800) {
        ir_push_validation(L, "query", "req.path and req.query are longer than 1800 bytes%s", "");
        return 0;
    }
    x->endpoint_own = (char *)malloc(pn + 1);
    if (!x->endpoint_own) {
        ir_push_validation(L, "path", "out of memory%s", "");
        return 0;
    }
    memcpy(x->endpoint_own, path, pn + 1);
    x->raw_reply = 1;
    if (!ir_xfer_setup_api(L, x, route, opts, lua_tostring(L, -1), body != NULL)) return 0;
    x->endpoint = x->endpoint_own; /* the result names the path, not the query */
    if (body) {
        if (ir_buf_add(&x->body, body, bn)) {
            ir_push_validation(L, "body", "out of memory%s", "");
            return 0;
        }
    }
    if (strcmp(method, "POST") == 0 || body) {
        curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body.p ? x->body.p : "");
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body.n);
    }
    if (strcmp(method, "DELETE") == 0) curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, "DELETE");
    lua_settop(L, top);
    return 1;
}

/* A 2xx reply in full: {status =, headers = {name = value}, text =} plus the common fields. */
static void api_parse(lua_State *L, int xi, ir_xfer *x)
{
    size_t i = 0;
    x->req_status = x->status;
    lua_createtable(L, 0, 16);
    lua_pushinteger(L, x->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, x->resp.p ? x->resp.p : "", x->resp.n);
    lua_setfield(L, -2, "text");
    lua_createtable(L, 0, 8);
    while (i < x->all_headers.n) { /* "name: value\n" lines; a repeated name joins its values with ", " */
        const char *line = x->all_headers.p + i, *colon, *end;
        end = memchr(line, '\n', x->all_headers.n - i);
        if (!end) break;
        colon = memchr(line, ':', (size_t)(end - line));
        i = (size_t)(end - x->all_headers.p) + 1;
        if (!colon) continue;
        lua_pushlstring(L, line, (size_t)(colon - line));
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, colon + 2, (size_t)(end - colon - 2));
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, colon + 2, (size_t)(end - colon - 2));
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_pushliteral(L, "api");
    lua_setfield(L, -2, "shape");
    ir_xfer_succeed(L, xi, x);
}

/* Never reached (a generic request downloads nothing); kept so every shape has both steps. */
static void api_complete(lua_State *L, int xi, ir_xfer *x)
{
    api_parse(L, xi, x);
}

static const ir_ops API_OPS = {"api", api_parse, api_complete};

/* core.api(route, req [, opts]) -> result | nil, err (blocking; imageroute.api is the Lua front) */
static int l_api(lua_State *L) { return ir_run(L, &API_OPS, build_api); }
/* core.start_api(route, req [, opts]) -> Transfer | nil, err */
static int l_start_api(lua_State *L) { return ir_start(L, &API_OPS, build_api); }

/* core.c registers these into the module table */
const luaL_Reg ir_request_fns[] = {
    {"api", l_api},
    {"start_api", l_start_api},
    {NULL, NULL}
};
