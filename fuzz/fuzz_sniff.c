/*
 * fuzz_sniff.c - MIME sniffing and image dimensions (src/sniff.c: ir_sniff, ir_dimensions), run on
 * every decoded image and every input image.
 *
 * Input: the image bytes, as is (libFuzzer's buffer is exactly the input's size, so ASan sees any
 * read past the end). Checks: the MIME type and format agree; a non-image has no dimensions and
 * dimensions are never negative; and every prefix of the input (copied to an exact-size buffer) is
 * sniffed and measured too, since a truncated download is the common bad input, and a header
 * field must never be read from past a prefix's end.
 */
#include "../src/ir.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

FZ_NOCOV static void check(const unsigned char *p, size_t n)
{
    const char *fmt = (const char *)1, *mime;
    long w = -1, h = -1;
    mime = ir_sniff(p, n, &fmt);
    FZ_CHECK(!mime == !fmt, "mime %s with format %s", mime ? mime : "NULL", fmt ? fmt : "NULL");
    if (mime) {
        FZ_CHECK(strncmp(mime, "image/", 6) == 0 && strcmp(mime + 6, fmt) == 0, "mime %s, format %s", mime, fmt);
        FZ_CHECK(ir_sniff(p, n, NULL) == mime, "a NULL format pointer changes the answer");
    }
    ir_dimensions(p, n, &w, &h);
    FZ_CHECK(w >= 0 && h >= 0, "dimensions %ldx%ld", w, h);
    if (!mime) FZ_CHECK(w == 0 && h == 0, "a non-image has dimensions %ldx%ld", w, h);
}

FZ_NOCOV int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t k, step = size > 256 ? size / 64 : 1;
    check(data, size);
    /* prefixes: all of them for small inputs, about 64 of them (and the last 16) for larger ones */
    for (k = 0; k < size; k += (size - k > 16 ? step : 1)) {
        unsigned char *q = (unsigned char *)malloc(k ? k : 1);
        if (!q) abort();
        memcpy(q, data, k);
        check(k ? q : NULL, k);
        free(q);
    }
    return 0;
}
