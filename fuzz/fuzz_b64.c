/*
 * fuzz_b64.c - base64 (src/b64.c over libb64) and data: URLs (src/input.c: ir_image_from_data_url).
 *
 * Input: a chunked input (fuzz_common.h); the payload is used three ways:
 *  1. as base64 text, fed to ir_b64dec_* in the fuzzer-chosen chunks: valid exactly when the
 *     independent reference (fuzz_common.h) says so, and then the same bytes;
 *  2. as bytes, encoded with ir_b64_encode: canonical padded base64 without line breaks, the
 *     reference's encoding, and decoding it gives the payload back;
 *  3. as a data: URL given to ir_image_from_data_url in a Lua state: it must return an Image exactly
 *     when the URL is data:image/...;base64,<valid base64> holding a PNG, JPEG, WebP or GIF, and the
 *     Image must hold the reference's bytes; otherwise a "decode" error.
 * Everything is freed each run (Images through a full garbage collection).
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

FZ_NOCOV static void check_decode(fz_chunker *c)
{
    ir_b64dec *d = (ir_b64dec *)malloc(sizeof *d);
    ir_buf out = {0};
    unsigned char *ref = (unsigned char *)malloc(c->n + 1);
    size_t rn, len;
    char *chunk;
    const char *why = NULL;
    int ok, fed = 0;
    if (!d || !ref) abort();
    ir_b64dec_init(d);
    while ((chunk = fz_chunk_next(c, &len)) != NULL) {
        if (!fed) fed = ir_b64dec_feed(d, chunk, len, &out);
        free(chunk);
    }
    FZ_CHECK(fed == 0, "feed failed on a small input");
    ok = ir_b64dec_finish(d, &out, &why) == 0;
    FZ_CHECK(ok == fz_ref_b64((const char *)c->p, c->n, ref, &rn), "decoder says %s, the reference %s",
             ok ? "valid" : why, ok ? "invalid" : "valid");
    FZ_CHECK(ok || why, "invalid without a reason");
    if (ok) {
        FZ_CHECK(fz_same(out.p, out.n, ref, rn), "decoded %zu bytes, the reference %zu", out.n, rn);
        FZ_CHECK(!out.p || out.p[out.n] == '\0', "decoded bytes not NUL-terminated");
    }
    ir_buf_free(&out);
    free(ref);
    free(d);
}

FZ_NOCOV static void check_encode(const uint8_t *p, size_t n)
{
    ir_buf enc = {0}, back = {0};
    ir_b64dec *d = (ir_b64dec *)malloc(sizeof *d);
    size_t i, k = 0, want = (n + 2) / 3 * 4;
    char *ref = (char *)malloc(want + 1);
    const char *why = NULL;
    if (!d || !ref) abort();
    for (i = 0; i + 2 < n; i += 3) {
        unsigned long v = ((unsigned long)p[i] << 16) | ((unsigned long)p[i + 1] << 8) | p[i + 2];
        ref[k++] = FZ_B64_ALPHA[v >> 18];
        ref[k++] = FZ_B64_ALPHA[(v >> 12) & 63];
        ref[k++] = FZ_B64_ALPHA[(v >> 6) & 63];
        ref[k++] = FZ_B64_ALPHA[v & 63];
    }
    if (n - i == 1) {
        ref[k++] = FZ_B64_ALPHA[p[i] >> 2];
        ref[k++] = FZ_B64_ALPHA[(p[i] & 3) << 4];
        ref[k++] = '=';
        ref[k++] = '=';
    } else if (n - i == 2) {
        ref[k++] = FZ_B64_ALPHA[p[i] >> 2];
        ref[k++] = FZ_B64_ALPHA[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        ref[k++] = FZ_B64_ALPHA[(p[i + 1] & 15) << 2];
        ref[k++] = '=';
    }
    FZ_CHECK(ir_b64_encode((const char *)p, n, &enc) == 0, "encode failed");
    FZ_CHECK(fz_same(enc.p, enc.n, ref, k), "encoded %zu characters, the reference %zu", enc.n, k);
    FZ_CHECK(enc.p[enc.n] == '\0', "encoding not NUL-terminated");
    ir_b64dec_init(d);
    FZ_CHECK(ir_b64dec_feed(d, enc.p, enc.n, &back) == 0 && ir_b64dec_finish(d, &back, &why) == 0,
             "own encoding rejected: %s", why ? why : "feed");
    FZ_CHECK(fz_same(back.p, back.n, p, n), "round trip changed the bytes");
    ir_buf_free(&enc);
    ir_buf_free(&back);
    free(ref);
    free(d);
}

FZ_NOCOV static void check_data_url(const uint8_t *p, size_t n)
{
    char *url = (char *)malloc(n ? n : 1);
    unsigned char *ref = (unsigned char *)malloc(n + 1);
    size_t rn = 0;
    int got, want = 0;
    if (!url || !ref) abort();
    if (n) memcpy(url, p, n);
    /* the model: data:image/<...>;base64,<valid base64 of a sniffable image> */
    if (n >= 5 && memcmp(p, "data:", 5) == 0) {
        const uint8_t *comma = (const uint8_t *)memchr(p, ',', n);
        if (comma) {
            size_t h = (size_t)(comma - p);
            if (h >= 11 && memcmp(p + 5, "image/", 6) == 0 && memcmp(comma - 7, ";base64", 7) == 0 &&
                fz_ref_b64((const char *)comma + 1, n - h - 1, ref, &rn) && ir_sniff(ref, rn, NULL))
                want = 1;
        }
    }
    got = ir_image_from_data_url(L, url, n, "image");
    FZ_CHECK(lua_gettop(L) == 1, "%d values pushed", lua_gettop(L));
    FZ_CHECK(got == want, "ir_image_from_data_url returned %d, the model %d", got, want);
    if (got) {
        ir_image *im = (ir_image *)luaL_testudata(L, 1, IR_IMAGE_MT);
        FZ_CHECK(im != NULL, "not an Image");
        FZ_CHECK(fz_same(im->p, im->n, ref, rn), "Image holds %zu bytes, the reference %zu", im->n, rn);
        FZ_CHECK(im->mime[0] && strcmp(im->mime, ir_sniff(ref, rn, NULL)) == 0, "Image mime '%s'", im->mime);
    } else {
        FZ_CHECK(lua_istable(L, 1), "no error table");
        lua_getfield(L, 1, "kind");
        FZ_CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "decode") == 0, "error kind is not decode");
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0); /* frees the Image's bytes through its __gc */
    free(url);
    free(ref);
}

FZ_NOCOV int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_chunker c;
    if (fz_chunker_init(&c, data, size)) return 0;
    check_decode(&c);
    check_encode(c.p, c.n);
    check_data_url(c.p, c.n);
    return 0;
}
