/*
 * fuzz_redact.c - the redaction step (src/redact.c ir_redact) against a plain model of what it
 * must find.
 *
 * Input: byte 0 gives the key's length (1 + byte % 40), the next bytes are the key (a byte a key
 * cannot hold, below 0x21 or 0x7f, becomes a letter: ir_key_problem refuses those), the rest is
 * the text. The model (written out naively here, O(text x key)) says the text holds the key when,
 * in the text as it is or in its decoded view (every %XX and JSON string escape read as what it
 * encodes), the key's first or last min(8, key) bytes occur ASCII-case-insensitively, or the
 * characters that encode only those bytes' bits in base64 (at each of the 3 alignments, standard
 * or URL-safe alphabet) occur. Checks, on the text as a string and inside a cyclic table (as a value
 * at two depths and as a table key):
 *  - the stack is balanced;
 *  - a text the model says holds nothing comes back byte for byte; one that holds something
 *    comes back changed;
 *  - what comes back holds nothing, by the model;
 *  - the table's copies all come back the same as the string, and the renamed key keeps its value.
 */
#include "../src/xfer.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static lua_State *L;

FZ_NOCOV int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = fz_state_with_types();
    return 0;
}

FZ_NOCOV static unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

FZ_NOCOV static int hexdigit(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

FZ_NOCOV static long hex4at(const unsigned char *s, size_t n, size_t i)
{
    long v = 0;
    size_t k;
    if (i + 4 > n) return -1;
    for (k = 0; k < 4; k++) {
        int h = hexdigit(s[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

FZ_NOCOV static size_t put_utf8(unsigned char *o, long cp)
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
        o[2] = (unsigned char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
    o[3] = (unsigned char)(0x80 | (cp & 63));
    return 4;
}

/* The decoded view: %XX, \" \\ \/ \b \f \n \r \t, \uXXXX (a surrogate pair as one code point, a
 * lone surrogate left as text). out has room for n bytes. */
FZ_NOCOV static size_t decode(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t i = 0, k = 0;
    while (i < n) {
        if (s[i] == '%' && i + 2 < n && hexdigit(s[i + 1]) >= 0 && hexdigit(s[i + 2]) >= 0) {
            out[k++] = (unsigned char)(hexdigit(s[i + 1]) * 16 + hexdigit(s[i + 2]));
            i += 3;
            continue;
        }
        if (s[i] == '\\' && i + 1 < n) {
            const char *e = s[i + 1] ? strchr("\"\\/bfnrt", s[i + 1]) : NULL;
            long cp = s[i + 1] == 'u' ? hex4at(s, n, i + 2) : -1;
            if (e) {
                out[k++] = (unsigned char)"\"\\/\b\f\n\r\t"[e - "\"\\/bfnrt"];
                i += 2;
                continue;
            }
            if (cp >= 0xD800 && cp < 0xDC00) {
                long lo = (i + 7 < n && s[i + 6] == '\\' && s[i + 7] == 'u') ? hex4at(s, n, i + 8) : -1;
                if (lo >= 0xDC00 && lo < 0xE000) {
                    k += put_utf8(out + k, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00));
                    i += 12;
                    continue;
                }
            } else if (cp >= 0 && !(cp >= 0xDC00 && cp < 0xE000)) {
                k += put_utf8(out + k, cp);
                i += 6;
                continue;
            }
        }
        out[k++] = s[i++];
    }
    return k;
}

FZ_NOCOV static int has(const unsigned char *s, size_t n, const unsigned char *p, size_t m, int folded)
{
    size_t i, j;
    if (m == 0 || m > n) return 0;
    for (i = 0; i + m <= n; i++) {
        for (j = 0; j < m; j++)
            if (folded ? fold(s[i + j]) != fold(p[j]) : s[i + j] != p[j]) break;
        if (j == m) return 1;
    }
    return 0;
}

/* base64 of (a zero bytes + p), then its characters from ceil(8a/6) to floor(8(a+m)/6): those
 * that hold bits of p only. Returns their count (into out). */
FZ_NOCOV static size_t stable_run(const unsigned char *p, size_t m, size_t a, int urlsafe, unsigned char *out)
{
    unsigned char in[16] = {0};
    char enc[32];
    size_t i, n = a + m, k = 0, from = (8 * a + 5) / 6, to = 8 * (a + m) / 6;
    memcpy(in + a, p, m);
    for (i = 0; i < n; i += 3) { /* zero-filled past the end: only whole characters are used */
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
        enc[k++] = FZ_B64_ALPHA[(v >> 18) & 63];
        enc[k++] = FZ_B64_ALPHA[(v >> 12) & 63];
        enc[k++] = FZ_B64_ALPHA[(v >> 6) & 63];
        enc[k++] = FZ_B64_ALPHA[v & 63];
    }
    if (to <= from) return 0;
    for (i = from; i < to; i++) {
        char c = enc[i];
        if (urlsafe) c = c == '+' ? '-' : c == '/' ? '_' : c;
        out[i - from] = (unsigned char)c;
    }
    return to - from;
}

/* The model: does s hold the key (in any form the redaction must find)? */
FZ_NOCOV static int holds(const unsigned char *s, size_t n, const unsigned char *key, size_t kn)
{
    size_t piece = kn < 8 ? kn : 8, v, part, a, alpha, dn;
    unsigned char *dec = (unsigned char *)malloc(n ? n : 1), run[16];
    int found = 0;
    if (!dec) abort();
    dn = decode(s, n, dec);
    for (v = 0; v < 2 && !found; v++) {
        const unsigned char *t = v ? dec : s;
        size_t tn = v ? dn : n;
        if (has(t, tn, key, piece, 1) || has(t, tn, key + kn - piece, piece, 1)) found = 1;
        for (part = 0; part < 2 && !found; part++)
            for (a = 0; a < 3 && !found; a++)
                for (alpha = 0; alpha < 2 && !found; alpha++) {
                    size_t rn = stable_run(part ? key + kn - piece : key, piece, a, (int)alpha, run);
                    if (rn && has(t, tn, run, rn, 0)) found = 1;
                }
    }
    free(dec);
    return found;
}

FZ_NOCOV int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char key[40];
    const unsigned char *text, *out;
    size_t kn, n, on, i;
    int want;
    if (size < 1) return 0;
    kn = 1 + data[0] % 40;
    if (size < 1 + kn) return 0;
    for (i = 0; i < kn; i++) {
        unsigned char c = data[1 + i];
        key[i] = (c < 0x21 || c == 0x7f) ? (unsigned char)('a' + c % 26) : c;
    }
    text = data + 1 + kn;
    n = size - 1 - kn;
    want = holds(text, n, key, kn);

    /* as a string */
    lua_settop(L, 0);
    lua_pushlstring(L, (const char *)text, n);
    ir_redact(L, 1, (const char *)key, kn);
    FZ_CHECK(lua_gettop(L) == 1 && lua_type(L, 1) == LUA_TSTRING, "stack: %d values", lua_gettop(L));
    out = (const unsigned char *)lua_tolstring(L, 1, &on);
    if (!want) FZ_CHECK(fz_same(out, on, text, n), "a text that holds nothing of the key was changed");
    else FZ_CHECK(!fz_same(out, on, text, n), "a text holding the key came back unchanged");
    FZ_CHECK(!holds(out, on, key, kn), "the redacted text still holds the key (%zu bytes)", on);

    /* inside a cyclic table: t = {text, {text}, t, [text] = 7} (integer keys: never renamed) */
    lua_createtable(L, 3, 1);
    lua_pushlstring(L, (const char *)text, n);
    lua_rawseti(L, 2, 1);
    lua_createtable(L, 1, 0);
    lua_pushlstring(L, (const char *)text, n);
    lua_rawseti(L, -2, 1);
    lua_rawseti(L, 2, 2);
    lua_pushvalue(L, 2);
    lua_rawseti(L, 2, 3);
    lua_pushlstring(L, (const char *)text, n);
    lua_pushinteger(L, 7);
    lua_rawset(L, 2);
    ir_redact(L, 2, (const char *)key, kn);
    FZ_CHECK(lua_gettop(L) == 2, "stack: %d values after the table", lua_gettop(L));
    lua_rawgeti(L, 2, 1);
    FZ_CHECK(lua_rawequal(L, 1, -1), "the table's value differs from the string's redaction");
    FZ_CHECK(lua_rawgeti(L, 2, 2) == LUA_TTABLE, "the nested table is gone");
    lua_rawgeti(L, -1, 1);
    FZ_CHECK(lua_rawequal(L, 1, -1), "the nested value differs from the string's redaction");
    lua_pushvalue(L, 1);
    FZ_CHECK(lua_rawget(L, 2) == LUA_TNUMBER && lua_tointeger(L, -1) == 7, "the renamed key lost its value");
    if (want) {
        lua_pushlstring(L, (const char *)text, n);
        FZ_CHECK(lua_rawget(L, 2) == LUA_TNIL, "the key holding the key was not renamed");
    }
    lua_rawgeti(L, 2, 3);
    FZ_CHECK(lua_rawequal(L, 2, -1), "the cycle was broken");
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
