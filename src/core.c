/*
 * core.c - luaopen_imageroute_core: builds the module table from each file's opener.
 *
 *   b64.c    base64 through libb64          sniff.c   image type and size from magic bytes
 *   json.c   the private lua-cjson instance  error.c   structured error values
 *   image.c  the Image userdata, save        route.c   the Route userdata
 *   xfer.c   transfers, retries, downloads, the download policy (addr.c: address classes)
 *   api.c    generate / edit: send a body shaped in Lua (JSON or multipart parts), hand the reply
 *            to its Lua reader, download the links it names; respond.c: the same for /responses
 *   request.c  generic API requests (api, start_api)
 *   loop.c   driving libcurl by sockets and timers (step, fds, socket_action, timer_action)
 *   extract.c, sse.c  reading responses as they stream in (base64 lifted out, server-sent events)
 *   input.c  images given as input: data URLs of bytes, paths, Images; decoding data URLs
 * The request bodies and what a reply means are the Lua layer's (lua/imageroute/shapes/).
 */
#include "ir.h"
#include "xfer.h"

IR_EXPORT int luaopen_imageroute_core(lua_State *L);

IR_EXPORT int luaopen_imageroute_core(lua_State *L)
{
    lua_newtable(L);
    ir_b64_open(L);
    ir_sniff_open(L);
    ir_json_open(L);
    ir_error_open(L);
    ir_image_open(L);
    ir_route_open(L);
    ir_xfer_open(L);
    ir_loop_open(L);
    ir_api_open(L);
    ir_request_open(L);
    ir_input_open(L);
    ir_respond_open(L);
    ir_util_open(L);
    ir_sse_open(L);
    lua_pushliteral(L, IR_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
    lua_setfield(L, -2, "curl_version");
    return 1;
}
