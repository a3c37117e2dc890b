/*
 * loop.c - drives the one libcurl multi handle of a Lua state by sockets and timers.
 *
 * libcurl tells which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to call it back
 * (CURLMOPT_TIMERFUNCTION); the loop answers with curl_multi_socket_action. Two ways to wait:
 *
 *   - on its own (core.step, and the blocking calls): poll(2) over the watched sockets, so any
 *     descriptor number works (no FD_SETSIZE limit);
 *   - in a host's event loop (cqueues, luv, ...): core.watch(true) queues every socket change and
 *     timer change; the Lua layer hands them to the host's callbacks (core.events), and the host
 *     calls core.socket_action(fd, what) / core.timer_action() when a socket is ready or the timer
 *     fires.
 *
 * The libcurl callbacks only record into C arrays: they never call Lua. Lua runs after libcurl has
 * returned (ir_loop_settle in xfer.c). The timer told to a host merges libcurl's timer with the
 * next retry that is due, so a host needs nothing else to drive the loop.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>
#include "ir.h"
#include "xfer.h"


/* Hands what finished (and the partial images that streamed in) to Lua: xfer.c's ir_loop_settle,
 * through the pointer a transfer set (none before the first transfer). */
static int settle(lua_State *L, ir_loop *lp)
{
    return lp->settle ? lp->settle(L, lp) : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* socket tables                                                                               */

static int sock_push(ir_sock **arr, size_t *n, size_t *cap, curl_socket_t fd, int what)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ir_sock *p = (ir_sock *)realloc(*arr, nc * sizeof *p);
        if (!p) return -1;
        *arr = p;
        *cap = nc;
    }
    (*arr)[*n].fd = fd;
    (*arr)[*n].what = what;
    (*n)++;
    return 0;
}

static void queue_change(ir_loop *lp, curl_socket_t fd, int what)
{
    size_t i;
    if (!lp->host) return;
    for (i = 0; i < lp->nchanges; i++) { /* the latest state of a socket replaces an older one */
        if (lp->changes[i].fd == fd) {
            lp->changes[i].what = what;
            return;
        }
    }
    if (sock_push(&lp->changes, &lp->nchanges, &lp->capchanges, fd, what)) lp->oom = 1;
}

/* libcurl: watch (or stop watching) socket s. Records only. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *clientp, void *socketp)
{
    ir_loop *lp = (ir_loop *)clientp;
    size_t i;
    (void)easy;
    (void)socketp;
    for (i = 0; i < lp->nsocks; i++)
        if (lp->socks[i].fd == s) break;
    if (what == CURL_POLL_REMOVE) {
        if (i < lp->nsocks) lp->socks[i] = lp->socks[--lp->nsocks];
    } else if (i < lp->nsocks) {
        lp->socks[i].what = what;
    } else if (sock_push(&lp->socks, &lp->nsocks, &lp->capsocks, s, what)) {
        lp->oom = 1;
        return -1; /* libcurl fails the transfer: better than a socket nobody watches */
    }
    queue_change(lp, s, what);
    return 0;
}

/* libcurl: call curl_multi_socket_action(CURL_SOCKET_TIMEOUT) in timeout_ms (-1: no timer). */
static int timer_cb(CURLM *multi, long timeout_ms, void *clientp)
{
    ir_loop *lp = (ir_loop *)clientp;
    (void)multi;
    lp->curl_due = timeout_ms < 0 ? -1 : ir_now() + (double)timeout_ms / 1000.0;
    return 0;
}

/* libcurl: close a socket. While a host loop watches, the close waits until the host has been
 * told to stop watching it (core.close_removed), so a host never polls a closed descriptor or a
 * reused number. */
static int closesocket_cb(void *clientp, curl_socket_t fd)
{
    ir_loop *lp = (ir_loop *)clientp;
    if (lp->host && sock_push(&lp->closed, &lp->nclosed, &lp->capclosed, fd, CURL_POLL_REMOVE) == 0) return 0;
    return close(fd);
}

static void close_deferred(ir_loop *lp)
{
    size_t i;
    for (i = 0; i < lp->nclosed; i++) close(lp->closed[i].fd);
    lp->nclosed = 0;
}

void ir_loop_easy_opts(ir_loop *lp, CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, (void *)lp);
}

void ir_loop_init_multi(ir_loop *lp)
{
    lp->curl_due = -1;
    lp->reported_due = -2;
    lp->wake_due = -1;
    curl_multi_setopt(lp->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(lp->multi, CURLMOPT_SOCKETDATA, (void *)lp);
    curl_multi_setopt(lp->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(lp->multi, CURLMOPT_TIMERDATA, (void *)lp);
}

void ir_loop_free(ir_loop *lp)
{
    close_deferred(lp);
    free(lp->socks);
    free(lp->changes);
    free(lp->closed);
    lp->socks = lp->changes = lp->closed = NULL;
    lp->nsocks = lp->capsocks = lp->nchanges = lp->capchanges = lp->nclosed = lp->capclosed = 0;
}

void ir_loop_unwatch(ir_loop *lp)
{
    lp->host = 0;
    close_deferred(lp);
}

/* ------------------------------------------------------------------------------------------ */
/* driving libcurl                                                                             */

/* Body bytes one step (step, socket_action, timer_action) takes in across all transfers. Decoding
 * runs as the bytes arrive (base64 to image bytes, JSON, SSE), so this bounds the time one step
 * can hold the host's loop: a fast link can deliver a whole 4 MB image in one read otherwise. */
#define IR_STEP_BYTES (32 * 1024)

int ir_loop_over_budget(ir_loop *lp, size_t n)
{
    if (lp->budget == 0) return 1;
    lp->budget = n >= lp->budget ? 0 : lp->budget - n; /* one callback's data is taken whole */
    return 0;
}

/* A new step: a fresh byte budget (bounded for the steps of a host loop; unbounded for a blocking
 * wait, where nothing else waits on the thread and fewer, larger steps cost less CPU), and the
 * transfers paused by the last one resume (libcurl hands their held data to the write callback
 * from inside curl_easy_pause). */
static void begin_step(lua_State *L, ir_loop *lp, int bounded)
{
    ir_xfer *x;
    ir_loop_gc_slice(L, lp, bounded);
    lp->budget = bounded ? IR_STEP_BYTES : (size_t)-1;
    for (x = lp->head; x; x = x->next) {
        if (x->paused && x->easy) {
            x->paused = 0;
            curl_easy_pause(x->easy, CURLPAUSE_CONT);
        }
    }
}

/* The loop of the Lua state (in the registry), made on first use. */
static int loop_gc(lua_State *L)
{
    ir_loop *lp = (ir_loop *)lua_touserdata(L, 1);
    if (lp->multi) {
        ir_loop_unwatch(lp);
        curl_multi_cleanup(lp->multi);
        lp->multi = NULL;
    }
    ir_loop_free(lp);
    return 0;
}

ir_loop *ir_get_loop(lua_State *L)
{
    ir_loop *lp;
    if (lua_getfield(L, LUA_REGISTRYINDEX, IR_LOOP_KEY) == LUA_TUSERDATA) {
        lp = (ir_loop *)lua_touserdata(L, -1);
        lua_pop(L, 1);
        return lp;
    }
    lua_pop(L, 1);
    lp = (ir_loop *)lua_newuserdatauv(L, sizeof *lp, 0);
    memset(lp, 0, sizeof *lp);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, loop_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lp->multi = curl_multi_init();
    if (!lp->multi) luaL_error(L, "curl_multi_init failed");
    curl_multi_setopt(lp->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
    ir_loop_init_multi(lp);
    lua_setfield(L, LUA_REGISTRYINDEX, IR_LOOP_KEY);
    lp->seed = (unsigned long)time(NULL) ^ (unsigned long)(size_t)lp;
    return lp;
}

double ir_random(ir_loop *lp) /* xorshift, for retry jitter only */
{
    unsigned long x = lp->seed ? lp->seed : 88172645463325252UL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    lp->seed = x;
    return (double)(x % 1000000UL) / 1000000.0;
}

/* Collector work per step, in KB of allocation it stands for (LUA_GCSTEP's unit). */
#define IR_GC_SLICE_KB 128

void ir_gc_debt(lua_State *L, size_t n)
{
    ir_loop *lp;
    if (n < 64 * 1024) return;
    lp = ir_get_loop(L);
    lp->gc_debt += n;
    if (lp->live == 0) ir_loop_gc_slice(L, lp, 0); /* no loop stepping soon: pay it now */
}

/* Pays the collector's debt: a bounded slice in a host loop's step, all of it otherwise (the
 * images of a blocking caller are collected as promptly as before, which costs less overall). */
void ir_loop_gc_slice(lua_State *L, ir_loop *lp, int bounded)
{
    size_t kb = lp->gc_debt / 1024;
    if (kb == 0) return;
    if (bounded && kb > IR_GC_SLICE_KB) kb = IR_GC_SLICE_KB;
    lp->gc_debt -= kb * 1024;
    lua_gc(L, LUA_GCSTEP, (int)kb);
}

static int any_paused(ir_loop *lp)
{
    ir_xfer *x;
    for (x = lp->head; x; x = x->next)
        if (x->paused) return 1;
    return 0;
}

/* The earliest of libcurl's timer and the next retry that is due; < 0 when neither. */
static double next_due(ir_loop *lp)
{
    double due = lp->curl_due;
    ir_xfer *x;
    if (lp->wake_due >= 0 && (due < 0 || lp->wake_due < due)) due = lp->wake_due;
    if (any_paused(lp)) return ir_now(); /* paused by the byte budget: the next step is due now */
    for (x = lp->head; x; x = x->next)
        if (x->state == X_WAIT && (due < 0 || x->due < due)) due = x->due;
    return due;
}

/* Starts due attempts and fires libcurl's timer when it is due. */
static void run_timers(ir_loop *lp)
{
    int running;
    double now = ir_now();
    if (lp->activate) lp->activate(lp, now); /* adding a handle sets libcurl's timer (often to 0) */
    if (lp->wake_due >= 0 && lp->wake_due <= now) lp->wake_due = -1; /* Lua's waiters check again now */
    if (lp->curl_due >= 0 && lp->curl_due <= ir_now()) {
        lp->curl_due = -1; /* libcurl sets it again from inside the call when it needs one */
        curl_multi_socket_action(lp->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

static int mask_of(const char *what)
{
    if (!what) return 0;
    if (strcmp(what, "in") == 0) return CURL_CSELECT_IN;
    if (strcmp(what, "out") == 0) return CURL_CSELECT_OUT;
    if (strcmp(what, "inout") == 0) return CURL_CSELECT_IN | CURL_CSELECT_OUT;
    if (strcmp(what, "err") == 0) return CURL_CSELECT_ERR;
    return 0; /* libcurl checks the socket itself */
}

/* One step: start due attempts, move bytes, wait at most `timeout` seconds for activity, handle
 * what finished. A step with timeout 0 (a host loop polling) takes in at most IR_STEP_BYTES.
 * Returns the number of live transfers. */
int ir_loop_step(lua_State *L, ir_loop *lp, double timeout)
{
    double now, due, wait;
    int running;
    begin_step(L, lp, timeout <= 0);
    run_timers(lp);
    if (settle(L, lp)) return lp->live; /* partial images and finished calls first */
    if (lp->wake_due >= 0 && lp->wake_due <= ir_now()) lp->wake_due = -1; /* a wake-up that is due: over */
    if (!lp->live && lp->wake_due < 0) return 0;
    now = ir_now();
    due = next_due(lp);
    wait = timeout;
    if (due >= 0 && due - now < wait) wait = due - now;
    if (wait < 0) wait = 0;
    if (lp->nsocks > 0) {
        struct pollfd small[16], *pf = small;
        size_t i, n = lp->nsocks;
        int r;
        if (n > sizeof small / sizeof small[0]) {
            pf = (struct pollfd *)malloc(n * sizeof *pf);
            if (!pf) { pf = small; n = sizeof small / sizeof small[0]; }
        }
        for (i = 0; i < n; i++) {
            pf[i].fd = lp->socks[i].fd;
            pf[i].events = (short)(((lp->socks[i].what & CURL_POLL_IN) ? POLLIN : 0) |
                                   ((lp->socks[i].what & CURL_POLL_OUT) ? POLLOUT : 0));
            pf[i].revents = 0;
        }
        r = poll(pf, (nfds_t)n, (int)(wait * 1000 + 0.999));
        for (i = 0; r > 0 && i < n; i++) {
            int ev = 0;
            if (!pf[i].revents) continue;
            if (pf[i].revents & (POLLIN | POLLHUP)) ev |= CURL_CSELECT_IN;
            if (pf[i].revents & POLLOUT) ev |= CURL_CSELECT_OUT;
            if (pf[i].revents & (POLLERR | POLLNVAL)) ev |= CURL_CSELECT_ERR;
            /* the table may change inside the call: the copy in pf stays valid */
            curl_multi_socket_action(lp->multi, pf[i].fd, ev, &running);
        }
        if (pf != small) free(pf);
    } else if (wait > 0) {
        struct timespec ts;
        ts.tv_sec = (time_t)wait;
        ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }
    run_timers(lp);
    settle(L, lp);
    return lp->live;
}

/* ------------------------------------------------------------------------------------------ */
/* Lua API                                                                                     */

static const char *what_name(int what)
{
    switch (what) {
    case CURL_POLL_IN: return "in";
    case CURL_POLL_OUT: return "out";
    case CURL_POLL_INOUT: return "inout";
    default: return "remove";
    }
}

/* core.step([timeout]) -> live : runs the loop once, waiting at most timeout seconds (default 0) */
static int l_step(lua_State *L)
{
    double t = luaL_optnumber(L, 1, 0);
    lua_pushinteger(L, ir_loop_step(L, ir_get_loop(L), t < 0 ? 0 : t));
    return 1;
}

/* core.fds() -> read_fds, write_fds, timeout
 * The sockets libcurl wants watched (lists of integers, any descriptor number) and the longest
 * wait in seconds before core.step(0) must run anyway (libcurl's timer and the next retry that is
 * due); timeout is nil when nothing is pending. */
static int l_fds(lua_State *L)
{
    ir_loop *lp = ir_get_loop(L);
    size_t i;
    int nr = 0, nw = 0;
    double due, now = ir_now();
    lua_createtable(L, (int)lp->nsocks, 0);
    lua_createtable(L, (int)lp->nsocks, 0);
    for (i = 0; i < lp->nsocks; i++) {
        if (lp->socks[i].what & CURL_POLL_IN) { lua_pushinteger(L, (lua_Integer)lp->socks[i].fd); lua_rawseti(L, -3, ++nr); }
        if (lp->socks[i].what & CURL_POLL_OUT) { lua_pushinteger(L, (lua_Integer)lp->socks[i].fd); lua_rawseti(L, -2, ++nw); }
    }
    due = next_due(lp);
    if (due < 0 && lp->live) due = now + 1.0;
    if (due < 0) lua_pushnil(L);
    else lua_pushnumber(L, due > now ? due - now : 0);
    return 3;
}

/* core.wake_at(t) : the loop's timer fires no later than monotonic time t (seconds, as core.now):
 * a blocking step sleeps until then at most, and a host loop is told the timer. For Lua-side waits
 * (a rate limit) that have no transfer to wait on. The earliest request wins until it is due. */
static int l_wake_at(lua_State *L)
{
    ir_loop *lp = ir_get_loop(L);
    double t = luaL_checknumber(L, 1);
    if (lp->wake_due < 0 || lp->wake_due <= ir_now() || t < lp->wake_due) lp->wake_due = t;
    return 0;
}

/* core.now() -> monotonic seconds (the clock of wake_at and the loop) */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, ir_now());
    return 1;
}

/* core.pending() -> number of live transfers */
static int l_pending(lua_State *L)
{
    lua_pushinteger(L, ir_get_loop(L)->live);
    return 1;
}

/* core.watch(on) : with on = true, queue every socket and timer change for a host loop (the ones
 * that exist now are queued at once); false stops queueing. */
static int l_watch(lua_State *L)
{
    ir_loop *lp = ir_get_loop(L);
    int on = lua_toboolean(L, 1);
    lp->nchanges = 0;
    lp->host = on;
    lp->reported_due = -2;
    if (!on) close_deferred(lp);
    if (on) {
        size_t i;
        for (i = 0; i < lp->nsocks; i++) queue_change(lp, lp->socks[i].fd, lp->socks[i].what);
    }
    return 0;
}

/* core.events() -> changes, timer_changed, seconds
 * The socket changes since the last call, as a list of {fd, what} (what: "in" | "out" | "inout" |
 * "remove"), oldest first; then whether the loop's timer changed since last told, and if so the
 * seconds until it fires (0 or more) or nil when no timer is needed. */
static int l_events(lua_State *L)
{
    ir_loop *lp = ir_get_loop(L);
    size_t i;
    double due = next_due(lp), now = ir_now();
    if (lp->oom) {
        lp->oom = 0;
        return luaL_error(L, "imageroute: out of memory tracking sockets");
    }
    lua_createtable(L, (int)lp->nchanges, 0);
    for (i = 0; i < lp->nchanges; i++) {
        lua_createtable(L, 2, 0);
        lua_pushinteger(L, (lua_Integer)lp->changes[i].fd);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, what_name(lp->changes[i].what));
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lp->nchanges = 0;
    if (lp->reported_due != -2 && ((due < 0 && lp->reported_due < 0) ||
                                   (due >= 0 && lp->reported_due >= 0 && due == lp->reported_due))) {
        lua_pushboolean(L, 0);
        return 2;
    }
    lp->reported_due = due < 0 ? -1 : due;
    lua_pushboolean(L, 1);
    if (due < 0) lua_pushnil(L);
    else lua_pushnumber(L, due > now ? due - now : 0);
    return 3;
}

/* core.close_removed() : closes the sockets libcurl let go of, once the host has stopped watching
 * them (after the "remove" changes of events() were handed over). */
static int l_close_removed(lua_State *L)
{
    close_deferred(ir_get_loop(L));
    return 0;
}

/* core.socket_action(fd, what) -> live : socket fd is ready ("in" | "out" | "inout" | "err", or
 * nil to let libcurl check it); moves its bytes and handles what finished. */
static int l_socket_action(lua_State *L)
{
    ir_loop *lp = ir_get_loop(L);
    lua_Integer fd = luaL_checkinteger(L, 1);
    int running, mask = mask_of(luaL_optstring(L, 2, NULL));
    begin_step(L, lp, 1);
    run_timers(lp);
    curl_multi_socket_action(lp->multi, (curl_socket_t)fd, mask, &running);
    run_timers(lp);
    settle(L, lp);
    lua_pushinteger(L, lp->live);
    return 1;
}

/* core.timer_action() -> live : the host's timer fired: fires libcurl's timer when due, starts
 * the retries that are due, handles what finished. The next timer is told again by events(). */
static int l_timer_action(lua_State *L)
{
    ir_loop *lp = ir_get_loop(L);
    begin_step(L, lp, 1);
    run_timers(lp);
    settle(L, lp);
    lp->reported_due = -2;
    lua_pushinteger(L, lp->live);
    return 1;
}

/* core.c registers these into the module table */
const luaL_Reg ir_loop_fns[] = {
    {"step", l_step},
    {"pending", l_pending},
    {"fds", l_fds},
    {"watch", l_watch},
    {"wake_at", l_wake_at},
    {"now", l_now},
    {"events", l_events},
    {"close_removed", l_close_removed},
    {"socket_action", l_socket_action},
    {"timer_action", l_timer_action},
    {NULL, NULL}
};
