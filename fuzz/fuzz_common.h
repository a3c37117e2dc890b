/*
 * fuzz_common.h - shared by the libFuzzer harnesses: chunk plans driven by the input, and a
 * check that aborts (a finding) with a message.
 *
 * Chunked input layout: byte 0 is the number of plan bytes k (k = byte0 % 8), then k plan bytes,
 * then the payload. The payload is cut into chunks whose sizes are the plan bytes in turn
 * (a plan byte 0 means "all the rest"); with k = 0 the payload is one chunk. So chunk boundaries
 * are under the fuzzer's control, as they are under the network's in the real thing.
 */
#ifndef IMAGEROUTE_FUZZ_COMMON_H
#define IMAGEROUTE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The harnesses' own code (chunking, checks, reference models) is not instrumented for coverage:
 * only src/ guides the fuzzer, and the models' loops do not slow every execution down with
 * comparison tracing. */
#if defined(__clang__)
#define FZ_NOCOV __attribute__((no_sanitize("coverage")))
#else
#define FZ_NOCOV
#endif

typedef struct {
    const uint8_t *plan;
    size_t nplan, i;
    const uint8_t *p;    /* payload */
    size_t n, off;
} fz_chunker;

/* Parses the header; returns 0, or -1 when the input is too short to hold it. */
FZ_NOCOV static inline int fz_chunker_init(fz_chunker *c, const uint8_t *data, size_t size)
{
    size_t k;
    memset(c, 0, sizeof *c);
    if (size < 1) return -1;
    k = data[0] % 8;
    if (size < 1 + k) return -1;
    c->plan = data + 1;
    c->nplan = k;
    c->p = data + 1 + k;
    c->n = size - 1 - k;
    return 0;
}

/* The next chunk as a fresh malloc'd copy of exactly its size (so that ASan sees any read past
 * a chunk's end, which a pointer into the whole input would hide). NULL when done. */
FZ_NOCOV static inline char *fz_chunk_next(fz_chunker *c, size_t *len)
{
    size_t want, left = c->n - c->off;
    char *q;
    if (left == 0) return NULL;
    want = left;
    if (c->nplan) {
        uint8_t b = c->plan[c->i++ % c->nplan];
        if (b && b < left) want = b;
    }
    q = (char *)malloc(want ? want : 1);
    if (!q) abort();
    memcpy(q, c->p + c->off, want);
    c->off += want;
    *len = want;
    return q;
}

#define FZ_CHECK(cond, ...)                                                              \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
            abort();                                                                     \
        }                                                                                \
    } while (0)

FZ_NOCOV static inline int fz_same(const void *a, size_t na, const void *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

FZ_NOCOV static inline int fz_same_str(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* ---- an independent base64 reference: the rules of src/b64.c, written out plainly ---- */
FZ_NOCOV static inline int fz_b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Validates and decodes s[0..n): whitespace (space, tab, CR, LF) is ignored; any other character
 * outside the alphabet, an alphabet character after '=', more than two '=', a length of 4k+1, or
 * padding that does not complete the last quantum makes it invalid; unpadded input is valid.
 * Writes floor(6 * characters / 8) bytes to out (room for n bytes) and returns 1 when valid. */
FZ_NOCOV static inline int fz_ref_b64(const char *s, size_t n, unsigned char *out, size_t *outn)
{
    unsigned long acc = 0, nchars = 0, rem;
    int bits = 0, npad = 0, bad = 0;
    size_t i, k = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int v = fz_b64val(c);
        if (v >= 0) {
            if (npad) bad = 1;
            nchars++;
            acc = ((acc << 6) | (unsigned long)v) & 0xFFFFFF;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out[k++] = (unsigned char)(acc >> bits);
            }
        } else if (c == '=') {
            npad++;
        } else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            bad = 1;
        }
    }
    *outn = k;
    rem = nchars % 4;
    if (bad || npad > 2 || rem == 1) return 0;
    if (npad && (rem == 0 || (unsigned long)npad != 4 - rem)) return 0;
    return 1;
}

/* The base64 alphabet of RFC 4648, section 4, for the harnesses' reference models. */
#define FZ_B64_ALPHA "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

#ifdef IMAGEROUTE_IR_H
/* A Lua state holding the Error and Image types (registered into a module table, as core.c does),
 * for the harnesses that make Images or errors without loading the whole module. Aborts when no
 * state can be made. */
FZ_NOCOV static inline lua_State *fz_state_with_types(void)
{
    lua_State *S = luaL_newstate();
    if (!S) abort();
    lua_newtable(S); /* the module table the openers register into */
    ir_error_open(S);
    ir_image_open(S);
    lua_settop(S, 0);
    return S;
}
#endif

#endif
