/*
 * bench/b64floor.c - the libb64 floor of `make bench`: CPU time of libb64 alone decoding a base64
 * text (the local server's ~3 MB PNG, as the server sends it), with nothing else in the way: the
 * text is already in memory, the output buffer is allocated (and touched) once, no validation, no
 * copy. Every image imageroute receives passes through this same decoder, so this is the floor of
 * its CPU per image.
 *
 *   cc -O2 -o b64floor bench/b64floor.c -lb64
 *   ./b64floor FILE [ITERATIONS]
 *
 * Prints one JSON line: input bytes, output bytes, iterations, min / median / mean CPU seconds
 * per decode (CLOCK_PROCESS_CPUTIME_ID around each base64_decode_block call).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <b64/cdecode.h>

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    FILE *f;
    char *in, *out;
    long n;
    int iters, i, outn = 0;
    double *t, sum = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: b64floor FILE [ITERATIONS]\n");
        return 2;
    }
    iters = argc > 2 ? atoi(argv[2]) : 50;
    if (iters < 1) iters = 1;
    f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    in = malloc((size_t)n + 1);
    out = malloc((size_t)n);
    t = malloc(sizeof *t * (size_t)iters);
    if (!in || !out || !t || fread(in, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "read failed\n"); return 1; }
    fclose(f);
    memset(out, 0, (size_t)n); /* page the output in: the floor is the decode, not page faults */
    for (i = 0; i < iters; i++) {
        base64_decodestate st;
        double t0 = cpu_now();
        base64_init_decodestate(&st);
        outn = base64_decode_block(in, (int)n, out, &st);
        t[i] = cpu_now() - t0;
        sum += t[i];
    }
    qsort(t, (size_t)iters, sizeof *t, cmp);
    printf("{\"in_bytes\":%ld,\"out_bytes\":%d,\"iterations\":%d,\"min\":%.9f,\"median\":%.9f,\"mean\":%.9f,"
           "\"check\":%d}\n", n, outn, iters, t[0], t[iters / 2], sum / iters, (unsigned char)out[outn / 2]);
    free(in);
    free(out);
    free(t);
    return 0;
}
