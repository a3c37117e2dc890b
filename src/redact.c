/*
 * redact.c - the redaction step: no string that leaves a call holds the API key, as sent or as a
 * server may have transformed it.
 *
 * ir_redact(L, idx, key, n) walks the value at idx (a string, a table, an Image's fields) and
 * replaces the key in every string value and every string table key, in place, at any depth up to
 * IR_REDACT_DEPTH (deeper tables are replaced by a marker string; a table seen twice is walked
 * once, so cycles are safe). It runs once where a call's outcome is finalized (xfer.c finish), and
 * the call log runs it on its records before they are JSON-encoded (core.redact).
 *
 * What counts as the key in a string:
 *   - every occurrence of the whole key;
 *   - a piece of the key cut by a size cap (a header kept to 127 bytes, a 200-byte body excerpt, a
 *     truncated message): any run that starts with the key's first IR_REDACT_PIECE bytes and goes on
 *     as the key does, and any run that ends with the key's last IR_REDACT_PIECE bytes (for a key
 *     shorter than that, only the whole key);
 *   both matched ASCII-case-insensitively ("SK-PROJ-..." is the key), in the string as it is and
 *   in its decoded view, where every %XX (either case of hex) and every JSON string escape (`\/`,
 *   `\"`, `\\`, `\uXXXX`, ...: a raw body excerpt of a server that escapes slashes) is read as what
 *   it encodes, so a key percent-encoded or JSON-escaped in whole or in part counts (a key may hold
 *   any byte from 0x21 to 0xff but 0x7f: `/`, `+`, `=`, `"`, `\`, `%`, non-ASCII); the run replaced
 *   is the text that spells it, escapes included;
 *   - base64 of the key or of such a piece, after any bytes ("Basic " + base64("user:" + key)),
 *     standard or URL-safe alphabet, padded or not: at each of the 3 alignments the key can have
 *     among the encoded bytes, the characters that encode key bits only (the same whatever bytes
 *     come before or after) are searched for, case-sensitively, and a match replaces the whole
 *     base64 token around it (the maximal run of A-Z a-z 0-9 + / - _ =), so nothing decodable of
 *     the key is left. The needles are encoded with libb64, once per ir_redact call.
 * Each such run becomes "[redacted]" (or another marker when that one would itself match).
 * There is no length minimum: a 1-byte key is redacted too (which turns every such byte of the
 * outcome into the marker, and every base64 token holding the one character that encodes it).
 * Routes refuse keys shorter than IR_KEY_MIN for non-loopback hosts (route.c ir_key_problem),
 * because redacting a short key leaks it through the text around it.
 * Image bytes (an Image's cached `bytes`) are never touched.
 *
 * Cost per string of n bytes (key of kn bytes): O(n + kn) for the plain, case and percent forms
 * (the longest match of the key at every position, by the Z-algorithm, forwards for head pieces and
 * backwards for tail pieces), O(n) per base64 needle (at most 12, of at most 10 characters; a token
 * is widened once), all twice when s holds a `%` or a `\` (s as it is, then its decoded view), and
 * 2n bytes of scratch (4n + 8n then), a userdata, so a memory error in between leaks nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <b64/cencode.h>
#include "ir.h"
#include "xfer.h"


#define IR_REDACT_DEPTH 64
#define IR_REDACT_PIECE 8
#define IR_REDACT_B64 12 /* 3 alignments x (head, tail) x (standard, URL-safe) */

/* What is searched for, computed once per ir_redact call (a userdata on the stack meanwhile). */
typedef struct {
    size_t kn, piece;
    const unsigned char *lk;  /* the key, ASCII letters lower-cased */
    const unsigned char *lkr; /* the same, reversed */
    const size_t *zf, *zr;    /* their Z arrays: zf[i] = longest common prefix of lk and lk + i */
    char b64[IR_REDACT_B64][16];
    size_t b64n[IR_REDACT_B64];
    int nb64;
    const char *marker;
} rctx;

static const char *find(const char *h, size_t hn, const char *k, size_t kn)
{
    const char *end;
    if (kn == 0 || hn < kn) return NULL;
    end = h + (hn - kn);
    while (h <= end) {
        const char *p = (const char *)memchr(h, (unsigned char)k[0], (size_t)(end - h) + 1);
        if (!p) return NULL;
        if (memcmp(p, k, kn) == 0) return p;
        h = p + 1;
    }
    return NULL;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int is_b64char(unsigned char c) /* either alphabet, or padding */
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
           c == '-' || c == '_' || c == '=';
}

static void zarray(const unsigned char *p, size_t m, size_t *z)
{
    size_t i, l = 0, r = 0;
    if (!m) return;
    z[0] = m;
    for (i = 1; i < m; i++) {
        size_t k = 0;
        if (i < r) k = z[i - l] < r - i ? z[i - l] : r - i;
        if (i + k >= r) {
            while (i + k < m && p[k] == p[i + k]) k++;
            if (i + k > r) { l = i; r = i + k; }
        }
        z[i] = k;
    }
}

/* For every position of t (n bytes; read backwards when rev), the longest common prefix with p
 * (m bytes, Z array z); each one of at least piece bytes is marked in mask (at its place in t read
 * forwards). O(n + m): the Z-box [l, r) of the last longest match is never compared again.
 * Returns how many runs were found. */
static size_t mark_runs(const unsigned char *t, size_t n, int rev, const unsigned char *p, size_t m,
                        const size_t *z, size_t piece, unsigned char *mask)
{
    size_t i, l = 0, r = 0, cover = rev ? n : 0, runs = 0;
#define T(j) (rev ? t[n - 1 - (j)] : t[j])
    for (i = 0; i < n; i++) {
        size_t k = 0;
        if (i < r) k = z[i - l] < r - i ? z[i - l] : r - i;
        if (i + k >= r) {
            while (i + k < n && k < m && T(i + k) == p[k]) k++;
            if (i + k > r) { l = i; r = i + k; }
        }
        if (k < piece) continue;
        runs++;
        if (!rev) { /* [i, i + k), starts ascending: mark what the last ones did not */
            size_t from = i > cover ? i : cover;
            if (i + k > from) memset(mask + from, 1, i + k - from);
            if (i + k > cover) cover = i + k;
        } else {    /* [n - i - k, n - i), ends descending */
            size_t from = n - i - k, to = n - i < cover ? n - i : cover;
            if (to > from) memset(mask + from, 1, to - from);
            if (from < cover) cover = from;
        }
    }
#undef T
    return runs;
}

/* Reads 4 hex digits. */
static int hex4(const unsigned char *p, unsigned long *v)
{
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return 0;
        *v = *v * 16 + (unsigned long)h;
    }
    return 1;
}

/* The view of s (n bytes) with every %XX (either case of hex) and every JSON string escape (\" \\
 * \/ \b \f \n \r \t, \uXXXX and surrogate pairs, as UTF-8) decoded: its bytes go to dec and,
 * for each, off gets where the text that spells it starts in s (off[dn] = n). Returns dn (<= n);
 * *changed tells whether anything was decoded. */
static size_t decode_view(const char *s0, size_t n, unsigned char *dec, size_t *off, int *changed)
{
    static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
    const unsigned char *s = (const unsigned char *)s0;
    size_t i = 0, j = 0, k;
    *changed = 0;
    while (i < n) {
        size_t st = i, tn = 0;
        unsigned char tmp[4];
        unsigned long cp, lo;
        const char *e;
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            tmp[tn++] = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 3;
        } else if (s[i] == '\\' && i + 1 < n && s[i + 1] && (e = strchr(esc, s[i + 1]))) {
            tmp[tn++] = (unsigned char)val[e - esc];
            i += 2;
        } else if (s[i] == '\\' && i + 5 < n && s[i + 1] == 'u' && hex4(s + i + 2, &cp)) {
            size_t len = 6;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (i + 11 < n && s[i + 6] == '\\' && s[i + 7] == 'u' && hex4(s + i + 8, &lo) && lo >= 0xDC00 &&
                    lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    len = 12;
                } else {
                    cp = 0xDC00; /* a lone surrogate: left as it is */
                }
            }
            if (cp < 0x80) {
                tmp[tn++] = (unsigned char)cp;
            } else if (cp < 0x800) {
                tmp[tn++] = (unsigned char)(0xC0 | (cp >> 6));
                tmp[tn++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else if (cp >= 0x10000) {
                tmp[tn++] = (unsigned char)(0xF0 | (cp >> 18));
                tmp[tn++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                tmp[tn++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                tmp[tn++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else if (cp < 0xD800 || cp >= 0xE000) {
                tmp[tn++] = (unsigned char)(0xE0 | (cp >> 12));
                tmp[tn++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                tmp[tn++] = (unsigned char)(0x80 | (cp & 0x3F));
            }
            if (tn) i += len;
        }
        if (!tn) {
            dec[j] = s[i];
            off[j++] = i++;
            continue;
        }
        *changed = 1;
        for (k = 0; k < tn; k++) {
            dec[j] = tmp[k];
            off[j++] = st;
        }
    }
    off[j] = n;
    return j;
}

/* Marks in mask every byte of d (dn bytes; low is scratch of as many) in a run of the key in any
 * of the forms above; returns how many runs it found. */
static size_t mark_view(const rctx *c, const unsigned char *d, size_t dn, unsigned char *low, unsigned char *mask)
{
    size_t i, j, runs = 0;
    for (i = 0; i < dn; i++) low[i] = lower(d[i]);
    runs += mark_runs(low, dn, 0, c->lk, c->kn, c->zf, c->piece, mask);  /* head pieces, whole keys */
    runs += mark_runs(low, dn, 1, c->lkr, c->kn, c->zr, c->piece, mask); /* tail pieces */
    for (j = 0; j < (size_t)c->nb64; j++) { /* base64: the whole token around each needle */
        const char *p;
        i = 0;
        while ((p = find((const char *)d + i, dn - i, c->b64[j], c->b64n[j]))) {
            size_t from = (size_t)((const unsigned char *)p - d), to = from + c->b64n[j];
            while (from > 0 && is_b64char(d[from - 1])) from--;
            while (to < dn && is_b64char(d[to])) to++;
            memset(mask + from, 1, to - from);
            runs++;
            i = to;
        }
    }
    return runs;
}

/* Marks in the scratch userdata it pushes every byte of s that is part of the key in any of the
 * forms above, in s as it is and in its decoded view, and returns that mask (n bytes), or pops the
 * scratch again and returns NULL when s holds none. */
static const unsigned char *mark(lua_State *L, const char *s, size_t n, const rctx *c)
{
    unsigned char *mask, *low;
    size_t *off = NULL, runs, size;
    int escapes = memchr(s, '%', n) || memchr(s, '\\', n);
    if (n > ((size_t)-1 - 64) / 13) return NULL; /* never: Lua strings are far shorter */
    size = escapes ? (n + 1) * sizeof(size_t) + 4 * n + 1 : 2 * n + 1; /* [off] mask low [dec dmask] */
    mask = (unsigned char *)lua_newuserdatauv(L, size, 0);
    if (escapes) {
        off = (size_t *)(void *)mask;
        mask = (unsigned char *)(off + n + 1);
    }
    low = mask + n;
    memset(mask, 0, n);
    runs = mark_view(c, (const unsigned char *)s, n, low, mask);
    if (escapes) {
        unsigned char *dec = low + n, *dmask = dec + n;
        int changed;
        size_t dn = decode_view(s, n, dec, off, &changed), j, r;
        memset(dmask, 0, dn);
        if (changed && (r = mark_view(c, dec, dn, low, dmask))) {
            runs += r;
            for (j = 0; j < dn; j++) { /* back to the bytes of s: a decoded byte stands for its whole escape */
                size_t k = j + 1;
                if (!dmask[j]) continue;
                while (k < dn && off[k] == off[j]) k++;
                memset(mask + off[j], 1, off[k] - off[j]);
            }
        }
    }
    if (!runs) {
        lua_pop(L, 1);
        return NULL;
    }
    return mask;
}

static const char *marker_for(lua_State *L, const rctx *c)
{
    static const char *const M[] = {"[redacted]", "[REDACTED]", "***", "###", "?"};
    size_t i;
    for (i = 0; i < sizeof M / sizeof M[0] - 1; i++) {
        if (!mark(L, M[i], strlen(M[i]), c)) break;
        lua_pop(L, 1);
    }
    return M[i];
}

/* Pushes s with the key redacted and returns 1, or pushes nothing and returns 0 when s holds none
 * of it. Never raises except on memory errors of the Lua allocator. */
static int redact_string(lua_State *L, const char *s, size_t n, const rctx *c)
{
    const unsigned char *mask;
    int rounds, pushed = 0;
    for (rounds = 0; rounds < 4; rounds++) { /* a marker next to text can never rebuild the key... */
        luaL_Buffer b;
        size_t i = 0;
        if (!(mask = mark(L, s, n, c))) break; /* pushes the scratch holding the mask */
        luaL_buffinit(L, &b);
        while (i < n) {
            if (mask[i]) {
                luaL_addstring(&b, c->marker);
                while (i < n && mask[i]) i++;
            } else {
                size_t j = i;
                while (j < n && !mask[j]) j++;
                luaL_addlstring(&b, s + i, j - i);
                i = j;
            }
        }
        luaL_pushresult(&b);
        lua_remove(L, -2); /* the scratch */
        if (pushed) lua_remove(L, -2);
        pushed = 1;
        s = lua_tolstring(L, -1, &n);
    }
    if (pushed && mark(L, s, n, c)) { /* ...but be sure */
        lua_pop(L, 2);
        lua_pushstring(L, c->marker);
    }
    return pushed;
}

/* The base64 needles: for the key's first and last piece bytes, at each alignment a (the bytes
 * before it in its 3-byte group), the characters of base64(a zero bytes + piece) that hold key bits
 * only: from ceil(8a / 6) up to floor(8 (a + piece) / 6); both alphabets, each needle once. */
static void b64_needles(rctx *c, const char *key)
{
    size_t part, a;
    c->nb64 = 0;
    for (part = 0; part < 2; part++) {
        const char *src = part ? key + (c->kn - c->piece) : key;
        for (a = 0; a < 3; a++) {
            char in[2 + IR_REDACT_PIECE], out[40];
            size_t from = (8 * a + 5) / 6, to = 8 * (a + c->piece) / 6, i, w, alpha;
            base64_encodestate st;
            int got;
            if (to <= from) continue; /* a key of 1 or 2 bytes: no character holds its bits only */
            memset(in, 0, a);
            memcpy(in + a, src, c->piece);
            base64_init_encodestate(&st);
            got = base64_encode_block(in, (int)(a + c->piece), out, &st);
            got += base64_encode_blockend(out + got, &st);
            for (i = w = 0; i < (size_t)got; i++)
                if (out[i] != '\n') out[w++] = out[i];
            for (alpha = 0; alpha < 2; alpha++) {
                char *nd = c->b64[c->nb64];
                int k, dup = 0;
                memcpy(nd, out + from, to - from);
                if (alpha)
                    for (i = 0; i < to - from; i++) nd[i] = nd[i] == '+' ? '-' : nd[i] == '/' ? '_' : nd[i];
                for (k = 0; k < c->nb64 && !dup; k++)
                    dup = c->b64n[k] == to - from && memcmp(c->b64[k], nd, to - from) == 0;
                if (!dup) c->b64n[c->nb64++] = to - from;
            }
        }
    }
}

/* Pushes the userdata holding what is searched for in every string. */
static const rctx *push_ctx(lua_State *L, const char *key, size_t kn)
{
    rctx *c;
    unsigned char *lk, *lkr;
    size_t *zf, *zr, i;
    if (kn > ((size_t)-1 - sizeof *c) / (2 * sizeof(size_t) + 2)) luaL_error(L, "redaction: key too long");
    c = (rctx *)lua_newuserdatauv(L, sizeof *c + kn * (2 * sizeof(size_t) + 2), 0);
    zf = (size_t *)(void *)(c + 1);
    zr = zf + kn;
    lk = (unsigned char *)(zr + kn);
    lkr = lk + kn;
    c->kn = kn;
    c->piece = kn < IR_REDACT_PIECE ? kn : IR_REDACT_PIECE;
    for (i = 0; i < kn; i++) lk[i] = lkr[kn - 1 - i] = lower((unsigned char)key[i]);
    zarray(lk, kn, zf);
    zarray(lkr, kn, zr);
    c->lk = lk;
    c->lkr = lkr;
    c->zf = zf;
    c->zr = zr;
    b64_needles(c, key);
    c->marker = NULL;
    c->marker = marker_for(L, c);
    return c;
}

static void walk(lua_State *L, int t, const rctx *c, int seen, int depth, int image_fields);

/* The value on top of the stack, found under a table: returns 1 and replaces it on the stack when
 * it was changed (a redacted string, or a marker for a table nested too deep). */
static int redact_top(lua_State *L, const rctx *c, int seen, int depth)
{
    int t = lua_type(L, -1);
    if (t == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (redact_string(L, s, n, c)) { lua_remove(L, -2); return 1; }
    } else if (t == LUA_TTABLE) {
        if (depth >= IR_REDACT_DEPTH) {
            lua_pop(L, 1);
            lua_pushliteral(L, "[removed: nested deeper than the redaction walks]");
            return 1;
        }
        walk(L, lua_gettop(L), c, seen, depth + 1, 0);
    } else if (t == LUA_TUSERDATA && luaL_testudata(L, -1, IR_IMAGE_MT)) {
        if (lua_getiuservalue(L, -1, 1) == LUA_TTABLE) walk(L, lua_gettop(L), c, seen, depth + 1, 1);
        lua_pop(L, 1);
    }
    return 0;
}

static void walk(lua_State *L, int t, const rctx *c, int seen, int depth, int image_fields)
{
    int renames = 0, i;
    luaL_checkstack(L, 8, "redaction walk");
    lua_pushvalue(L, t);
    if (lua_rawget(L, seen) != LUA_TNIL) { lua_pop(L, 1); return; }
    lua_pop(L, 1);
    lua_pushvalue(L, t);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (image_fields && lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "bytes") == 0) {
            lua_pop(L, 1);
            continue;
        }
        if (redact_top(L, c, seen, depth)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t); /* assigning to an existing field during lua_next is allowed */
        } else {
            lua_pop(L, 1);
        }
        if (lua_type(L, -1) == LUA_TSTRING) { /* a key holding the key: renamed after the traversal */
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            if (redact_string(L, s, n, c)) {
                luaL_checkstack(L, 4, "redaction walk");
                lua_pushvalue(L, -2);
                lua_insert(L, -3); /* ... old new key */
                lua_insert(L, -3); /* ... new old key */
                renames++;
            }
        }
    }
    for (i = 0; i < renames; i++) { /* stack: ... [new old] * renames */
        lua_pushvalue(L, -1);
        lua_rawget(L, t);         /* new old value */
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_rawset(L, t);         /* t[old] = nil */
        lua_remove(L, -2);        /* new value */
        lua_rawset(L, t);         /* t[new] = value */
    }
}

void ir_redact(lua_State *L, int idx, const char *key, size_t kn)
{
    const rctx *c;
    int seen;
    if (!key || !kn) return;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TSTRING && lua_type(L, idx) != LUA_TTABLE && !luaL_testudata(L, idx, IR_IMAGE_MT))
        return;
    luaL_checkstack(L, 10, "redaction");
    c = push_ctx(L, key, kn);
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (redact_string(L, s, n, c)) lua_replace(L, idx);
        lua_pop(L, 1);
        return;
    }
    lua_newtable(L);
    seen = lua_gettop(L);
    lua_pushvalue(L, idx);
    redact_top(L, c, seen, 0);
    lua_pop(L, 3);
}
