/*
 * image.c - the Image userdata: decoded image bytes owned by C, saved atomically.
 *
 * The bytes live in one malloc'd block (decoded straight from the response, never copied into a
 * Lua string unless the caller reads image.bytes). Fields:
 *   image.bytes   the decoded bytes (string; made on first read and cached)
 *   image.length  byte count (integer, bytes); also #image
 *   image.mime    "image/png" | "image/jpeg" | "image/webp" | "image/gif" (sniffed from magic bytes)
 *   image.format  "png" | "jpeg" | "webp" | "gif"
 *   image.width, image.height   pixels, from the image header (nil when unknown)
 *   image.sha256  hex SHA-256 of the bytes (computed on each read)
 * plus whatever the call recorded in its user value (index, revised_prompt, url, ...; data_url_mime,
 * the MIME type a data: URL declared, when a base64 field held one: extract.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "ir.h"

static ir_image *check_image(lua_State *L, int idx)
{
    return (ir_image *)luaL_checkudata(L, idx, IR_IMAGE_MT);
}

ir_image *ir_image_push(lua_State *L, ir_buf *buf)
{
    const char *fmt = NULL, *mime;
    ir_image *im = (ir_image *)lua_newuserdatauv(L, sizeof *im, 1);
    memset(im, 0, sizeof *im);
    luaL_setmetatable(L, IR_IMAGE_MT);
    im->p = (unsigned char *)buf->p;
    im->n = buf->n;
    buf->p = NULL;
    buf->n = buf->cap = 0;
    mime = ir_sniff(im->p, im->n, &fmt);
    if (mime) {
        strncpy(im->mime, mime, sizeof im->mime - 1);
        strncpy(im->format, fmt, sizeof im->format - 1);
    }
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    /* the bytes are C memory the collector cannot see: collector work sized by them (done a
     * bounded slice per loop step, see loop.c) keeps old images from piling up */
    ir_gc_debt(L, im->n);
    return im;
}

ir_image *ir_image_push_file(lua_State *L, const char *path, size_t n, const unsigned char *head, size_t headn,
                             const char *sha256)
{
    const char *fmt = NULL, *mime;
    size_t plen = strlen(path);
    ir_image *im = (ir_image *)lua_newuserdatauv(L, sizeof *im, 1);
    memset(im, 0, sizeof *im);
    luaL_setmetatable(L, IR_IMAGE_MT);
    im->n = n;
    im->file = (char *)malloc(plen + 1);
    if (im->file) memcpy(im->file, path, plen + 1);
    mime = ir_sniff(head, headn, &fmt);
    if (mime) {
        strncpy(im->mime, mime, sizeof im->mime - 1);
        strncpy(im->format, fmt, sizeof im->format - 1);
    }
    ir_dimensions(head, headn, &im->width, &im->height);
    strncpy(im->sha256, sha256, sizeof im->sha256 - 1);
    lua_newtable(L);
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_setiuservalue(L, -2, 1);
    return im;
}

/* The bytes of a file-backed image, read now into a Lua string (pushed); 0 with a message pushed
 * when the file cannot be read whole. */
static int push_file_bytes(lua_State *L, ir_image *im)
{
    FILE *f = im->file ? fopen(im->file, "rb") : NULL;
    size_t got;
    if (!f) {
        lua_pushfstring(L, "cannot read %s: %s", im->file ? im->file : "?", strerror(errno));
        return 0;
    }
    got = ir_push_file(L, f);
    if (got != im->n) {
        lua_pop(L, 1);
        lua_pushfstring(L, "%s changed since it was written (%I bytes, expected %I)", im->file, (lua_Integer)got,
                        (lua_Integer)im->n);
        return 0;
    }
    return 1;
}

static int image_gc(lua_State *L)
{
    ir_image *im = check_image(L, 1);
    free(im->p);
    im->p = NULL;
    free(im->file);
    im->file = NULL;
    return 0;
}

/* image:release() : frees the bytes now (the C buffer and the cached Lua string, if any), keeping
 * length, sha256, format, mime, width, height and the user fields (path, index, ...); reading
 * image.bytes or saving afterwards raises "image was released". Also image:__close(). */
static int image_release(lua_State *L)
{
    ir_image *im = check_image(L, 1);
    if (im->released) return 0;
    if (im->file) { /* nothing held in memory: only reading its bytes is refused from now on */
        im->released = 1;
        return 0;
    }
    if (!im->sha256[0]) ir_sha256_hex(im->p ? im->p : (const unsigned char *)"", im->n, im->sha256);
    ir_dimensions(im->p, im->n, &im->width, &im->height);
    free(im->p);
    im->p = NULL;
    im->released = 1;
    lua_getiuservalue(L, 1, 1);
    lua_pushnil(L);
    lua_setfield(L, -2, "bytes");
    lua_pop(L, 1);
    return 0;
}

static int image_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_image(L, 1)->n);
    return 1;
}

static int image_tostring(lua_State *L)
{
    ir_image *im = check_image(L, 1);
    long w = im->width, h = im->height;
    if (!im->released && !im->file) ir_dimensions(im->p, im->n, &w, &h);
    lua_pushfstring(L, "imageroute.Image(%s, %I bytes, %dx%d)", im->format[0] ? im->format : "unknown",
                    (lua_Integer)im->n, (int)w, (int)h);
    return 1;
}

/* Writes everything or fails; returns 0 or an errno. */
static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Creates a temporary file ".ir-XXXXXX" (6 random letters and digits) in the directory of path,
 * with open(2), O_CREAT | O_EXCL and mode 0666, so the process's umask gives it its permissions as
 * for any created file. The name is short whatever path is, so any legal file name can be saved.
 * tmp (at least strlen(path) + 12 bytes) gets the name. Returns the descriptor, or -1 with errno. */
static int create_temp(const char *path, char *tmp)
{
    static const char ALNUM[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static unsigned long counter;
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) + 1 : 0;
    unsigned long x = (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16) ^ (unsigned long)(size_t)tmp;
    int tries, i, fd;
    memcpy(tmp, path, dlen);
    memcpy(tmp + dlen, ".ir-", 4);
    for (tries = 0; tries < 100; tries++) {
        x ^= ++counter * 2654435761UL;
        for (i = 0; i < 6; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            tmp[dlen + 4 + i] = ALNUM[x % (sizeof ALNUM - 1)];
        }
        tmp[dlen + 10] = '\0';
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

/*
 * image:save(path [, opts]) -> path, bytes | nil, err
 * Writes to a temporary file in the same directory (".ir-XXXXXX", created with mode 0666 so the
 * umask applies, as for any created file: 0644 under umask 022, 0600 under 077), then moves it into
 * place, so a crash of the process leaves either no file or the whole file; on any failure the
 * temporary file is removed. opts.durable = true also fsyncs the file before
 * the move (survives a power loss; costs a disk flush that blocks the loop). An existing file is
 * never replaced unless opts.overwrite is true (without it, link(2) makes the check atomic).
 * err.kind is "io" with err.path and err.errno. After a save, image.path is the path, and a function
 * in image.on_save (the call log sets one) is called as on_save(image, path, bytes), in protected
 * mode: its errors never fail the save.
 */
static int image_save(lua_State *L)
{
    ir_image *im = check_image(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int overwrite = 0, durable = 0, fd, e;
    char *tmp;
    size_t plen = strlen(path);
    const unsigned char *data = im->p;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "overwrite");
        overwrite = lua_toboolean(L, -1);
        lua_getfield(L, 3, "durable");
        durable = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    if (im->released) return luaL_error(L, "image was released (image:release())");
    if (im->file) { /* file-backed: its bytes are read for this save only */
        if (!push_file_bytes(L, im)) return lua_error(L);
        data = (const unsigned char *)lua_tostring(L, -1);
    }
    tmp = (char *)lua_newuserdatauv(L, plen + 16, 0); /* freed by the GC, even if a raise happens */
    fd = create_temp(path, tmp);
    if (fd < 0) {
        e = errno;
        goto fail;
    }
    e = write_all(fd, data, im->n);
    if (!e && durable && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (!e) {
        if (overwrite) {
            if (rename(tmp, path) != 0) e = errno;
        } else {
            if (link(tmp, path) != 0) e = errno;
            unlink(tmp);
        }
    }
    if (e) {
        unlink(tmp);
        goto fail;
    }
    lua_getiuservalue(L, 1, 1); /* image.path: where it was saved last */
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    if (lua_getfield(L, -1, "on_save") == LUA_TFUNCTION) { /* the hook (the call log's): never fails the save */
        lua_pushvalue(L, 1);
        lua_pushstring(L, path);
        lua_pushinteger(L, (lua_Integer)im->n);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_pushstring(L, path);
    lua_pushinteger(L, (lua_Integer)im->n);
    return 2;
fail:
    lua_pushnil(L);
    if (e == EEXIST)
        ir_push_error(L, "io", "%s exists (pass {overwrite = true} to replace it)", path);
    else
        ir_push_error(L, "io", "cannot save %s: %s", path, strerror(e));
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, e);
    lua_setfield(L, -2, "errno");
    return 2;
}

static int image_index(lua_State *L)
{
    ir_image *im = check_image(L, 1);
    const char *k = lua_tostring(L, 2);
    long w, h;
    /* methods */
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) return 1;
    lua_pop(L, 2);
    luaL_getmetatable(L, IR_IMAGE_MT);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL) return 1;
    lua_pop(L, 3);
    if (!k) return 0;
    if (strcmp(k, "released") == 0) { lua_pushboolean(L, im->released); return 1; }
    if (im->released || im->file) {
        if (strcmp(k, "bytes") == 0 && im->released) return luaL_error(L, "image was released (image:release())");
        if (strcmp(k, "bytes") == 0) { /* file-backed: read on each access, never kept */
            if (!push_file_bytes(L, im)) return lua_error(L);
            return 1;
        }
        if (strcmp(k, "sha256") == 0) { lua_pushstring(L, im->sha256); return 1; }
        if (strcmp(k, "width") == 0 || strcmp(k, "height") == 0) {
            if (im->width <= 0) return 0;
            lua_pushinteger(L, k[0] == 'w' ? im->width : im->height);
            return 1;
        }
    }
    if (strcmp(k, "bytes") == 0) {
        lua_pushlstring(L, im->p ? (const char *)im->p : "", im->n);
        lua_getiuservalue(L, 1, 1);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "bytes"); /* cached: later reads cost nothing */
        lua_pop(L, 1);
        return 1;
    }
    if (strcmp(k, "sha256") == 0) { /* computed once: the bytes of an Image never change */
        if (!im->sha256[0]) ir_sha256_hex(im->p ? im->p : (const unsigned char *)"", im->n, im->sha256);
        lua_pushstring(L, im->sha256);
        return 1;
    }
    if (strcmp(k, "length") == 0) { lua_pushinteger(L, (lua_Integer)im->n); return 1; }
    if (strcmp(k, "mime") == 0) { if (im->mime[0]) lua_pushstring(L, im->mime); else lua_pushnil(L); return 1; }
    if (strcmp(k, "format") == 0) { if (im->format[0]) lua_pushstring(L, im->format); else lua_pushnil(L); return 1; }
    if (strcmp(k, "width") == 0 || strcmp(k, "height") == 0) {
        ir_dimensions(im->p, im->n, &w, &h);
        if (w <= 0) return 0;
        lua_pushinteger(L, k[0] == 'w' ? w : h);
        return 1;
    }
    return 0;
}

static int image_newindex(lua_State *L)
{
    check_image(L, 1);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

/* core.image(bytes) -> Image : wraps bytes (e.g. read from a file) as an Image */
static int l_image(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    ir_buf b = {0};
    if (ir_buf_add(&b, s, n)) return luaL_error(L, "out of memory");
    ir_image_push(L, &b);
    return 1;
}

/* core.c registers these into the module table */
const luaL_Reg ir_image_fns[] = {
    {"image", l_image},
    {NULL, NULL}
};

void ir_image_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", image_gc},
        {"__close", image_release},
        {"__len", image_len},
        {"__tostring", image_tostring},
        {"__index", image_index},
        {"__newindex", image_newindex},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"save", image_save},
        {"release", image_release},
        {NULL, NULL}
    };
    ir_new_type(L, IR_IMAGE_MT, meta, methods, "methods");
}
