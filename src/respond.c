/*
 * respond.c - the Responses API transport: core.respond / core.start_respond (OpenAI API reference,
 * Responses > Create a response and Streaming events,
 * https://platform.openai.com/docs/api-reference/responses, read 2026-12-01).
 *
 *   core.start_respond(route, {body = <JSON text>} [, opts]) -> Transfer | nil, err
 *
 * The body comes shaped and encoded from Lua (lua/imageroute/shapes/responses.lua builds it from
 * the normalised request of lua/imageroute/request.lua): this file only sends it to
 * POST {base_url}/responses. The reply's base64 images are lifted out as the bytes arrive
 * (extract.c; streamed events through sse.c, partial images included), and the transfer's result
 * is the reply for Lua to read (see ir_push_reply in api.c):
 *
 *   {reply = {text = <the JSON with "@imageroute-image:N" placeholders>, images = {[N + 1] = Image
 *    | why}, content_type =}}                                     -- a JSON reply
 *   {reply = {stream = true, response = <the final response>, items = <output items done>,
 *    results = <their Images>, images = <other final Images>, partials_received = n}} -- a stream
 *
 * plus the common fields of every result (request_id, http_status, latency, attempts, ...).
 * Nothing here knows the Responses body or decides what the reply means.
 */
#include <string.h>
#include "xfer.h"

static int build_respond(lua_State *L, ir_xfer *x, int xi, int route, int req, int opts)
{
    (void)xi;
    if (!ir_xfer_setup_api(L, x, route, opts, "/responses", 1)) return 0;
    return ir_set_body_text(L, x, req);
}

static void respond_parse(lua_State *L, int xi, ir_xfer *x)
{
    int uv;
    if (x->mode == M_SSE) {
        if (!ir_decode_body(L, xi, x)) return; /* only checks that the final event came */
        ir_xfer_uv(L, xi);
        uv = lua_gettop(L);
        lua_createtable(L, 0, 2);
        lua_createtable(L, 0, 8);
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "stream");
        lua_getfield(L, uv, "json");
        lua_setfield(L, -2, "response");
        lua_getfield(L, uv, "stream_items");
        lua_setfield(L, -2, "items");
        lua_getfield(L, uv, "stream_results");
        lua_setfield(L, -2, "results");
        lua_getfield(L, uv, "images");
        lua_setfield(L, -2, "images");
        lua_pushinteger(L, x->partials_received);
        lua_setfield(L, -2, "partials_received");
        lua_setfield(L, -2, "reply");
        lua_replace(L, uv);
        ir_xfer_succeed(L, xi, x);
        return;
    }
    if (!ir_push_reply(L, xi, x)) return;
    ir_xfer_succeed(L, xi, x);
}

/* Never reached: a Responses reply downloads nothing. */
static void respond_complete(lua_State *L, int xi, ir_xfer *x)
{
    ir_push_error(L, "decode", "internal: a Responses reply has no downloads");
    ir_xfer_fail(L, xi, x);
}

const ir_ops IR_RESPOND_OPS = {"respond", respond_parse, respond_complete};

/* core.respond(route, req [, opts]) -> result | nil, err (blocking) */
static int l_respond(lua_State *L) { return ir_run(L, &IR_RESPOND_OPS, build_respond); }
/* core.start_respond(route, req [, opts]) -> Transfer | nil, err */
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
