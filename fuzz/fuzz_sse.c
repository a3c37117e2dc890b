/*
 * fuzz_sse.c - the server-sent events parser (src/sse.c: ir_sse_feed) over arbitrary chunkings.
 *
 * Input: byte 0 chooses the event cap (max_event_bytes): < 128 the default, else (b - 128) * 32
 * bytes, so the abort path is fuzzed too; the rest is a chunked input (fuzz_common.h).
 *
 * Each input is parsed twice, in the fuzzer-chosen chunks and as one chunk, on zeroed transfers,
 * and the two results must be identical (same queue of events: type, JSON with placeholders,
 * decoded images, their errors; same unfinished event; same [DONE]): the parser must not depend
 * on where the network cuts the stream. Everything is freed each run (a leak is a finding).
 *
 * sse.c is included, not linked, to reach its private state for the comparison.
 */
#include "../src/sse.c"
#include "fuzz_common.h"

FZ_NOCOV static void same_extract(const ir_extract *a, const ir_extract *b, const char *where)
{
    size_t i;
    FZ_CHECK(fz_same(a->json->p, a->json->n, b->json->p, b->json->n), "%s: JSON differs (%zu vs %zu bytes)",
             where, a->json->n, b->json->n);
    FZ_CHECK(a->nimgs == b->nimgs, "%s: %zu vs %zu images", where, a->nimgs, b->nimgs);
    FZ_CHECK(a->oom == b->oom && a->discard == b->discard, "%s: flags differ", where);
    for (i = 0; i < a->nimgs; i++) {
        const ir_ximg *x = &a->imgs[i], *y = &b->imgs[i];
        FZ_CHECK(fz_same(x->data.p, x->data.n, y->data.p, y->data.n), "%s: image %zu bytes differ (%zu vs %zu)",
                 where, i, x->data.n, y->data.n);
        FZ_CHECK(fz_same_str(x->bad, y->bad), "%s: image %zu: bad %s vs %s", where, i,
                 x->bad ? x->bad : "(none)", y->bad ? y->bad : "(none)");
        FZ_CHECK(strcmp(x->dataurl_mime, y->dataurl_mime) == 0, "%s: image %zu: mime %s vs %s", where, i,
                 x->dataurl_mime, y->dataurl_mime);
    }
}

FZ_NOCOV static void same_event(const sse_event *a, const sse_event *b, const char *where)
{
    FZ_CHECK(strcmp(a->type, b->type) == 0, "%s: type '%s' vs '%s'", where, a->type, b->type);
    same_extract(&a->ex, &b->ex, where);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

FZ_NOCOV int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ir_xfer x1, x2;
    fz_chunker c;
    size_t cap, len;
    char *chunk, *whole;
    int r1 = 0, r2;
    if (size < 1) return 0;
    cap = data[0] < 128 ? 0 : (size_t)(data[0] - 128) * 32 + 1;
    if (fz_chunker_init(&c, data + 1, size - 1)) return 0;

    memset(&x1, 0, sizeof x1);
    memset(&x2, 0, sizeof x2);
    x1.max_event_bytes = x2.max_event_bytes = cap;

    whole = (char *)malloc(c.n ? c.n : 1);
    if (!whole) abort();
    if (c.n) memcpy(whole, c.p, c.n);
    r2 = c.n ? ir_sse_feed(&x2, whole, c.n) : 0;
    free(whole);
    if (!c.nplan) { /* one chunk: the chunked feed would be the same feed again */
        ir_sse_free(&x2);
        return 0;
    }
    while ((chunk = fz_chunk_next(&c, &len)) != NULL) {
        if (!r1) r1 = ir_sse_feed(&x1, chunk, len);
        free(chunk);
    }

    FZ_CHECK(r1 == r2, "chunked feed returned %d, whole feed %d", r1, r2);
    if (r1) {
        FZ_CHECK(fz_same_str(x1.abort_why, x2.abort_why), "abort reasons differ");
    } else if (c.n) {
        sse_state *s1 = (sse_state *)x1.sse, *s2 = (sse_state *)x2.sse;
        const sse_event *a, *b;
        FZ_CHECK(s1 && s2, "no parser state");
        FZ_CHECK(s1->done_marker == s2->done_marker, "[DONE] seen %d vs %d", s1->done_marker, s2->done_marker);
        FZ_CHECK(s1->state == s2->state, "line state %d vs %d", s1->state, s2->state);
        for (a = s1->head, b = s2->head; a && b; a = a->next, b = b->next) same_event(a, b, "queued event");
        FZ_CHECK(!a && !b, "queues differ in length");
        FZ_CHECK(!s1->cur == !s2->cur, "one parse has an unfinished event, the other not");
        if (s1->cur) same_extract(&s1->cur->ex, &s2->cur->ex, "unfinished event");
    }
    ir_sse_free(&x1);
    ir_sse_free(&x2);
    FZ_CHECK(x1.sse == NULL && x2.sse == NULL, "state not released");
    return 0;
}
