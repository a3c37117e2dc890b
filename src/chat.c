/*
 * chat.c - the chat shape: provider gateways that answer Chat Completions with a Markdown image link.
 *
 *   POST {base_url}/chat/completions
 *   {"model": ..., "messages": [{"role": "user", "content": <prompt> | [text part, image_url parts...]}]}
 *
 * The first choice's message.content is parsed for Markdown image links (imageroute.markdown,
 * called through the Lua state after libcurl has returned) and each linked image is downloaded on
 * the same loop; data: URLs in links are decoded in place. This is how some OpenAI-compatible
 * gateways answer (a provider's own contract, not OpenAI's API: the route's `accepted` records it).
 * A content given as a list of parts contributes its text parts as the text and its image_url
 * parts as image links, in document order with the Markdown links; every value of the reply is
 * type-checked, and no luaL_Buffer is ever open while other values are pushed or popped.
 */
#include <string.h>
#include "xfer.h"

/* Fields of the Images API with no place in a chat request: not sent, listed in result.unsent. */
static const char *const CHAT_KEYS[] = {"prompt", "model", "image", "chat", NULL};

static int in_list(const char *s, const char *const *l)
{
    for (; *l; l++)
        if (strcmp(s, *l) == 0) return 1;
    return 0;
}

/* Pushes an image_url content part for the image at idx: an http(s) or data: URL string is sent
 * as given, anything else (bytes, a path, an Image) becomes a data URL. */
static int image_part(lua_State *L, int idx, const char *field)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0 || strncmp(s, "data:image/", 11) == 0)
            lua_pushvalue(L, idx);
        else if (!ir_push_data_url(L, idx, field)) return 0;
    } else if (!ir_push_data_url(L, idx, field)) {
        return 0;
    }
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "image_url");
    lua_setfield(L, -2, "type");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "url");
    lua_setfield(L, -2, "image_url");
    lua_remove(L, -2);
    return 1;
}

static int build_chat(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts, int edit)
{
    int body, msg, content, unsent, n = 0;
    if (!ir_check_prompt(L, params)) return 0;
    lua_newtable(L);
    body = lua_gettop(L);
    /* params.chat: fields sent as they are at the top of the chat body (temperature, ...) */
    if (lua_getfield(L, params, "chat") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, body);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, params, "model");
    lua_setfield(L, body, "model");
    if (!ir_ensure_model(L, body, route, xi)) return 0;
    if (lua_getfield(L, params, "mask") != LUA_TNIL) {
        ir_push_validation(L, "mask", "the chat shape has no mask: use an images or responses route%s", "");
        return 0;
    }
    lua_pop(L, 1);

    lua_getfield(L, params, "prompt");
    if (!edit) {
        content = lua_gettop(L); /* text only: the prompt as the message content */
    } else {
        int img;
        lua_createtable(L, 4, 0);
        content = lua_gettop(L);
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "text");
        lua_setfield(L, -2, "type");
        lua_pushvalue(L, content - 1);
        lua_setfield(L, -2, "text");
        lua_rawseti(L, content, ++n);
        lua_getfield(L, params, "image");
        img = lua_gettop(L);
        if (lua_isnil(L, img)) {
            ir_push_validation(L, "image", "params.image is required for an edit%s", "");
            return 0;
        }
        if (lua_istable(L, img) && lua_rawlen(L, img) > 0) {
            int i, m = (int)lua_rawlen(L, img);
            for (i = 1; i <= m; i++) {
                char field[32];
                snprintf(field, sizeof field, "image[%d]", i);
                lua_rawgeti(L, img, i);
                if (!image_part(L, -1, field)) return 0;
                lua_rawseti(L, content, ++n);
                lua_pop(L, 1);
            }
        } else {
            if (!image_part(L, img, "image")) return 0;
            lua_rawseti(L, content, ++n);
        }
        lua_settop(L, content);
    }
    lua_createtable(L, 1, 0);
    lua_createtable(L, 0, 2);
    msg = lua_gettop(L);
    lua_pushliteral(L, "user");
    lua_setfield(L, msg, "role");
    lua_pushvalue(L, content);
    lua_setfield(L, msg, "content");
    lua_rawseti(L, msg - 1, 1);
    lua_setfield(L, body, "messages");
    lua_settop(L, body);

    /* what the chat shape cannot carry */
    lua_newtable(L);
    unsent = lua_gettop(L);
    n = 0;
    lua_pushnil(L);
    while (lua_next(L, params)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING && !in_list(lua_tostring(L, -1), CHAT_KEYS) &&
            !(edit == 0 && strcmp(lua_tostring(L, -1), "mask") == 0)) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, unsent, ++n);
        }
    }
    ir_xfer_uv(L, xi);
    lua_pushvalue(L, unsent);
    lua_setfield(L, -2, "unsent");
    lua_settop(L, body);

    if (!ir_xfer_setup_api(L, x, route, opts, "/chat/completions", 1)) return 0;
    if (!ir_set_json_body(L, x, body)) return 0;
    lua_pop(L, 1);
    return 1;
}

int ir_build_chat_generate(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts)
{
    return build_chat(L, x, xi, route, params, opts, 0);
}

int ir_build_chat_edit(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts)
{
    return build_chat(L, x, xi, route, params, opts, 1);
}

/* Fails the transfer with a decode/api error quoting an excerpt of the content at idx; the whole
 * text is in err.content. */
static void fail_content(lua_State *L, int xi, ir_xfer *x, const char *kind, const char *code, const char *what,
                         int idx)
{
    size_t n = 0;
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : "";
    ir_push_excerpt(L, s, n, 200);
    ir_push_error(L, kind, "%s: \"%s\"", what, lua_tostring(L, -1));
    lua_remove(L, -2);
    ir_setfield_str(L, "code", code);
    lua_pushinteger(L, x->req_status);
    lua_setfield(L, -2, "status");
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
        lua_setfield(L, -2, "content");
    }
    ir_xfer_fail(L, xi, x);
}

/* The Markdown stand-in of content part K (an image_url part) in the text given to the Markdown
 * parser, so the part's image keeps its place among the Markdown links. */
#define PART_MARK "imageroute-part:"

/* Joins the strings of the list at `list` into one string, pushed. Nothing else is pushed or
 * popped while the buffer is open. */
static void join_list(lua_State *L, int list)
{
    luaL_Buffer b;
    lua_Integer k, m = (lua_Integer)lua_rawlen(L, list);
    luaL_buffinit(L, &b);
    for (k = 1; k <= m; k++) {
        lua_rawgeti(L, list, k);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
}

static void append(lua_State *L, int list)
{
    lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

/* The URL of an image_url content part (table at idx): part.image_url as a string, or
 * part.image_url.url. Pushes it and returns 1, or pushes nothing and returns 0. */
static int part_url(lua_State *L, int idx)
{
    int t = lua_getfield(L, idx, "image_url");
    if (t == LUA_TSTRING) return 1;
    if (t == LUA_TTABLE && lua_getfield(L, -1, "url") == LUA_TSTRING) {
        lua_remove(L, -2);
        return 1;
    }
    lua_pop(L, t == LUA_TTABLE ? 2 : 1);
    return 0;
}

/* Walks message.content given as a list of parts (table at `parts`): text parts ({type = "text",
 * text =} or a bare string) are the text, image_url parts ({type = "image_url", image_url = {url =}}
 * or image_url = "<url>") are image links, anything else is skipped. Pushes the text (each text
 * part followed by "\n") and the text for the Markdown parser (the same, with a Markdown image
 * standing in for each image_url part), and appends the parts' URLs to the list at `part_urls`. */
static void walk_parts(lua_State *L, int parts, int part_urls)
{
    int plain, md;
    lua_Integer k, m = (lua_Integer)lua_rawlen(L, parts);
    lua_newtable(L);
    plain = lua_gettop(L);
    lua_newtable(L);
    md = lua_gettop(L);
    for (k = 1; k <= m; k++) {
        int t = lua_rawgeti(L, parts, k), part = lua_gettop(L), text = 0;
        if (t == LUA_TSTRING) {
            text = part;
        } else if (t == LUA_TTABLE) {
            int pt = lua_getfield(L, part, "type");
            const char *type = pt == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (pt == LUA_TSTRING && strcmp(type, "image_url") == 0) {
                if (part_url(L, part)) {
                    append(L, part_urls);
                    lua_pushfstring(L, "\n\n![](" PART_MARK "%I)\n\n", (lua_Integer)lua_rawlen(L, part_urls));
                    append(L, md);
                }
            } else if ((pt == LUA_TNIL || (pt == LUA_TSTRING && strcmp(type, "text") == 0)) &&
                       lua_getfield(L, part, "text") == LUA_TSTRING) {
                text = lua_gettop(L);
            } else if (pt == LUA_TNIL && part_url(L, part)) { /* {image_url = ...} without a type */
                append(L, part_urls);
                lua_pushfstring(L, "\n\n![](" PART_MARK "%I)\n\n", (lua_Integer)lua_rawlen(L, part_urls));
                append(L, md);
            }
        }
        if (text) {
            lua_pushvalue(L, text);
            append(L, plain);
            lua_pushliteral(L, "\n");
            append(L, plain);
            lua_pushvalue(L, text);
            append(L, md);
            lua_pushliteral(L, "\n");
            append(L, md);
        }
        lua_settop(L, md);
    }
    join_list(L, plain);
    join_list(L, md);
    lua_replace(L, md);
    lua_replace(L, plain);
}

/* Merges the Markdown links (list at links, from the text with stand-ins) and the image_url parts
 * (list of URLs at part_urls) into one list of {url =, alt =, title =} or {url =, type =
 * "image_url"} in document order, pushed. A stand-in the parser did not see as an image (inside a
 * code block the text opened) still counts: its part goes at the end. */
static void merge_links(lua_State *L, int links, int part_urls)
{
    int out, used;
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, links), np = (lua_Integer)lua_rawlen(L, part_urls);
    lua_createtable(L, (int)(n + np < 64 ? n + np : 64), 0);
    out = lua_gettop(L);
    lua_newtable(L);
    used = lua_gettop(L);
    for (i = 1; i <= n; i++) {
        size_t len = 0;
        const char *url = NULL;
        if (lua_rawgeti(L, links, i) == LUA_TTABLE && lua_getfield(L, -1, "url") == LUA_TSTRING)
            url = lua_tolstring(L, -1, &len);
        if (url && len > sizeof PART_MARK - 1 && memcmp(url, PART_MARK, sizeof PART_MARK - 1) == 0) {
            lua_Integer k = 0;
            size_t j;
            for (j = sizeof PART_MARK - 1; j < len && url[j] >= '0' && url[j] <= '9' && k <= np; j++)
                k = k * 10 + (url[j] - '0');
            if (j == len && k >= 1 && k <= np && lua_rawgeti(L, used, k) == LUA_TNIL) {
                lua_pushboolean(L, 1);
                lua_rawseti(L, used, k);
                lua_createtable(L, 0, 2);
                lua_rawgeti(L, part_urls, k);
                lua_setfield(L, -2, "url");
                lua_pushliteral(L, "image_url");
                lua_setfield(L, -2, "type");
                append(L, out);
            }
        } else if (url) {
            lua_pushvalue(L, used + 1);
            append(L, out);
        }
        lua_settop(L, used);
    }
    for (i = 1; i <= np; i++) {
        if (lua_rawgeti(L, used, i) == LUA_TNIL) {
            lua_createtable(L, 0, 2);
            lua_rawgeti(L, part_urls, i);
            lua_setfield(L, -2, "url");
            lua_pushliteral(L, "image_url");
            lua_setfield(L, -2, "type");
            append(L, out);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, out);
}

/* Pushes the text (or nil) of the first choice of a chat completion (json at idx) and the text
 * for the Markdown parser, appending image_url parts to part_urls. Returns 0 (pushing nothing)
 * when there is no choices[1].message; 2 when the message is a refusal (the refusal text pushed
 * twice). Every value walked is type-checked: content may be anything. */
static int message_text(lua_State *L, int json, int part_urls)
{
    int msg, t, top = lua_gettop(L);
    if (lua_getfield(L, json, "choices") != LUA_TTABLE || lua_rawgeti(L, -1, 1) != LUA_TTABLE ||
        lua_getfield(L, -1, "message") != LUA_TTABLE) {
        lua_settop(L, top);
        return 0;
    }
    msg = lua_gettop(L);
    if (lua_getfield(L, msg, "refusal") == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
        lua_pushvalue(L, -1);
        lua_replace(L, top + 1);
        lua_replace(L, top + 2);
        lua_settop(L, top + 2);
        return 2;
    }
    lua_pop(L, 1);
    t = lua_getfield(L, msg, "content");
    if (t == LUA_TSTRING) {
        lua_pushvalue(L, -1);
    } else if (t == LUA_TTABLE) {
        walk_parts(L, lua_gettop(L), part_urls);
    } else {
        lua_pushliteral(L, "");
        lua_pushliteral(L, "");
    }
    lua_replace(L, top + 2);
    lua_replace(L, top + 1);
    lua_settop(L, top + 2);
    return 1;
}

static void chat_parse(lua_State *L, int xi, ir_xfer *x)
{
    int uv, json, content, md, part_urls, links, urls, images, i, n;
    if (!ir_decode_body(L, xi, x)) return;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_getfield(L, uv, "json");
    json = lua_gettop(L);
    lua_newtable(L);
    part_urls = lua_gettop(L);
    if (x->mode == M_SSE) { /* streamed chunks: join their delta.content (strings, see sse.c) */
        lua_getfield(L, uv, "stream_content");
        if (lua_istable(L, -1)) join_list(L, lua_gettop(L));
        else lua_pushliteral(L, "");
        lua_remove(L, -2);
        lua_pushvalue(L, -1);
    } else {
        int r = message_text(L, json, part_urls);
        if (r == 0) {
            lua_settop(L, uv - 1);
            ir_fail_decode(L, xi, x, "the chat completion has no choices[1].message");
            return;
        }
        if (r == 2) {
            lua_replace(L, uv);
            lua_settop(L, uv);
            fail_content(L, xi, x, "api", "refusal", "the model refused", uv);
            lua_settop(L, uv - 1);
            return;
        }
    }
    content = lua_gettop(L) - 1;
    md = content + 1;
    lua_pushvalue(L, content);
    lua_setfield(L, uv, "content");
    if (lua_rawlen(L, content) == 0 && lua_rawlen(L, part_urls) == 0) {
        lua_pushvalue(L, content);
        lua_replace(L, uv);
        lua_settop(L, uv);
        fail_content(L, xi, x, "decode", "empty_content", "the chat completion's content is empty", uv);
        lua_settop(L, uv - 1);
        return;
    }
    /* links = require("imageroute.markdown").images(md), in protected mode */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "imageroute.markdown");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1) || lua_getfield(L, -1, "images") != LUA_TFUNCTION) {
        lua_settop(L, uv - 1);
        ir_push_error(L, "decode", "imageroute.markdown is not available to parse the chat reply");
        ir_xfer_fail(L, xi, x);
        return;
    }
    lua_pushvalue(L, md);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        lua_settop(L, uv - 1);
        ir_push_error(L, "decode", "parsing the chat reply's Markdown failed");
        ir_xfer_fail(L, xi, x);
        return;
    }
    merge_links(L, lua_gettop(L), part_urls);
    links = lua_gettop(L);
    lua_pushvalue(L, links);
    lua_setfield(L, uv, "links");
    n = (int)lua_rawlen(L, links);
    if (n == 0) {
        lua_pushvalue(L, content);
        lua_replace(L, uv);
        lua_settop(L, uv);
        fail_content(L, xi, x, "decode", "no_image_link", "the chat reply holds no Markdown image link", uv);
        lua_settop(L, uv - 1);
        return;
    }
    lua_getfield(L, uv, "images");
    images = lua_gettop(L);
    lua_newtable(L);
    urls = lua_gettop(L);
    lua_newtable(L); /* url_index */
    for (i = 1; i <= n; i++) {
        const char *url;
        size_t len;
        lua_rawgeti(L, links, i);
        lua_getfield(L, -1, "url");
        url = lua_tolstring(L, -1, &len);
        if (url && len > 5 && memcmp(url, "data:", 5) == 0) {
            char field[32];
            snprintf(field, sizeof field, "link %d", i);
            if (!ir_image_from_data_url(L, url, len, field)) {
                lua_replace(L, uv);
                lua_settop(L, uv);
                ir_xfer_fail(L, xi, x);
                return;
            }
            lua_pushinteger(L, i);
            lua_setfield(L, -2, "index");
            lua_getfield(L, -3, "alt");
            lua_setfield(L, -2, "alt");
            lua_rawseti(L, images, (lua_Integer)lua_rawlen(L, images) + 1);
            lua_pop(L, 2);
            continue;
        }
        lua_rawseti(L, urls, (lua_Integer)lua_rawlen(L, urls) + 1);
        lua_pushinteger(L, i);
        lua_rawseti(L, urls + 1, (lua_Integer)lua_rawlen(L, urls + 1) + 1);
        lua_pop(L, 1);
    }
    lua_setfield(L, uv, "url_index");
    lua_setfield(L, uv, "urls");
    lua_settop(L, uv - 1);
    x->url_i = 0;
    ir_fetch_next(L, xi, x);
}

static void chat_complete(lua_State *L, int xi, ir_xfer *x)
{
    int uv, json, res;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_getfield(L, uv, "json");
    json = lua_gettop(L);
    lua_createtable(L, 0, 16);
    res = lua_gettop(L);
    lua_getfield(L, json, "id");
    lua_setfield(L, res, "id");
    lua_getfield(L, json, "created");
    lua_setfield(L, res, "created");
    lua_getfield(L, json, "usage");
    lua_setfield(L, res, "usage");
    lua_getfield(L, uv, "model");
    lua_setfield(L, res, "model");
    lua_getfield(L, json, "model");
    lua_setfield(L, res, "served_model");
    lua_getfield(L, uv, "content");
    lua_setfield(L, res, "content");
    lua_getfield(L, uv, "links");
    lua_setfield(L, res, "links");
    lua_getfield(L, uv, "unsent");
    lua_setfield(L, res, "unsent");
    lua_getfield(L, uv, "images");
    ir_order_images(L, -1); /* document order: data: links were decoded before the downloads */
    lua_setfield(L, res, "images");
    lua_pushliteral(L, "chat");
    lua_setfield(L, res, "shape");
    lua_replace(L, uv);
    lua_settop(L, uv);
    ir_xfer_succeed(L, xi, x);
}

const ir_ops IR_CHAT_OPS = {"chat", chat_parse, chat_complete};
