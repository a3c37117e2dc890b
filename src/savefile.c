/*
 * savefile.c - images decoded straight into their files (the per-call option save_to).
 *
 * While a reply streams in, the extractor (extract.c) hands each final image's decoded bytes here
 * in chunks of IR_SPILL_CHUNK: they go to a temporary file in the target's directory, created with
 * mode 0666 less the umask, and into an incremental SHA-256; the first bytes are kept for sniffing
 * the type and size. When the reply is complete the file is renamed into place and the result gets
 * a file-backed Image (its bytes read from the file only when asked); when the call fails the
 * temporary file is removed. So a call in flight holds a few buffers, not an image.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ir.h"

#define HEAD_BYTES (64 * 1024) /* enough for any PNG, JPEG or WebP header we read dimensions from */

struct ir_spill {
    int fd;
    char *tmp;               /* the temporary file's path (malloc) */
    void *sha;               /* incremental SHA-256 */
    unsigned char head[HEAD_BYTES];
    size_t headn;
    size_t total;            /* bytes written */
    int err;                 /* errno of a failed write, 0 */
};

/* A short random name in the directory of target: ".ir-XXXXXXXX" (any legal target name fits). */
static char *temp_name(const char *target)
{
    const char *slash = strrchr(target, '/');
    size_t dirlen = slash ? (size_t)(slash - target) + 1 : 0;
    char *p = (char *)malloc(dirlen + 16);
    unsigned char rnd[4] = {0, 0, 0, 0};
    int fd;
    if (!p) return NULL;
    fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd) memset(rnd, 0, sizeof rnd);
        close(fd);
    }
    memcpy(p, target, dirlen);
    snprintf(p + dirlen, 16, ".ir-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    return p;
}

ir_spill *ir_spill_open(const char *target)
{
    ir_spill *s = (ir_spill *)calloc(1, sizeof *s);
    int tries;
    if (!s) return NULL;
    s->fd = -1;
    for (tries = 0; tries < 8 && s->fd < 0; tries++) {
        free(s->tmp);
        s->tmp = temp_name(target);
        if (!s->tmp) break;
        s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666); /* the umask applies */
        if (s->fd < 0 && errno != EEXIST) break;
    }
    if (s->fd < 0) {
        free(s->tmp);
        free(s);
        return NULL;
    }
    s->sha = ir_sha256_begin();
    return s;
}

int ir_spill_write(ir_spill *s, ir_buf *data)
{
    const char *p = data->p;
    size_t n = data->n;
    if (!n) return s->err ? -1 : 0;
    if (s->headn < HEAD_BYTES) {
        size_t k = HEAD_BYTES - s->headn < n ? HEAD_BYTES - s->headn : n;
        memcpy(s->head + s->headn, p, k);
        s->headn += k;
    }
    ir_sha256_add(s->sha, p, n);
    s->total += n;
    while (n && !s->err) {
        ssize_t w = write(s->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            s->err = errno;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    data->n = 0;
    return s->err ? -1 : 0;
}

static void spill_free(ir_spill *s, int remove_file)
{
    if (s->fd >= 0) close(s->fd);
    if (remove_file && s->tmp) unlink(s->tmp);
    if (s->sha) {
        char hex[65];
        ir_sha256_end(s->sha, hex);
    }
    free(s->tmp);
    free(s);
}

void ir_spill_discard(ir_spill *s)
{
    if (s) spill_free(s, 1);
}

int ir_spill_take(lua_State *L, ir_spill *s, const char *path, const char *field)
{
    char hex[65];
    int e = s->err;
    if (!e && close(s->fd) != 0) e = errno;
    s->fd = -1;
    if (!e && rename(s->tmp, path) != 0) e = errno;
    if (e) {
        ir_push_error(L, "io", "%s: cannot write %s: %s", field, path, strerror(e));
        ir_setfield_str(L, "path", path);
        lua_pushinteger(L, e);
        lua_setfield(L, -2, "errno");
        spill_free(s, 1);
        return 0;
    }
    ir_sha256_end(s->sha, hex);
    s->sha = NULL;
    ir_image_push_file(L, path, s->total, s->head, s->headn, hex);
    spill_free(s, 0);
    return 1;
}

void ir_push_numbered_path(lua_State *L, const char *target, int k, int count)
{
    const char *slash = strrchr(target, '/'), *dot = strrchr(target, '.');
    if (count <= 1) {
        lua_pushstring(L, target);
        return;
    }
    if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : target)) dot = target + strlen(target);
    lua_pushlstring(L, target, (size_t)(dot - target));
    lua_pushfstring(L, "-%d%s", k, dot);
    lua_concat(L, 2);
}
