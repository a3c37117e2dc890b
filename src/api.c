/*
 * api.c - the transport of the request shapes: core.generate / core.edit (and, in respond.c,
 * core.respond), and the reading of a 2xx reply into what the Lua layer interprets.
 *
 * The bodies are built by the Lua layer (lua/imageroute/shapes/images.lua, chat.lua, responses.lua,
 * from the normalised request of lua/imageroute/request.lua); this file only sends them and lifts
 * the images out:
 *
 *   core.start_generate(route, {endpoint = "/images/generations" | "/chat/completions", body = <JSON
 *     text>, reader = fn} [, opts])                      -> Transfer | nil, err (POST, JSON)
 *   core.start_edit(route, {endpoint = "/images/edits", parts = {part, ...}, reader = fn} [, opts])
 *                                                          -> Transfer | nil, err (POST, multipart)
 *     part: {name =, value = <string>} (a form field), or {name =, image = <Image> | data = <bytes> |
 *     path = <file>, filename =, type = <MIME type>} (a file part, read by libcurl)
 *
 * A 2xx reply is handed to `reader(reply)` (a Lua function given with the request, called after
 * libcurl has returned, in protected mode): reply = {text = <the JSON with each base64 image
 * replaced by "@imageroute-image:N">, images = {[N + 1] = Image | why}, content_type =, status =}
 * for a JSON reply, or {stream = true, json = <the last event's JSON>, response =, items =,
 * results =, images = <completed Images>, content = <chat deltas joined>, partials_received =,
 * status =} for an event stream. The reader returns a plan {images = {Image, ...}, urls = {url, ...},
 * url_index = {i, ...}} (the images it took, and the links to download on this transfer, each
 * checked by the download policy), or nil, err to fail the call. The transfer then downloads the
 * links and its result is {reply =, plan =, images = <the plan's images and the downloads>} plus
 * the common fields (request_id, http_status, latency, attempts, attempt_log, route, endpoint, ...).
 * Without a reader the result is {reply =, images =}. No policy lives here: which fields are sent,
 * how many images an edit may take, what the reply means are the Lua layer's.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xfer.h"

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */

void ir_push_validation(lua_State *L, const char *field, const char *fmt, const char *arg)
{
    ir_push_error(L, "validation", fmt, arg);
    ir_setfield_str(L, "field", field);
}

/* A 2xx whose body is not what the shape needs: a decode error with a short excerpt. */
void ir_fail_decode(lua_State *L, int xi, ir_xfer *x, const char *what)
{
    ir_push_excerpt(L, x->resp.p ? x->resp.p : "", x->resp.n, 200);
    ir_push_error(L, "decode", "%s (HTTP %d, content-type %s): %s", what, (int)x->status,
                  x->h.content_type[0] ? x->h.content_type : "none", lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_pushinteger(L, x->status);
    lua_setfield(L, -2, "status");
    ir_xfer_fail(L, xi, x);
}

/* 1 when the reply was read whole as JSON; else 0 after failing the transfer (not JSON, or memory
 * ran out reading it). */
static int json_reply_read(lua_State *L, int xi, ir_xfer *x)
{
    if (x->mode != M_JSON) {
        ir_fail_decode(L, xi, x, "the response is not JSON");
        return 0;
    }
    if (x->ex.oom) {
        ir_push_error(L, "decode", "out of memory reading the response");
        ir_xfer_fail(L, xi, x);
        return 0;
    }
    return 1;
}

/* Decodes the (image-free) JSON body into uv.json. Returns 0 after failing the transfer. */
int ir_decode_body(lua_State *L, int xi, ir_xfer *x)
{
    if (x->mode == M_SSE) { /* the events already filled uv.json */
        ir_xfer_uv(L, xi);
        if (lua_getfield(L, -1, "json") != LUA_TTABLE) {
            lua_pop(L, 2);
            ir_push_error(L, "decode", "the event stream ended without its final event");
            lua_pushinteger(L, x->status);
            lua_setfield(L, -2, "status");
            ir_xfer_fail(L, xi, x);
            return 0;
        }
        lua_pop(L, 2);
        x->req_status = x->status;
        return 1;
    }
    if (!json_reply_read(L, xi, x)) return 0;
    if (!ir_json_decode(L, x->resp.p ? x->resp.p : "", x->resp.n) || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        ir_fail_decode(L, xi, x, "the response is not valid JSON");
        return 0;
    }
    ir_xfer_uv(L, xi);
    lua_insert(L, -2);
    lua_setfield(L, -2, "json");
    lua_pop(L, 1);
    x->req_status = x->status;
    return 1;
}

/* req[field] as a string, pushed (*n its length); NULL with a validation error (field, msg) pushed in
 * its place when it is not a string. */
static const char *req_string(lua_State *L, int req, const char *field, const char *msg, size_t *n)
{
    if (lua_getfield(L, req, field) != LUA_TSTRING) {
        lua_pop(L, 1);
        ir_push_validation(L, field, "%s", msg);
        return NULL;
    }
    return lua_tolstring(L, -1, n);
}

/* req[field] as a path that can follow base_url (ir_path_problem), pushed; NULL with a validation
 * error pushed in its place (msg when it is not a string; "req.<field> <why>" otherwise). */
const char *ir_req_path(lua_State *L, int req, const char *field, const char *msg, size_t *n)
{
    const char *p = req_string(L, req, field, msg, n), *why;
    if (!p) return NULL;
    why = ir_path_problem(p, *n);
    if (!why) return p;
    lua_pop(L, 1);
    lua_pushfstring(L, "req.%s %s", field, why);
    ir_push_validation(L, field, "%s", lua_tostring(L, -1));
    lua_remove(L, -2);
    return NULL;
}

/* The request body given as JSON text by the Lua layer (req.body at index req): POSTed as it is.
 * 0 with a validation error pushed when it is not a string. */
int ir_set_body_text(lua_State *L, ir_xfer *x, int req)
{
    size_t n;
    const char *s = req_string(L, req, "body", "req.body must be the request's JSON text (a string)", &n);
    if (!s) return 0;
    if (ir_buf_add(&x->body, s, n)) {
        lua_pop(L, 1);
        ir_push_validation(L, "body", "out of memory%s", "");
        return 0;
    }
    lua_pop(L, 1);
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body.p);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body.n);
    return 1;
}

/* Pushes extracted image k as an Image, or why it is not one: a string to follow the field's name
 * ("is not valid base64 (...)"), or an error table (a file that could not be put in place). */
static void push_extracted(lua_State *L, ir_extract *ex, unsigned long k)
{
    ir_ximg *im = &ex->imgs[k];
    const char *fmt = NULL;
    if (im->bad) {
        lua_pushfstring(L, "is not valid base64 (%s)", im->bad);
    } else if (im->dataurl_mime[0] && strncmp(im->dataurl_mime, "image/", 6) != 0) {
        lua_pushfstring(L, "is a data URL of type %s, not an image", im->dataurl_mime);
    } else if (im->spill) {
        if (ir_take_spilled(L, ex, k, "image")) ir_mark_data_url(L, im); /* the Image, or its error */
    } else if (!ir_sniff((const unsigned char *)im->data.p, im->data.n, &fmt)) {
        lua_pushfstring(L, "decoded to %I bytes that are not a PNG, JPEG, WebP or GIF image", (lua_Integer)im->data.n);
    } else {
        ir_image_push(L, &im->data);
        ir_mark_data_url(L, im);
    }
}

/* A JSON reply in full: pushes the reply {text =, images =, content_type =, status =} for the Lua
 * layer to read (text: the JSON with each image replaced by "@imageroute-image:N"; images[N + 1]:
 * that image, or why it is not one, see push_extracted). Returns 1, or 0 after failing the
 * transfer (the reply is not JSON, or memory ran out). */
int ir_push_reply(lua_State *L, int xi, ir_xfer *x)
{
    unsigned long k;
    if (!json_reply_read(L, xi, x)) return 0;
    x->req_status = x->status;
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, x->resp.p ? x->resp.p : "", x->resp.n);
    lua_setfield(L, -2, "text");
    lua_createtable(L, (int)x->ex.nimgs, 0);
    for (k = 0; k < x->ex.nimgs; k++) {
        push_extracted(L, &x->ex, k);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "images");
    ir_setfield_str(L, "content_type", x->h.content_type[0] ? x->h.content_type : NULL);
    lua_pushinteger(L, x->status);
    lua_setfield(L, -2, "status");
    return 1;
}

/* An event stream in full (its final event came: ir_decode_body): pushes the reply
 * {stream = true, json =, response =, items =, results =, images =, deltas =, partials_received =,
 * status =} from what sse.c collected. */
static void push_stream_reply(lua_State *L, int xi, ir_xfer *x)
{
    int uv, reply;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_createtable(L, 0, 10);
    reply = lua_gettop(L);
    lua_pushboolean(L, 1);
    lua_setfield(L, reply, "stream");
    lua_getfield(L, uv, "json");
    lua_pushvalue(L, -1);
    lua_setfield(L, reply, "json");
    lua_setfield(L, reply, "response");
    lua_getfield(L, uv, "stream_items");
    lua_setfield(L, reply, "items");
    lua_getfield(L, uv, "stream_results");
    lua_setfield(L, reply, "results");
    lua_getfield(L, uv, "images");
    lua_setfield(L, reply, "images");
    lua_getfield(L, uv, "stream_deltas"); /* chat chunks: each first choice's delta, in order */
    lua_setfield(L, reply, "deltas");
    lua_pushinteger(L, x->partials_received);
    lua_setfield(L, reply, "partials_received");
    lua_pushinteger(L, x->status);
    lua_setfield(L, reply, "status");
    lua_remove(L, uv);
}

/* The reply (on top) went through the reader: its plan's images and links become the transfer's
 * (uv.images, uv.urls, uv.url_index). Returns 1 with the reply left on top, or 0 after failing the
 * transfer with the reader's error (or a decode error when it raised). */
static int run_reader(lua_State *L, int xi, ir_xfer *x)
{
    int reply = lua_gettop(L), uv;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_pushvalue(L, reply);
    lua_setfield(L, uv, "reply");
    if (lua_getfield(L, uv, "reader") != LUA_TFUNCTION) {
        lua_settop(L, reply);
        return 1;
    }
    lua_pushvalue(L, reply);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(an error value that is not a string)";
        ir_push_error(L, "decode", "reading the reply failed: %s", m);
        lua_replace(L, reply);
        lua_settop(L, reply);
        ir_xfer_fail(L, xi, x);
        return 0;
    }
    if (!lua_istable(L, -2)) { /* nil, err */
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            ir_push_error(L, "decode", "reading the reply failed (the reader gave no plan)");
        }
        lua_replace(L, reply);
        lua_settop(L, reply);
        ir_xfer_fail(L, xi, x);
        return 0;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, uv, "plan");
    if (lua_getfield(L, -1, "images") == LUA_TTABLE) lua_setfield(L, uv, "images");
    else lua_pop(L, 1);
    lua_getfield(L, -1, "urls");
    lua_setfield(L, uv, "urls");
    lua_getfield(L, -1, "url_index");
    lua_setfield(L, uv, "url_index");
    lua_settop(L, reply);
    return 1;
}

/* A 2xx API reply in full: the reply goes through the reader, then its links are downloaded. */
static void shaped_parse(lua_State *L, int xi, ir_xfer *x)
{
    if (x->mode == M_SSE) {
        if (!ir_decode_body(L, xi, x)) return; /* checks that the final event came */
        push_stream_reply(L, xi, x);
    } else if (!ir_push_reply(L, xi, x)) {
        return;
    }
    if (!run_reader(L, xi, x)) return;
    lua_pop(L, 1);
    x->url_i = 0;
    ir_fetch_next(L, xi, x);
}

/* Every download is done: the result is {reply =, plan =, images =} for the Lua layer. */
static void shaped_complete(lua_State *L, int xi, ir_xfer *x)
{
    int uv;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_createtable(L, 0, 16);
    lua_getfield(L, uv, "reply");
    lua_setfield(L, -2, "reply");
    lua_getfield(L, uv, "plan");
    lua_setfield(L, -2, "plan");
    lua_getfield(L, uv, "images");
    lua_setfield(L, -2, "images");
    lua_replace(L, uv);
    ir_xfer_succeed(L, xi, x);
}

const ir_ops IR_GENERATE_OPS = {"generate", shaped_parse, shaped_complete};
const ir_ops IR_EDIT_OPS = {"edit", shaped_parse, shaped_complete};
const ir_ops IR_RESPOND_OPS = {"respond", shaped_parse, shaped_complete};

/* NULL when path can go after the base URL as it is, else why not: it starts with '/', holds only
 * printable ASCII other than space, '?', '#' and '\', and has no "." or ".." segment (which would
 * climb out of the API root). */
const char *ir_path_problem(const char *p, size_t n)
{
    size_t i;
    if (n == 0 || p[0] != '/') return "must start with '/'";
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#' || c == '\\')
            return "must hold only printable ASCII without spaces, '?', '#' or '\\' (give the query as req.query)";
        if (c == '/' && i + 1 < n && p[i + 1] == '.') {
            size_t j = i + 1;
            while (j < n && p[j] == '.') j++;
            if ((j - i - 1) <= 2 && (j == n || p[j] == '/')) return "must not hold a '.' or '..' segment";
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* sending                                                                                     */

/* Sets up the transfer for req.endpoint (a path under base_url) and keeps req.reader. */
int ir_setup_shaped(lua_State *L, ir_xfer *x, int xi, int route, int req, int opts, const char *endpoint, int json)
{
    if (!endpoint) {
        size_t n;
        endpoint = ir_req_path(L, req, "endpoint", "req.endpoint must be a path such as \"/images/generations\"", &n);
        if (!endpoint) return 0;
        x->endpoint_own = (char *)malloc(n + 1);
        if (!x->endpoint_own) {
            lua_pop(L, 1);
            ir_push_validation(L, "endpoint", "out of memory%s", "");
            return 0;
        }
        memcpy(x->endpoint_own, endpoint, n + 1);
        lua_pop(L, 1);
        endpoint = x->endpoint_own;
    }
    switch (lua_getfield(L, req, "reader")) {
    case LUA_TNIL:
        lua_pop(L, 1);
        break;
    case LUA_TFUNCTION:
        ir_xfer_uv(L, xi);
        lua_insert(L, -2);
        lua_setfield(L, -2, "reader");
        lua_pop(L, 1);
        break;
    default:
        lua_pop(L, 1);
        ir_push_validation(L, "reader", "req.reader must be a function%s", "");
        return 0;
    }
    return ir_xfer_setup_api(L, x, route, opts, endpoint, json);
}

static int build_generate(lua_State *L, ir_xfer *x, int xi, int route, int req, int opts)
{
    if (!ir_setup_shaped(L, x, xi, route, req, opts, NULL, 1)) return 0;
    return ir_set_body_text(L, x, req);
}

/* Adds part k of req.parts (table at idx) to the form. 0 with a validation error pushed. */
static int add_part(lua_State *L, ir_xfer *x, int idx, int k)
{
    const char *name, *s;
    size_t n;
    curl_mimepart *part;
    int top = lua_gettop(L), t;
    char field[32];
    snprintf(field, sizeof field, "parts[%d]", k);
    if (!lua_istable(L, idx) || lua_getfield(L, idx, "name") != LUA_TSTRING) {
        lua_settop(L, top);
        ir_push_validation(L, "parts", "req.%s must be a table with a name", field);
        return 0;
    }
    name = lua_tostring(L, -1);
    part = curl_mime_addpart(x->mime);
    if (!part) goto oom;
    curl_mime_name(part, name);
    if (lua_getfield(L, idx, "value") == LUA_TSTRING) { /* a form field */
        s = lua_tolstring(L, -1, &n);
        if (curl_mime_data(part, s, n) != CURLE_OK) goto oom;
        lua_settop(L, top);
        return 1;
    }
    lua_pop(L, 1);
    if ((t = lua_getfield(L, idx, "image")) != LUA_TNIL) {
        ir_image *im = (ir_image *)luaL_testudata(L, -1, IR_IMAGE_MT);
        if (!im || !im->p) {
            lua_settop(L, top);
            ir_push_validation(L, "parts", "req.%s.image must be an Image holding its bytes", field);
            return 0;
        }
        if (curl_mime_data(part, (const char *)im->p, im->n) != CURLE_OK) goto oom;
    } else if (lua_getfield(L, idx, "data") == LUA_TSTRING) {
        s = lua_tolstring(L, -1, &n);
        if (curl_mime_data(part, s, n) != CURLE_OK) goto oom;
    } else if (lua_getfield(L, idx, "path") == LUA_TSTRING) {
        if (curl_mime_filedata(part, lua_tostring(L, -1)) != CURLE_OK) goto oom;
    } else {
        lua_settop(L, top);
        ir_push_validation(L, "parts", "req.%s needs value, image, data or path", field);
        return 0;
    }
    if (lua_getfield(L, idx, "filename") == LUA_TSTRING) curl_mime_filename(part, lua_tostring(L, -1));
    if (lua_getfield(L, idx, "type") == LUA_TSTRING) curl_mime_type(part, lua_tostring(L, -1));
    lua_settop(L, top);
    return 1;
oom:
    lua_settop(L, top);
    ir_push_validation(L, "parts", "out of memory building %s", field);
    return 0;
}

static int build_edit(lua_State *L, ir_xfer *x, int xi, int route, int req, int opts)
{
    lua_Integer k, n;
    int parts;
    if (!ir_setup_shaped(L, x, xi, route, req, opts, NULL, 0)) return 0;
    if (lua_getfield(L, req, "parts") != LUA_TTABLE) {
        lua_pop(L, 1);
        ir_push_validation(L, "parts", "req.parts must be a list of parts%s", "");
        return 0;
    }
    parts = lua_gettop(L);
    x->mime = curl_mime_init(x->easy);
    if (!x->mime) {
        lua_pop(L, 1);
        ir_push_validation(L, "parts", "out of memory%s", "");
        return 0;
    }
    n = (lua_Integer)lua_rawlen(L, parts);
    for (k = 1; k <= n; k++) {
        lua_rawgeti(L, parts, k);
        if (!add_part(L, x, lua_gettop(L), (int)k)) {
            lua_remove(L, -2);
            lua_remove(L, -2);
            return 0;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    curl_easy_setopt(x->easy, CURLOPT_MIMEPOST, x->mime);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Lua API                                                                                     */

/* Builds and submits a transfer. Pushes it and returns 1, or pushes nil, err and returns 2. */
int ir_start(lua_State *L, const ir_ops *ops, ir_builder build)
{
    ir_xfer *x;
    int xi, opts = 0;
    ir_check_route(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        opts = 3;
    }
    lua_settop(L, 3);
    x = ir_xfer_new(L, 0, 1, opts);
    xi = lua_gettop(L);
    x->ops = ops;
    if (!build(L, x, xi, 1, 2, opts)) {
        ir_route_get(L, 1, "name");
        lua_setfield(L, -2, "route");
        lua_pushinteger(L, 0);
        lua_setfield(L, -2, "attempts");
        ir_xfer_release(x);
        x->state = X_DONE;
        return ir_nil_err(L);
    }
    lua_settop(L, xi);
    ir_xfer_submit(L, xi, x);
    return 1;
}

int ir_run(lua_State *L, const ir_ops *ops, ir_builder build)
{
    int r = ir_start(L, ops, build);
    ir_xfer *x;
    if (r == 2) return 2;
    x = (ir_xfer *)lua_touserdata(L, -1);
    ir_xfer_wait(L, x);
    return ir_xfer_push_outcome(L, lua_gettop(L));
}

/* core.generate(route, req [, opts]) -> result | nil, err (blocking) */
static int l_generate(lua_State *L) { return ir_run(L, &IR_GENERATE_OPS, build_generate); }
/* core.edit(route, req [, opts]) -> result | nil, err (blocking) */
static int l_edit(lua_State *L) { return ir_run(L, &IR_EDIT_OPS, build_edit); }
/* core.start_generate / core.start_edit (route, req [, opts]) -> Transfer | nil, err */
static int l_start_generate(lua_State *L) { return ir_start(L, &IR_GENERATE_OPS, build_generate); }
static int l_start_edit(lua_State *L) { return ir_start(L, &IR_EDIT_OPS, build_edit); }

/* core.c registers these into the module table */
const luaL_Reg ir_api_fns[] = {
    {"generate", l_generate},
    {"edit", l_edit},
    {"start_generate", l_start_generate},
    {"start_edit", l_start_edit},
    {NULL, NULL}
};
