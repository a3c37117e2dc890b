/*
 * sse.c - server-sent events (text/event-stream, WHATWG HTML "Server-sent events") for streamed
 * image calls.
 *
 * The parser runs inside libcurl's write callback, so it only moves bytes: it splits lines, keeps
 * the `event:` name, and feeds every `data:` value straight into an image extractor (extract.c),
 * so a multi-MB base64 partial image is decoded as it arrives and never buffered as text. Work is
 * linear in the input whatever the chunk boundaries. A finished event (its small JSON with image
 * placeholders, and its decoded images) goes on a queue; ir_sse_process, called from the loop
 * after libcurl returns, turns queued events into partial images, final images and errors.
 *
 * Event types (OpenAI API reference, Images > Streaming events and Responses > Streaming events,
 * https://platform.openai.com/docs/api-reference, read 2026-12-01): image_generation.partial_image / .completed,
 * image_edit.partial_image / .completed, response.image_generation_call.partial_image,
 * response.output_item.done, response.completed / .failed / .incomplete, error; Chat Completions
 * chunks (data-only, ending with [DONE]). Unknown types are ignored.
 */
#include <stdlib.h>
#include <string.h>
#include "xfer.h"

#define SSE_EVENT_MAX_DEFAULT ((size_t)64 * 1024 * 1024) /* bytes of one event's data */

typedef struct sse_event {
    char type[96];
    ir_buf json;
    ir_extract ex;
    struct sse_event *next;
} sse_event;

enum { L_START, L_FIELD, L_DATA, L_EVENT, L_SKIP };

typedef struct {
    int state;
    char field[16];
    size_t nfield;
    char type[96];
    size_t ntype;
    sse_event *cur;           /* the event being read (data seen), or NULL */
    size_t data_lines;
    size_t event_bytes;
    size_t max_event;
    int after_colon;          /* skip one space after "field:" */
    int pending_cr;
    sse_event *head, *tail;   /* finished events, oldest first */
    int done_marker;          /* "data: [DONE]" seen */
} sse_state;

static void event_free(sse_event *ev)
{
    if (!ev) return;
    ir_buf_free(&ev->json);
    ir_extract_free(&ev->ex);
    free(ev);
}

static sse_state *state_of(ir_xfer *x)
{
    sse_state *s = (sse_state *)x->sse;
    if (!s) {
        s = (sse_state *)calloc(1, sizeof *s);
        if (!s) return NULL;
        s->max_event = x->max_event_bytes ? x->max_event_bytes : SSE_EVENT_MAX_DEFAULT;
        x->sse = s;
    }
    return s;
}

/* Ends the current event (a blank line): queue it when it had data. */
static void dispatch(sse_state *s)
{
    sse_event *ev = s->cur;
    s->cur = NULL;
    s->data_lines = 0;
    s->event_bytes = 0;
    if (ev) {
        size_t k = s->ntype < sizeof ev->type - 1 ? s->ntype : sizeof ev->type - 1;
        memcpy(ev->type, s->type, k);
        ev->type[k] = '\0';
        if (ev->json.n == 6 && memcmp(ev->json.p, "[DONE]", 6) == 0) {
            s->done_marker = 1;
            event_free(ev);
        } else {
            if (s->tail) s->tail->next = ev;
            else s->head = ev;
            s->tail = ev;
        }
    }
    s->ntype = 0;
}

/* Starts (or continues) the data of the current event. */
static int begin_data(sse_state *s)
{
    if (!s->cur) {
        s->cur = (sse_event *)calloc(1, sizeof *s->cur);
        if (!s->cur) return -1;
        ir_extract_init(&s->cur->ex, &s->cur->json);
        /* the final response repeats images already taken from output_item.done: skip them */
        s->cur->ex.discard = s->ntype == 18 && memcmp(s->type, "response.completed", 18) == 0;
    } else if (s->data_lines) {
        if (ir_extract_feed(&s->cur->ex, "\n", 1)) return -1; /* multi-line data joins with LF */
    }
    s->data_lines++;
    return 0;
}

int ir_sse_feed(ir_xfer *x, const char *p, size_t n)
{
    sse_state *s = state_of(x);
    const char *end = p + n;
    if (!s) return -1;
    while (p < end) {
        char c;
        if (s->pending_cr) { /* a CR ended the last line: a following LF belongs to it */
            s->pending_cr = 0;
            if (*p == '\n') { p++; continue; }
        }
        switch (s->state) {
        case L_START:
            c = *p;
            if (c == '\n' || c == '\r') {
                dispatch(s);
                if (c == '\r') s->pending_cr = 1;
                p++;
                break;
            }
            if (c == ':') { s->state = L_SKIP; p++; break; } /* a comment */
            s->nfield = 0;
            s->state = L_FIELD;
            break;
        case L_FIELD:
            c = *p++;
            if (c == ':' || c == '\n' || c == '\r') {
                int line_end = c != ':';
                s->field[s->nfield < sizeof s->field ? s->nfield : sizeof s->field - 1] = '\0';
                s->after_colon = !line_end;
                if (s->nfield == 4 && memcmp(s->field, "data", 4) == 0) {
                    if (begin_data(s)) goto oom;
                    s->state = line_end ? L_START : L_DATA;
                } else if (s->nfield == 5 && memcmp(s->field, "event", 5) == 0) {
                    s->ntype = 0;
                    s->state = line_end ? L_START : L_EVENT;
                } else {
                    s->state = line_end ? L_START : L_SKIP;
                }
                if (c == '\r') s->pending_cr = 1;
                break;
            }
            if (s->nfield < sizeof s->field) s->field[s->nfield] = c;
            s->nfield++;
            break;
        case L_EVENT:
            c = *p++;
            if (s->after_colon) { s->after_colon = 0; if (c == ' ') break; }
            if (c == '\n' || c == '\r') {
                if (c == '\r') s->pending_cr = 1;
                s->state = L_START;
                break;
            }
            if (s->ntype < sizeof s->type) s->type[s->ntype++] = c;
            break;
        case L_DATA: {
            const char *run;
            if (s->after_colon) {
                s->after_colon = 0;
                if (*p == ' ') { p++; break; }
            }
            run = p;
            while (p < end && *p != '\n' && *p != '\r') p++;
            if (p > run) {
                s->event_bytes += (size_t)(p - run);
                if (s->event_bytes > s->max_event) {
                    x->abort_why = "a server-sent event is larger than its cap (max_event_bytes)";
                    return -1;
                }
                if (ir_extract_feed(&s->cur->ex, run, (size_t)(p - run))) goto oom;
            }
            if (p < end) {
                if (*p == '\r') s->pending_cr = 1;
                p++;
                s->state = L_START;
            }
            break;
        }
        default: /* L_SKIP: the rest of the line */
            while (p < end && *p != '\n' && *p != '\r') p++;
            if (p < end) {
                if (*p == '\r') s->pending_cr = 1;
                p++;
                s->state = L_START;
            }
        }
    }
    return 0;
oom:
    x->abort_why = "out of memory reading an event stream";
    return -1;
}

void ir_sse_reset(ir_xfer *x)
{
    ir_sse_free(x);
}

void ir_sse_free(ir_xfer *x)
{
    sse_state *s = (sse_state *)x->sse;
    sse_event *ev, *next;
    if (!s) return;
    event_free(s->cur);
    for (ev = s->head; ev; ev = next) {
        next = ev->next;
        event_free(ev);
    }
    free(s);
    x->sse = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* turning events into images (Lua context: called from the loop, never from libcurl)          */

/* Appends the Image made from placeholder field `key` of the table on top to list `dst` of the
 * uservalue. Returns 0 (error pushed) when the image is invalid, 1 when added (the Image is left
 * on the stack too), 2 when the field holds no image. */
static int take(lua_State *L, sse_event *ev, const char *key, int uv, const char *dst, int index)
{
    if (lua_getfield(L, -1, key) != LUA_TSTRING || !ir_is_placeholder(L, -1)) {
        lua_pop(L, 1);
        return 2;
    }
    if (!ir_take_image(L, &ev->ex, lua_tostring(L, -1), key)) {
        lua_remove(L, -2);
        return 0;
    }
    lua_remove(L, -2);
    if (index >= 0) {
        lua_pushinteger(L, index);
        lua_setfield(L, -2, "partial_image_index");
    }
    lua_getfield(L, uv, dst);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    return 1;
}

/* Handles one event; returns 0 after pushing an error that ends the transfer. */
static int handle(lua_State *L, ir_xfer *x, int uv, sse_event *ev)
{
    const char *type;
    int t, r = 1;
    if (!ir_json_decode(L, ev->json.p ? ev->json.p : "", ev->json.n) || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        ir_push_error(L, "decode", "a server-sent event's data is not a JSON object (event %s)",
                      ev->type[0] ? ev->type : "message");
        return 0;
    }
    t = lua_gettop(L);
    /* the type: the event: field, else the JSON "type" */
    if (ev->type[0]) lua_pushstring(L, ev->type);
    else lua_getfield(L, t, "type");
    type = lua_tostring(L, -1);
    if (!type) { /* Chat Completions chunks: their first choice's delta kept, in order, for the shape */
        lua_pop(L, 1);
        if (lua_getfield(L, t, "choices") == LUA_TTABLE && lua_rawgeti(L, -1, 1) == LUA_TTABLE &&
            lua_getfield(L, -1, "delta") == LUA_TTABLE) {
            lua_getfield(L, uv, "stream_deltas");
            lua_insert(L, -2);
            lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        }
        lua_settop(L, t);
        lua_pushvalue(L, t);
        lua_setfield(L, uv, "json");
        lua_pop(L, 1);
        return 1;
    }
    lua_setfield(L, uv, "last_event");
    lua_getfield(L, uv, "last_event");
    type = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    if (strstr(type, ".partial_image")) {
        int idx = -1;
        const char *key;
        if (lua_getfield(L, t, "partial_image_index") == LUA_TNUMBER) idx = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        key = strstr(type, "response.") == type ? "partial_image_b64" : "b64_json";
        r = take(L, ev, key, uv, "partials", idx);
        if (r == 1) {
            x->partials_received++;
            lua_getfield(L, t, "item_id");
            lua_setfield(L, -2, "call_id");
            lua_pushnil(L); /* image.event: the event's other fields (type, sizes, stamps) */
            lua_setfield(L, t, key);
            lua_pushvalue(L, t);
            lua_setfield(L, -2, "event");
        }
    } else if (strcmp(type, "image_generation.completed") == 0 || strcmp(type, "image_edit.completed") == 0) {
        r = take(L, ev, "b64_json", uv, "images", -1);
        if (r == 1) {
            lua_getfield(L, uv, "images");
            lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
            lua_setfield(L, -3, "index");
            lua_pop(L, 1);
        }
        lua_pushvalue(L, t);
        lua_setfield(L, uv, "json");
    } else if (strcmp(type, "response.output_item.done") == 0) {
        if (lua_getfield(L, t, "item") == LUA_TTABLE) {
            int item = lua_gettop(L);
            lua_getfield(L, uv, "stream_items");
            lua_pushvalue(L, item);
            lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
            lua_pop(L, 1);
            r = take(L, ev, "result", uv, "stream_results", -1);
            if (r == 1) { /* the final image: annotate it like a non-streamed call's */
                static const char *const f[] = {"revised_prompt", "size", "quality", "background",
                                                "output_format", "status", NULL};
                int k;
                for (k = 0; f[k]; k++) {
                    lua_getfield(L, item, f[k]);
                    lua_setfield(L, -2, f[k]);
                }
                lua_getfield(L, item, "id");
                lua_setfield(L, -2, "call_id");
            }
            if (r == 2) r = 1;
        }
    } else if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.failed") == 0 ||
               strcmp(type, "response.incomplete") == 0) {
        lua_getfield(L, t, "response");
        lua_setfield(L, uv, "json");
    } else if (strcmp(type, "error") == 0) {
        lua_getfield(L, t, "error");
        if (!lua_istable(L, -1)) { lua_pop(L, 1); lua_pushvalue(L, t); }
        lua_getfield(L, -1, "message");
        ir_push_error(L, "api", "the stream sent an error event: %s",
                      lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        {
            static const char *const f[] = {"code", "type", "param", NULL};
            int k;
            for (k = 0; f[k]; k++) { /* strings only: a reply can put anything there */
                if (lua_getfield(L, -3, f[k]) == LUA_TSTRING) lua_setfield(L, -2, f[k]);
                else lua_pop(L, 1);
            }
        }
        lua_pushinteger(L, x->status);
        lua_setfield(L, -2, "status");
        r = 0;
    }
    /* the response id, as soon as an event names it (response.created, ...): errors carry it */
    if (r != 0 && strncmp(type, "response.", 9) == 0 && lua_getfield(L, t, "response") == LUA_TTABLE) {
        if (lua_getfield(L, -1, "id") == LUA_TSTRING) lua_setfield(L, uv, "response_id");
        else lua_pop(L, 1);
    }
    if (r == 0) { /* the error is on top */
        lua_replace(L, t);
        lua_settop(L, t);
        return 0;
    }
    lua_settop(L, t - 1);
    return 1;
}

int ir_sse_process(lua_State *L, int xi, ir_xfer *x)
{
    sse_state *s = (sse_state *)x->sse;
    int uv, top = lua_gettop(L);
    if (!s || !s->head) return 1;
    ir_xfer_uv(L, xi);
    uv = lua_gettop(L);
    if (lua_getfield(L, uv, "partials") != LUA_TTABLE) {
        static const char *const lists[] = {"partials", "stream_items", "stream_results", "stream_deltas", NULL};
        int k;
        for (k = 0; lists[k]; k++) {
            lua_newtable(L);
            lua_setfield(L, uv, lists[k]);
        }
    }
    lua_pop(L, 1);
    while (s->head) {
        sse_event *ev = s->head;
        s->head = ev->next;
        if (!s->head) s->tail = NULL;
        if (!handle(L, x, uv, ev)) {
            event_free(ev);
            lua_replace(L, top + 1);
            lua_settop(L, top + 1);
            return 0; /* the error is on top */
        }
        event_free(ev);
    }
    lua_settop(L, top);
    return 1;
}

/* core._sse_parse(chunks [, max_event_bytes]) -> events | nil, message
 * Test and fuzz entry: runs the parser over the list of strings as if they were libcurl's chunks
 * and returns the finished events: {type =, data = <JSON with image placeholders>, images =
 * {bytes, ...}, bad = {why, ...}, done = true when [DONE] was seen}. */
static int l_sse_parse(lua_State *L)
{
    ir_xfer x;
    sse_state *s;
    sse_event *ev;
    int i, n, k = 0;
    luaL_checktype(L, 1, LUA_TTABLE);
    memset(&x, 0, sizeof x);
    x.max_event_bytes = (size_t)luaL_optinteger(L, 2, 0);
    n = (int)lua_rawlen(L, 1);
    for (i = 1; i <= n; i++) {
        size_t len;
        const char *p;
        lua_rawgeti(L, 1, i);
        p = luaL_checklstring(L, -1, &len);
        if (ir_sse_feed(&x, p, len)) {
            lua_pop(L, 1);
            lua_pushnil(L);
            lua_pushstring(L, x.abort_why ? x.abort_why : "error");
            ir_sse_free(&x);
            return 2;
        }
        lua_pop(L, 1);
    }
    s = (sse_state *)x.sse;
    lua_newtable(L);
    for (ev = s ? s->head : NULL; ev; ev = ev->next) {
        size_t j;
        lua_createtable(L, 0, 4);
        lua_pushstring(L, ev->type);
        lua_setfield(L, -2, "type");
        lua_pushlstring(L, ev->json.p ? ev->json.p : "", ev->json.n);
        lua_setfield(L, -2, "data");
        lua_newtable(L);
        lua_newtable(L);
        for (j = 0; j < ev->ex.nimgs; j++) {
            ir_ximg *im = &ev->ex.imgs[j];
            lua_pushlstring(L, im->data.p ? im->data.p : "", im->data.n);
            lua_rawseti(L, -3, (lua_Integer)j + 1);
            lua_pushstring(L, im->bad ? im->bad : "");
            lua_rawseti(L, -2, (lua_Integer)j + 1);
        }
        lua_setfield(L, -3, "bad");
        lua_setfield(L, -2, "images");
        lua_rawseti(L, -2, ++k);
    }
    if (s && s->done_marker) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "done");
    }
    ir_sse_free(&x);
    return 1;
}

/* core.c registers these into the module table */
const luaL_Reg ir_sse_fns[] = {
    {"_sse_parse", l_sse_parse},
    {NULL, NULL}
};
