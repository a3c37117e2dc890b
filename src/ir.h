/*
 * ir.h - shared declarations of the imageroute.core C module.
 *
 * One concern per file, each with its list of Lua functions (ir_*_fns, registered into the module
 * table by core.c) and, for a userdata type or a setup, its ir_*_open(L) (see core.c).
 */
#ifndef IMAGEROUTE_IR_H
#define IMAGEROUTE_IR_H

#include <stddef.h>
#include <stdio.h>
#include <lua.h>
#include <lauxlib.h>
#include <curl/curl.h>
#include <b64/cdecode.h>

#define IR_VERSION "0.1.0"

/* The module's one exported symbol: everything else is built with -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define IR_EXPORT extern __attribute__((visibility("default")))
#else
#define IR_EXPORT extern
#endif

/* ---- Lua 5.3 and 5.4 ----
 * The core is written against Lua 5.4; built against Lua 5.3 (LUA_VERSION_NUM 503, e.g. for
 * Debian's pandoc, which embeds 5.3) the three 5.4-only uservalue calls map onto 5.3's single
 * uservalue, with 5.4's semantics for a userdata created with one user value: index 1 is that value,
 * any other index does not exist (get pushes nil and returns LUA_TNONE; set pops the value and
 * returns 0). So no userdata of the core may use more than one user value (keep a table in it
 * instead); lua_newuserdatauv with a constant count above 1 fails to compile against 5.3. */
#if !defined(LUA_VERSION_NUM) || LUA_VERSION_NUM < 503 || LUA_VERSION_NUM > 504
#error "imageroute.core needs Lua 5.3 or 5.4"
#endif
#if LUA_VERSION_NUM == 503
static inline void *ir_compat_newuserdatauv(lua_State *L, size_t size, int nuvalue)
{
    (void)nuvalue; /* 5.3: one user value, nil until set */
    return lua_newuserdata(L, size);
}
static inline int ir_compat_setiuservalue(lua_State *L, int idx, int n)
{
    if (n != 1) { lua_pop(L, 1); return 0; }
    lua_setuservalue(L, idx);   /* void in 5.3 */
    return 1;
}
static inline int ir_compat_getiuservalue(lua_State *L, int idx, int n)
{
    if (n != 1) { lua_pushnil(L); return LUA_TNONE; }
    return lua_getuservalue(L, idx);   /* returns the type in 5.3 too */
}
/* a constant nuv > 1 does not compile here (negative array size): 5.3 cannot hold a second value */
#define lua_newuserdatauv(L, size, nuv) \
    ((void)sizeof(char[1 - 2 * ((nuv) > 1)]), ir_compat_newuserdatauv((L), (size), (nuv)))
#define lua_setiuservalue(L, idx, n)    ir_compat_setiuservalue((L), (idx), (n))
#define lua_getiuservalue(L, idx, n)    ir_compat_getiuservalue((L), (idx), (n))
#endif
/* "5.4" or "5.3": the Lua the core was built against (the User-Agent names it) */
#define IR_LUA_VERSION LUA_VERSION_MAJOR "." LUA_VERSION_MINOR

/* registry / metatable names */
#define IR_ROUTE_MT    "imageroute.Route"
#define IR_IMAGE_MT    "imageroute.Image"
#define IR_ERROR_MT    "imageroute.Error"
#define IR_XFER_MT     "imageroute.Transfer"
#define IR_LOOP_KEY    "imageroute.loop"
#define IR_CJSON_KEY   "imageroute.cjson"

/* ---- buf.c: a growable byte buffer (malloc, never a Lua allocation) ---- */
typedef struct {
    char *p;
    size_t n;
    size_t cap;
} ir_buf;

int  ir_buf_reserve(ir_buf *b, size_t extra);            /* 0 on success, -1 out of memory */
int  ir_buf_add(ir_buf *b, const void *data, size_t n);  /* 0 / -1 */
int  ir_buf_addstr(ir_buf *b, const char *s);
void ir_buf_free(ir_buf *b);
double ir_now(void);                                    /* monotonic seconds */

/* ---- sniff.c: image type from magic bytes ---- */
/* Returns the MIME type ("image/png", "image/jpeg", "image/webp", "image/gif") or NULL;
 * *format gets "png" | "jpeg" | "webp" | "gif". */
const char *ir_sniff(const unsigned char *p, size_t n, const char **format);
/* Width and height from the header of a PNG, JPEG (SOF) or WebP; 0 when unknown. */
void ir_dimensions(const unsigned char *p, size_t n, long *w, long *h);

/* ---- b64.c: base64 through libb64, with validation libb64 does not do ---- */
typedef struct {
    base64_decodestate st;    /* libb64's block decoder state */
    unsigned long nchars;     /* alphabet characters seen */
    int npad;                 /* '=' seen */
    int bad;                  /* a character outside the alphabet, or data after padding */
} ir_b64dec;

void ir_b64dec_init(ir_b64dec *d);
/* Feeds characters: runs of the alphabet go straight to libb64 (no copy); whitespace is skipped;
 * padding is counted; anything else marks the input bad. Returns 0, or -1 when out of memory. */
int  ir_b64dec_feed(ir_b64dec *d, const char *s, size_t n, ir_buf *out);
/* Flushes and validates length and padding: 0 valid, -1 invalid (reason in *why). */
int  ir_b64dec_finish(ir_b64dec *d, ir_buf *out, const char **why);
/* Encodes without line breaks into out. 0 / -1. */
int  ir_b64_encode(const char *p, size_t n, ir_buf *out);

/* ---- extract.c: lift base64 images out of a JSON body while it streams in ---- */
/* Image-bearing string values ("b64_json", "result", "partial_image_b64") are decoded straight
 * into their own buffers as the bytes arrive; the JSON kept for cjson gets a short placeholder
 * ("@imageroute-image:N") instead, so a 4 MB response becomes a few hundred bytes of JSON plus
 * the decoded image, and no copy of the base64 text is ever made. */
#define IR_IMG_PLACEHOLDER "@imageroute-image:"
typedef struct ir_spill ir_spill; /* savefile.c: an image decoded straight into its file */

typedef struct {
    ir_buf data;              /* decoded bytes (when spilled: the bytes not yet written) */
    char dataurl_mime[64];    /* the MIME type of a data: URL prefix, "" if none */
    const char *bad;          /* why the base64 was invalid, or NULL */
    ir_spill *spill;          /* the file it goes to (opts.save_to), or NULL */
    int spill_no;             /* 1-based among the reply's images that go to files */
} ir_ximg;

typedef struct {
    ir_buf *json;             /* where the JSON (with placeholders) goes */
    int state;
    char key[24];
    size_t keylen;
    int key_over;             /* the string being read is longer than any image key */
    int string_ended;         /* a string just ended: a ':' next makes it a key */
    int want_image;           /* the next string value is an image */
    ir_b64dec dec;
    char pre[72];             /* the first characters of a diverted string (data: URL prefix) */
    size_t npre;
    int prefix;               /* 0 undecided, 1 reading "data:...," header, 2 decoding */
    ir_ximg *imgs;
    size_t nimgs, capimgs;
    int oom;
    int discard;              /* skip image strings without decoding them (a copy we do not need) */
    const char *save_to;      /* final images go to files next to this path (not owned), or NULL */
    int nspills;              /* images that went to files */
    size_t size_hint;         /* the body's announced length (0: unknown): the first image's buffer is
                                 sized from it, so it never grows by copying (a stall in one step) */
} ir_extract;

void ir_extract_init(ir_extract *e, ir_buf *json);
/* 0, or -1 when out of memory */
int  ir_extract_feed(ir_extract *e, const char *p, size_t n);
void ir_extract_free(ir_extract *e);   /* frees the images still owned by e (not e->json) */
/* Lua context only: image k as an Image pushed (a spilled one moved to its file), or an error
 * pushed and 0; ir_take_image takes it by its placeholder string ph, naming field in errors. */
int  ir_take_spilled(lua_State *L, ir_extract *ex, unsigned long k, const char *field);
int  ir_take_image(lua_State *L, ir_extract *ex, const char *ph, const char *field);
/* Sets data_url_mime on the Image at the top of the stack when im came as a data: URL. */
void ir_mark_data_url(lua_State *L, const ir_ximg *im);
/* 1 when the value at idx is a placeholder string */
int  ir_is_placeholder(lua_State *L, int idx);

/* ---- savefile.c: images decoded straight into files (the per-call option save_to) ---- */
#define IR_SPILL_CHUNK (256 * 1024) /* decoded bytes held before they are written */
/* A temporary file in the directory of target; NULL when it cannot be created. */
ir_spill *ir_spill_open(const char *target);
/* Writes data's bytes to the file (keeping the first bytes for sniffing) and empties data. 0 / -1. */
int  ir_spill_write(ir_spill *s, ir_buf *data);
/* Closes and removes the temporary file. */
void ir_spill_discard(ir_spill *s);
/* Moves the file to path and pushes a file-backed Image; 0 with an error pushed on failure (the
 * temporary file is removed either way). */
int  ir_spill_take(lua_State *L, ir_spill *s, const char *path, const char *field);
/* Pushes the name of image k (1-based) of count for target: target itself when count is 1,
 * else "<stem>-k<.ext>". */
void ir_push_numbered_path(lua_State *L, const char *target, int k, int count);

/* ---- json.c: the private lua-cjson instance ---- */
/* Decodes n bytes; pushes the value (cjson.null turned into nil inside tables) and returns 1, or
 * pushes a message and returns 0. Never raises. */
int ir_json_decode(lua_State *L, const char *s, size_t n);

/* ---- error.c: structured errors ---- */
/* Pushes a new error table {kind=, message=} with the Error metatable. */
void ir_push_error(lua_State *L, const char *kind, const char *fmt, ...);
/* Sets field k of the table on top of the stack to string v if v is not NULL. */
void ir_setfield_str(lua_State *L, const char *k, const char *v);
/* Copies at most max bytes of s into a short printable excerpt, pushed as a string. */
void ir_push_excerpt(lua_State *L, const char *s, size_t n, size_t max);

/* ---- redact.c: the one redaction step (no string leaving a call holds the key) ---- */
/* Replaces the key (n bytes; whole, or a piece cut by a size cap; in any ASCII case, %XX- or
 * JSON-escaped, or in base64 of either alphabet at any alignment, then the whole base64 token) in
 * every string of the value at idx: a string (replaced in its stack slot), a table (in place,
 * recursively, cycle-safe, bounded depth; string keys too) or an Image's fields (never its bytes).
 * Stack balanced; raises only on memory errors. */
void ir_redact(lua_State *L, int idx, const char *key, size_t n);

/* ---- image.c ---- */
typedef struct {
    unsigned char *p;       /* decoded bytes (malloc); NULL once released */
    size_t n;
    char mime[24];
    char format[8];
    int released;           /* image:release() freed the bytes; what follows was kept */
    char *file;             /* a file-backed image (save_to): its bytes are read from here */
    char sha256[65];
    long width, height;
} ir_image;

/* Pushes a new Image userdata that takes ownership of buf->p (buf is emptied). The image
 * user value is a table for extra fields. */
ir_image *ir_image_push(lua_State *L, ir_buf *buf);
/* Pushes a file-backed Image: n bytes in the file at path, head its first bytes, sha256 its hex. */
ir_image *ir_image_push_file(lua_State *L, const char *path, size_t n, const unsigned char *head, size_t headn,
                             const char *sha256);
/* loop.c: n bytes of C memory were handed to a Lua value; the collector is told in bounded
 * slices, one per loop step, instead of one long step now. */
void ir_gc_debt(lua_State *L, size_t n);

/* ---- route.c ---- */
/* Returns the Route at idx (raises when it is not one) and pushes nothing. */
void ir_check_route(lua_State *L, int idx);
/* Pushes field k of the route's config table at idx. */
int ir_route_get(lua_State *L, int idx, const char *k);
/* Pushes the route's api_key function (or nil) and returns its type. */
int ir_route_keyfn(lua_State *L, int idx);
int ir_is_loopback_host(const char *host);
/* The key a route holds itself (route{api_key = "..."}, kept in C memory, never in a Lua table), or
 * NULL; *len gets its length. */
const char *ir_route_secret(lua_State *L, int idx, size_t *len);
/* Shortest key sent to a non-loopback host (bytes): a shorter one cannot be redacted reliably. */
#define IR_KEY_MIN 8
/* NULL when k (n bytes) can be sent as a key, else why not (never quoting it): a control byte or a
 * space (CR, LF and NUL included), or shorter than IR_KEY_MIN when the host is not loopback. */
const char *ir_key_problem(const char *k, size_t n, int loopback);
/* route.c: The key for a request on the route at idx: key and len get the route's own key (api_key), the
 * result of its key function (called only when call_fn is set: when a request is set up), or the
 * variable named by api_key_env; *key is NULL when there is none. Pushes exactly one value (what
 * keeps *key alive, or nil); returns 1, or 0 with that value being a validation error (the key
 * function failed, or gave something that cannot be sent: the message never holds it). */
int ir_route_key(lua_State *L, int route, int call_fn, const char **key, size_t *len);
/* 1 when a header value (n bytes) has no CR, LF, NUL or other control byte (tab allowed). */
int ir_header_value_ok(const char *v, size_t n);

/* ---- addr.c: address classes for the download policy ---- */
struct sockaddr;
struct sockaddr_storage;
/* "public" | "loopback" | "private" | "link_local" | "unique_local" | "cgnat" | "unspecified" |
 * "multicast" | "reserved" (IPv4 embedded in IPv6 is classified as that IPv4 address). */
const char *ir_addr_class(const struct sockaddr *sa);
/* Parses an IP literal as the resolver would (inet_aton forms, inet_pton for IPv6, [brackets],
 * a %zone dropped) into *out. 1 on success, 0 when text is not an address. */
int  ir_addr_parse(const char *text, struct sockaddr_storage *out);
extern const luaL_Reg ir_addr_fns[];

/* ---- module openers: the Lua functions of each file, and the setups (types, the cjson instance) ---- */
extern const luaL_Reg ir_b64_fns[], ir_sniff_fns[], ir_error_fns[], ir_image_fns[],
    ir_route_fns[], ir_util_fns[];
void ir_json_open(lua_State *L);
void ir_error_open(lua_State *L);
void ir_image_open(lua_State *L);
void ir_route_open(lua_State *L);
void ir_xfer_open(lua_State *L);
/* util.c: return nil, <the value on top>; a userdata type's metatable with its methods in field */
int  ir_nil_err(lua_State *L);
size_t ir_push_file(lua_State *L, FILE *f); /* reads f to its end into a pushed string, closes f */
void ir_new_type(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods, const char *field);
void ir_sha256_hex(const void *p, size_t n, char out[65]);
/* incremental SHA-256: begin (NULL on failure), add, end (writes the hex and frees) */
void *ir_sha256_begin(void);
void ir_sha256_add(void *ctx, const void *p, size_t n);
void ir_sha256_end(void *ctx, char out[65]);

#endif
