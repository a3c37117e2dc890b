/*
 * xfer.c - transfers on one libcurl multi handle: requests, retries, responses, downloads.
 *
 * Every call (generate, edit, ...) is a Transfer driven by the one multi loop of the Lua state.
 * The blocking calls start a transfer and step the loop until it is done; the same loop can run
 * many transfers at once (core.start + core.step). libcurl callbacks only copy bytes and headers
 * into C buffers: they never call Lua. Everything that touches Lua (JSON, result tables, errors)
 * happens in step(), after libcurl has returned.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>
#include "ir.h"
#include "xfer.h"

#define ERRBODY_MAX (64 * 1024) /* bytes of an error body kept for the message excerpt */
#define ALL_HEADERS_MAX (64 * 1024) /* bytes of response headers a generic API request keeps */

/* ------------------------------------------------------------------------------------------ */
/* the loop                                                                                    */

static void loop_link(ir_loop *lp, ir_xfer *x)
{
    x->next = lp->head;
    x->prev = NULL;
    if (lp->head) lp->head->prev = x;
    lp->head = x;
    lp->live++;
}

static void loop_unlink(ir_loop *lp, ir_xfer *x)
{
    if (x->prev) x->prev->next = x->next;
    else if (lp->head == x) lp->head = x->next;
    if (x->next) x->next->prev = x->prev;
    x->next = x->prev = NULL;
    lp->live--;
}

/* ------------------------------------------------------------------------------------------ */
/* libcurl callbacks: bytes and headers only, never Lua                                        */

const char *const IR_RATE_LIMIT_HEADERS[6] = {
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
};
const char *const IR_RATE_LIMIT_FIELDS[6] = {
    "limit_requests", "remaining_requests", "reset_requests", "limit_tokens", "remaining_tokens", "reset_tokens",
};

static size_t header_cb(char *p, size_t sz, size_t nm, void *ud)
{
    ir_xfer *x = (ir_xfer *)ud;
    size_t n = sz * nm, klen, vlen;
    const char *colon, *v;
    char *dst = NULL;
    size_t cap = 0;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new response (after a redirect or 1xx) */
        memset(&x->h, 0, sizeof x->h);
        x->all_headers.n = 0;
        return n;
    }
    colon = memchr(p, ':', n);
    if (!colon) return n;
    klen = (size_t)(colon - p);
    v = colon + 1;
    while (v < p + n && (*v == ' ' || *v == '\t')) v++;
    vlen = (size_t)(p + n - v);
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
#define HDR(name, field) \
    if (klen == sizeof(name) - 1 && strncasecmp(p, name, klen) == 0) { dst = x->h.field; cap = sizeof x->h.field; }
    HDR("x-request-id", request_id)
    else HDR("retry-after", retry_after)
    else HDR("retry-after-ms", retry_after_ms)
    else HDR("x-should-retry", should_retry)
    else HDR("content-type", content_type)
#undef HDR
    if (!dst && klen > 12 && strncasecmp(p, "x-ratelimit-", 12) == 0) {
        int i;
        for (i = 0; i < 6; i++) {
            if (klen == strlen(IR_RATE_LIMIT_HEADERS[i]) && strncasecmp(p, IR_RATE_LIMIT_HEADERS[i], klen) == 0) {
                dst = x->h.rate_limit[i];
                cap = sizeof x->h.rate_limit[i];
            }
        }
    }
    if (dst) {
        if (vlen >= cap) vlen = cap - 1;
        memcpy(dst, v, vlen);
        dst[vlen] = '\0';
    }
    if (x->raw_reply && x->phase == PH_API && x->all_headers.n + klen + vlen + 3 <= ALL_HEADERS_MAX &&
        !ir_buf_reserve(&x->all_headers, klen + vlen + 3)) {
        size_t i;
        char *o = x->all_headers.p + x->all_headers.n;
        for (i = 0; i < klen; i++) o[i] = (char)tolower((unsigned char)p[i]);
        o[klen] = ':';
        o[klen + 1] = ' ';
        memcpy(o + klen + 2, v, vlen);
        o[klen + 2 + vlen] = '\n';
        x->all_headers.n += klen + vlen + 3;
    }
    return n;
}

static size_t write_cb(char *p, size_t sz, size_t nm, void *ud)
{
    ir_xfer *x = (ir_xfer *)ud;
    size_t n = sz * nm;
    if (ir_loop_over_budget(x->loop, n)) { /* bounded work per step: the rest waits for the next */
        x->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (x->mode == M_UNSET) {
        long st = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st < 200 || st >= 300) x->mode = M_ERRBODY;
        else if (x->phase == PH_FETCH || x->raw_reply) x->mode = M_RAW;
        else if (strstr(x->h.content_type, "text/event-stream")) x->mode = M_SSE;
        else if (!x->h.content_type[0] || strstr(x->h.content_type, "json")) x->mode = M_JSON;
        else x->mode = M_ERRBODY; /* a 2xx that is not JSON (an HTML page from a proxy) */
        if (x->mode == M_JSON) { /* the body's size, when announced, sizes the first image's buffer */
            curl_off_t cl = -1;
            if (curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl > 0 &&
                (size_t)cl <= x->max_bytes)
                x->ex.size_hint = (size_t)cl;
        }
    }
    x->bytes += n;
    x->total_bytes += n;
    if (x->bytes > x->max_bytes) {
        x->abort_why = "the response is larger than max_response_bytes";
        return 0; /* any short count makes libcurl stop with CURLE_WRITE_ERROR */
    }
    if (x->max_call_bytes && x->held_bytes + x->bytes > x->max_call_bytes) {
        x->abort_why = "the call's responses and downloads are larger than max_call_bytes";
        x->abort_code = "call_bytes_exceeded";
        return 0;
    }
    switch (x->mode) {
    case M_ERRBODY:
        if (x->resp.n < ERRBODY_MAX) {
            size_t k = ERRBODY_MAX - x->resp.n < n ? ERRBODY_MAX - x->resp.n : n;
            if (ir_buf_add(&x->resp, p, k)) goto oom;
        }
        break;
    case M_JSON:
        if (ir_extract_feed(&x->ex, p, n)) goto oom;
        if (x->max_images && x->ex.nimgs > (size_t)x->max_images) goto too_many;
        break;
    case M_SSE:
        if (ir_sse_feed(x, p, n)) {
            if (!x->abort_why) x->abort_why = "out of memory";
            return 0;
        }
        if (x->max_images && x->partials_received > x->max_images) goto too_many;
        break;
    default:
        if (ir_buf_add(&x->resp, p, n)) goto oom;
    }
    return n;
too_many: /* nothing beyond the cap is decoded */
    x->abort_why = "the reply holds more images than max_images";
    x->abort_code = "too_many_images";
    return 0;
oom:
    x->abort_why = "out of memory";
    return 0;
}

/* The download policy's veto, before the socket exists: libcurl calls this with the resolved
 * address of every connection a download makes (every address tried, every redirect). A refused
 * address only marks the transfer: attempt_done turns it into the one download_refused error. */
static curl_socket_t open_socket_cb(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    ir_xfer *x = (ir_xfer *)ud;
    const char *cls = ir_addr_class(&a->addr);
    int ok = purpose == CURLSOCKTYPE_IPCXN &&
             (strcmp(cls, "public") == 0 || (strcmp(cls, "loopback") == 0 && (x->dl_loopback || x->dl_private)) ||
              (x->dl_private && (strcmp(cls, "private") == 0 || strcmp(cls, "link_local") == 0 ||
                                 strcmp(cls, "unique_local") == 0 || strcmp(cls, "cgnat") == 0)));
    if (!ok) {
        x->dl_refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* ------------------------------------------------------------------------------------------ */
/* setting up                                                                                  */

static void free_headers(ir_xfer *x)
{
    struct curl_slist *h;
    for (h = x->hdrs; h; h = h->next) /* wipe the key before the memory is returned */
        if (strncasecmp(h->data, "Authorization:", 14) == 0) memset(h->data, 0, strlen(h->data));
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
}

/* Wipes and frees the copy of the key kept for the redaction in finish. */
static void wipe_key(ir_xfer *x)
{
    if (x->key) {
        volatile char *p = x->key;
        size_t i;
        for (i = 0; i < x->keylen; i++) p[i] = 0;
        free(x->key);
    }
    x->key = NULL;
    x->keylen = 0;
}

static void reset_attempt(ir_xfer *x)
{
    x->resp.n = 0;
    if (x->resp.p) x->resp.p[0] = '\0';
    ir_extract_free(&x->ex);
    ir_extract_init(&x->ex, &x->resp);
    x->ex.save_to = x->save_to;
    ir_sse_reset(x);
    memset(&x->h, 0, sizeof x->h);
    x->mode = M_UNSET;
    x->all_headers.n = 0;
    x->bytes = 0;
    x->errbuf[0] = '\0';
    x->abort_why = NULL;
    x->abort_code = NULL;
    x->dl_refused = 0;
}

void ir_xfer_release(ir_xfer *x)
{
    ir_extract_free(&x->ex); /* before save_to goes: it may remove temporary files */
    free(x->save_to);
    x->save_to = NULL;
    x->ex.save_to = NULL;
    if (x->easy) {
        if (x->in_multi && x->loop && x->loop->multi) curl_multi_remove_handle(x->loop->multi, x->easy);
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    x->in_multi = 0;
    if (x->linked && x->loop) { loop_unlink(x->loop, x); x->linked = 0; }
    if (x->mime) { curl_mime_free(x->mime); x->mime = NULL; }
    free_headers(x);
    if (x->resolve) { curl_slist_free_all(x->resolve); x->resolve = NULL; }
    wipe_key(x);
    ir_buf_free(&x->body);
    ir_buf_free(&x->resp);
    ir_buf_free(&x->all_headers);
    free(x->endpoint_own);
    x->endpoint_own = NULL;
    ir_extract_free(&x->ex);
    ir_sse_free(x);
}

/* __gc: frees what libcurl and the buffers still hold. A transfer the loop still runs is
 * referenced from the registry, so this runs on a live one only when the state closes; it is then
 * marked done (no Lua work here: its outcome reads as a "closed" error, see ir_xfer_push_outcome). */
static int xfer_gc(lua_State *L)
{
    ir_xfer *x = (ir_xfer *)luaL_checkudata(L, 1, IR_XFER_MT);
    ir_xfer_release(x);
    x->state = X_DONE;
    return 0;
}


/* Adds "Name: value" to the header list; -1 on out of memory, -2 when the value holds a CR, LF,
 * NUL or other control byte (the callers check first and name the field; this is the last guard:
 * nothing that could inject a header is ever appended). */
static int add_header(ir_xfer *x, const char *name, const char *value)
{
    size_t nn = strlen(name), vn = strlen(value);
    char *line;
    struct curl_slist *t;
    if (!ir_header_value_ok(name, nn) || strchr(name, ':') || !ir_header_value_ok(value, vn)) return -2;
    line = (char *)malloc(nn + vn + 3);
    if (!line) return -1;
    memcpy(line, name, nn);
    memcpy(line + nn, ": ", 2);
    memcpy(line + nn + 2, value, vn + 1);
    t = curl_slist_append(x->hdrs, line);
    memset(line, 0, nn + vn + 2);
    free(line);
    if (!t) return -1;
    x->hdrs = t;
    return 0;
}

/* Pushes a validation error naming the field (never the value). */
static void push_key_error(lua_State *L, const char *field, const char *fmt, const char *a, const char *b)
{
    ir_push_error(L, "validation", fmt, a, b);
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
}

/* OPENAI_ORG_ID / OPENAI_PROJECT_ID are sent on official-lane routes, and on a route that asks
 * for them with send_openai_ids = true; never to a provider gateway otherwise. */
static int send_ids(lua_State *L, int route)
{
    int yes;
    ir_route_get(L, route, "lane");
    yes = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "official") == 0;
    lua_pop(L, 1);
    ir_route_get(L, route, "send_openai_ids");
    yes = yes || lua_toboolean(L, -1);
    lua_pop(L, 1);
    return yes;
}

/* Reads the per-call bounds (route fields, overridden by opts) and the download policy of the
 * route into x. On a bad option pushes a validation error naming it and returns 0. */
static int setup_bounds(lua_State *L, ir_xfer *x, int route, int opts, int loopback)
{
    static const char *const names[] = {"deadline", "max_images", "max_call_bytes"};
    double v[3];
    int i;
    for (i = 0; i < 3; i++) {
        ir_route_get(L, route, names[i]);
        v[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (opts && lua_getfield(L, opts, names[i]) != LUA_TNIL) {
            int isnum;
            double d = lua_tonumberx(L, -1, &isnum);
            int bad = lua_type(L, -1) != LUA_TNUMBER || !isnum || !(d > 0) ||
                      (i > 0 && (d != (double)(long long)d || d > 1e18)) || (i == 2 && d < 1024);
            lua_pop(L, 1);
            if (bad) {
                ir_push_error(L, "validation", i == 0 ? "opts.deadline must be a positive number of seconds"
                              : i == 1 ? "opts.max_images must be a positive integer"
                              : "opts.max_call_bytes must be an integer >= 1024 (bytes)");
                lua_pushfstring(L, "%s", names[i]);
                lua_setfield(L, -2, "field");
                return 0;
            }
            v[i] = d;
        } else if (opts) {
            lua_pop(L, 1);
        }
    }
    x->deadline = v[0];
    x->max_images = v[1] > 0 ? (int)(v[1] < 1e6 ? v[1] : 1e6) : 0;
    x->max_call_bytes = v[2] > 0 ? (size_t)v[2] : 0;
    x->dl_loopback = loopback;
    ir_route_get(L, route, "allow_private_downloads");
    x->dl_private = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ir_route_get(L, route, "resolve") == LUA_TTABLE) {
        /* "HOST:PORT:ADDRESS" (validated by route.c) becomes the CURLOPT_CONNECT_TO entry
         * "HOST:PORT:ADDRESS:PORT": unlike CURLOPT_RESOLVE, which fills the DNS cache that every
         * transfer of the multi handle shares (permanently), it applies to this transfer only */
        lua_Integer k, n = (lua_Integer)lua_rawlen(L, -1);
        for (k = 1; k <= n; k++) {
            struct curl_slist *t;
            const char *e, *c1, *c2;
            lua_rawgeti(L, -1, k);
            e = lua_tostring(L, -1);
            c1 = strchr(e, ':');
            c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2) { lua_pop(L, 1); continue; }
            lua_pushlstring(L, e, (size_t)(c2 - e + 1));
            lua_pushstring(L, strchr(c2 + 1, ':') && c2[1] != '[' ? "[" : "");
            lua_pushstring(L, c2 + 1);
            lua_pushstring(L, strchr(c2 + 1, ':') && c2[1] != '[' ? "]" : "");
            lua_pushlstring(L, c1, (size_t)(c2 - c1));
            lua_concat(L, 5);
            t = curl_slist_append(x->resolve, lua_tostring(L, -1));
            lua_pop(L, 2);
            if (!t) { lua_pop(L, 1); ir_push_error(L, "validation", "out of memory"); return 0; }
            x->resolve = t;
        }
    }
    lua_pop(L, 1);
    return 1;
}

/* Common easy-handle set-up for an API request to {base_url}{path}. On failure pushes an error
 * and returns 0. */
int ir_xfer_setup_api(lua_State *L, ir_xfer *x, int route, int opts, const char *path, int json)
{
    const char *base, *key, *host, *ca;
    char url[2048];
    double timeout, ctimeout;
    int loopback;
    ir_route_get(L, route, "base_url");
    base = lua_tostring(L, -1);
    if (snprintf(url, sizeof url, "%s%s", base, path) >= (int)sizeof url) {
        lua_pop(L, 1);
        ir_push_error(L, "validation", "base_url is too long");
        return 0;
    }
    lua_pop(L, 1);
    ir_route_get(L, route, "host");
    host = lua_tostring(L, -1);
    loopback = ir_is_loopback_host(host);
    lua_pop(L, 1);

    {
        size_t klen = 0;
        if (!ir_route_key(L, route, 1, &key, &klen)) return 0; /* the one key path: sending and redaction */
        if (!key && !loopback) {
            lua_pop(L, 1);
            if (ir_route_get(L, route, "api_key_env") == LUA_TNIL) {
                push_key_error(L, "api_key", "the route has no API key (its api_key gave none)%s%s", "", "");
            } else {
                push_key_error(L, "api_key_env", "the environment variable %s is not set (it holds the API key for this "
                               "route)%s", lua_tostring(L, -1), "");
                lua_remove(L, -2);
            }
            return 0;
        }
        if (key) {
            char *auth = (char *)malloc(klen + 32);
            struct curl_slist *t;
            wipe_key(x);
            x->key = (char *)malloc(klen + 1);
            if (!auth || !x->key) { free(auth); lua_pop(L, 1); ir_push_error(L, "validation", "out of memory"); return 0; }
            memcpy(x->key, key, klen);
            x->key[klen] = '\0';
            x->keylen = klen;
            {
                char hex[65];
                ir_sha256_hex(key, klen, hex); /* once per call: key_id on its result or error (finish) */
                memcpy(x->key_id, hex, 8);
                x->key_id[8] = '\0';
            }
            memcpy(auth, "Authorization: Bearer ", 22);
            memcpy(auth + 22, key, klen);
            auth[22 + klen] = '\0';
            t = curl_slist_append(x->hdrs, auth);
            memset(auth, 0, klen + 22);
            free(auth);
            if (!t) { lua_pop(L, 1); ir_push_error(L, "validation", "out of memory"); return 0; }
            x->hdrs = t;
        }
        lua_pop(L, 1); /* the key's anchor: no Lua reference to a function's result is kept */
    }
    x->endpoint = path;
    {
        char ua[128];
        curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
        snprintf(ua, sizeof ua, "imageroute/%s (Lua " IR_LUA_VERSION "; libcurl/%s)", IR_VERSION, vi->version);
        add_header(x, "User-Agent", ua);
    }
    {
        static const char *const ENV[][2] = {{"OPENAI_ORG_ID", "OpenAI-Organization"}, {"OPENAI_PROJECT_ID", "OpenAI-Project"}};
        int e;
        for (e = 0; e < 2; e++) { /* checked here, at call time: the environment can change */
            const char *v = getenv(ENV[e][0]);
            if (v && *v && !ir_header_value_ok(v, strlen(v))) {
                push_key_error(L, ENV[e][0], "the environment variable %s holds a CR, LF, NUL or another control byte, "
                               "which would inject a header: nothing was sent%s", ENV[e][0], "");
                return 0;
            }
        }
    }
    if (send_ids(L, route)) { /* the organization and project ids go to official routes only */
    if (getenv("OPENAI_ORG_ID") && *getenv("OPENAI_ORG_ID")) add_header(x, "OpenAI-Organization", getenv("OPENAI_ORG_ID"));
    if (getenv("OPENAI_PROJECT_ID") && *getenv("OPENAI_PROJECT_ID")) add_header(x, "OpenAI-Project", getenv("OPENAI_PROJECT_ID"));
    }
    if (json) add_header(x, "Content-Type", "application/json");
    add_header(x, "Accept", "application/json");
    x->hdrs = curl_slist_append(x->hdrs, "Expect:"); /* no 100-continue stall on large uploads */
    if (ir_route_get(L, route, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            int hr = add_header(x, lua_tostring(L, -2), lua_tostring(L, -1));
            if (hr == -2) {
                lua_pop(L, 3);
                push_key_error(L, "headers", "a route header holds a CR, LF, NUL or another control byte%s%s", "", "");
                return 0;
            }
            if (hr) { lua_pop(L, 3); goto oom; }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (!x->hdrs) goto oom;

    ir_route_get(L, route, "timeout");
    timeout = lua_tonumber(L, -1);
    ir_route_get(L, route, "connect_timeout");
    ctimeout = lua_tonumber(L, -1);
    ir_route_get(L, route, "retry_policy");
    x->safe_retries = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "safe") == 0;
    lua_pop(L, 1);
    ir_route_get(L, route, "max_retries");
    x->max_retries = (int)lua_tointeger(L, -1);
    ir_route_get(L, route, "retry_initial_delay");
    x->delay_initial = lua_tonumber(L, -1);
    ir_route_get(L, route, "retry_max_delay");
    x->delay_max = lua_tonumber(L, -1);
    ir_route_get(L, route, "retry_after_max");
    x->retry_after_max = lua_tonumber(L, -1);
    ir_route_get(L, route, "max_response_bytes");
    x->max_bytes = (size_t)lua_tonumber(L, -1);
    ir_route_get(L, route, "max_event_bytes");
    x->max_event_bytes = (size_t)lua_tonumber(L, -1);
    ir_route_get(L, route, "low_speed_limit");
    x->low_speed_limit = (long)lua_tointeger(L, -1);
    ir_route_get(L, route, "low_speed_time");
    x->low_speed_time = (long)lua_tointeger(L, -1);
    lua_pop(L, 10);
    if (opts) { /* per-call overrides */
        if (lua_getfield(L, opts, "timeout") == LUA_TNUMBER) timeout = lua_tonumber(L, -1);
        if (lua_getfield(L, opts, "connect_timeout") == LUA_TNUMBER) ctimeout = lua_tonumber(L, -1);
        if (lua_getfield(L, opts, "max_retries") == LUA_TNUMBER) x->max_retries = (int)lua_tointeger(L, -1);
        lua_pop(L, 3);
    }
    x->timeout = timeout;
    x->connect_timeout = ctimeout;
    if (!setup_bounds(L, x, route, opts, loopback)) return 0;

    x->easy = curl_easy_init();
    if (!x->easy) goto oom;
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    if (x->resolve) curl_easy_setopt(x->easy, CURLOPT_CONNECT_TO, x->resolve);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    ir_route_get(L, route, "ca_file");
    ca = lua_tostring(L, -1);
    if (ca) curl_easy_setopt(x->easy, CURLOPT_CAINFO, ca);
    lua_pop(L, 1);
    ir_xfer_common_opts(x);
    return 1;
oom:
    ir_push_error(L, "validation", "out of memory");
    return 0;
}

void ir_xfer_common_opts(ir_xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (void *)x);
    ir_loop_easy_opts(x->loop, x->easy);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, (void *)x);
    curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, (void *)x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)(x->timeout * 1000));
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(x->connect_timeout * 1000));
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->easy, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (x->low_speed_limit > 0 && x->low_speed_time > 0) {
        curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_LIMIT, x->low_speed_limit);
        curl_easy_setopt(x->easy, CURLOPT_LOW_SPEED_TIME, x->low_speed_time);
    }
}

/* Pushes a new transfer userdata for the current loop; its uservalue table holds the route,
 * the call options, the attempt log and the images so far. */
ir_xfer *ir_xfer_new(lua_State *L, int op, int route, int opts)
{
    ir_xfer *x;
    route = lua_absindex(L, route);
    if (opts) opts = lua_absindex(L, opts);
    x = (ir_xfer *)lua_newuserdatauv(L, sizeof *x, 1);
    memset(x, 0, sizeof *x);
    luaL_setmetatable(L, IR_XFER_MT);
    x->op = op;
    x->loop = ir_get_loop(L);
    x->loop->activate = ir_loop_activate; /* the loop drives transfers through these (loop.c calls no xfer.c) */
    x->loop->settle = ir_loop_settle;
    x->ref = LUA_NOREF;
    ir_extract_init(&x->ex, &x->resp);
    if (opts && lua_getfield(L, opts, "save_to") == LUA_TSTRING) { /* checked by the Lua layer */
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        x->save_to = (char *)malloc(n + 1);
        if (x->save_to) memcpy(x->save_to, s, n + 1);
        x->ex.save_to = x->save_to;
    }
    if (opts) lua_pop(L, 1);
    lua_createtable(L, 0, 8);
    lua_pushvalue(L, route);
    lua_setfield(L, -2, "route");
    if (opts) {
        lua_pushvalue(L, opts);
        lua_setfield(L, -2, "opts");
    }
    lua_newtable(L);
    lua_setfield(L, -2, "attempt_log");
    lua_newtable(L);
    lua_setfield(L, -2, "images");
    lua_setiuservalue(L, -2, 1);
    return x;
}

/* Hands the transfer (userdata at idx) to the loop: it is kept alive until done. */
void ir_xfer_submit(lua_State *L, int idx, ir_xfer *x)
{
    lua_pushvalue(L, idx);
    x->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    x->t0 = ir_now();
    x->due = x->t0;
    x->state = X_WAIT;
    loop_link(x->loop, x);
    x->linked = 1;
}

/* ------------------------------------------------------------------------------------------ */
/* outcomes                                                                                    */

static const char *curl_kind(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    default:
        return "connection";
    }
}

static int curl_retryable(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT: case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* The delay before the next attempt, in seconds, as the official SDKs compute it (retry-after-ms,
 * retry-after, else capped exponential backoff with jitter: openai-python's and openai-node's
 * retry logic, https://github.com/openai/openai-python, https://github.com/openai/openai-node). */
static double retry_delay(ir_xfer *x)
{
    double d = -1, base;
    char *end;
    if (x->h.retry_after_ms[0]) {
        d = strtod(x->h.retry_after_ms, &end);
        d = (end != x->h.retry_after_ms) ? d / 1000.0 : -1;
    }
    if (d < 0 && x->h.retry_after[0]) {
        d = strtod(x->h.retry_after, &end);
        if (end == x->h.retry_after || *end) {
            time_t when = curl_getdate(x->h.retry_after, NULL);
            d = when > 0 ? difftime(when, time(NULL)) : -1;
        }
    }
    if (d >= 0 && d <= x->retry_after_max) return d;
    base = x->delay_initial;
    {
        int i;
        for (i = 1; i < x->attempt; i++) base *= 2;
    }
    if (base > x->delay_max) base = x->delay_max;
    return base * (1.0 - 0.25 * ir_random(x->loop));
}

/* Records this attempt into the uservalue's attempt_log (a list of tables). */
static void log_attempt(lua_State *L, int xi, ir_xfer *x, CURLcode cc, const char *retry_reason, double delay)
{
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "attempt_log");
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, x->attempt);
    lua_setfield(L, -2, "attempt");
    if (x->status) { lua_pushinteger(L, x->status); lua_setfield(L, -2, "status"); }
    if (cc != CURLE_OK) {
        int dl = x->phase == PH_FETCH && !x->abort_why; /* download failures: nothing about the port */
        lua_pushstring(L, dl && x->dl_refused ? "route" : x->abort_why ? "http" : dl ? "connection" : curl_kind(cc));
        lua_setfield(L, -2, "error_kind");
        lua_pushstring(L, x->abort_why ? x->abort_why : dl ? (x->dl_refused ? "download_refused" : "download_failed")
                       : (x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc)));
        lua_setfield(L, -2, "error");
    }
    ir_setfield_str(L, "request_id", x->h.request_id[0] ? x->h.request_id : NULL);
    lua_pushnumber(L, ir_now() - x->t_attempt);
    lua_setfield(L, -2, "latency");
    lua_pushinteger(L, (lua_Integer)x->bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushstring(L, x->phase == PH_FETCH ? "download" : "request");
    lua_setfield(L, -2, "phase");
    lua_pushboolean(L, x->may_have_billed);
    lua_setfield(L, -2, "may_have_billed");
    if (retry_reason) {
        lua_pushstring(L, retry_reason);
        lua_setfield(L, -2, "retry_reason");
        lua_pushnumber(L, delay);
        lua_setfield(L, -2, "retry_delay");
    }
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
}

/* Sets t.rate_limit_headers (t on top) to the API response's x-ratelimit-* values, as sent. */
static void set_rate_limit(lua_State *L, ir_xfer *x)
{
    int i, any = 0;
    for (i = 0; i < 6; i++) any = any || x->rate_limit[i][0];
    if (!any) return;
    lua_createtable(L, 0, 6);
    for (i = 0; i < 6; i++) ir_setfield_str(L, IR_RATE_LIMIT_FIELDS[i], x->rate_limit[i][0] ? x->rate_limit[i] : NULL);
    lua_setfield(L, -2, "rate_limit_headers");
}

/* Pushes the error value for a finished, failed transfer and adds the common fields. */
void ir_xfer_fail_fields(lua_State *L, int xi, ir_xfer *x)
{
    set_rate_limit(L, x);
    if (x->phase == PH_API && x->h.retry_after[0]) ir_setfield_str(L, "retry_after", x->h.retry_after);
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "route");
    ir_route_get(L, -1, "name");
    lua_setfield(L, -4, "route");
    lua_pop(L, 1); /* every field is redacted in finish, with the key that was sent */
    lua_getfield(L, -1, "attempt_log");
    lua_setfield(L, -3, "attempt_log");
    if (lua_getfield(L, -2, "response_id") == LUA_TNIL) { /* known from the reply or a streamed event */
        lua_pop(L, 1);
        lua_getfield(L, -1, "response_id");
        lua_setfield(L, -3, "response_id");
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, -1, "images");
    if (lua_rawlen(L, -1) > 0) lua_setfield(L, -3, "images"); /* images already received are never lost */
    else lua_pop(L, 1);
    lua_pop(L, 1);
    lua_pushinteger(L, x->attempt);
    lua_setfield(L, -2, "attempts");
    if (lua_getfield(L, -1, "status") == LUA_TNIL && x->status) {
        lua_pushinteger(L, x->status);
        lua_setfield(L, -3, "status");
    }
    lua_pop(L, 1);
    if (x->api_request_id[0]) ir_setfield_str(L, "request_id", x->api_request_id);
    lua_pushnumber(L, ir_now() - x->t0);
    lua_setfield(L, -2, "latency");
    ir_setfield_str(L, "endpoint", x->endpoint);
}

/* Stores the value on top of the stack as the transfer's outcome and releases libcurl. The
 * outcome (every string in it, nested tables, images' fields) and the partial images not yet taken
 * go through the redaction step with the key that was sent, which is then wiped. */
static void finish(lua_State *L, int xi, ir_xfer *x, int ok)
{
    if (x->key) {
        ir_redact(L, -1, x->key, x->keylen);
        ir_xfer_uv(L, xi);
        if (lua_getfield(L, -1, "partials") == LUA_TTABLE) ir_redact(L, -1, x->key, x->keylen);
        lua_pop(L, 2);
    }
    wipe_key(x);
    if (x->key_id[0] && lua_istable(L, -1)) ir_setfield_str(L, "key_id", x->key_id); /* never the key */
    ir_xfer_uv(L, xi);
    lua_insert(L, -2);
    lua_setfield(L, -2, ok ? "result" : "error");
    lua_pop(L, 1);
    x->state = X_DONE;
    x->t_done = ir_now();
    if (x->easy) {
        if (x->in_multi) curl_multi_remove_handle(x->loop->multi, x->easy);
        x->in_multi = 0;
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    if (x->linked) { loop_unlink(x->loop, x); x->linked = 0; }
    free_headers(x);
    if (x->mime) { curl_mime_free(x->mime); x->mime = NULL; }
    ir_buf_free(&x->body);
    ir_buf_free(&x->resp);
    ir_buf_free(&x->all_headers);
    ir_extract_free(&x->ex);
    ir_sse_free(x);
    luaL_unref(L, LUA_REGISTRYINDEX, x->ref);
    x->ref = LUA_NOREF;
}

/* Pushes an error built from a non-2xx response (API JSON error body, or an excerpt). */
static void push_status_error(lua_State *L, ir_xfer *x)
{
    int api = 0;
    if (x->resp.n && ir_json_decode(L, x->resp.p, x->resp.n)) {
        if (lua_istable(L, -1) && lua_getfield(L, -1, "error") == LUA_TTABLE) {
            int e = lua_gettop(L);
            lua_getfield(L, e, "message");
            ir_push_error(L, "api", "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
            lua_remove(L, -2);
            lua_getfield(L, e, "type");
            if (lua_isstring(L, -1)) lua_setfield(L, -2, "type"); else lua_pop(L, 1);
            lua_getfield(L, e, "code");
            if (lua_isstring(L, -1)) lua_setfield(L, -2, "code"); else lua_pop(L, 1);
            lua_getfield(L, e, "param");
            if (lua_isstring(L, -1)) lua_setfield(L, -2, "param"); else lua_pop(L, 1);
            lua_replace(L, -3);
            lua_pop(L, 1);
            api = 1;
        } else {
            lua_pop(L, lua_istable(L, -1) ? 2 : 1);
        }
    } else if (x->resp.n) {
        lua_pop(L, 1); /* the decode message */
    }
    if (!api) {
        ir_push_excerpt(L, x->resp.p ? x->resp.p : "", x->resp.n, 200);
        ir_push_error(L, "http", "HTTP %d%s%s%s%s", (int)x->status, x->h.content_type[0] ? " (" : "",
                      x->h.content_type, x->h.content_type[0] ? ")" : "", lua_rawlen(L, -1) ? ": " : "");
        lua_getfield(L, -1, "message");
        lua_pushvalue(L, -3);
        lua_concat(L, 2);
        lua_setfield(L, -2, "message");
        lua_remove(L, -2);
    }
    lua_pushinteger(L, x->status);
    lua_setfield(L, -2, "status");
}

/* Pushes the one error of a download the policy refused: the same for every address and every
 * reason (not allowed by download_hosts, a loopback, private, link-local... address), so a reply
 * learns nothing about the network from it. */
static void push_refused(lua_State *L)
{
    ir_push_error(L, "route", "refused to download an image: the download policy of the route does not allow its address");
    ir_setfield_str(L, "code", "download_refused");
}

static void push_deadline(lua_State *L, ir_xfer *x)
{
    ir_push_error(L, "timeout", "the call's deadline of %f s passed (all attempts, retry waits and downloads)",
                  x->deadline);
    ir_setfield_str(L, "code", "deadline_exceeded");
}

static int deadline_passed(ir_xfer *x, double at)
{
    return x->deadline > 0 && at >= x->t0 + x->deadline;
}

static void fetch_redirect(lua_State *L, int xi, ir_xfer *x, const char *location);

/* Whether an attempt may have been billed: false only when the request provably never reached
 * the server (no byte of it was sent: DNS, connect and TLS handshake failures) or the server said
 * it did not process it (429, x-should-retry: true). Everything else may have made an image. */
static int attempt_may_have_billed(ir_xfer *x, CURLcode cc, long st)
{
    long sent = 0;
    if (x->phase == PH_FETCH) return 0; /* downloading a link bills nothing by itself */
    if (cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_COULDNT_CONNECT ||
        cc == CURLE_SSL_CONNECT_ERROR)
        return 0;
    if (cc != CURLE_OK && curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK && sent == 0)
        return 0;
    if (cc == CURLE_OK && st == 429) return 0;
    if (cc == CURLE_OK && strcasecmp(x->h.should_retry, "true") == 0) return 0;
    return 1;
}

/* The error on top of the stack ended a stream: records it in the attempt's log entry (the last
 * one), so a mid-stream failure has its attempt_log like any other. */
static void note_stream_error(lua_State *L, int xi)
{
    int err = lua_gettop(L);
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "attempt_log");
    if (lua_rawgeti(L, -1, (lua_Integer)lua_rawlen(L, -1)) == LUA_TTABLE) {
        lua_getfield(L, err, "kind");
        lua_setfield(L, -2, "error_kind");
        lua_getfield(L, err, "message");
        lua_setfield(L, -2, "error");
        if (lua_getfield(L, err, "code") == LUA_TSTRING) lua_setfield(L, -2, "error_code");
        else lua_pop(L, 1);
    }
    lua_settop(L, err);
}

/* A stream that is still running failed (an error event, an event that is not JSON, a callback
 * that cancelled it): takes the status and request id of the response so far, logs the attempt
 * with the error, stops it and fails the transfer with the error on top. */
static void fail_running(lua_State *L, int xi, ir_xfer *x)
{
    long st = 0;
    if (x->easy) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
    if (st) x->status = st;
    if (x->phase == PH_API) {
        if (x->h.request_id[0]) memcpy(x->api_request_id, x->h.request_id, sizeof x->api_request_id);
        if (x->status >= 200 && x->status < 300) x->req_status = x->status;
    }
    if (x->in_multi) curl_multi_remove_handle(x->loop->multi, x->easy);
    x->in_multi = 0;
    log_attempt(L, xi, x, CURLE_OK, NULL, 0);
    note_stream_error(L, xi);
    if (x->status) {
        if (lua_getfield(L, -1, "status") == LUA_TNIL) {
            lua_pushinteger(L, x->status);
            lua_setfield(L, -3, "status");
        }
        lua_pop(L, 1);
    }
    ir_xfer_fail(L, xi, x);
}

/* A 2xx reply has been received in full: logs its attempt, then the rest of its events, then the
 * shape's walker (or, for a download, the image check). parse / fetch_done finish the transfer or
 * start a download. Called by the loop, and by the fuzz harness fuzz/fuzz_walk.c. */
void ir_xfer_reply_done(lua_State *L, int xi, ir_xfer *x)
{
    IR_STACK_MARK(L, top);
    log_attempt(L, xi, x, CURLE_OK, NULL, 0);
    IR_STACK_EXPECT(L, top, 0);
    if (x->mode == M_SSE) {
        int r = ir_sse_process(L, xi, x);
        IR_STACK_EXPECT(L, top, r ? 0 : 1);
        if (!r) {
            note_stream_error(L, xi);
            ir_xfer_fail(L, xi, x);
            IR_STACK_EXPECT(L, top, 0);
            return;
        }
    }
    if (x->phase == PH_FETCH) ir_fetch_done(L, xi, x);
    else x->ops->parse(L, xi, x);
    IR_STACK_EXPECT(L, top, 0);
}

/* The events of a running stream that arrived so far (partial images to Lua as soon as their
 * bytes are in); an error event or a bad event ends the transfer at once. Returns 1 when
 * something happened (a partial image, or the end), else 0. Called by the loop's sse_tick, and by
 * fuzz/fuzz_walk.c. */
int ir_xfer_stream_tick(lua_State *L, int xi, ir_xfer *x)
{
    int before = x->partials_received, r;
    long st = 0;
    IR_STACK_MARK(L, top);
    if (x->easy) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
    if (st) x->status = st;
    r = ir_sse_process(L, xi, x);
    IR_STACK_EXPECT(L, top, r ? 0 : 1);
    if (!r) {
        fail_running(L, xi, x);
        IR_STACK_EXPECT(L, top, 0);
        return 1;
    }
    return x->partials_received != before;
}

static void attempt_done(lua_State *L, int xi, ir_xfer *x, CURLcode cc)
{
    const char *why = NULL;
    int retry = 0, ok = 0, deadline_hit;
    long st = 0;
    x->in_multi = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
    x->status = st;
    if (cc == CURLE_FILESIZE_EXCEEDED && !x->abort_why)
        x->abort_why = "the response is larger than max_response_bytes";
    if (x->phase == PH_API && x->h.request_id[0])
        memcpy(x->api_request_id, x->h.request_id, sizeof x->api_request_id);
    if (x->phase == PH_API) memcpy(x->rate_limit, x->h.rate_limit, sizeof x->rate_limit);
    x->may_have_billed = attempt_may_have_billed(x, cc, st);
    deadline_hit = cc == CURLE_OPERATION_TIMEDOUT && x->deadline_capped && !x->abort_why;
    if (x->phase == PH_FETCH && cc == CURLE_OK && st >= 300 && st < 400) {
        char *location = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &location);
        if (location) { fetch_redirect(L, xi, x, location); return; }
    }
    if (cc == CURLE_OK && st >= 200 && st < 300) {
        ok = 1;
    } else if (cc != CURLE_OK && !x->abort_why) {
        retry = curl_retryable(cc);
        why = cc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection";
    } else if (cc == CURLE_OK) {
        retry = st == 408 || st == 409 || st == 429 || st >= 500;
        why = st == 429 ? "rate_limited" : st >= 500 ? "server_error" : st == 408 ? "request_timeout" : "conflict";
        if (strcasecmp(x->h.should_retry, "true") == 0) { retry = 1; why = "x-should-retry"; }
        else if (strcasecmp(x->h.should_retry, "false") == 0) retry = 0;
    }
    if (x->phase == PH_FETCH) retry = retry && cc != CURLE_OK; /* downloads: retry transport errors only */
    if (x->safe_retries && x->phase == PH_API && x->may_have_billed) retry = 0; /* retry_policy = "safe" */
    if (deadline_hit || (x->phase == PH_FETCH && x->dl_refused)) retry = 0;
    if (!ok && retry && x->attempt <= x->max_retries) {
        double delay = retry_delay(x);
        if (!deadline_passed(x, ir_now() + delay)) {
            log_attempt(L, xi, x, cc, why, delay);
            reset_attempt(x);
            x->state = X_WAIT;
            x->due = ir_now() + delay;
            return;
        }
        x->retry_skipped = 1; /* the retry's delay would pass the deadline: it is not made */
    }
    if (ok) {
        x->held_bytes += x->bytes; /* counted against max_call_bytes from now on */
        ir_xfer_reply_done(L, xi, x); /* logs the attempt too; parse / fetch_done finish or download */
        return;
    }
    log_attempt(L, xi, x, cc, NULL, 0);
    if (cc != CURLE_OK) {
        char *u = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &u);
        int generic = 0;
        if (x->abort_code && strcmp(x->abort_code, "too_many_images") == 0) {
            ir_push_error(L, "decode", "%s (%d): nothing beyond it was decoded", x->abort_why, x->max_images);
            ir_setfield_str(L, "code", x->abort_code);
        } else if (x->abort_code) {
            ir_push_error(L, "http", "%s (limit %I bytes)", x->abort_why, (lua_Integer)x->max_call_bytes);
            ir_setfield_str(L, "code", x->abort_code);
        } else if (x->abort_why) {
            ir_push_error(L, "http", "%s (%I bytes received, limit %I)", x->abort_why, (lua_Integer)x->bytes,
                          (lua_Integer)x->max_bytes);
        } else if (deadline_hit) {
            push_deadline(L, x);
        } else if (x->phase == PH_FETCH) { /* one message whatever the port did: refused, filtered, TLS */
            generic = 1;
            if (x->dl_refused) {
                push_refused(L);
            } else {
                ir_push_error(L, "connection", "downloading an image failed: no usable connection to its host");
                ir_setfield_str(L, "code", "download_failed");
            }
        } else {
            ir_push_error(L, curl_kind(cc), "%s%s%s", cc == CURLE_OPERATION_TIMEDOUT ? "timed out: " : "",
                          x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc),
                          x->phase == PH_FETCH ? " (downloading an image)" : "");
        }
        if (st && !generic) { lua_pushinteger(L, st); lua_setfield(L, -2, "status"); }
        if (!generic) {
            lua_pushinteger(L, (lua_Integer)cc);
            lua_setfield(L, -2, "curl_code");
        }
        if (x->phase == PH_FETCH && u) ir_setfield_str(L, "url", u);
    } else {
        push_status_error(L, x);
        if (x->raw_reply && x->phase == PH_API && x->resp.n) { /* the error body as it came (redacted in finish) */
            lua_pushlstring(L, x->resp.p, x->resp.n);
            lua_setfield(L, -2, "text");
        }
        if (x->phase == PH_FETCH) {
            char *u = NULL;
            curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &u);
            lua_pushfstring(L, "downloading the image URL failed: HTTP %d", (int)st);
            lua_setfield(L, -2, "message");
            lua_pushliteral(L, "http");
            lua_setfield(L, -2, "kind");
            if (u) ir_setfield_str(L, "url", u);
        }
    }
    if (x->retry_skipped) ir_setfield_str(L, "retry_skipped", "deadline");
    ir_xfer_fail(L, xi, x);
}

void ir_xfer_fail(lua_State *L, int xi, ir_xfer *x)
{
    ir_xfer_fail_fields(L, xi, x);
    finish(L, xi, x, 0);
}

void ir_xfer_succeed(lua_State *L, int xi, ir_xfer *x)
{
    set_rate_limit(L, x);
    lua_pushinteger(L, x->attempt);
    lua_setfield(L, -2, "attempts");
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "attempt_log");
    lua_setfield(L, -3, "attempt_log");
    lua_getfield(L, -1, "route");
    ir_route_get(L, -1, "name");
    lua_setfield(L, -4, "route");
    lua_pop(L, 2);
    lua_pushnumber(L, ir_now() - x->t0);
    lua_setfield(L, -2, "latency");
    lua_pushinteger(L, (lua_Integer)x->total_bytes);
    lua_setfield(L, -2, "bytes_received");
    ir_setfield_str(L, "endpoint", x->endpoint);
    if (x->req_status) { lua_pushinteger(L, x->req_status); lua_setfield(L, -2, "http_status"); }
    if (x->api_request_id[0]) ir_setfield_str(L, "request_id", x->api_request_id);
    finish(L, xi, x, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* downloads of image URLs (data[i].url, Markdown links): same client, same loop               */

/* 1 when host matches the route's download_hosts (host names, "*.suffix" patterns), or when the
 * route has none. */
static int host_allowed(lua_State *L, int xi, const char *host)
{
    char h[256];
    size_t n = host ? strlen(host) : 0, i;
    int ok = 0;
    lua_Integer k, m;
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "route");
    if (ir_route_get(L, -1, "download_hosts") != LUA_TTABLE) { lua_pop(L, 3); return 1; }
    while (n > 1 && host[n - 1] == '.') n--;
    if (n == 0 || n >= sizeof h) { lua_pop(L, 3); return 0; }
    for (i = 0; i < n; i++) h[i] = (char)tolower((unsigned char)host[i]);
    h[n] = '\0';
    m = (lua_Integer)lua_rawlen(L, -1);
    for (k = 1; k <= m && !ok; k++) {
        size_t pl;
        const char *p;
        lua_rawgeti(L, -1, k);
        p = lua_tolstring(L, -1, &pl);
        if (p && pl > 2 && p[0] == '*' && p[1] == '.') ok = n > pl - 1 && strcmp(h + n - (pl - 1), p + 1) == 0;
        else ok = p && strcmp(h, p) == 0;
        lua_pop(L, 1);
    }
    lua_pop(L, 3);
    return ok;
}

/* Checks a download URL before anything is resolved: 0 fine, 1 a scheme that is not fetched
 * (https only; plain http to a loopback host only for a link, never for a redirect), 2 a host
 * outside download_hosts. The addresses are checked later, on every connection (open_socket_cb). */
static int check_download_url(lua_State *L, int xi, const char *url, int redirect)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int r = 1;
    if (u && url && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        (strcmp(scheme, "https") == 0 || (!redirect && strcmp(scheme, "http") == 0 && ir_is_loopback_host(host))))
        r = host_allowed(L, xi, host) ? 0 : 2;
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return r;
}

/* Easy-handle options of a download: no key, no proxy (the policy must see the real address),
 * a fresh connection each time (so no connection made for something else is reused past the
 * veto), redirects followed here (each one checked), the route's ca_file and resolve entries. */
static void fetch_opts(lua_State *L, int xi, ir_xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "imageroute/" IR_VERSION);
    curl_easy_setopt(x->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_bytes);
    ir_xfer_common_opts(x);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
    curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, (void *)x);
    curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(x->easy, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(x->easy, CURLOPT_PROXY, "");
    if (x->resolve) curl_easy_setopt(x->easy, CURLOPT_CONNECT_TO, x->resolve);
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "route");
    ir_route_get(L, -1, "ca_file");
    if (lua_isstring(L, -1)) curl_easy_setopt(x->easy, CURLOPT_CAINFO, lua_tostring(L, -1));
    lua_pop(L, 3);
}

/* Starts downloading the next URL in uv.urls, or finishes through ops->complete. Before the
 * first download, a reply with more images and links than max_images fails as a whole
 * (decode, code too_many_images): nothing is fetched. */
void ir_fetch_next(lua_State *L, int xi, ir_xfer *x)
{
    const char *url;
    int nurls, r;
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "urls");
    nurls = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
    if (x->url_i == 0 && x->max_images) {
        int n;
        lua_getfield(L, -2, "images");
        n = nurls + (lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0);
        lua_pop(L, 3);
        if (n > x->max_images) {
            ir_push_error(L, "decode", "the reply holds %d images and image links, more than max_images (%d): "
                          "none was downloaded", n, x->max_images);
            ir_setfield_str(L, "code", "too_many_images");
            ir_xfer_fail(L, xi, x);
            return;
        }
        ir_xfer_uv(L, xi);
        lua_getfield(L, -1, "urls");
    }
    if (x->url_i >= nurls) {
        lua_pop(L, 2);
        x->ops->complete(L, xi, x);
        return;
    }
    if (deadline_passed(x, ir_now())) {
        lua_pop(L, 2);
        push_deadline(L, x);
        ir_xfer_fail(L, xi, x);
        return;
    }
    x->url_i++;
    lua_rawgeti(L, -1, x->url_i);
    url = lua_tostring(L, -1);
    r = check_download_url(L, xi, url, 0);
    if (r) {
        if (r == 1)
            ir_push_error(L, "decode", "refusing to download image URL %s: only https (or http on loopback) is fetched",
                          url ? url : "?");
        else
            push_refused(L);
        lua_replace(L, -4);
        lua_pop(L, 2);
        ir_xfer_fail(L, xi, x);
        return;
    }
    x->phase = PH_FETCH;
    reset_attempt(x);
    x->attempt = 0;
    x->redirects = 0;
    curl_easy_reset(x->easy);
    curl_easy_setopt(x->easy, CURLOPT_URL, url);
    lua_pop(L, 3);
    fetch_opts(L, xi, x);
    x->state = X_WAIT;
    x->due = ir_now();
}

/* A download answered with a redirect: followed here, not by libcurl, so that each hop is
 * checked like a link (https only, download_hosts) before it is resolved; at most 5. */
static void fetch_redirect(lua_State *L, int xi, ir_xfer *x, const char *location)
{
    int r;
    log_attempt(L, xi, x, CURLE_OK, NULL, 0);
    lua_pushstring(L, location); /* a copy: the next transfer frees libcurl's */
    if (++x->redirects > 5) {
        lua_pop(L, 1);
        ir_push_error(L, "http", "downloading an image: more than 5 redirects");
        ir_setfield_str(L, "code", "too_many_redirects");
        ir_xfer_fail(L, xi, x);
        return;
    }
    r = check_download_url(L, xi, lua_tostring(L, -1), 1);
    if (r || deadline_passed(x, ir_now())) {
        if (r == 1) ir_push_error(L, "decode", "refusing to follow a redirect of an image download: only https is followed");
        else if (r == 2) push_refused(L);
        else push_deadline(L, x);
        lua_remove(L, -2);
        ir_xfer_fail(L, xi, x);
        return;
    }
    curl_easy_setopt(x->easy, CURLOPT_URL, lua_tostring(L, -1));
    lua_pop(L, 1);
    reset_attempt(x);
    x->attempt = 0;
    x->state = X_WAIT;
    x->due = ir_now();
}

/* A download finished with 2xx: it must be an image. */
void ir_fetch_done(lua_State *L, int xi, ir_xfer *x)
{
    const char *fmt = NULL;
    if (!ir_sniff((const unsigned char *)x->resp.p, x->resp.n, &fmt)) {
        char *u = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &u);
        ir_push_error(L, "decode", "the image URL did not return an image (content-type %s, %I bytes)",
                      x->h.content_type[0] ? x->h.content_type : "none", (lua_Integer)x->resp.n);
        if (u) ir_setfield_str(L, "url", u);
        ir_xfer_fail(L, xi, x);
        return;
    }
    ir_xfer_uv(L, xi);
    lua_getfield(L, -1, "images");
    ir_image_push(L, &x->resp);
    lua_getfield(L, -3, "urls");
    lua_rawgeti(L, -1, x->url_i);
    lua_setfield(L, -3, "url");
    lua_pop(L, 1);
    lua_getfield(L, -3, "url_index");
    if (lua_istable(L, -1)) {
        lua_rawgeti(L, -1, x->url_i);
        lua_setfield(L, -3, "index");
    }
    lua_pop(L, 1);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
    ir_fetch_next(L, xi, x);
}

/* ------------------------------------------------------------------------------------------ */
/* stepping the loop                                                                           */

static void activate_due(ir_loop *lp, double now)
{
    ir_xfer *x;
    for (x = lp->head; x; x = x->next) {
        if (x->state == X_WAIT && x->due <= now) {
            if (x->deadline > 0) { /* this attempt's timeouts: at most what remains of the call's deadline */
                double left = x->t0 + x->deadline - now, t = x->timeout, ct = x->connect_timeout;
                x->deadline_capped = left < t;
                if (left < t) t = left;
                if (left < ct) ct = left;
                curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, t * 1000 >= 1 ? (long)(t * 1000) : 1L);
                curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, ct * 1000 >= 1 ? (long)(ct * 1000) : 1L);
            }
            x->attempt++;
            x->t_attempt = now;
            x->state = X_RUN;
            x->in_multi = 1;
            if (curl_multi_add_handle(lp->multi, x->easy) != CURLM_OK) x->in_multi = 0;
        }
    }
}

/* Handles finished transfers; returns how many finished an attempt. */
static int drain(lua_State *L, ir_loop *lp)
{
    CURLMsg *m;
    int left, n = 0;
    while ((m = curl_multi_info_read(lp->multi, &left))) {
        ir_xfer *x = NULL;
        int top = lua_gettop(L);
        if (m->msg != CURLMSG_DONE) continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(lp->multi, m->easy_handle);
        if (!x) continue;
        x->in_multi = 0;
        lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref);
        attempt_done(L, lua_gettop(L), x, m->data.result);
        lua_settop(L, top);
        n++;
    }
    return n;
}

/* Turns the events that streamed in since the last step into images, so partial images reach
 * Lua as soon as libcurl hands their bytes over. A stream that sent an error event ends here. */
static int sse_tick(lua_State *L, ir_loop *lp)
{
    ir_xfer *x, *next;
    int handled = 0;
    for (x = lp->head; x; x = next) {
        next = x->next;
        if (x->state == X_RUN && x->mode == M_SSE && x->sse) {
            int top = lua_gettop(L);
            lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref);
            handled += ir_xfer_stream_tick(L, top + 1, x);
            lua_settop(L, top);
        }
    }
    return handled;
}

/* For loop.c, which drives libcurl: start the attempts that are due, and hand what finished
 * (and the partial images that streamed in) to Lua. ir_loop_settle returns how many were handled. */
void ir_loop_activate(ir_loop *lp, double now)
{
    activate_due(lp, now);
}

int ir_loop_settle(lua_State *L, ir_loop *lp)
{
    return sse_tick(L, lp) + drain(L, lp);
}

/* Runs the loop until the transfer at idx is done (the blocking calls). A transfer the loop does
 * not hold (released without an outcome) can never finish: it is done at once, as closed. */
void ir_xfer_wait(lua_State *L, ir_xfer *x)
{
    while (x->state != X_DONE) {
        if (!x->linked) {
            ir_xfer_release(x);
            x->state = X_DONE;
            break;
        }
        ir_loop_step(L, x->loop, 1.0);
    }
}

/* Pushes the outcome of a done transfer: result, or nil + error (a transfer released without an
 * outcome gives a "cancelled" error with code "closed"). Returns the count. */
int ir_xfer_push_outcome(lua_State *L, int xi)
{
    ir_xfer_uv(L, xi);
    if (lua_getfield(L, -1, "result") != LUA_TNIL) return 1;
    lua_pop(L, 1);
    lua_pushnil(L);
    if (lua_getfield(L, -2, "error") == LUA_TNIL) {
        lua_pop(L, 1);
        ir_push_error(L, "cancelled", "the transfer was closed before it finished");
        ir_setfield_str(L, "code", "closed");
    }
    return 2;
}

/* Ends a transfer that is not done with a "cancelled" error (`code`, message `why`): a running
 * attempt is stopped at once (its connection closed, its attempt logged with the error),
 * everything is freed, and the outcome is set. Lua context only. */
static void cancel(lua_State *L, int xi, ir_xfer *x, const char *code, const char *why)
{
    ir_push_error(L, "cancelled", "cancelled: %s", why);
    ir_setfield_str(L, "code", code);
    if (x->state == X_RUN) fail_running(L, xi, x);
    else ir_xfer_fail(L, xi, x);
}

/* ------------------------------------------------------------------------------------------ */
/* Lua API                                                                                     */

static ir_xfer *check_xfer(lua_State *L, int i)
{
    return (ir_xfer *)luaL_checkudata(L, i, IR_XFER_MT);
}

/* transfer:done() -> boolean */
static int x_done(lua_State *L)
{
    lua_pushboolean(L, check_xfer(L, 1)->state == X_DONE);
    return 1;
}

/* transfer:result() -> result | nil, err ; raises if the transfer is not done */
static int x_result(lua_State *L)
{
    ir_xfer *x = check_xfer(L, 1);
    if (x->state != X_DONE) return luaL_error(L, "transfer is not done: step the loop first");
    return ir_xfer_push_outcome(L, 1);
}

/* transfer:wait() -> result | nil, err : steps the loop until this transfer is done */
static int x_wait(lua_State *L)
{
    ir_xfer *x = check_xfer(L, 1);
    ir_xfer_wait(L, x);
    return ir_xfer_push_outcome(L, 1);
}

/* transfer:cancel([reason]) -> boolean
 * Stops a transfer that is not done: the attempt in flight is aborted at once (removed from the
 * loop, its connection closed, resources freed), and the outcome becomes nil + an error with
 * kind = "cancelled", code = "cancelled" and message "cancelled: <reason>" (reason: a string,
 * default "cancelled by the caller"), with the usual request_id, status, attempt_log, images.
 * Returns true, or false when the transfer was already done (its outcome is kept). */
static int x_cancel(lua_State *L)
{
    ir_xfer *x = check_xfer(L, 1);
    const char *why = luaL_optstring(L, 2, "cancelled by the caller");
    lua_settop(L, 2);
    if (x->state == X_DONE) {
        lua_pushboolean(L, 0);
        return 1;
    }
    cancel(L, 1, x, "cancelled", why);
    lua_pushboolean(L, 1);
    return 1;
}

/* transfer:__close() (a to-be-closed variable): a transfer not done yet is cancelled (kind =
 * "cancelled", code = "closed") and freed, so a later wait() or result() returns nil + that error
 * at once, never waits, and done() is true; a finished transfer keeps its outcome. */
static int x_close(lua_State *L)
{
    ir_xfer *x = check_xfer(L, 1);
    lua_settop(L, 1);
    if (x->state != X_DONE) cancel(L, 1, x, "closed", "the transfer was closed before it finished");
    ir_xfer_release(x);
    return 0;
}

/* transfer:take_partials() -> list of partial Images received since the last call (each with
 * partial_image_index), oldest first; empty when none */
static int x_take_partials(lua_State *L)
{
    check_xfer(L, 1);
    ir_xfer_uv(L, 1);
    if (lua_getfield(L, -1, "partials") != LUA_TTABLE || lua_rawlen(L, -1) == 0) {
        lua_newtable(L);
        return 1;
    }
    {
        ir_xfer *x = check_xfer(L, 1);
        if (x->key) ir_redact(L, -1, x->key, x->keylen); /* their event fields came from the server */
    }
    lua_newtable(L);
    lua_setfield(L, -3, "partials");
    return 1;
}

/* transfer:progress() -> bytes received (all attempts), elapsed seconds, attempt */
static int x_progress(lua_State *L)
{
    ir_xfer *x = check_xfer(L, 1);
    lua_pushinteger(L, (lua_Integer)x->total_bytes);
    lua_pushnumber(L, (x->state == X_DONE ? x->t_done : ir_now()) - x->t0);
    lua_pushinteger(L, x->attempt);
    return 3;
}

static int x_tostring(lua_State *L)
{
    ir_xfer *x = check_xfer(L, 1);
    static const char *const st[] = {"new", "waiting", "running", "done"};
    lua_pushfstring(L, "imageroute.Transfer(%s, %s, attempt %d)", x->ops ? x->ops->name : "?", st[x->state],
                    x->attempt);
    return 1;
}

void ir_xfer_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", xfer_gc},
        {"__close", x_close},
        {"__tostring", x_tostring},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"done", x_done},
        {"result", x_result},
        {"wait", x_wait},
        {"progress", x_progress},
        {"take_partials", x_take_partials},
        {"cancel", x_cancel},
        {"close", x_close},
        {NULL, NULL}
    };
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) luaL_error(L, "curl_global_init failed");
    ir_new_type(L, IR_XFER_MT, meta, methods, "__index");
}
