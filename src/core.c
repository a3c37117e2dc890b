/*
 * core.c - luaopen_imageroute_core: builds the module table from each file's list of functions
 * (ir_*_fns) and the setups of the types (ir_*_open).
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
    static const luaL_Reg *const fns[] = {
        ir_b64_fns, ir_sniff_fns, ir_error_fns, ir_image_fns, ir_route_fns, ir_addr_fns,
        ir_loop_fns, ir_api_fns, ir_request_fns, ir_input_fns, ir_respond_fns, ir_util_fns, ir_sse_fns,
    };
    size_t i;
    lua_newtable(L);
    for (i = 0; i < sizeof fns / sizeof fns[0]; i++) luaL_setfuncs(L, fns[i], 0);
    ir_json_open(L);  /* the private cjson instance */
    ir_error_open(L); /* the types: Error, Image, Route, Transfer (libcurl's global init with it) */
    ir_image_open(L);
    ir_route_open(L);
    ir_xfer_open(L);
    lua_pushliteral(L, IR_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
    lua_setfield(L, -2, "curl_version");
    return 1;
}
