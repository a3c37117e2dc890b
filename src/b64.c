/*
 * b64.c - base64 through libb64 (Debian libb64-dev 1.2).
 *
 * libb64 decodes in blocks with a state struct, so a payload can be decoded as it arrives, but it
 * silently skips characters outside the alphabet and never checks padding or length, and its
 * encoder breaks lines every 72 characters (CHARS_PER_LINE). This file adds the validation and
 * strips the line breaks; the codec itself is libb64's.
 */
#include <stdlib.h>
#include <string.h>
#include <b64/cdecode.h>
#include <b64/cencode.h>
#include "ir.h"

static unsigned char b64class[256]; /* 1 alphabet, 2 '=', 3 whitespace, 0 bad */
static unsigned char b64other[256];  /* 0 alphabet, 1 anything else: for the 8-wide scan below */

static void init_class(void)
{
    static int done = 0;
    const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (done) return;
    memset(b64other, 1, sizeof b64other);
    for (; *alpha; alpha++) {
        b64class[(unsigned char)*alpha] = 1;
        b64other[(unsigned char)*alpha] = 0;
    }
    b64class['='] = 2;
    b64class[' '] = b64class['\n'] = b64class['\r'] = b64class['\t'] = 3;
    done = 1;
}

void ir_b64dec_init(ir_b64dec *d)
{
    init_class();
    memset(d, 0, sizeof *d);
    base64_init_decodestate(&d->st);
}

/* Hands a run of alphabet characters to libb64, straight from where they are. */
static int decode_run(ir_b64dec *d, const char *run, size_t len, ir_buf *out)
{
    while (len) {
        size_t k = len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len;
        if (ir_buf_reserve(out, k / 4 * 3 + 3)) return -1;
        out->n += (size_t)base64_decode_block(run, (int)k, out->p + out->n, &d->st);
        d->nchars += k;
        run += k;
        len -= k;
    }
    return 0;
}

/* The end of the run of alphabet characters starting at i: 8 characters a step while all of them
 * are in the alphabet (one OR of table bits, no branch per character), then one at a time. */
static size_t alphabet_run(const unsigned char *s, size_t i, size_t n)
{
    while (i + 8 <= n && !(b64other[s[i]] | b64other[s[i + 1]] | b64other[s[i + 2]] | b64other[s[i + 3]] |
                           b64other[s[i + 4]] | b64other[s[i + 5]] | b64other[s[i + 6]] | b64other[s[i + 7]]))
        i += 8;
    while (i < n && !b64other[s[i]]) i++;
    return i;
}

int ir_b64dec_feed(ir_b64dec *d, const char *s, size_t n, ir_buf *out)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        i = alphabet_run((const unsigned char *)s, i, n); /* the common case: one long run */
        if (i > start) {
            if (d->npad) d->bad = 1; /* data after padding */
            if (decode_run(d, s + start, i - start, out)) return -1;
        }
        if (i == n) break;
        switch (b64class[(unsigned char)s[i]]) {
        case 2:
            d->npad++;
            break;
        case 3:
            break;
        default:
            d->bad = 1;
        }
        i++;
    }
    return 0;
}

int ir_b64dec_finish(ir_b64dec *d, ir_buf *out, const char **why)
{
    unsigned long rem = d->nchars % 4;
    if (d->bad) { *why = "a character outside the base64 alphabet"; return -1; }
    if (d->npad > 2) { *why = "too much padding"; return -1; }
    if (rem == 1) { *why = "a truncated base64 length"; return -1; }
    if (d->npad && (rem == 0 || (unsigned long)d->npad != 4 - rem)) { *why = "wrong base64 padding"; return -1; }
    if (out->p) out->p[out->n] = '\0';
    return 0;
}

int ir_b64_encode(const char *p, size_t n, ir_buf *out)
{
    base64_encodestate st;
    size_t chunk = 3 * 1024 * 16, i, start = out->n, j, w;
    base64_init_encodestate(&st);
    /* 4/3 of the input plus one line break per 72 characters plus the tail */
    for (i = 0; i < n; i += chunk) {
        size_t len = n - i < chunk ? n - i : chunk;
        if (ir_buf_reserve(out, len / 3 * 4 + len / 54 + 16)) return -1;
        out->n += (size_t)base64_encode_block(p + i, (int)len, out->p + out->n, &st);
    }
    if (ir_buf_reserve(out, 16)) return -1;
    out->n += (size_t)base64_encode_blockend(out->p + out->n, &st);
    for (j = w = start; j < out->n; j++)
        if (out->p[j] != '\n') out->p[w++] = out->p[j];
    out->n = w;
    out->p[w] = '\0';
    return 0;
}

/* core.b64encode(bytes) -> string (no line breaks) */
static int l_b64encode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    ir_buf out = {0};
    if (ir_b64_encode(s, n, &out)) { ir_buf_free(&out); return luaL_error(L, "out of memory"); }
    lua_pushlstring(L, out.p ? out.p : "", out.n);
    ir_buf_free(&out);
    return 1;
}

/* core.b64decode(text) -> bytes | nil, message. Whitespace is ignored; anything else outside the
 * alphabet, bad padding or a truncated length is an error. */
static int l_b64decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *why = NULL;
    ir_buf out = {0};
    ir_b64dec d;
    ir_b64dec_init(&d);
    if (ir_b64dec_feed(&d, s, n, &out) || ir_b64dec_finish(&d, &out, &why)) {
        ir_buf_free(&out);
        lua_pushnil(L);
        lua_pushfstring(L, "invalid base64: %s", why ? why : "out of memory");
        return 2;
    }
    lua_pushlstring(L, out.p ? out.p : "", out.n);
    ir_buf_free(&out);
    return 1;
}

/* core.c registers these into the module table */
const luaL_Reg ir_b64_fns[] = {
    {"b64encode", l_b64encode},
    {"b64decode", l_b64decode},
    {NULL, NULL}
};
