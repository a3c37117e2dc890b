/*
 * api.c - the request shapes: building each request, and reading each response into a result.
 *
 * Images API (OpenAI API reference, Images, https://platform.openai.com/docs/api-reference/images,
 * read 2026-12-01; schemas CreateImageRequest, CreateImageEditRequest and ImagesResponse of
 * https://github.com/openai/openai-openapi at f85dbe2, 2026-08-21):
 *   generate  POST {base_url}/images/generations, JSON with exactly the fields the caller set
 *   edit      POST {base_url}/images/edits, multipart: image | image[] (up to 16), mask, fields
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xfer.h"

#define MAX_EDIT_IMAGES 16

enum { OP_GENERATE = 1, OP_EDIT };

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */

void ir_push_validation(lua_State *L, const char *field, const char *fmt, const char *arg)
{
    ir_push_error(L, "validation", fmt, arg);
    ir_setfield_str(L, "field", field);
}

/* Copies the table at idx (one level). Pushes the copy. */
void ir_shallow_copy(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
}

/* Sets body.model from the route when the caller did not: the server's own default is dall-e-2,
 * so the model is always sent. Returns 0 (error pushed) when neither names one. */
int ir_ensure_model(lua_State *L, int body, int route, int xi)
{
    int t = lua_getfield(L, body, "model");
    lua_pop(L, 1);
    if (t != LUA_TSTRING && t != LUA_TNIL) {
        ir_push_validation(L, "model", "params.model must be a string%s", "");
        return 0;
    }
    if (t == LUA_TNIL) {
        if (ir_route_get(L, route, "model") != LUA_TSTRING) {
            lua_pop(L, 1);
            ir_push_validation(L, "model", "no model: give the route a model or pass params.model%s", "");
            return 0;
        }
        lua_setfield(L, body, "model");
    }
    /* the result reports the model that was sent */
    ir_xfer_uv(L, xi);
    lua_getfield(L, body, "model");
    lua_setfield(L, -2, "model");
    lua_pop(L, 1);
    return 1;
}

int ir_set_json_body(lua_State *L, ir_xfer *x, int body)
{
    const char *s;
    size_t n;
    if (!ir_json_encode(L, body)) {
        ir_push_validation(L, "params", "params cannot be sent as JSON: %s", lua_tostring(L, -1));
        return 0;
    }
    s = lua_tolstring(L, -1, &n);
    if (ir_buf_add(&x->body, s, n)) {
        lua_pop(L, 1);
        ir_push_validation(L, "params", "out of memory%s", "");
        return 0;
    }
    lua_pop(L, 1);
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body.p);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body.n);
    return 1;
}

int ir_check_prompt(lua_State *L, int params)
{
    size_t n = 0;
    if (lua_getfield(L, params, "prompt") != LUA_TSTRING || (lua_tolstring(L, -1, &n), n == 0)) {
        lua_pop(L, 1);
        ir_push_validation(L, "prompt", "params.prompt must be a non-empty string%s", "");
        return 0;
    }
    lua_pop(L, 1);
    return 1;
}

/* Fills the common result fields of an Images API response (json at j) into the table on top. */
void ir_copy_fields(lua_State *L, int j, const char *const *names)
{
    for (; *names; names++) {
        lua_getfield(L, j, *names);
        lua_setfield(L, -2, *names);
    }
}

/* Image k was decoded into a file (opts.save_to): moves it to its name (the target itself, or
 * "<stem>-N<.ext>" when the reply holds several final images) and pushes the file-backed Image. */
static int take_spilled(lua_State *L, ir_extract *ex, unsigned long k, const char *field)
{
    ir_ximg *im = &ex->imgs[k];
    ir_spill *sp = im->spill;
    int ok;
    im->spill = NULL; /* taken: ir_extract_free no longer removes it */
    ir_push_numbered_path(L, ex->save_to, im->spill_no, ex->nspills);
    ok = ir_spill_take(L, sp, lua_tostring(L, -1), field);
    lua_remove(L, -2);
    return ok;
}

/* Takes extracted image k (placeholder string at idx) as an Image pushed on the stack. Returns 0
 * with an error pushed instead when it is not a valid image. */
int ir_take_image(lua_State *L, ir_extract *ex, const char *ph, const char *field)
{
    unsigned long k = strtoul(ph + sizeof(IR_IMG_PLACEHOLDER) - 1, NULL, 10);
    ir_ximg *im;
    const char *fmt = NULL;
    if (k >= ex->nimgs) {
        ir_push_error(L, "decode", "%s: internal placeholder out of range", field);
        return 0;
    }
    im = &ex->imgs[k];
    if (im->bad) {
        ir_push_error(L, "decode", "%s is not valid base64 (%s)", field, im->bad);
        return 0;
    }
    if (im->dataurl_mime[0] && strncmp(im->dataurl_mime, "image/", 6) != 0) {
        ir_push_error(L, "decode", "%s is a data URL of type %s, not an image", field, im->dataurl_mime);
        return 0;
    }
    if (im->spill) return take_spilled(L, ex, k, field);
    if (!ir_sniff((const unsigned char *)im->data.p, im->data.n, &fmt)) {
        ir_push_error(L, "decode", "%s decoded to %I bytes that are not a PNG, JPEG, WebP or GIF image", field,
                      (lua_Integer)im->data.n);
        return 0;
    }
    ir_image_push(L, &im->data);
    return 1;
}

int ir_is_placeholder(lua_State *L, int idx)
{
    const char *s = lua_tostring(L, idx);
    return s && strncmp(s, IR_IMG_PLACEHOLDER, sizeof(IR_IMG_PLACEHOLDER) - 1) == 0;
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
    if (x->mode != M_JSON) {
        ir_fail_decode(L, xi, x, "the response is not JSON");
        return 0;
    }
    if (x->ex.oom) {
        ir_push_error(L, "decode", "out of memory reading the response");
        ir_xfer_fail(L, xi, x);
        return 0;
    }
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

/* The request body given as JSON text by the Lua layer (req.body at index req): POSTed as it is.
 * 0 with a validation error pushed when it is not a string. */
int ir_set_body_text(lua_State *L, ir_xfer *x, int req)
{
    const char *s;
    size_t n;
    if (lua_getfield(L, req, "body") != LUA_TSTRING) {
        lua_pop(L, 1);
        ir_push_validation(L, "body", "req.body must be the request's JSON text (a string)%s", "");
        return 0;
    }
    s = lua_tolstring(L, -1, &n);
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
        take_spilled(L, ex, k, "image"); /* the Image, or its error */
    } else if (!ir_sniff((const unsigned char *)im->data.p, im->data.n, &fmt)) {
        lua_pushfstring(L, "decoded to %I bytes that are not a PNG, JPEG, WebP or GIF image", (lua_Integer)im->data.n);
    } else {
        ir_image_push(L, &im->data);
    }
}

/* A JSON reply in full: pushes the result {reply = {text =, images =, content_type =}} for the Lua
 * layer to read (text: the JSON with each image replaced by "@imageroute-image:N"; images[N + 1]:
 * that image, or why it is not one, see push_extracted). Returns 1, or 0 after failing the
 * transfer (the reply is not JSON, or memory ran out). */
int ir_push_reply(lua_State *L, int xi, ir_xfer *x)
{
    unsigned long k;
    if (x->mode != M_JSON) {
        ir_fail_decode(L, xi, x, "the response is not JSON");
        return 0;
    }
    if (x->ex.oom) {
        ir_push_error(L, "decode", "out of memory reading the response");
        ir_xfer_fail(L, xi, x);
        return 0;
    }
    x->req_status = x->status;
    lua_createtable(L, 0, 16);
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, x->resp.p ? x->resp.p : "", x->resp.n);
    lua_setfield(L, -2, "text");
    lua_createtable(L, (int)x->ex.nimgs, 0);
    for (k = 0; k < x->ex.nimgs; k++) {
        push_extracted(L, &x->ex, k);
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lua_setfield(L, -2, "images");
    ir_setfield_str(L, "content_type", x->h.content_type[0] ? x->h.content_type : NULL);
    lua_setfield(L, -2, "reply");
    return 1;
}

/* Puts the Images of the list at idx in the order of their `index` field (their place in the
 * reply: data[i], or the i-th link), since the ones decoded in place come before the ones that
 * had to be downloaded. Images without a usable index keep their relative order, at the end.
 * Linear in the number of images. */
void ir_order_images(lua_State *L, int idx)
{
    int slots, extra;
    lua_Integer k, n, maxi = 0, j = 0;
    idx = lua_absindex(L, idx);
    n = (lua_Integer)lua_rawlen(L, idx);
    if (n < 2) return;
    lua_newtable(L);
    slots = lua_gettop(L);
    lua_newtable(L);
    extra = lua_gettop(L);
    for (k = 1; k <= n; k++) {
        int isnum = 0;
        lua_Integer i;
        lua_rawgeti(L, idx, k);
        lua_getfield(L, -1, "index");
        i = lua_tointegerx(L, -1, &isnum);
        lua_pop(L, 1);
        if (isnum && i >= 1 && i <= n * 64 && lua_rawgeti(L, slots, i) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_rawseti(L, slots, i);
            if (i > maxi) maxi = i;
        } else {
            if (isnum && i >= 1 && i <= n * 64) lua_pop(L, 1);
            lua_rawseti(L, extra, (lua_Integer)lua_rawlen(L, extra) + 1);
        }
    }
    for (k = 1; k <= maxi; k++) {
        if (lua_rawgeti(L, slots, k) != LUA_TNIL) lua_rawseti(L, idx, ++j);
        else lua_pop(L, 1);
    }
    for (k = 1; k <= (lua_Integer)lua_rawlen(L, extra); k++) {
        lua_rawgeti(L, extra, k);
        lua_rawseti(L, idx, ++j);
    }
    lua_settop(L, slots - 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Images API responses (generate and edit)                                                    */

static void images_parse(lua_State *L, int xi, ir_xfer *x)
{
    int uv, json, data, images, urls, uidx;
    lua_Integer i, n;
    if (!ir_decode_body(L, xi, x)) return;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    if (x->mode == M_SSE) { /* streamed: the completed events gave the images */
        lua_getfield(L, uv, "images");
        n = (lua_Integer)lua_rawlen(L, -1);
        lua_settop(L, uv - 1);
        if (n == 0) {
            ir_push_error(L, "decode", "the stream ended without a completed image");
            lua_pushinteger(L, x->status);
            lua_setfield(L, -2, "status");
            ir_xfer_fail(L, xi, x);
            return;
        }
        x->url_i = 0;
        ir_fetch_next(L, xi, x);
        return;
    }
    lua_getfield(L, uv, "json");
    json = lua_gettop(L);
    if (lua_getfield(L, json, "data") != LUA_TTABLE || lua_rawlen(L, -1) == 0) {
        lua_settop(L, uv - 1); /* the error quotes what came back instead */
        ir_fail_decode(L, xi, x, "the response has no images (data is missing or empty)");
        return;
    }
    data = lua_gettop(L);
    lua_getfield(L, uv, "images");
    images = lua_gettop(L);
    lua_newtable(L);
    urls = lua_gettop(L);
    lua_newtable(L);
    uidx = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, data);
    for (i = 1; i <= n; i++) {
        char field[48];
        snprintf(field, sizeof field, "data[%d].b64_json", (int)i);
        lua_rawgeti(L, data, i);
        if (!lua_istable(L, -1)) {
            lua_settop(L, uv - 1);
            ir_push_error(L, "decode", "data[%d] is not an object", (int)i);
            ir_xfer_fail(L, xi, x);
            return;
        }
        lua_getfield(L, -1, "b64_json");
        if (ir_is_placeholder(L, -1)) {
            if (!ir_take_image(L, &x->ex, lua_tostring(L, -1), field)) {
                lua_replace(L, uv); /* keep the error, drop the rest */
                lua_settop(L, uv);
                ir_xfer_fail(L, xi, x);
                return;
            }
            lua_pushinteger(L, i);
            lua_setfield(L, -2, "index");
            lua_getfield(L, -3, "revised_prompt");
            lua_setfield(L, -2, "revised_prompt");
            lua_rawseti(L, images, (lua_Integer)lua_rawlen(L, images) + 1);
            lua_pop(L, 2);
            continue;
        }
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "url") == LUA_TSTRING) {
            lua_rawseti(L, urls, (lua_Integer)lua_rawlen(L, urls) + 1);
            lua_pushinteger(L, i);
            lua_rawseti(L, uidx, (lua_Integer)lua_rawlen(L, uidx) + 1);
            lua_pop(L, 1);
            continue;
        }
        lua_settop(L, uv - 1);
        ir_push_error(L, "decode", "data[%d] has neither b64_json nor url", (int)i);
        ir_xfer_fail(L, xi, x);
        return;
    }
    lua_pushvalue(L, urls);
    lua_setfield(L, uv, "urls");
    lua_pushvalue(L, uidx);
    lua_setfield(L, uv, "url_index");
    lua_settop(L, uv - 1);
    x->url_i = 0;
    ir_fetch_next(L, xi, x);
}

static void images_complete(lua_State *L, int xi, ir_xfer *x)
{
    static const char *const fields[] = {"created", "usage", "size", "quality", "background", "output_format", NULL};
    int uv;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_createtable(L, 0, 16);
    lua_getfield(L, uv, "json");
    lua_insert(L, -2);
    ir_copy_fields(L, -2, fields);
    if (x->mode == M_SSE) { /* a completed event has created_at instead of created */
        lua_getfield(L, -2, "created_at");
        lua_setfield(L, -2, "created");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "stream");
        lua_pushinteger(L, x->partials_received);
        lua_setfield(L, -2, "partial_images_received");
    }
    lua_getfield(L, uv, "images");
    ir_order_images(L, -1);
    lua_setfield(L, -2, "images");
    lua_getfield(L, uv, "model");
    lua_setfield(L, -2, "model");
    lua_pushliteral(L, "images");
    lua_setfield(L, -2, "shape");
    lua_replace(L, uv);
    lua_settop(L, uv);
    ir_xfer_succeed(L, xi, x);
}

static const ir_ops GENERATE_OPS = {"generate", images_parse, images_complete};
static const ir_ops EDIT_OPS = {"edit", images_parse, images_complete};

/* ------------------------------------------------------------------------------------------ */
/* building requests                                                                           */

static int build_generate(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts)
{
    int body;
    if (!ir_check_prompt(L, params)) return 0;
    ir_shallow_copy(L, params);
    body = lua_gettop(L);
    if (!ir_ensure_model(L, body, route, xi)) return 0;
    if (!ir_xfer_setup_api(L, x, route, opts, "/images/generations", 1)) return 0;
    if (!ir_set_json_body(L, x, body)) return 0;
    lua_pop(L, 1);
    return 1;
}

/* Form values: strings as they are, integers without a decimal point, booleans as true/false. */
static const char *form_value(lua_State *L, int idx)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return lua_tostring(L, idx);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx) || lua_tonumber(L, idx) == (double)(lua_Integer)lua_tonumber(L, idx))
            return lua_pushfstring(L, "%I", (lua_Integer)lua_tonumber(L, idx));
        return lua_pushfstring(L, "%f", lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? "true" : "false";
    default:
        return NULL;
    }
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Adds one image part from the value at idx: a path, the bytes, or {data =|path =, filename =, mime =}.
 * Returns 0 with an error pushed when it cannot be read or is not a PNG, JPEG or WebP image. */
static int add_image_part(lua_State *L, ir_xfer *x, const char *name, int idx, int number, const char *field)
{
    const char *data = NULL, *path = NULL, *filename = NULL, *mime = NULL, *fmt = NULL, *sniffed;
    size_t n = 0;
    unsigned char head[32];
    char fname[64];
    curl_mimepart *part;
    int top = lua_gettop(L);
    idx = lua_absindex(L, idx);
    if (luaL_testudata(L, idx, IR_IMAGE_MT)) {
        ir_image *im = (ir_image *)lua_touserdata(L, idx);
        data = (const char *)im->p;
        n = im->n;
        if (!data) {
            ir_push_validation(L, field, "%s is an Image that was released", field);
            return 0;
        }
    } else if (lua_type(L, idx) == LUA_TSTRING) {
        data = lua_tolstring(L, idx, &n);
        if (!ir_sniff((const unsigned char *)data, n, NULL)) {
            if (n < 4096 && memchr(data, '\0', n) == NULL) { path = data; data = NULL; }
        }
    } else if (lua_istable(L, idx)) {
        if (lua_getfield(L, idx, "data") == LUA_TSTRING) data = lua_tolstring(L, -1, &n);
        if (lua_getfield(L, idx, "path") == LUA_TSTRING) path = lua_tostring(L, -1);
        if (lua_getfield(L, idx, "filename") == LUA_TSTRING) filename = lua_tostring(L, -1);
        if (lua_getfield(L, idx, "mime") == LUA_TSTRING) mime = lua_tostring(L, -1);
        if (!data && !path) {
            ir_push_validation(L, field, "%s must give data (the bytes) or path", field);
            return 0;
        }
    } else {
        ir_push_validation(L, field, "%s must be a path, the image bytes, an Image, or {data =, filename =, mime =}", field);
        return 0;
    }
    if (path && !data) {
        FILE *f = fopen(path, "rb");
        size_t got;
        if (!f) {
            ir_push_error(L, "validation", "cannot read %s file %s: %s", field, path, strerror(errno));
            ir_setfield_str(L, "field", field);
            return 0;
        }
        got = fread(head, 1, sizeof head, f);
        fclose(f);
        sniffed = ir_sniff(head, got, &fmt);
    } else {
        sniffed = ir_sniff((const unsigned char *)data, n, &fmt);
    }
    if (!sniffed || strcmp(fmt, "gif") == 0) {
        ir_push_error(L, "validation", "%s is not a PNG, JPEG or WebP image (checked by its first bytes)%s%s", field,
                      path ? ": " : "", path ? path : "");
        ir_setfield_str(L, "field", field);
        return 0;
    }
    part = curl_mime_addpart(x->mime);
    if (!part) goto oom;
    curl_mime_name(part, name);
    if (data) {
        if (curl_mime_data(part, data, n) != CURLE_OK) goto oom;
    } else if (curl_mime_filedata(part, path) != CURLE_OK) {
        goto oom;
    }
    if (!filename) {
        if (path) filename = base_name(path);
        else {
            if (number) snprintf(fname, sizeof fname, "image_%d.%s", number, strcmp(fmt, "jpeg") ? fmt : "jpg");
            else snprintf(fname, sizeof fname, "%s.%s", name[0] == 'm' ? "mask" : "image", strcmp(fmt, "jpeg") ? fmt : "jpg");
            filename = fname;
        }
    }
    curl_mime_filename(part, filename);
    curl_mime_type(part, mime ? mime : sniffed);
    lua_settop(L, top);
    return 1;
oom:
    lua_settop(L, top);
    ir_push_validation(L, field, "out of memory building %s", field);
    return 0;
}

static int add_field_part(ir_xfer *x, const char *name, const char *value)
{
    curl_mimepart *part = curl_mime_addpart(x->mime);
    if (!part) return -1;
    curl_mime_name(part, name);
    return curl_mime_data(part, value, CURL_ZERO_TERMINATED) == CURLE_OK ? 0 : -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int build_edit(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts)
{
    const char *keys[64];
    int nkeys = 0, i, body, img;
    if (!ir_check_prompt(L, params)) return 0;
    ir_shallow_copy(L, params);
    body = lua_gettop(L);
    if (!ir_ensure_model(L, body, route, xi)) return 0;
    if (!ir_xfer_setup_api(L, x, route, opts, "/images/edits", 0)) return 0;
    x->mime = curl_mime_init(x->easy);
    if (!x->mime) { ir_push_validation(L, "params", "out of memory%s", ""); return 0; }

    /* fields, model first then by name, so the body is deterministic */
    lua_pushnil(L);
    while (lua_next(L, body)) {
        const char *k;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            ir_push_validation(L, "params", "params keys must be field names (strings)%s", "");
            return 0;
        }
        k = lua_tostring(L, -1);
        if (strcmp(k, "image") == 0 || strcmp(k, "mask") == 0 || strcmp(k, "model") == 0) continue;
        if (nkeys == (int)(sizeof keys / sizeof keys[0])) {
            ir_push_validation(L, "params", "too many fields%s", "");
            return 0;
        }
        keys[nkeys++] = k; /* the strings stay alive: they are keys of the body table */
    }
    qsort(keys, (size_t)nkeys, sizeof keys[0], cmp_str);
    lua_getfield(L, body, "model");
    if (add_field_part(x, "model", lua_tostring(L, -1))) goto oom;
    lua_pop(L, 1);
    for (i = 0; i < nkeys; i++) {
        const char *v;
        int top = lua_gettop(L);
        lua_getfield(L, body, keys[i]);
        v = form_value(L, -1);
        if (!v) {
            ir_push_validation(L, keys[i], "params.%s must be a string, number or boolean in a multipart edit", keys[i]);
            return 0;
        }
        if (add_field_part(x, keys[i], v)) goto oom;
        lua_settop(L, top);
    }

    /* images: one is the part "image", several are repeated "image[]" parts */
    lua_getfield(L, body, "image");
    img = lua_gettop(L);
    if (lua_istable(L, img) && lua_getfield(L, img, "data") == LUA_TNIL &&
        lua_getfield(L, img, "path") == LUA_TNIL) {
        int count = (int)lua_rawlen(L, img);
        lua_settop(L, img);
        if (count == 0) {
            ir_push_validation(L, "image", "params.image is an empty list%s", "");
            return 0;
        }
        if (count > MAX_EDIT_IMAGES) {
            ir_push_error(L, "validation", "params.image has %d images; the Images API takes at most %d", count,
                          MAX_EDIT_IMAGES);
            ir_setfield_str(L, "field", "image");
            return 0;
        }
        for (i = 1; i <= count; i++) {
            char field[32];
            lua_rawgeti(L, img, i);
            snprintf(field, sizeof field, "image[%d]", i);
            if (!add_image_part(L, x, count == 1 ? "image" : "image[]", -1, count == 1 ? 0 : i, field)) return 0;
            lua_pop(L, 1);
        }
    } else {
        lua_settop(L, img);
        if (lua_isnil(L, img)) {
            ir_push_validation(L, "image", "params.image is required for an edit%s", "");
            return 0;
        }
        if (!add_image_part(L, x, "image", img, 0, "image")) return 0;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, body, "mask") != LUA_TNIL) {
        if (!add_image_part(L, x, "mask", -1, 0, "mask")) return 0;
    }
    lua_pop(L, 1);
    curl_easy_setopt(x->easy, CURLOPT_MIMEPOST, x->mime);
    lua_pop(L, 1); /* body */
    return 1;
oom:
    ir_push_validation(L, "params", "out of memory%s", "");
    return 0;
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
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
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

/* generate and edit follow the route's shape: images -> Images API, chat -> Chat Completions,
 * responses -> Responses API with the image_generation tool forced. */
static int dispatch(lua_State *L, int edit, int blocking)
{
    const char *shape;
    const ir_ops *ops;
    ir_builder build;
    ir_check_route(L, 1);
    ir_route_get(L, 1, "shape");
    shape = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (strcmp(shape, "chat") == 0) {
        ops = &IR_CHAT_OPS;
        build = edit ? ir_build_chat_edit : ir_build_chat_generate;
    } else if (strcmp(shape, "responses") == 0) {
        /* the Responses body is built by the Lua layer (imageroute.generate / edit) */
        return luaL_error(L, "core.%s on a responses route: build the body with imageroute (lua/imageroute/shapes/"
                          "responses.lua) and send it with core.start_respond", edit ? "edit" : "generate");
    } else {
        ops = edit ? &EDIT_OPS : &GENERATE_OPS;
        build = edit ? build_edit : build_generate;
    }
    return blocking ? ir_run(L, ops, build) : ir_start(L, ops, build);
}

/* core.generate(route, params [, opts]) -> result | nil, err (blocking; see lua/imageroute/init.lua) */
static int l_generate(lua_State *L) { return dispatch(L, 0, 1); }
/* core.edit(route, params [, opts]) -> result | nil, err */
static int l_edit(lua_State *L) { return dispatch(L, 1, 1); }
/* core.start_generate / core.start_edit (route, params [, opts]) -> Transfer | nil, err */
static int l_start_generate(lua_State *L) { return dispatch(L, 0, 0); }
static int l_start_edit(lua_State *L) { return dispatch(L, 1, 0); }

void ir_api_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"generate", l_generate},
        {"edit", l_edit},
        {"start_generate", l_start_generate},
        {"start_edit", l_start_edit},
        {NULL, NULL}
    };
    luaL_setfuncs(L, fns, 0);
}
