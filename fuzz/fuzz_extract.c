/*
 * fuzz_extract.c - the streaming JSON image extractor (src/extract.c: ir_extract_feed), the code
 * that takes every 2xx API body apart, over arbitrary chunkings.
 *
 * Input: byte 0 bit 0 sets `discard` (the mode sse.c uses for response.completed); the rest is a
 * chunked input (fuzz_common.h).
 *
 * Each input is extracted twice, in the fuzzer-chosen chunks and as one chunk, and the results must
 * be identical (the JSON with placeholders, and every image's bytes, error and data: URL type).
 * Then the one-chunk result is checked against a plain, non-streaming model written here: the JSON
 * kept must be the payload with each image value replaced by its placeholder, an image must be
 * flagged bad exactly when the model's validation rejects it, and a good image's bytes must equal
 * an independent base64 decoder's (fuzz_common.h). Everything is freed each run.
 */
#include "../src/ir.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

FZ_NOCOV static void same(const ir_extract *a, const ir_buf *ja, const ir_extract *b, const ir_buf *jb)
{
    size_t i;
    FZ_CHECK(fz_same(ja->p, ja->n, jb->p, jb->n), "JSON differs (%zu vs %zu bytes)", ja->n, jb->n);
    FZ_CHECK(a->nimgs == b->nimgs, "%zu vs %zu images", a->nimgs, b->nimgs);
    FZ_CHECK(a->state == b->state, "lexer state %d vs %d", a->state, b->state);
    for (i = 0; i < a->nimgs; i++) {
        const ir_ximg *x = &a->imgs[i], *y = &b->imgs[i];
        FZ_CHECK(fz_same(x->data.p, x->data.n, y->data.p, y->data.n), "image %zu bytes differ (%zu vs %zu)", i,
                 x->data.n, y->data.n);
        FZ_CHECK(fz_same_str(x->bad, y->bad), "image %zu: bad '%s' vs '%s'", i, x->bad ? x->bad : "(none)",
                 y->bad ? y->bad : "(none)");
        FZ_CHECK(strcmp(x->dataurl_mime, y->dataurl_mime) == 0, "image %zu: mime '%s' vs '%s'", i, x->dataurl_mime,
                 y->dataurl_mime);
    }
}

FZ_NOCOV static int is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

FZ_NOCOV static int is_image_key(const char *k, size_t n)
{
    static const char *const keys[] = {"b64_json", "result", "partial_image_b64", NULL};
    int i;
    for (i = 0; keys[i]; i++)
        if (strlen(keys[i]) == n && memcmp(keys[i], k, n) == 0) return 1;
    return 0;
}

/* The model of one finished image value v[0..vn) (the raw text between the quotes). */
FZ_NOCOV static void check_image(const ir_ximg *im, const char *v, size_t vn, size_t idx)
{
    char *u = (char *)malloc(vn + 1), mime[64] = "";
    unsigned char *ref = (unsigned char *)malloc(vn + 1);
    size_t un = 0, t, rn, body = 0;
    int bad = 0;
    if (!u || !ref) abort();
    /* JSON escapes: \/ is '/', \n \r \t are whitespace (dropped), any other is an error */
    for (t = 0; t < vn; t++) {
        if (v[t] == '\\') {
            char c = v[++t]; /* a closed value never ends on a lone backslash */
            if (c == '/') u[un++] = '/';
            else if (c != 'n' && c != 'r' && c != 't') bad = 1;
            continue;
        }
        u[un++] = v[t];
    }
    u[un] = '\0';
    /* RFC 2397 header: "data:" <up to 71 characters> "," with ";base64" in it */
    if (un >= 5 && memcmp(u, "data:", 5) == 0) {
        const char *comma = (const char *)memchr(u + 5, ',', un - 5);
        if (!comma || comma - (u + 5) > 71) {
            bad = 1;
        } else {
            size_t hl = (size_t)(comma - (u + 5)), m;
            char hdr[72];
            memcpy(hdr, u + 5, hl);
            hdr[hl] = '\0'; /* as C strings: a NUL inside the header ends it */
            if (!strstr(hdr, ";base64")) bad = 1;
            m = strcspn(hdr, ";");
            if (m > sizeof mime - 1) m = sizeof mime - 1;
            memcpy(mime, hdr, m);
            mime[m] = '\0';
            body = (size_t)(comma - u) + 1;
        }
    }
    if (!fz_ref_b64(u + body, un - body, ref, &rn)) bad = 1;
    FZ_CHECK(!im->bad == !bad, "image %zu: extractor says %s, the model says %s", idx,
             im->bad ? im->bad : "good", bad ? "bad" : "good");
    if (!bad) {
        FZ_CHECK(fz_same(ref, rn, im->data.p, im->data.n), "image %zu: %zu bytes, the reference decodes %zu", idx,
                 im->data.n, rn);
        FZ_CHECK(strcmp(mime, im->dataurl_mime) == 0, "image %zu: mime '%s', the model '%s'", idx, im->dataurl_mime,
                 mime);
    }
    free(u);
    free(ref);
}

/* Lexes p[0..n) the way the extractor is specified to, builds the JSON it should keep and checks
 * the extractor's result against it. */
FZ_NOCOV static void check_model(const ir_extract *e, const ir_buf *json, const char *p, size_t n, int discard)
{
    ir_buf want = {0};
    char key[24];
    size_t keylen = 0, i = 0, img = 0;
    int key_over = 0, string_ended = 0, want_image = 0;
    while (i < n) {
        char c = p[i++];
        if (ir_buf_add(&want, &c, 1)) abort();
        if (is_ws(c)) continue;
        if (c == ':') {
            want_image = string_ended && !key_over && is_image_key(key, keylen);
            string_ended = 0;
            continue;
        }
        string_ended = 0;
        if (c != '"') { want_image = 0; continue; }
        if (want_image) { /* an image value: find its end */
            size_t j = i;
            char ph[48];
            want_image = 0;
            while (j < n && p[j] != '"') j += p[j] == '\\' ? 2 : 1;
            FZ_CHECK(img < e->nimgs, "the model finds image %zu, the extractor only %zu", img, e->nimgs);
            if (j >= n) { img++; break; } /* unfinished: the extractor is still inside it */
            if (discard) {
                FZ_CHECK(e->imgs[img].data.n == 0 && fz_same_str(e->imgs[img].bad, "not kept"),
                         "discarded image %zu was decoded", img);
            } else {
                check_image(&e->imgs[img], p + i, j - i, img);
            }
            snprintf(ph, sizeof ph, IR_IMG_PLACEHOLDER "%u\"", (unsigned)img);
            if (ir_buf_addstr(&want, ph)) abort();
            img++;
            i = j + 1;
            continue;
        }
        /* any other string: copied through, and remembered as a possible key */
        keylen = 0;
        key_over = 0;
        while (i < n) {
            c = p[i++];
            if (ir_buf_add(&want, &c, 1)) abort();
            if (c == '\\') {
                key_over = 1;
                if (i < n) {
                    c = p[i++];
                    if (ir_buf_add(&want, &c, 1)) abort();
                }
                continue;
            }
            if (c == '"') { string_ended = 1; break; }
            if (keylen < sizeof key) key[keylen++] = c;
            else key_over = 1;
        }
    }
    FZ_CHECK(img == e->nimgs, "the model finds %zu images, the extractor %zu", img, e->nimgs);
    FZ_CHECK(fz_same(want.p, want.n, json->p, json->n), "the JSON kept (%zu bytes) is not the model's (%zu bytes)",
             json->n, want.n);
    ir_buf_free(&want);
}

FZ_NOCOV int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ir_buf j1 = {0}, j2 = {0};
    ir_extract e1, e2;
    fz_chunker c;
    size_t len;
    char *chunk, *whole;
    int r1 = 0, r2, discard;
    if (size < 1) return 0;
    discard = data[0] & 1;
    if (fz_chunker_init(&c, data + 1, size - 1)) return 0;

    ir_extract_init(&e1, &j1);
    ir_extract_init(&e2, &j2);
    e1.discard = e2.discard = discard;
    whole = (char *)malloc(c.n ? c.n : 1);
    if (!whole) abort();
    if (c.n) memcpy(whole, c.p, c.n);
    r2 = c.n ? ir_extract_feed(&e2, whole, c.n) : 0;
    if (c.nplan) { /* (with no plan the chunked feed would be this one-chunk feed again) */
        while ((chunk = fz_chunk_next(&c, &len)) != NULL) {
            if (!r1) r1 = ir_extract_feed(&e1, chunk, len);
            free(chunk);
        }
        FZ_CHECK(r1 == 0, "out of memory on a small input (chunked)");
        same(&e1, &j1, &e2, &j2);
    }
    FZ_CHECK(r2 == 0, "out of memory on a small input");
    check_model(&e2, &j2, whole, c.n, discard);
    free(whole);

    ir_extract_free(&e1);
    ir_extract_free(&e2);
    ir_buf_free(&j1);
    ir_buf_free(&j2);
    return 0;
}
