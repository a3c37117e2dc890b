/*
 * fuzz_walk.c - the reply walkers, in a real Lua state: the core's reply reading (src/api.c:
 * shaped_parse, the reader call, the downloads' bookkeeping; src/sse.c: ir_sse_process) and the
 * shapes' Lua readers run from it (lua/imageroute/shapes/images.lua, chat.lua with
 * imageroute.markdown, responses.lua), each on a fuzzer-made 2xx reply body.
 *
 * Input: byte 0 is the option byte, the rest a chunked input (fuzz_common.h) whose payload is the
 * reply body and whose chunks are what "libcurl" hands over:
 *   bits 0-1  the call: 0 generate on an images route, 1 respond on a responses route,
 *             2 generate on a responses route (an image is required), 3 generate on a chat route
 *   bit 2     the body is an event stream (text/event-stream) instead of JSON
 *   bit 3     edit instead of generate (calls 0, 2, 3)
 *   bit 4     the caller stops the transfer after the first chunk (transfer:cancel, or with
 *             bit 5 transfer:close), as a callback that raises does
 *
 * Each run starts the transfer the way imageroute does (imageroute.dispatch.start: the normalised
 * request, the body built by its shape, the core's start function; the transfer handed to the loop),
 * reads the outcome with the shape's walker (imageroute.dispatch.finish: the Responses reply is
 * read in Lua, lua/imageroute/shapes/responses.lua), and never steps the loop, so nothing is ever
 * sent: no network at all. The body is fed the way the loop feeds it (write_cb: ir_extract_feed
 * or ir_sse_feed per chunk; for a stream, ir_xfer_stream_tick after each chunk, as sse_tick
 * does), then ir_xfer_reply_done walks it, as attempt_done does. A transfer left waiting for a
 * download is cancelled (transfer:cancel). Built with -DIR_STACK_CHECK, so every walker's stack
 * balance is asserted inside src/ as well.
 *
 * Checks: the Lua stack is back where it was; the transfer is done; its outcome is a result or
 * nil + an error table whose kind is one of the documented kinds and whose message is a string,
 * and tostring(err) works; a result's images are Images; generate and edit never succeed without
 * an image (any shape); a chat result has one image per link; respond's result has a string
 * output_text. Images made in Lua are freed by the garbage collector (a step every run, a full
 * collection every 256 runs); LeakSanitizer checks the C side.
 */
#include <string.h>
#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>
#include "../src/xfer.h"
#include "fuzz_common.h"

#ifndef FZ_LUA_DIR
#define FZ_LUA_DIR "lua"
#endif

LUALIB_API int luaopen_imageroute_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int route_ref[3];   /* images, responses, chat */
static int core_ref;
static unsigned long runs;

static const char *const SETUP =
    "local core = ...\n"
    "local base = 'http://127.0.0.1:9/v1'\n" /* loopback, never contacted: the loop is never stepped */
    "return assert(core.route{name = 'fz-images', base_url = base, model = 'gpt-image-1'}),\n"
    "  assert(core.route{name = 'fz-responses', shape = 'responses', base_url = base, model = 'gpt-5',\n"
    "    image_model = 'gpt-image-1'}),\n"
    "  assert(core.route{name = 'fz-chat', shape = 'chat', base_url = base, model = 'gpt-image-2',\n"
    "    lane = 'provider', provider = 'fz'})\n";

FZ_NOCOV static void setup(void)
{
    int i;
    L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushliteral(L, FZ_LUA_DIR "/?.lua;" FZ_LUA_DIR "/?/init.lua");
    lua_setfield(L, -2, "path"); /* the cpath stays the system's: lua-cjson is a C module */
    lua_pop(L, 1);
    luaL_requiref(L, "imageroute.core", luaopen_imageroute_core, 0);
    lua_pushvalue(L, -1);
    core_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (luaL_loadstring(L, SETUP) != LUA_OK) abort();
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 3, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_walk setup: %s\n", lua_tostring(L, -1));
        abort();
    }
    for (i = 2; i >= 0; i--) route_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    /* the chat walker requires imageroute.markdown at run time: load it once here */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "imageroute.markdown");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_walk setup: %s\n", lua_tostring(L, -1));
        abort();
    }
    FZ_CHECK(lua_gettop(L) == 0, "setup left %d values", lua_gettop(L));
}

static const char *const KINDS[] = {"api", "http", "timeout", "connection", "decode", "validation", "route",
                                    "cancelled", NULL};

FZ_NOCOV static int known_kind(const char *k)
{
    int i;
    for (i = 0; k && KINDS[i]; i++)
        if (strcmp(k, KINDS[i]) == 0) return 1;
    return 0;
}

/* Starts the transfer for call `call` (see the header) the way imageroute does: through
 * imageroute.dispatch.start (the normalised request, the body built by the request shape, the
 * core's start function). Pushes the transfer; keeps the request in req_ref for finish. */
static const char *const START =
    "local kind, route, params = ...\n"
    "local x, err, req = require('imageroute.dispatch').start(kind, route, params)\n"
    "return x, req, err\n";
/* The outcome as imageroute reads it: the shape's reply walker over the transfer's outcome. */
static const char *const FINISH =
    "local req, x = ...\n"
    "return require('imageroute.dispatch').finish(req, x:result())\n";
static int req_ref = LUA_NOREF;

FZ_NOCOV static ir_xfer *start(int call, int edit)
{
    static const char *const kind[] = {"generate", "respond", "generate", "generate"};
    static const int route[] = {0, 1, 1, 2};
    int top = lua_gettop(L);
    const char *name = edit && call != 1 ? "edit" : kind[call];
    if (luaL_loadstring(L, START) != LUA_OK) abort();
    lua_pushstring(L, name);
    lua_rawgeti(L, LUA_REGISTRYINDEX, route_ref[route[call]]);
    lua_createtable(L, 0, 4);
    if (call == 1) {
        lua_pushliteral(L, "draw a fox");
        lua_setfield(L, -2, "input");
    } else {
        lua_pushliteral(L, "a fox");
        lua_setfield(L, -2, "prompt");
    }
    if (edit && call != 1) { /* a tiny PNG, as bytes */
        static const unsigned char png[] = {
            0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1,
            0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89};
        lua_pushlstring(L, (const char *)png, sizeof png);
        lua_setfield(L, -2, "image");
    }
    if (lua_pcall(L, 3, 3, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_walk: starting %s failed: %s\n", name, lua_tostring(L, -1));
        abort();
    }
    FZ_CHECK(lua_touserdata(L, -3) != NULL, "%s returned no transfer: %s", name,
             lua_istable(L, -1) && (lua_getfield(L, -1, "message"), lua_isstring(L, -1)) ? lua_tostring(L, -1) : "?");
    lua_settop(L, top + 2);
    luaL_unref(L, LUA_REGISTRYINDEX, req_ref);
    req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return (ir_xfer *)luaL_checkudata(L, -1, IR_XFER_MT);
}

FZ_NOCOV static void check_outcome(int xi, ir_xfer *x, int call)
{
    int top = lua_gettop(L), n;
    FZ_CHECK(x->state == X_DONE, "transfer not done (state %d)", x->state);
    if (luaL_loadstring(L, FINISH) != LUA_OK) abort();
    lua_rawgeti(L, LUA_REGISTRYINDEX, req_ref);
    lua_pushvalue(L, xi);
    FZ_CHECK(lua_pcall(L, 2, 2, 0) == LUA_OK, "the reply walker raised: %s", lua_tostring(L, -1));
    n = lua_isnil(L, -2) ? 2 : 1;
    if (n == 1) lua_pop(L, 1);
    if (getenv("FZ_WALK_VERBOSE")) { /* replaying seeds by hand: what each one ended in */
        int o = lua_gettop(L);
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, o);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) lua_pushliteral(L, "?");
        fprintf(stderr, "fuzz_walk: call %d: %s", call, n == 1 ? "result" : lua_tostring(L, -1));
        if (n == 1 && lua_getfield(L, o, "images") == LUA_TTABLE) fprintf(stderr, ", %d images", (int)lua_rawlen(L, -1));
        fputc('\n', stderr);
        lua_settop(L, o);
    }
    if (n == 1) {
        int res = lua_gettop(L), i, m;
        FZ_CHECK(lua_istable(L, res), "result is not a table");
        FZ_CHECK(lua_getfield(L, res, "images") == LUA_TTABLE, "result without images");
        m = (int)lua_rawlen(L, -1);
        for (i = 1; i <= m; i++) {
            lua_rawgeti(L, -1, i);
            FZ_CHECK(luaL_testudata(L, -1, IR_IMAGE_MT) != NULL, "images[%d] is not an Image", i);
            lua_pop(L, 1);
        }
        if (call != 1) FZ_CHECK(m > 0, "generate/edit succeeded with no image (call %d)", call);
        for (i = 2; i <= m && call != 1; i++) { /* document order */
            lua_Integer a, b;
            lua_rawgeti(L, -1, i - 1);
            lua_getfield(L, -1, "index");
            a = lua_tointeger(L, -1);
            lua_rawgeti(L, -3, i);
            lua_getfield(L, -1, "index");
            b = lua_tointeger(L, -1);
            lua_pop(L, 4);
            FZ_CHECK(a < b, "images out of order: index %d before %d", (int)a, (int)b);
        }
        if (call == 3) {
            FZ_CHECK(lua_getfield(L, res, "links") == LUA_TTABLE, "chat result without links");
            FZ_CHECK((int)lua_rawlen(L, -1) == m, "chat: %d images for %d links", m, (int)lua_rawlen(L, -1));
        }
        if (call == 1) FZ_CHECK(lua_getfield(L, res, "output_text") == LUA_TSTRING, "output_text not a string");
    } else {
        int err = lua_gettop(L);
        const char *kind;
        FZ_CHECK(lua_isnil(L, err - 1) && lua_istable(L, err), "outcome is not nil, err");
        lua_getfield(L, err, "kind");
        kind = lua_tostring(L, -1);
        FZ_CHECK(known_kind(kind), "unknown error kind %s", kind ? kind : "(none)");
        FZ_CHECK(lua_getfield(L, err, "message") == LUA_TSTRING, "error message is not a string");
        FZ_CHECK(lua_getfield(L, err, "attempt_log") == LUA_TTABLE && lua_rawlen(L, -1) >= 1,
                 "error without its attempt_log (kind %s)", kind);
        FZ_CHECK(lua_getfield(L, err, "status") == LUA_TNUMBER && lua_tointeger(L, -1) == 200,
                 "error without the reply's status (kind %s)", kind);
        FZ_CHECK(lua_getfield(L, err, "request_id") == LUA_TSTRING, "error without request_id (kind %s)", kind);
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, err);
        FZ_CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING, "tostring(err) failed");
    }
    lua_settop(L, top);
}

FZ_NOCOV int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_chunker c;
    ir_xfer *x;
    int top, xi, call, sse, edit, stop, capped = 0;
    size_t len;
    char *chunk;
    if (!L) setup();
    if (size < 1) return 0;
    call = data[0] & 3;
    sse = (data[0] >> 2) & 1;
    edit = (data[0] >> 3) & 1;
    stop = (data[0] >> 4) & 3; /* bit 4: stop it after the first chunk; bit 5: by close */
    if (fz_chunker_init(&c, data + 1, size - 1)) return 0;
    top = lua_gettop(L);
    x = start(call, edit);
    xi = lua_gettop(L);

    /* as activate_due and write_cb do: an attempt with a 2xx and its content type */
    x->attempt = 1;
    x->t_attempt = ir_now();
    x->state = X_RUN;
    x->status = 200;
    x->mode = sse ? M_SSE : M_JSON;
    strcpy(x->h.content_type, sse ? "text/event-stream" : "application/json");
    strcpy(x->h.request_id, "req_fuzz");
    while ((chunk = fz_chunk_next(&c, &len)) != NULL) {
        if (x->state == X_RUN && !capped) {
            x->bytes += len;
            x->total_bytes += len;
            if (sse) {
                if (ir_sse_feed(x, chunk, len) == 0) ir_xfer_stream_tick(L, xi, x);
                else capped = 1; /* the event cap: the loop aborts the attempt (no walker runs) */
            } else if (ir_extract_feed(&x->ex, chunk, len)) {
                abort(); /* out of memory in a fuzz run */
            }
        }
        free(chunk);
        FZ_CHECK(lua_gettop(L) == xi, "stack moved while streaming: %d vs %d", lua_gettop(L), xi);
        if ((stop & 1) && x->state == X_RUN) {
            lua_getfield(L, xi, stop & 2 ? "close" : "cancel");
            lua_pushvalue(L, xi);
            FZ_CHECK(lua_pcall(L, 1, 0, 0) == LUA_OK, "stopping raised");
            FZ_CHECK(x->state == X_DONE, "not done after being stopped");
        }
    }
    if (x->state == X_RUN && !capped) {
        x->state = X_WAIT; /* attempt_done: the attempt is over */
        memcpy(x->api_request_id, x->h.request_id, sizeof x->api_request_id);
        lua_rawgeti(L, LUA_REGISTRYINDEX, x->ref); /* as drain does */
        ir_xfer_reply_done(L, lua_gettop(L), x);
        lua_pop(L, 1);
        FZ_CHECK(lua_gettop(L) == xi, "stack moved by the walker: %d vs %d", lua_gettop(L), xi);
    }
    if (x->state != X_DONE) { /* waiting for a download (or stopped by the cap): cancel it */
        lua_getfield(L, xi, "cancel");
        lua_pushvalue(L, xi);
        FZ_CHECK(lua_pcall(L, 1, 0, 0) == LUA_OK, "cancel raised");
    }
    check_outcome(xi, x, call);
    lua_settop(L, top);
    FZ_CHECK(lua_gettop(L) == 0, "stack not empty after a run: %d", lua_gettop(L));
    if (++runs % 256 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    else lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
