/*
 * respond.c - the Responses API with the image_generation tool (OpenAI API reference, Responses >
 * Create a response and Streaming events, https://platform.openai.com/docs/api-reference/responses,
 * read 2026-12-01; the image generation tool guide,
 * https://platform.openai.com/docs/guides/tools-image-generation).
 *
 *   POST {base_url}/responses
 *   {"model": <text model>, "input": ..., "tools": [{"type": "image_generation", "model": <image model>, ...}]}
 *
 * The route's model is the top-level TEXT model (e.g. gpt-5); the image model and its options
 * belong in the tool object. An image model on top is refused before sending.
 */
#include <string.h>
#include "xfer.h"

/* Fields of the image_generation tool that may be given flat in params (the ImageGenTool schema of
 * https://github.com/openai/openai-openapi at f85dbe2, 2026-08-21). */
static const char *const TOOL_FIELDS[] = {
    "size", "quality", "background", "output_format", "output_compression", "moderation", "partial_images",
    "input_fidelity", "input_image_mask", "action", NULL
};

/* Turns one content item (at idx) into a Responses input content part, pushed on the stack:
 * a string is input_text, an Image (or {type = "input_image", image = ...}) becomes input_image
 * with a data URL built from its bytes. */
static int content_part(lua_State *L, int idx, int n)
{
    char field[40];
    idx = lua_absindex(L, idx);
    snprintf(field, sizeof field, "input[%d]", n);
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "input_text");
        lua_setfield(L, -2, "type");
        lua_pushvalue(L, idx);
        lua_setfield(L, -2, "text");
        return 1;
    }
    if (luaL_testudata(L, idx, IR_IMAGE_MT)) {
        if (!ir_push_data_url(L, idx, field)) return 0;
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "input_image");
        lua_setfield(L, -2, "type");
        lua_insert(L, -2);
        lua_setfield(L, -2, "image_url");
        return 1;
    }
    if (!lua_istable(L, idx)) {
        ir_push_validation(L, "input", "%s must be a string, an Image or a content table", field);
        return 0;
    }
    ir_shallow_copy(L, idx);
    if (lua_getfield(L, -1, "image") != LUA_TNIL) {
        if (!ir_push_data_url(L, -1, field)) return 0;
        lua_setfield(L, -3, "image_url");
        lua_pushnil(L);
        lua_setfield(L, -3, "image");
        if (lua_getfield(L, -2, "type") == LUA_TNIL) {
            lua_pushliteral(L, "input_image");
            lua_setfield(L, -4, "type");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 1;
}

/* params.input: a string as it is; a list of content items becomes one user message; a list of
 * messages ({role =, content =}) is sent with each message's content items converted. */
static int build_input(lua_State *L, int body)
{
    int in, out, i, n, messages;
    int t = lua_getfield(L, body, "input");
    if (t == LUA_TSTRING) {
        size_t len;
        lua_tolstring(L, -1, &len);
        lua_pop(L, 1);
        if (len == 0) goto empty;
        return 1;
    }
    if (t != LUA_TTABLE || lua_rawlen(L, -1) == 0) {
        lua_pop(L, 1);
        goto empty;
    }
    in = lua_gettop(L);
    lua_rawgeti(L, in, 1);
    messages = lua_istable(L, -1) && (lua_getfield(L, -1, "role"), !lua_isnil(L, -1));
    lua_settop(L, in);
    n = (int)lua_rawlen(L, in);
    lua_createtable(L, n, 0);
    out = lua_gettop(L);
    if (!messages) {
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, in, i);
            if (!content_part(L, -1, i)) return 0;
            lua_rawseti(L, out, i);
            lua_pop(L, 1);
        }
        lua_createtable(L, 1, 0);
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "user");
        lua_setfield(L, -2, "role");
        lua_pushvalue(L, out);
        lua_setfield(L, -2, "content");
        lua_rawseti(L, -2, 1);
    } else {
        for (i = 1; i <= n; i++) {
            int msg, content;
            lua_rawgeti(L, in, i);
            if (!lua_istable(L, -1)) {
                ir_push_validation(L, "input", "input messages must be tables%s", "");
                return 0;
            }
            ir_shallow_copy(L, -1);
            msg = lua_gettop(L);
            if (lua_getfield(L, msg, "content") == LUA_TTABLE) {
                int j, m = (int)lua_rawlen(L, -1);
                content = lua_gettop(L);
                lua_createtable(L, m, 0);
                for (j = 1; j <= m; j++) {
                    lua_rawgeti(L, content, j);
                    if (!content_part(L, -1, j)) return 0;
                    lua_rawseti(L, -3, j);
                    lua_pop(L, 1);
                }
                lua_setfield(L, msg, "content");
            }
            lua_settop(L, msg);
            lua_rawseti(L, out, i);
            lua_pop(L, 1);
        }
        lua_pushvalue(L, out);
    }
    lua_setfield(L, body, "input");
    lua_settop(L, in - 1);
    return 1;
empty:
    ir_push_validation(L, "input", "params.input must be a non-empty string or list%s", "");
    return 0;
}

/* Moves the image options into the tool and adds it, unless params.tool is false or params.tools
 * is given. */
static int build_tool(lua_State *L, int body, int route)
{
    int tool, i, disabled;
    lua_getfield(L, body, "tool");
    disabled = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
    if (lua_istable(L, -1)) ir_shallow_copy(L, -1);
    else lua_newtable(L);
    tool = lua_gettop(L);
    for (i = 0; TOOL_FIELDS[i]; i++) {
        if (lua_getfield(L, body, TOOL_FIELDS[i]) != LUA_TNIL) {
            if (lua_getfield(L, tool, TOOL_FIELDS[i]) == LUA_TNIL) {
                lua_pop(L, 1);
                lua_setfield(L, tool, TOOL_FIELDS[i]);
            } else {
                lua_pop(L, 2);
            }
            lua_pushnil(L);
            lua_setfield(L, body, TOOL_FIELDS[i]);
        } else {
            lua_pop(L, 1);
        }
    }
    /* the mask, given as an image (bytes, a path, an Image, {data =|path =}), goes as
     * {image_url = data URL}; {image_url =} or {file_id =} tables are sent as given */
    lua_getfield(L, tool, "input_image_mask");
    if (!lua_isnil(L, -1)) {
        int as_is = 0;
        if (lua_istable(L, -1)) {
            as_is = lua_getfield(L, -1, "image_url") != LUA_TNIL || lua_getfield(L, -2, "file_id") != LUA_TNIL;
            lua_settop(L, tool + 1);
        }
        if (!as_is) {
            if (!ir_push_data_url(L, tool + 1, "input_image_mask")) return 0;
            lua_createtable(L, 0, 1);
            lua_insert(L, -2);
            lua_setfield(L, -2, "image_url");
            lua_setfield(L, tool, "input_image_mask");
        }
    }
    lua_settop(L, tool);
    /* image model: params.image_model, else tool.model, else the route's image_model */
    if (lua_getfield(L, body, "image_model") != LUA_TNIL) {
        if (!lua_isstring(L, -1)) {
            ir_push_validation(L, "image_model", "params.image_model must be a string%s", "");
            return 0;
        }
        lua_setfield(L, tool, "model");
        lua_pushnil(L);
        lua_setfield(L, body, "image_model");
    } else {
        lua_pop(L, 1);
        if (lua_getfield(L, tool, "model") == LUA_TNIL) {
            lua_pop(L, 1);
            if (ir_route_get(L, route, "image_model") == LUA_TSTRING) lua_setfield(L, tool, "model");
            else lua_pop(L, 1);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pushnil(L);
    lua_setfield(L, body, "tool");
    if (!disabled && lua_getfield(L, body, "tools") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushliteral(L, "image_generation");
        lua_setfield(L, tool, "type");
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, tool);
        lua_rawseti(L, -2, 1);
        lua_setfield(L, body, "tools");
    } else if (!disabled) {
        lua_pop(L, 1);
    }
    /* tool_choice = "image_generation" is shorthand for {type = "image_generation"} */
    if (lua_getfield(L, body, "tool_choice") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "image_generation") == 0) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "image_generation");
        lua_setfield(L, -2, "type");
        lua_setfield(L, body, "tool_choice");
    }
    lua_settop(L, tool - 1);
    return 1;
}

/* The body is in the table at `body` (a copy of params): finish it and set up the transfer. */
static int finish_respond(lua_State *L, ir_xfer *x, int xi, int route, int opts, int body)
{
    const char *model;
    if (!ir_ensure_model(L, body, route, xi)) return 0;
    lua_getfield(L, body, "model");
    model = lua_tostring(L, -1);
    if (ir_is_image_model(model)) {
        ir_push_error(L, "validation",
                      "'%s' is an image model: the Responses API's top-level model is a text model (e.g. gpt-5); "
                      "put the image model in the tool (params.image_model or the route's image_model)", model);
        ir_setfield_str(L, "field", "model");
        ir_setfield_str(L, "rule", "image_model_on_top");
        return 0;
    }
    lua_pop(L, 1);
    if (!build_input(L, body) || !build_tool(L, body, route)) return 0;
    if (lua_getfield(L, body, "tools") == LUA_TTABLE && lua_rawlen(L, -1) > 0) {
        lua_rawgeti(L, -1, 1);
        lua_getfield(L, -1, "model");
        ir_xfer_uv(L, xi);
        lua_insert(L, -2);
        lua_setfield(L, -2, "tool_model");
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    if (!ir_xfer_setup_api(L, x, route, opts, "/responses", 1)) return 0;
    return ir_set_json_body(L, x, body);
}

/* core.respond(route, params): params is a Responses body (input, previous_response_id,
 * tool_choice, instructions, ...) plus the tool options, flat or in params.tool. */
static int build_respond(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts)
{
    ir_shallow_copy(L, params);
    return finish_respond(L, x, xi, route, opts, lua_gettop(L));
}

/* generate and edit must end with an image: a reply without one is a decode error (respond may
 * legitimately end with text or tool calls only). */
static void need_image(lua_State *L, int xi)
{
    ir_xfer_uv(L, xi);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "need_image");
    lua_pop(L, 1);
}

/* generate on a responses route: the prompt is the input and the tool is forced. */
int ir_build_respond_generate(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts)
{
    int body;
    if (!ir_check_prompt(L, params)) return 0;
    ir_shallow_copy(L, params);
    body = lua_gettop(L);
    lua_getfield(L, body, "prompt");
    lua_setfield(L, body, "input");
    lua_pushnil(L);
    lua_setfield(L, body, "prompt");
    if (lua_getfield(L, body, "tool_choice") == LUA_TNIL) {
        lua_pushliteral(L, "image_generation");
        lua_setfield(L, body, "tool_choice");
    }
    lua_pop(L, 1);
    need_image(L, xi);
    return finish_respond(L, x, xi, route, opts, body);
}

/* edit on a responses route: prompt and images as one user message, mask as input_image_mask. */
int ir_build_respond_edit(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts)
{
    int body, content, n = 0, i;
    if (!ir_check_prompt(L, params)) return 0;
    ir_shallow_copy(L, params);
    body = lua_gettop(L);
    lua_newtable(L);
    content = lua_gettop(L);
    lua_getfield(L, body, "prompt");
    lua_rawseti(L, content, ++n);
    lua_getfield(L, body, "image");
    if (lua_isnil(L, -1)) {
        ir_push_validation(L, "image", "params.image is required for an edit%s", "");
        return 0;
    }
    if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
        int img = lua_gettop(L), m = (int)lua_rawlen(L, img);
        for (i = 1; i <= m; i++) {
            lua_createtable(L, 0, 2);
            lua_rawgeti(L, img, i);
            lua_setfield(L, -2, "image");
            lua_rawseti(L, content, ++n);
        }
    } else {
        lua_createtable(L, 0, 2);
        lua_insert(L, -2);
        lua_setfield(L, -2, "image");
        lua_rawseti(L, content, ++n);
    }
    lua_settop(L, content);
    lua_setfield(L, body, "input");
    lua_pushnil(L);
    lua_setfield(L, body, "prompt");
    lua_pushnil(L);
    lua_setfield(L, body, "image");
    if (lua_getfield(L, body, "mask") != LUA_TNIL) {
        lua_setfield(L, body, "input_image_mask");
        lua_pushnil(L);
        lua_setfield(L, body, "mask");
    } else {
        lua_pop(L, 1);
    }
    if (lua_getfield(L, body, "tool_choice") == LUA_TNIL) {
        lua_pushliteral(L, "image_generation");
        lua_setfield(L, body, "tool_choice");
    }
    lua_pop(L, 1);
    need_image(L, xi);
    return finish_respond(L, x, xi, route, opts, body);
}

/* ------------------------------------------------------------------------------------------ */
/* the response                                                                                */

static void respond_parse(lua_State *L, int xi, ir_xfer *x)
{
    int uv, json, output, images, calls, failed = 0;
    lua_Integer i, n;
    if (!ir_decode_body(L, xi, x)) return;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_getfield(L, uv, "json");
    json = lua_gettop(L);
    if (lua_getfield(L, json, "id") == LUA_TSTRING) lua_setfield(L, uv, "response_id"); /* for errors too */
    else lua_pop(L, 1);
    lua_getfield(L, uv, "images");
    images = lua_gettop(L);
    lua_newtable(L);
    calls = lua_gettop(L);
    if (x->mode == M_SSE) {
        /* streamed: the images came with response.output_item.done (uv.stream_results), the items
         * are in uv.stream_items; the final response's copies of the images were skipped */
        int k, m;
        lua_getfield(L, uv, "stream_results");
        m = (int)lua_rawlen(L, -1);
        for (k = 1; k <= m; k++) {
            lua_rawgeti(L, -1, k);
            /* its place in the list: a stream may have sent other image events before */
            lua_pushinteger(L, (lua_Integer)lua_rawlen(L, images) + 1);
            lua_setfield(L, -2, "index");
            lua_rawseti(L, images, (lua_Integer)lua_rawlen(L, images) + 1);
        }
        lua_pop(L, 1);
        lua_getfield(L, uv, "stream_items");
    } else if (lua_getfield(L, json, "output") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    output = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, output);
    for (i = 1; i <= n; i++) {
        int item, is_call;
        lua_rawgeti(L, output, i);
        item = lua_gettop(L);
        if (!lua_istable(L, item)) { lua_pop(L, 1); continue; }
        is_call = lua_getfield(L, item, "type") == LUA_TSTRING &&
                  strcmp(lua_tostring(L, -1), "image_generation_call") == 0;
        lua_pop(L, 1);
        if (is_call) {
            int call;
            char field[48];
            lua_createtable(L, 0, 4);
            call = lua_gettop(L);
            lua_getfield(L, item, "id");
            lua_setfield(L, call, "id");
            lua_getfield(L, item, "status");
            lua_setfield(L, call, "status");
            lua_getfield(L, item, "result");
            snprintf(field, sizeof field, "output[%d].result", (int)i);
            if (x->mode == M_SSE && ir_is_placeholder(L, -1)) {
                lua_pop(L, 1); /* taken already, as it streamed */
            } else if (ir_is_placeholder(L, -1)) {
                if (!ir_take_image(L, &x->ex, lua_tostring(L, -1), field)) {
                    lua_replace(L, uv);
                    lua_settop(L, uv);
                    ir_xfer_fail(L, xi, x);
                    return;
                }
                {
                    static const char *const f[] = {"revised_prompt", "size", "quality", "background",
                                                     "output_format", "status", NULL};
                    int k;
                    for (k = 0; f[k]; k++) {
                        lua_getfield(L, item, f[k]);
                        lua_setfield(L, -2, f[k]);
                    }
                    lua_getfield(L, item, "id");
                    lua_setfield(L, -2, "call_id");
                    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, images) + 1);
                    lua_setfield(L, -2, "index");
                }
                lua_rawseti(L, images, (lua_Integer)lua_rawlen(L, images) + 1);
                lua_pop(L, 1);
            } else {
                lua_pop(L, 1);
                lua_getfield(L, item, "status");
                lua_pushfstring(L, "no image (status %s, result %s)",
                                lua_isstring(L, -1) ? lua_tostring(L, -1) : "missing", "null");
                lua_setfield(L, call, "error");
                lua_pop(L, 1);
                failed++;
            }
            lua_rawseti(L, calls, (lua_Integer)lua_rawlen(L, calls) + 1);
            lua_settop(L, item);
        }
        lua_pop(L, 1);
    }
    lua_settop(L, output);
    lua_pushvalue(L, calls);
    lua_setfield(L, uv, "image_calls");
    lua_pushinteger(L, failed);
    lua_setfield(L, uv, "failed_calls");
    lua_settop(L, uv - 1);
    x->url_i = 0;
    ir_fetch_next(L, xi, x); /* no URLs here: goes straight to complete */
}

/* Pushes the output_text parts of every message item, concatenated. */
static void push_output_text(lua_State *L, int json)
{
    luaL_Buffer b;
    lua_Integer i, n, j, m, count = 0, k;
    int output, pieces;
    lua_getfield(L, json, "output");
    output = lua_gettop(L);
    lua_newtable(L);
    pieces = lua_gettop(L);
    n = lua_istable(L, output) ? (lua_Integer)lua_rawlen(L, output) : 0;
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, output, i);
        if (lua_istable(L, -1) && lua_getfield(L, -1, "content") == LUA_TTABLE) {
            int content = lua_gettop(L);
            m = (lua_Integer)lua_rawlen(L, content);
            for (j = 1; j <= m; j++) {
                lua_rawgeti(L, content, j);
                if (lua_istable(L, -1) && lua_getfield(L, -1, "type") == LUA_TSTRING &&
                    strcmp(lua_tostring(L, -1), "output_text") == 0 && lua_getfield(L, -2, "text") == LUA_TSTRING) {
                    lua_rawseti(L, pieces, ++count);
                }
                lua_settop(L, content);
            }
        }
        lua_settop(L, pieces);
    }
    luaL_buffinit(L, &b);
    for (k = 1; k <= count; k++) {
        lua_rawgeti(L, pieces, k);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_replace(L, output);
    lua_settop(L, output);
}

static void respond_complete(lua_State *L, int xi, ir_xfer *x)
{
    static const char *const fields[] = {"id", "status", "usage", "error", "incomplete_details",
                                         "previous_response_id", "created_at", NULL};
    int uv, res, json;
    const char *status;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    lua_getfield(L, uv, "json");
    json = lua_gettop(L);
    lua_createtable(L, 0, 20);
    res = lua_gettop(L);
    ir_copy_fields(L, json, fields);
    lua_getfield(L, json, "model");
    lua_setfield(L, res, "model");
    if (x->mode == M_SSE) {
        lua_pushboolean(L, 1);
        lua_setfield(L, res, "stream");
        lua_pushinteger(L, x->partials_received);
        lua_setfield(L, res, "partial_images_received");
    }
    lua_getfield(L, uv, "tool_model");
    lua_setfield(L, res, "tool_model");
    push_output_text(L, json);
    lua_setfield(L, res, "output_text");
    lua_getfield(L, uv, "images");
    lua_setfield(L, res, "images");
    lua_getfield(L, uv, "image_calls");
    lua_setfield(L, res, "image_calls");
    lua_pushliteral(L, "responses");
    lua_setfield(L, res, "shape");
    lua_getfield(L, json, "id");
    lua_setfield(L, res, "response_id");
    lua_getfield(L, res, "status");
    status = lua_tostring(L, -1);
    lua_getfield(L, uv, "failed_calls");
    if ((status && strcmp(status, "failed") == 0) || lua_tointeger(L, -1) > 0) {
        int err;
        const char *msg = "an image_generation_call returned no image";
        const char *code = "image_generation_failed";
        lua_getfield(L, res, "error");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "message");
            if (lua_isstring(L, -1)) msg = lua_tostring(L, -1);
            lua_getfield(L, -2, "code");
            if (lua_isstring(L, -1)) code = lua_tostring(L, -1);
        }
        ir_push_error(L, "api", "the response %s: %s", status && strcmp(status, "failed") == 0 ? "failed" : "lost an image",
                      msg);
        err = lua_gettop(L);
        ir_setfield_str(L, "code", code);
        lua_pushinteger(L, x->req_status);
        lua_setfield(L, err, "status");
        {
            static const char *const carry[] = {"response_id", "output_text", "image_calls", "usage",
                                                "incomplete_details", NULL};
            int k;
            for (k = 0; carry[k]; k++) {
                lua_getfield(L, res, carry[k]);
                lua_setfield(L, err, carry[k]);
            }
        }
        lua_replace(L, uv);
        lua_settop(L, uv);
        ir_xfer_fail(L, xi, x);
        return;
    }
    lua_settop(L, res);
    lua_getfield(L, uv, "images");
    if (lua_rawlen(L, -1) == 0 && lua_getfield(L, uv, "need_image") == LUA_TBOOLEAN) {
        /* generate / edit with no image: a decode error carrying the text that came back */
        int err;
        size_t tn = 0;
        const char *text;
        lua_getfield(L, res, "output_text");
        text = lua_tolstring(L, -1, &tn);
        ir_push_excerpt(L, text ? text : "", tn, 200);
        ir_push_error(L, "decode", "the response holds no image, only text: \"%s\"", lua_tostring(L, -1));
        err = lua_gettop(L);
        ir_setfield_str(L, "code", "no_image");
        lua_pushinteger(L, x->req_status);
        lua_setfield(L, err, "status");
        {
            static const char *const carry[] = {"response_id", "output_text", "image_calls", "usage",
                                                "incomplete_details", NULL};
            int k;
            for (k = 0; carry[k]; k++) {
                lua_getfield(L, res, carry[k]);
                lua_setfield(L, err, carry[k]);
            }
        }
        lua_replace(L, uv);
        lua_settop(L, uv);
        ir_xfer_fail(L, xi, x);
        return;
    }
    lua_settop(L, res);
    lua_replace(L, uv);
    lua_settop(L, uv);
    ir_xfer_succeed(L, xi, x);
}

const ir_ops IR_RESPOND_OPS = {"respond", respond_parse, respond_complete};

static int l_respond(lua_State *L) { return ir_run(L, &IR_RESPOND_OPS, build_respond); }
static int l_start_respond(lua_State *L) { return ir_start(L, &IR_RESPOND_OPS, build_respond); }

void ir_respond_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"respond", l_respond},
        {"start_respond", l_start_respond},
        {NULL, NULL}
    };
    luaL_setfuncs(L, fns, 0);
}
