/*
 * xfer.h - the transfer and loop structures shared by xfer.c (transport), api.c (request shapes)
 * and sse.c (server-sent events).
 */
#ifndef IMAGEROUTE_XFER_H
#define IMAGEROUTE_XFER_H

#include "ir.h"

/* Stack-balance assertions around the reply walkers (parse, ir_sse_process, complete), active in
 * the sanitizer and fuzz builds (-DIR_STACK_CHECK, see scripts/check-asan.sh and scripts/fuzz.sh):
 * IR_STACK_MARK(L, name) records lua_gettop, IR_STACK_EXPECT(L, name, delta) aborts with the file
 * and line unless the stack is exactly delta values higher. Nothing at all in the normal build. */
#ifdef IR_STACK_CHECK
#include <stdio.h>
#include <stdlib.h>
#define IR_STACK_MARK(L, name) int name = lua_gettop(L)
#define IR_STACK_EXPECT(L, name, delta)                                                          \
    do {                                                                                         \
        if (lua_gettop(L) != (name) + (delta)) {                                                 \
            fprintf(stderr, "%s:%d: Lua stack unbalanced: top %d, expected %d\n", __FILE__,       \
                    __LINE__, lua_gettop(L), (name) + (delta));                                   \
            abort();                                                                             \
        }                                                                                        \
    } while (0)
#else
#define IR_STACK_MARK(L, name) ((void)0)
#define IR_STACK_EXPECT(L, name, delta) ((void)0)
#endif

typedef struct ir_xfer ir_xfer;

/* A socket libcurl wants watched, or a change of one queued for a host loop. */
typedef struct {
    curl_socket_t fd;
    int what;                 /* CURL_POLL_IN | CURL_POLL_OUT | CURL_POLL_INOUT | CURL_POLL_REMOVE */
} ir_sock;

typedef struct ir_loop_s {
    ir_xfer *head;            /* transfers that are waiting or running */
    int live;
    CURLM *multi;
    unsigned long seed;
    /* loop.c: libcurl driven by curl_multi_socket_action */
    ir_sock *socks;           /* the sockets libcurl watches now */
    size_t nsocks, capsocks;
    ir_sock *changes;         /* socket changes not yet taken by the host (when host is set) */
    size_t nchanges, capchanges;
    ir_sock *closed;          /* sockets libcurl closed while a host watched: closed after it is told */
    size_t nclosed, capclosed;
    int host;                 /* a host loop watches the sockets: queue changes for it */
    int oom;                  /* a socket table could not grow */
    double curl_due;          /* when libcurl's timer fires (monotonic seconds), < 0: none */
    double reported_due;      /* the due time last told to the host, < 0: none, -2: unknown */
    size_t budget;            /* body bytes a step may still take in (IR_STEP_BYTES per step) */
    size_t gc_debt;           /* bytes of images made since the collector was told (KB steps) */
    double wake_due;          /* a Lua-side wait's wake-up time (core.wake_at), < 0: none */
    /* set by xfer.c when it makes a transfer, so that loop.c calls nothing of xfer.c */
    void (*activate)(struct ir_loop_s *lp, double now);   /* ir_loop_activate: start due attempts */
    int (*settle)(lua_State *L, struct ir_loop_s *lp);   /* ir_loop_settle: hand what finished to Lua */
} ir_loop;

/* One request shape: what to do with a 2xx API response, and when every download is done. */
typedef struct {
    const char *name;
    void (*parse)(lua_State *L, int xi, ir_xfer *x);
    void (*complete)(lua_State *L, int xi, ir_xfer *x);
} ir_ops;

enum { X_NEW, X_WAIT, X_RUN, X_DONE };
enum { PH_API, PH_FETCH };
enum { M_UNSET, M_JSON, M_ERRBODY, M_RAW, M_SSE };

typedef struct {
    char request_id[128];
    char retry_after[64];
    char retry_after_ms[32];
    char should_retry[8];
    char content_type[128];
    char rate_limit[6][40];   /* x-ratelimit-{limit,remaining,reset}-{requests,tokens}, as sent */
} ir_headers;

/* The x-ratelimit-* headers, in the order of ir_headers.rate_limit, and their result field names. */
extern const char *const IR_RATE_LIMIT_HEADERS[6];
extern const char *const IR_RATE_LIMIT_FIELDS[6];

struct ir_xfer {
    ir_loop *loop;
    ir_xfer *next, *prev;
    int linked, in_multi;
    int op, state, phase, mode;
    const ir_ops *ops;
    const char *endpoint;     /* "/images/generations", ... (static strings) */
    CURL *easy;
    struct curl_slist *hdrs;
    curl_mime *mime;
    ir_buf body;              /* the JSON request body */
    ir_buf resp;              /* response body (JSON with images lifted out, or raw bytes) */
    ir_extract ex;
    void *sse;                /* sse.c state, NULL unless streaming */
    ir_headers h;             /* headers of the current response */
    char api_request_id[128]; /* x-request-id of the API response (not of a download) */
    char errbuf[CURL_ERROR_SIZE];
    const char *abort_why;    /* set by a callback that stopped the transfer */
    long status;              /* HTTP status of the last attempt */
    long req_status;          /* HTTP status of the API response */
    size_t bytes;             /* bytes of this attempt's body */
    size_t total_bytes;       /* all bodies, all attempts */
    size_t max_bytes;
    size_t max_event_bytes;   /* cap of one server-sent event's data (0: the default) */
    int partials_received;
    long low_speed_limit, low_speed_time; /* bytes per second over seconds, 0: off */
    int attempt, max_retries, url_i;
    double delay_initial, delay_max, retry_after_max, timeout, connect_timeout;
    double t0, t_attempt, t_done, due;
    int ref;                  /* registry reference while the loop owns it */
    /* bounded work per call and the download policy (xfer.c: ir_fetch_next, activate_due) */
    double deadline;          /* seconds for the whole call from t0 (0: none) */
    int deadline_capped;      /* this attempt's curl timeout was cut to what remains of the deadline */
    int retry_skipped;        /* a retry was not made because its delay would pass the deadline */
    int max_images;           /* images a reply may make the client fetch or decode (0: no cap) */
    size_t max_call_bytes;    /* all response and download bytes held for the call (0: no cap) */
    size_t held_bytes;        /* bytes of the responses and downloads kept so far */
    const char *abort_code;   /* error code of abort_why when it is a per-call bound */
    int dl_loopback;          /* downloads may connect to loopback (the route's base_url host is) */
    int dl_private;           /* allow_private_downloads */
    int dl_refused;           /* the open-socket veto refused an address of this download */
    int redirects;            /* redirects followed by this download */
    struct curl_slist *resolve; /* the route's resolve entries, as CURLOPT_CONNECT_TO entries */
    char *key;                /* the key sent (malloc), for the redaction in finish; wiped there */
    size_t keylen;
    char key_id[9];           /* the first 8 hex digits of the SHA-256 of the key sent, "" when none */
    int paused;               /* its write callback paused it: the step's byte budget was spent */
    char *save_to;            /* opts.save_to (malloc): final images decoded into files */
    int safe_retries;         /* retry_policy = "safe": retry only what provably was not billed */
    int may_have_billed;      /* the last attempt may have been billed (it reached the server) */
    char rate_limit[6][40];   /* the API response's x-ratelimit-* headers */
    /* generic API requests (request.c): the reply is kept as it came, with all its headers */
    int raw_reply;            /* a 2xx API reply is kept raw (M_RAW), never read for images or events */
    ir_buf all_headers;       /* with raw_reply: "name: value\n" lines of the response, names lowercased */
    char *endpoint_own;       /* an endpoint path built for this call (malloc), or NULL */
};

/* loop.c: the Lua state's loop (made on first use), and retry jitter in [0, 1) */
ir_loop *ir_get_loop(lua_State *L);
double ir_random(ir_loop *lp);
ir_xfer *ir_xfer_new(lua_State *L, int op, int route, int opts);
int  ir_xfer_setup_api(lua_State *L, ir_xfer *x, int route, int opts, const char *path, int json);
void ir_xfer_common_opts(ir_xfer *x);
void ir_xfer_submit(lua_State *L, int idx, ir_xfer *x);
void ir_xfer_release(ir_xfer *x);
/* Pushes the uservalue table of the transfer at idx (its route, opts, attempt log, images, ...). */
static inline void ir_xfer_uv(lua_State *L, int idx) { lua_getiuservalue(L, idx, 1); }
void ir_xfer_fail(lua_State *L, int xi, ir_xfer *x);       /* error on top of the stack */
void ir_xfer_fail_fields(lua_State *L, int xi, ir_xfer *x);
void ir_xfer_succeed(lua_State *L, int xi, ir_xfer *x);    /* result table on top */
void ir_xfer_wait(lua_State *L, ir_xfer *x);
int  ir_xfer_push_outcome(lua_State *L, int xi);
void ir_xfer_reply_done(lua_State *L, int xi, ir_xfer *x); /* a 2xx reply in full: walk it */
int  ir_xfer_stream_tick(lua_State *L, int xi, ir_xfer *x); /* a running stream's new events */
void ir_fetch_next(lua_State *L, int xi, ir_xfer *x);
void ir_fetch_done(lua_State *L, int xi, ir_xfer *x);
int  ir_loop_step(lua_State *L, ir_loop *lp, double timeout);
/* loop.c */
void ir_loop_init_multi(ir_loop *lp);
void ir_loop_free(ir_loop *lp);
void ir_loop_unwatch(ir_loop *lp);                 /* before curl_multi_cleanup */
void ir_loop_easy_opts(ir_loop *lp, CURL *easy);   /* every easy handle of the loop */
/* In write callbacks: 1 when this step's byte budget is spent (pause; the next step resumes). */
int  ir_loop_over_budget(ir_loop *lp, size_t n);
extern const luaL_Reg ir_loop_fns[];
void ir_loop_gc_slice(lua_State *L, ir_loop *lp, int bounded); /* pays the collector's debt */
/* xfer.c, for loop.c */
void ir_loop_activate(ir_loop *lp, double now);
int  ir_loop_settle(lua_State *L, ir_loop *lp);

/* sse.c */
int  ir_sse_feed(ir_xfer *x, const char *p, size_t n);
void ir_sse_reset(ir_xfer *x);
void ir_sse_free(ir_xfer *x);
/* Turns queued events into images (uv.partials, uv.images, uv.stream_results) and records
 * (uv.json, uv.stream_items, uv.stream_deltas). 1, or 0 with an error pushed. Lua context only. */
int  ir_sse_process(lua_State *L, int xi, ir_xfer *x);
extern const luaL_Reg ir_sse_fns[];

/* api.c: the transport of the request shapes (each pushes an error and returns 0 on failure) */
void ir_push_validation(lua_State *L, const char *field, const char *fmt, const char *arg);
/* req[field] as a path under base_url, pushed; NULL with a validation error pushed */
const char *ir_req_path(lua_State *L, int req, const char *field, const char *msg, size_t *n);
/* POSTs req.body (JSON text made by the Lua layer) as it is. */
int  ir_set_body_text(lua_State *L, ir_xfer *x, int req);
/* Sets up a transfer to endpoint (NULL: req.endpoint, checked) and keeps req.reader (the Lua
 * function that reads the reply, see api.c). */
int  ir_setup_shaped(lua_State *L, ir_xfer *x, int xi, int route, int req, int opts, const char *endpoint, int json);
/* A 2xx JSON reply: pushes {text =, images =, content_type =, status =}; 0 after failing the transfer. */
int  ir_push_reply(lua_State *L, int xi, ir_xfer *x);
void ir_fail_decode(lua_State *L, int xi, ir_xfer *x, const char *what);
int  ir_decode_body(lua_State *L, int xi, ir_xfer *x);
/* input.c: the bytes of an image given as bytes, a path or an Image (pushed; *mime set), and data URLs */
int  ir_image_bytes(lua_State *L, int idx, const char *field, const char **mime);
int  ir_push_data_url(lua_State *L, int idx, const char *field);
int  ir_image_from_data_url(lua_State *L, const char *url, size_t n, const char *field);

typedef int (*ir_builder)(lua_State *L, ir_xfer *x, int xi, int route, int params, int opts);
int ir_start(lua_State *L, const ir_ops *ops, ir_builder build);
int ir_run(lua_State *L, const ir_ops *ops, ir_builder build);
extern const ir_ops IR_GENERATE_OPS, IR_EDIT_OPS, IR_RESPOND_OPS;

/* api.c: NULL when a path can follow base_url as it is, else why not */
const char *ir_path_problem(const char *p, size_t n);

extern const luaL_Reg ir_api_fns[];
extern const luaL_Reg ir_request_fns[];   /* request.c: core.api / core.start_api */
extern const luaL_Reg ir_input_fns[];
extern const luaL_Reg ir_respond_fns[];

#endif
