/*
 * route.c - the Route userdata: one validated, immutable route configuration.
 *
 * core.route(config) -> Route | nil, err   (err.kind = "validation", err.field = the field)
 *
 * A route says who is called and how: lane, provider, request shape, base URL, model label,
 * where the key comes from (the NAME of an environment variable read at call time, or the key
 * itself / a function returning it, as api_key: see ir_route_block), extra
 * headers, timeouts (seconds), retries and billing. The validated fields live in a table kept as
 * the userdata's user value; route.FIELD reads them, routes cannot be changed after creation.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <sys/socket.h>
#include "ir.h"

#define DEFAULT_BASE_URL "https://api.openai.com/v1"

static const char *const LANES[] = {"official", "provider", "account_pool", NULL};
static const char *const SHAPES[] = {"images", "responses", "chat", NULL};
static const char *const UNITS[] = {"token", "image", "call", "credit", "quote", NULL};

/* Every field a route may carry; anything else is refused (it is most likely a typo). */
static const char *const KNOWN[] = {
    "api_key", /* the key itself (a string, held in C memory) or a function returning it */
    "name", "lane", "provider", "shape", "base_url", "model", "image_model", "api_key_env", "headers",
    "timeout", "connect_timeout", "max_retries", "retry_initial_delay", "retry_max_delay",
    "retry_after_max", "max_response_bytes", "max_event_bytes", "low_speed_limit", "low_speed_time", "ca_file", "billing", "contract", "accepted",
    "risk_exception", "description", "log",
    "download_hosts", "allow_private_downloads", "deadline", "max_images", "max_call_bytes", "send_openai_ids",
    "resolve", "retry_policy", "limits", "budget", "scale_exception", "state", "on_state_error", NULL
};

/* ---- the route's own key (api_key) ---- */

/* The Route userdata's C block: the key given as a string, in malloc'd memory that Lua cannot
 * reach (wiped and freed when the route is collected). A key function is user value 2. */
typedef struct {
    char *key;
    size_t keylen;
} ir_route_block;

const char *ir_route_secret(lua_State *L, int idx, size_t *len)
{
    ir_route_block *rb = (ir_route_block *)luaL_checkudata(L, idx, IR_ROUTE_MT);
    *len = rb->keylen;
    return rb->key;
}

const char *ir_key_problem(const char *k, size_t n, int loopback)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c == '\r' || c == '\n' || c == 0) return "holds a CR, LF or NUL byte (it would inject a header)";
        if (c < 0x21 || c == 0x7f) return "holds a control byte or a space (not allowed in a header)";
    }
    if (!loopback && n < IR_KEY_MIN)
        return "is shorter than 8 bytes: not an API key, and too short to be redacted reliably";
    return NULL;
}

int ir_header_value_ok(const char *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
    }
    return 1;
}

/* RFC 9110 token characters (a header name) */
static int header_name_ok(const char *s, size_t n)
{
    size_t i;
    if (!n) return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c)))) return 0;
    }
    return 1;
}

static int route_gc(lua_State *L)
{
    ir_route_block *rb = (ir_route_block *)luaL_checkudata(L, 1, IR_ROUTE_MT);
    if (rb->key) {
        volatile char *p = rb->key; /* wipe before the memory is returned */
        size_t i;
        for (i = 0; i < rb->keylen; i++) p[i] = 0;
        free(rb->key);
        rb->key = NULL;
        rb->keylen = 0;
    }
    return 0;
}

int ir_is_loopback_host(const char *host)
{
    if (!host) return 0;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0) return 1;
    return strncmp(host, "127.", 4) == 0 && strspn(host + 4, "0123456789.") == strlen(host + 4);
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

/* Raised-free validation: every check pushes nil + error and returns 2 through this macro. */
#define FAIL(field, ...) do { \
        lua_settop(L, top); lua_pushnil(L); \
        ir_push_error(L, "validation", __VA_ARGS__); \
        lua_pushstring(L, field); lua_setfield(L, -2, "field"); \
        return 2; } while (0)

/* Copies a string field; 1 if present, 0 if absent, -1 if of the wrong type. */
static int opt_string(lua_State *L, int cfg, int out, const char *k, const char *def)
{
    int t = lua_getfield(L, cfg, k);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        if (!def) return 0;
        lua_pushstring(L, def);
    } else if (t != LUA_TSTRING) {
        lua_pop(L, 1);
        return -1;
    }
    lua_setfield(L, out, k);
    return 1;
}

/* Copies a string field that must be def (its default) or other; -1 if of the wrong type, 0 if it
 * is neither, 1 when it is one of them. */
static int opt_choice(lua_State *L, int cfg, int out, const char *k, const char *def, const char *other)
{
    const char *v;
    int ok;
    if (opt_string(L, cfg, out, k, def) < 0) return -1;
    lua_getfield(L, out, k);
    v = lua_tostring(L, -1);
    ok = strcmp(v, def) == 0 || strcmp(v, other) == 0;
    lua_pop(L, 1);
    return ok;
}

static int opt_number(lua_State *L, int cfg, int out, const char *k, double def, double lo, double *v)
{
    int t = lua_getfield(L, cfg, k), isnum;
    double d = def;
    if (t != LUA_TNIL) {
        d = lua_tonumberx(L, -1, &isnum);
        if (t != LUA_TNUMBER || !isnum || !(d >= lo)) { lua_pop(L, 1); return -1; }
    }
    lua_pop(L, 1);
    if (d == (double)(lua_Integer)d && (k[0] == 'm' || strncmp(k, "low_", 4) == 0)) lua_pushinteger(L, (lua_Integer)d);
    else lua_pushnumber(L, d);
    lua_setfield(L, out, k);
    if (v) *v = d;
    return 0;
}

/* Checks base_url: https (http only for loopback hosts), a host, no query, no model-level path.
 * Stores the URL without trailing slashes. Returns NULL or a message. */
static const char *check_base_url(lua_State *L, const char *url, int out)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *path = NULL, *query = NULL;
    const char *err = NULL;
    size_t n;
    if (!u) return "out of memory";
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) { err = "is not a valid absolute URL"; goto done; }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    if (!scheme || !host) { err = "is not a valid absolute URL"; goto done; }
    if (strcmp(scheme, "https") != 0) {
        if (strcmp(scheme, "http") == 0) {
            if (!ir_is_loopback_host(host)) { err = "must use https:// (plain http:// only for loopback hosts)"; goto done; }
        } else {
            err = "must use https://";
            goto done;
        }
    }
    if (query) { err = "must not carry a query string"; goto done; }
    if (path && (strstr(path, "/models/") || strchr(path, ':'))) {
        err = "is a model-level path (such as /v1beta/models/...:generateContent), a different API family: "
              "give the gateway root, e.g. https://host/v1";
        goto done;
    }
    if (path && (strstr(path, "/images/") || strstr(path, "/responses") || strstr(path, "/chat/completions"))) {
        err = "must be the API root (e.g. https://host/v1), not an endpoint";
        goto done;
    }
    n = strlen(url);
    while (n > 0 && url[n - 1] == '/') n--;
    lua_pushlstring(L, url, n);
    lua_setfield(L, out, "base_url");
    lua_pushstring(L, host);
    lua_setfield(L, out, "host");
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return err;
}

/* Copies a boolean field (default false); 0, or -1 if of the wrong type. */
static int opt_bool(lua_State *L, int cfg, int out, const char *k)
{
    int t = lua_getfield(L, cfg, k);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN) { lua_pop(L, 1); return -1; }
    lua_pushboolean(L, lua_toboolean(L, -1));
    lua_setfield(L, out, k);
    lua_pop(L, 1);
    return 0;
}

/* A host name or IP literal as it appears in a URL: letters, digits, '.', '-', '_', or a
 * bracketed IPv6 literal. */
static int valid_host(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253) return 0;
    if (s[0] == '[') {
        struct sockaddr_storage ss;
        return s[n - 1] == ']' && ir_addr_parse(s, &ss);
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n && s[0] != '.';
}

/* A route field holding a list of strings (field of cfg), checked entry by entry and stored in out:
 * entry reads the string on top of the stack and replaces it with the value to store, or returns a
 * message. not_map: when given, keys other than 1..n are refused with it (a map is most likely a
 * mistake). NULL or a message (the value is not echoed). */
static const char *check_string_list(lua_State *L, int cfg, int out, const char *field, const char *not_list,
                                     const char *not_strings, const char *(*entry)(lua_State *L), const char *not_map)
{
    lua_Integer i, n;
    int list;
    if (lua_getfield(L, cfg, field) == LUA_TNIL) { lua_pop(L, 1); return NULL; }
    list = lua_gettop(L);
    if (!lua_istable(L, list)) return not_list;
    n = (lua_Integer)lua_rawlen(L, list);
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
        const char *err;
        if (lua_rawgeti(L, list, i) != LUA_TSTRING) return not_strings;
        if ((err = entry(L)) != NULL) return err;
        lua_rawseti(L, -2, i);
    }
    if (not_map) {
        lua_pushnil(L);
        while (lua_next(L, list)) {
            lua_pop(L, 1);
            if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) return not_map;
        }
    }
    lua_setfield(L, out, field);
    lua_pop(L, 1);
    return NULL;
}

/* download_hosts: a list of host names or "*.suffix" patterns, stored lowercased without a
 * trailing dot. */
static const char *download_host_entry(lua_State *L)
{
    const char *h;
    luaL_Buffer b;
    size_t k, len;
    h = lua_tolstring(L, -1, &len);
    while (len > 1 && h[len - 1] == '.') len--;
    luaL_buffinit(L, &b);
    for (k = 0; k < len; k++) luaL_addchar(&b, (char)tolower((unsigned char)h[k]));
    luaL_pushresult(&b);
    h = lua_tostring(L, -1);
    if (!valid_host(strncmp(h, "*.", 2) == 0 ? h + 2 : h) || strchr(strncmp(h, "*.", 2) == 0 ? h + 2 : h, '*'))
        return "route field 'download_hosts' has an entry that is neither a host name nor a '*.suffix' pattern";
    lua_remove(L, -2);
    return NULL;
}

/* resolve: a list of "HOST:PORT:ADDRESS" as in curl --resolve (one address per entry; an IPv6
 * address bare or in brackets), stored as given. */
static const char *resolve_entry(lua_State *L)
{
    const char *e, *c1, *c2, *a;
    char host[256], addr[128];
    long port;
    char *end;
    e = lua_tostring(L, -1);
    c1 = strchr(e, ':');
    if (!c1 || (size_t)(c1 - e) >= sizeof host) return "route field 'resolve' entries must read \"HOST:PORT:ADDRESS\"";
    memcpy(host, e, (size_t)(c1 - e));
    host[c1 - e] = '\0';
    if (!valid_host(host) || host[0] == '[') return "route field 'resolve' has an entry whose HOST is not a host name";
    port = strtol(c1 + 1, &end, 10);
    if (end == c1 + 1 || *end != ':' || port < 1 || port > 65535)
        return "route field 'resolve' has an entry whose PORT is not 1..65535";
    c2 = end;
    a = c2 + 1;
    {
        size_t len = strlen(a);
        struct sockaddr_storage ss;
        if (len == 0 || len >= sizeof addr) return "route field 'resolve' has an entry without a valid ADDRESS";
        memcpy(addr, a, len + 1);
        if (strchr(addr, '%') || !ir_addr_parse(addr, &ss))
            return "route field 'resolve' has an entry whose ADDRESS is not one IP address";
    }
    return NULL;
}

static int valid_env_name(const char *s)
{
    if (!*s || isdigit((unsigned char)*s)) return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* Pushes the table of key functions (api_key = function), weak in its keys, the routes: one user
 * value per userdata keeps the core within what Lua 5.3 offers. */
static void keyfns(lua_State *L)
{
    if (luaL_getsubtable(L, LUA_REGISTRYINDEX, "imageroute.route_keyfns") == 0) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
    }
}

static int l_route(lua_State *L)
{
    int cfg = 1, out, top, choice;
    const char *s;
    double d;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    top = 1;

    /* unknown fields */
    lua_pushnil(L);
    while (lua_next(L, cfg)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) FAIL("?", "route fields must be named (got a %s key)", luaL_typename(L, -1));
        if (!in_list(lua_tostring(L, -1), KNOWN)) {
            const char *k = lua_tostring(L, -1);
            lua_settop(L, top);
            lua_pushnil(L);
            ir_push_error(L, "validation", "unknown route field '%s'", k);
            lua_pushstring(L, k);
            lua_setfield(L, -2, "field");
            return 2;
        }
    }

    lua_newtable(L);
    out = lua_gettop(L);

    if (opt_string(L, cfg, out, "lane", "official") < 0) FAIL("lane", "route field 'lane' must be a string");
    lua_getfield(L, out, "lane");
    s = lua_tostring(L, -1);
    if (!in_list(s, LANES)) FAIL("lane", "unknown lane '%s' (official | provider | account_pool)", s);
    lua_pop(L, 1);

    if (opt_string(L, cfg, out, "shape", "images") < 0) FAIL("shape", "route field 'shape' must be a string");
    lua_getfield(L, out, "shape");
    s = lua_tostring(L, -1);
    if (!in_list(s, SHAPES)) FAIL("shape", "unknown shape '%s' (images | responses | chat)", s);
    lua_pop(L, 1);

    lua_getfield(L, out, "lane");
    s = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (opt_string(L, cfg, out, "provider", strcmp(s, "official") == 0 ? "openai" : NULL) <= 0)
        FAIL("provider", "route field 'provider' must name who runs the endpoint (a string)");

    {
        int r = opt_string(L, cfg, out, "base_url", NULL);
        const char *url, *err;
        if (r < 0) FAIL("base_url", "route field 'base_url' must be a string");
        if (r == 0) {
            const char *env = getenv("OPENAI_BASE_URL");
            url = env && *env ? env : DEFAULT_BASE_URL;
        } else {
            lua_getfield(L, out, "base_url");
            url = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
        lua_pushstring(L, url); /* keep it alive */
        err = check_base_url(L, url, out);
        if (err) FAIL("base_url", "base_url '%s' %s", url, err);
        lua_pop(L, 1);
    }

    if (opt_string(L, cfg, out, "model", NULL) < 0) FAIL("model", "route field 'model' must be a string");
    if (opt_string(L, cfg, out, "image_model", NULL) < 0) FAIL("image_model", "route field 'image_model' must be a string");

    /* api_key (the key, or a function returning it) or api_key_env (a variable's name), not both */
    {
        int kt = lua_getfield(L, cfg, "api_key");
        lua_pop(L, 1);
        if (kt != LUA_TNIL) {
            size_t kn;
            const char *k, *why;
            if (kt != LUA_TSTRING && kt != LUA_TFUNCTION)
                FAIL("api_key", "route field 'api_key' must be the key (a string) or a function returning it");
            lua_getfield(L, cfg, "api_key_env");
            if (!lua_isnil(L, -1))
                FAIL("api_key", "give either api_key or api_key_env, not both");
            lua_pop(L, 1);
            if (kt == LUA_TSTRING) {
                lua_getfield(L, cfg, "api_key");
                k = lua_tolstring(L, -1, &kn);
                if (kn == 5 && memcmp(k, "<set>", 5) == 0)
                    FAIL("api_key", "api_key \"<set>\" is what route:config() shows in place of the key: "
                         "pass the key itself (or a function returning it)");
                lua_getfield(L, out, "host");
                why = kn ? ir_key_problem(k, kn, ir_is_loopback_host(lua_tostring(L, -1))) : "is empty";
                if (why) FAIL("api_key", "route field 'api_key' %s", why);
                lua_pop(L, 2);
            }
            lua_pushliteral(L, "<set>");
            lua_setfield(L, out, "api_key");
        }
        if (opt_string(L, cfg, out, "api_key_env", kt == LUA_TNIL ? "OPENAI_API_KEY" : NULL) < 0)
            FAIL("api_key_env", "route field 'api_key_env' must be a string");
    }
    if (lua_getfield(L, out, "api_key_env") != LUA_TNIL) {
        s = lua_tostring(L, -1);
        if (!valid_env_name(s))
            FAIL("api_key_env", "route field 'api_key_env' must be the NAME of an environment variable "
                 "(e.g. OPENAI_API_KEY), never the key itself");
    }
    lua_pop(L, 1);

    {
        lua_getfield(L, out, "lane");
        lua_getfield(L, out, "provider");
        lua_getfield(L, out, "model");
        lua_pushfstring(L, "%s/%s/%s", lua_tostring(L, -3), lua_tostring(L, -2),
                        lua_isstring(L, -1) ? lua_tostring(L, -1) : "default");
        lua_replace(L, -4);
        lua_pop(L, 2);
        lua_setfield(L, out, "default_name");
        lua_getfield(L, out, "default_name");
        s = lua_tostring(L, -1);
        lua_pop(L, 1);
        if (opt_string(L, cfg, out, "name", s) < 0) FAIL("name", "route field 'name' must be a string");
        lua_pushnil(L);
        lua_setfield(L, out, "default_name");
    }

    if (opt_number(L, cfg, out, "timeout", 600, 0.001, NULL)) FAIL("timeout", "route field 'timeout' must be a positive number of seconds");
    if (opt_number(L, cfg, out, "connect_timeout", 5, 0.001, NULL))
        FAIL("connect_timeout", "route field 'connect_timeout' must be a positive number of seconds");
    if ((choice = opt_choice(L, cfg, out, "retry_policy", "sdk", "safe")) < 0)
        FAIL("retry_policy", "route field 'retry_policy' must be \"sdk\" or \"safe\"");
    if (choice == 0)
        FAIL("retry_policy", "route field 'retry_policy' must be \"sdk\" (retry as the official SDKs do) or \"safe\" "
             "(retry only what provably was not billed)");
    if (opt_number(L, cfg, out, "max_retries", 2, 0, &d) || d != (double)(long)d || d > 100)
        FAIL("max_retries", "route field 'max_retries' must be an integer from 0 to 100");
    if (opt_number(L, cfg, out, "retry_initial_delay", 0.5, 0, NULL))
        FAIL("retry_initial_delay", "route field 'retry_initial_delay' must be a number of seconds >= 0");
    if (opt_number(L, cfg, out, "retry_max_delay", 8, 0, NULL))
        FAIL("retry_max_delay", "route field 'retry_max_delay' must be a number of seconds >= 0");
    if (opt_number(L, cfg, out, "retry_after_max", 60, 0, NULL))
        FAIL("retry_after_max", "route field 'retry_after_max' must be a number of seconds >= 0");
    if (opt_number(L, cfg, out, "max_response_bytes", 512.0 * 1024 * 1024, 1024, &d) || d != (double)(long)d)
        FAIL("max_response_bytes", "route field 'max_response_bytes' must be an integer >= 1024 (bytes)");
    if (opt_number(L, cfg, out, "max_event_bytes", 64.0 * 1024 * 1024, 1024, &d) || d != (double)(long)d)
        FAIL("max_event_bytes", "route field 'max_event_bytes' must be an integer >= 1024 (bytes)");
    if (opt_number(L, cfg, out, "low_speed_limit", 0, 0, &d) || d != (double)(long)d)
        FAIL("low_speed_limit", "route field 'low_speed_limit' must be an integer >= 0 (bytes per second)");
    if (opt_number(L, cfg, out, "low_speed_time", 0, 0, &d) || d != (double)(long)d)
        FAIL("low_speed_time", "route field 'low_speed_time' must be an integer >= 0 (seconds)");
    if (opt_string(L, cfg, out, "ca_file", NULL) < 0) FAIL("ca_file", "route field 'ca_file' must be a path (string)");
    if (opt_number(L, cfg, out, "deadline", 1800, 0.001, NULL))
        FAIL("deadline", "route field 'deadline' must be a positive number of seconds");
    if (opt_number(L, cfg, out, "max_images", 16, 1, &d) || d != (double)(long)d || d > 10000)
        FAIL("max_images", "route field 'max_images' must be an integer from 1 to 10000");
    if (opt_number(L, cfg, out, "max_call_bytes", 1024.0 * 1024 * 1024, 1024, &d) || d != (double)(long)d)
        FAIL("max_call_bytes", "route field 'max_call_bytes' must be an integer >= 1024 (bytes)");
    if (opt_bool(L, cfg, out, "allow_private_downloads"))
        FAIL("allow_private_downloads", "route field 'allow_private_downloads' must be a boolean");
    if (opt_bool(L, cfg, out, "send_openai_ids"))
        FAIL("send_openai_ids", "route field 'send_openai_ids' must be a boolean");
    {
        const char *err = check_string_list(L, cfg, out, "download_hosts",
            "route field 'download_hosts' must be a list of host names or '*.suffix' patterns",
            "route field 'download_hosts' must be a list of strings (host names or '*.suffix' patterns)",
            download_host_entry, "route field 'download_hosts' must be a list (not a map)");
        if (err) FAIL("download_hosts", "%s", err);
        err = check_string_list(L, cfg, out, "resolve",
            "route field 'resolve' must be a list of \"HOST:PORT:ADDRESS\" strings",
            "route field 'resolve' must be a list of strings", resolve_entry, NULL);
        if (err) FAIL("resolve", "%s", err);
    }
    if (opt_string(L, cfg, out, "accepted", NULL) < 0) FAIL("accepted", "route field 'accepted' must be a string (why)");
    if (opt_string(L, cfg, out, "risk_exception", NULL) < 0)
        FAIL("risk_exception", "route field 'risk_exception' must be a string (why)");
    if (opt_string(L, cfg, out, "description", NULL) < 0) FAIL("description", "route field 'description' must be a string");

    /* headers: string -> string, never Authorization (the key comes from api_key_env) */
    if (lua_getfield(L, cfg, "headers") != LUA_TNIL) {
        int h = lua_gettop(L);
        if (!lua_istable(L, h)) FAIL("headers", "route field 'headers' must be a table of name = value strings");
        lua_newtable(L);
        lua_pushnil(L);
        while (lua_next(L, h)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                FAIL("headers", "route field 'headers' must map header names to string values");
            {
                size_t nn, vn;
                const char *v;
                s = lua_tolstring(L, -2, &nn);
                v = lua_tolstring(L, -1, &vn);
                if (!header_name_ok(s, nn))
                    FAIL("headers", "a header name in route field 'headers' is not a valid name (a token: no space, "
                         "colon, CR, LF or NUL)");
                if (!ir_header_value_ok(v, vn))
                    FAIL("headers", "the value of header '%s' holds a CR, LF, NUL or another control byte", s);
            }
            if (strcasecmp(s, "authorization") == 0)
                FAIL("headers", "the Authorization header comes from api_key_env (or api_key); do not put a key in headers");
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
        lua_setfield(L, out, "headers");
    }
    lua_pop(L, 1);

    /* billing: {unit =, price =, currency =, failed_calls_billed =} */
    if (lua_getfield(L, cfg, "billing") != LUA_TNIL) {
        int b = lua_gettop(L), t;
        if (!lua_istable(L, b)) FAIL("billing", "route field 'billing' must be a table");
        lua_newtable(L);
        lua_pushnil(L);
        while (lua_next(L, b)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            static const char *const BK[] = {"unit", "price", "currency", "failed_calls_billed", "source", "date", NULL};
            if (!in_list(k, BK)) FAIL("billing", "unknown billing field '%s'", k);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
        t = lua_getfield(L, -1, "unit");
        if (t != LUA_TNIL && (t != LUA_TSTRING || !in_list(lua_tostring(L, -1), UNITS)))
            FAIL("billing", "billing.unit must be token | image | call | credit | quote");
        lua_pop(L, 1);
        t = lua_getfield(L, -1, "price");
        if (t != LUA_TNIL && (t != LUA_TNUMBER || lua_tonumber(L, -1) < 0))
            FAIL("billing", "billing.price must be a number >= 0 (in billing.currency per billing.unit)");
        lua_pop(L, 1);
        t = lua_getfield(L, -1, "currency");
        lua_pop(L, 1);
        if (t == LUA_TNIL) { lua_pushliteral(L, "USD"); lua_setfield(L, -2, "currency"); }
        t = lua_getfield(L, -1, "failed_calls_billed");
        if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TSTRING && t != LUA_TTABLE)
            FAIL("billing", "billing.failed_calls_billed must be yes | no | unknown, a boolean, or a table per outcome");
        lua_pop(L, 1);
        lua_setfield(L, out, "billing");
    }
    lua_pop(L, 1);

    /* contract and log are kept as given; the Lua layer checks them */
    if (lua_getfield(L, cfg, "contract") != LUA_TNIL && !lua_istable(L, -1))
        FAIL("contract", "route field 'contract' must be a table");
    lua_setfield(L, out, "contract");
    lua_getfield(L, cfg, "log");
    lua_setfield(L, out, "log");
    if (opt_string(L, cfg, out, "scale_exception", NULL) < 0)
        FAIL("scale_exception", "route field 'scale_exception' must be a string (why the route may scale)");
    /* budget: the name of an imageroute.budget (imageroute.route turns a Budget into its name) */
    if (opt_string(L, cfg, out, "budget", NULL) < 0)
        FAIL("budget", "route field 'budget' must be a Budget (imageroute.budget{...}) or its name");
    /* limits: checked by the Lua layer (imageroute.limits.normalise) before the route is built */
    if (lua_getfield(L, cfg, "limits") != LUA_TNIL && !lua_istable(L, -1))
        FAIL("limits", "route field 'limits' must be a table");
    lua_setfield(L, out, "limits");
    /* state: the store of the route's limits (imageroute.state), or its URL; checked by the Lua layer */
    lua_getfield(L, cfg, "state");
    if (!lua_isnil(L, -1) && !lua_istable(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        FAIL("state", "route field 'state' must be a store (imageroute.state.memory() / .redis{...}) or its URL");
    lua_setfield(L, out, "state");
    if ((choice = opt_choice(L, cfg, out, "on_state_error", "refuse", "local")) < 0)
        FAIL("on_state_error", "route field 'on_state_error' must be \"refuse\" or \"local\"");
    if (choice == 0)
        FAIL("on_state_error", "route field 'on_state_error' must be \"refuse\" (a store that cannot be reached "
             "refuses the call) or \"local\" (this process's memory store stands in)");

    {
        ir_route_block *rb = (ir_route_block *)lua_newuserdatauv(L, sizeof *rb, 1);
        memset(rb, 0, sizeof *rb);
        luaL_setmetatable(L, IR_ROUTE_MT);
        lua_pushvalue(L, out);
        lua_setiuservalue(L, -2, 1);
        if (lua_getfield(L, cfg, "api_key") == LUA_TSTRING) { /* the key: C memory only */
            size_t kn;
            const char *k = lua_tolstring(L, -1, &kn);
            rb->key = (char *)malloc(kn + 1);
            if (!rb->key) FAIL("api_key", "out of memory");
            memcpy(rb->key, k, kn + 1);
            rb->keylen = kn;
            lua_pop(L, 1);
        } else if (lua_isfunction(L, -1)) {
            keyfns(L);                  /* the key function: kept beside the route, never in it */
            lua_pushvalue(L, -3);
            lua_pushvalue(L, -3);
            lua_rawset(L, -3);
            lua_pop(L, 2);
        } else {
            lua_pop(L, 1);
        }
    }
    return 1;
}

int ir_route_keyfn(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    keyfns(L);
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

void ir_check_route(lua_State *L, int idx)
{
    luaL_checkudata(L, idx, IR_ROUTE_MT);
}

int ir_route_get(lua_State *L, int idx, const char *k)
{
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, idx, 1);
    lua_getfield(L, -1, k);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

/* Pushes a shallow copy of the table at src. */
static void push_copy(lua_State *L, int src)
{
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
}

static int route_index(lua_State *L)
{
    ir_check_route(L, 1);
    luaL_getmetatable(L, IR_ROUTE_MT);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    if (lua_gettable(L, -2) != LUA_TNIL) return 1;
    lua_settop(L, 2);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_gettable(L, -2);
    if (lua_istable(L, -1)) push_copy(L, lua_gettop(L)); /* hand out copies: a route cannot be changed */
    return 1;
}

static int route_newindex(lua_State *L)
{
    return luaL_error(L, "routes are immutable: build a new one with imageroute.route{...}");
}

/* tostring(route): name, lane, provider, shape, model; never the key (a key given as api_key is in
 * C memory that neither tostring, route.FIELD nor route:config() reads: they show "<set>"). */
static int route_tostring(lua_State *L)
{
    ir_check_route(L, 1);
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "lane");
    lua_getfield(L, -3, "provider");
    lua_getfield(L, -4, "shape");
    lua_getfield(L, -5, "model");
    lua_pushfstring(L, "imageroute.Route(name=%s, lane=%s, provider=%s, shape=%s, model=%s)",
                    lua_tostring(L, -5), lua_tostring(L, -4), lua_tostring(L, -3), lua_tostring(L, -2),
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "(per call)");
    return 1;
}

/* route:config() -> a copy of the validated configuration table, which imageroute.route accepts
 * back (derived fields such as `host` are left out) */
static int route_config(lua_State *L)
{
    ir_check_route(L, 1);
    lua_getiuservalue(L, 1, 1);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "host") == 0) {
            lua_pop(L, 1);
            continue;
        }
        if (lua_istable(L, -1)) { /* a copy, so the route's lists (download_hosts...) cannot be changed */
            push_copy(L, lua_gettop(L));
            lua_remove(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
    return 1;
}

static int l_is_route(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, IR_ROUTE_MT) != NULL);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* the key of a request (the one key path: sending and redaction)                              */

/* Pushes a validation error naming the field (never the value). */
static void push_key_error(lua_State *L, const char *field, const char *fmt, const char *a, const char *b)
{
    ir_push_error(L, "validation", fmt, a, b);
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
}

int ir_route_key(lua_State *L, int route, int call_fn, const char **key, size_t *len)
{
    const char *k, *why;
    int loopback;
    route = lua_absindex(L, route);
    *key = NULL;
    *len = 0;
    k = ir_route_secret(L, route, len); /* api_key = "..." (checked when the route was built) */
    if (k) {
        *key = k;
        lua_pushnil(L);
        return 1;
    }
    ir_route_get(L, route, "host");
    loopback = ir_is_loopback_host(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (ir_route_keyfn(L, route) == LUA_TFUNCTION) { /* api_key = function(route) ... end */
        int t;
        if (!call_fn) { lua_pop(L, 1); lua_pushnil(L); return 1; }
        lua_pushvalue(L, route);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(an error value that is not a string)";
            push_key_error(L, "api_key", "the route's api_key function failed: %s%s", m, "");
            lua_remove(L, -2);
            return 0;
        }
        t = lua_type(L, -1);
        if (t != LUA_TSTRING || lua_rawlen(L, -1) == 0) { /* numbers are refused too: never converted */
            lua_pop(L, 1);
            push_key_error(L, "api_key", "the route's api_key function returned %s%s, not a key (a non-empty string)",
                           t == LUA_TSTRING ? "an empty string" : "a ", t == LUA_TSTRING ? "" : lua_typename(L, t));
            return 0;
        }
        k = lua_tolstring(L, -1, len);
        why = ir_key_problem(k, *len, loopback);
        if (why) {
            lua_pop(L, 1);
            *len = 0;
            push_key_error(L, "api_key", "the key the route's api_key function returned %s%s", why, "");
            return 0;
        }
        *key = k;
        return 1;
    }
    lua_pop(L, 1);
    ir_route_get(L, route, "api_key_env"); /* the anchor: a name, which is no secret */
    k = lua_tostring(L, -1) ? getenv(lua_tostring(L, -1)) : NULL;
    if (!k || !*k) return 1;
    *len = strlen(k);
    why = ir_key_problem(k, *len, loopback);
    if (why) {
        const char *env = lua_tostring(L, -1);
        *len = 0;
        push_key_error(L, "api_key_env", "the key in the environment variable %s %s", env, why);
        lua_remove(L, -2);
        return 0;
    }
    *key = k;
    return 1;
}


/* core.redact(value, key | route) -> value
 * The redaction step for the Lua layer (the call log runs it on its records before encoding).
 * key: the key itself (a string), or a Route, whose key is found as for sending except that a key
 * function is never called here (the function is called once per call, when the request is set
 * up; the outcome was redacted with its result then). Tables are redacted in place and returned;
 * a string is returned redacted. */
static int l_redact(lua_State *L)
{
    const char *key = NULL;
    size_t kn = 0;
    luaL_checkany(L, 1);
    lua_settop(L, 2);
    if (lua_type(L, 2) == LUA_TSTRING) {
        key = lua_tolstring(L, 2, &kn);
    } else if (luaL_testudata(L, 2, IR_ROUTE_MT)) {
        if (!ir_route_key(L, 2, 0, &key, &kn)) key = NULL; /* pushes one value: the anchor or an error */
    } else if (!lua_isnil(L, 2)) {
        return luaL_argerror(L, 2, "a key (string) or a Route expected");
    }
    if (key && kn) ir_redact(L, 1, key, kn);
    lua_pushvalue(L, 1);
    return 1;
}

/* core.c registers these into the module table */
const luaL_Reg ir_route_fns[] = {
    {"route", l_route},
    {"is_route", l_is_route},
    {"redact", l_redact}, /* core.redact: the redaction step (redact.c's ir_redact) for the Lua layer */
    {NULL, NULL}
};

void ir_route_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__index", route_index},
        {"__newindex", route_newindex},
        {"__gc", route_gc},
        {"__tostring", route_tostring},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"config", route_config},
        {NULL, NULL}
    };
    ir_new_type(L, IR_ROUTE_MT, meta, methods, "methods");
    luaL_getmetatable(L, IR_ROUTE_MT);
    lua_getfield(L, -1, "methods");
    lua_setfield(L, -3, "route_methods"); /* module.route_methods: the Lua layer adds methods here */
    lua_pop(L, 1);
}
