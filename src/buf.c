/*
 * buf.c - a growable malloc'd byte buffer, and the monotonic clock.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ir.h"

int ir_buf_reserve(ir_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;
    if (extra > (size_t)-1 - b->n - 1) return -1;
    need = b->n + extra + 1; /* keep room for a terminating NUL */
    if (need <= b->cap) return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap < ((size_t)1 << 30) ? cap * 2 : cap + ((size_t)1 << 30);
    p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int ir_buf_add(ir_buf *b, const void *data, size_t n)
{
    if (ir_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

int ir_buf_addstr(ir_buf *b, const char *s)
{
    return ir_buf_add(b, s, strlen(s));
}

void ir_buf_free(ir_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

double ir_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
