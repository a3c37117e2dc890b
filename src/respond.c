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
 * is the reply for Lua to read (api.c, shaped_parse: req.reader, when given, reads it first):
 *
 *   {reply = {text = <the JSON with "@imageroute-image:N" placeholders>, images = {[N + 1] = Image
 *    | why}, content_type =, status =}}                          -- a JSON reply
 *   {reply = {stream = true, response = <the final response>, items = <output items done>,
 *    results = <their Images>, images = <other final Images>, partials_received = n, ...}} -- a stream
 *
 * plus the common fields of every result (request_id, http_status, latency, attempts, ...).
 * Nothing here knows the Responses body or decides what the reply means.
 */
#include <string.h>
#include "xfer.h"

static int build_respond(lua_State *L, ir_xfer *x, int xi, int route, int req, int opts)
{
    if (!ir_setup_shaped(L, x, xi, route, req, opts, "/responses", 1)) return 0;
    return ir_set_body_text(L, x, req);
}

/* core.respond(route, req [, opts]) -> result | nil, err (blocking) */
static int l_respond(lua_State *L) { return ir_run(L, &IR_RESPOND_OPS, build_respond); }
/* core.start_respond(route, req [, opts]) -> Transfer | nil, err */
static int l_start_respond(lua_State *L) { return ir_start(L, &IR_RESPOND_OPS, build_respond); }

/* core.c registers these into the module table */
const luaL_Reg ir_respond_fns[] = {
    {"respond", l_respond},
    {"start_respond", l_start_respond},
    {NULL, NULL}
};
