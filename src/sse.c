/*
 * sse.c - server-sent events (text/event-stream) framing for streamed image calls.
 */
#include <stdlib.h>
#include "xfer.h"

int ir_sse_feed(ir_xfer *x, const char *p, size_t n)
{
    (void)p;
    (void)n;
    x->abort_why = "the server answered with an event stream, which this call did not ask for";
    return -1;
}

void ir_sse_reset(ir_xfer *x)
{
    (void)x;
}

void ir_sse_free(ir_xfer *x)
{
    free(x->sse);
    x->sse = NULL;
}
