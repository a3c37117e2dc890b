/*
 * extract.c - a streaming pass over a JSON body that decodes image strings as they arrive.
 *
 * It is a small lexer, not a JSON parser: it tracks strings, escapes and which key a string value
 * belongs to, and everything else is copied through for lua-cjson to parse afterwards. Work is
 * linear in the input; a multi-MB base64 value is never buffered as text.
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "ir.h"

enum { OUT, STR, STR_ESC, DIV, DIV_ESC };

static const char *const IMAGE_KEYS[] = {"b64_json", "result", "partial_image_b64", NULL};

void ir_extract_init(ir_extract *e, ir_buf *json)
{
    memset(e, 0, sizeof *e);
    e->json = json;
    e->state = OUT;
}

void ir_extract_free(ir_extract *e)
{
    size_t i;
    for (i = 0; i < e->nimgs; i++) {
        ir_buf_free(&e->imgs[i].data);
        ir_spill_discard(e->imgs[i].spill); /* an image not taken: its temporary file goes */
    }
    free(e->imgs);
    e->imgs = NULL;
    e->nimgs = e->capimgs = 0;
}

static int is_image_key(const ir_extract *e)
{
    int i;
    if (e->key_over) return 0;
    for (i = 0; IMAGE_KEYS[i]; i++)
        if (strlen(IMAGE_KEYS[i]) == e->keylen && memcmp(IMAGE_KEYS[i], e->key, e->keylen) == 0) return 1;
    return 0;
}

static int begin_image(ir_extract *e)
{
    if (e->nimgs == e->capimgs) {
        size_t cap = e->capimgs ? e->capimgs * 2 : 4;
        ir_ximg *p = realloc(e->imgs, cap * sizeof *p);
        if (!p) return -1;
        e->imgs = p;
        e->capimgs = cap;
    }
    memset(&e->imgs[e->nimgs], 0, sizeof e->imgs[0]);
    e->nimgs++;
    if (e->nimgs == 1 && e->size_hint > 0 && !e->discard && !e->save_to) {
        /* base64 is 4/3 of the bytes: the image is at most 3/4 of the body */
        if (ir_buf_reserve(&e->imgs[0].data, e->size_hint / 4 * 3 + 64)) return -1;
    }
    /* a final image (not a partial) of a call with save_to is decoded into its file */
    if (e->save_to && !e->discard &&
        !(e->keylen == sizeof "partial_image_b64" - 1 && memcmp(e->key, "partial_image_b64", e->keylen) == 0)) {
        ir_ximg *im = &e->imgs[e->nimgs - 1];
        im->spill = ir_spill_open(e->save_to);
        im->spill_no = ++e->nspills;
        if (!im->spill) im->bad = "the save_to file cannot be created";
    }
    ir_b64dec_init(&e->dec);
    e->npre = 0;
    e->prefix = 0;
    return 0;
}

/* Feeds characters of the diverted string value, handling a "data:<mime>;base64," prefix. */
static int div_feed(ir_extract *e, const char *p, size_t n)
{
    ir_ximg *im = &e->imgs[e->nimgs - 1];
    if (e->discard) return 0;
    while (n && e->prefix != 2) {
        char c = *p++;
        n--;
        if (e->prefix == 1) { /* inside the data: URL header, up to the comma */
            if (c == ',') {
                e->pre[e->npre] = '\0';
                snprintf(im->dataurl_mime, sizeof im->dataurl_mime, "%.*s",
                         (int)strcspn(e->pre, ";"), e->pre);
                if (!strstr(e->pre, ";base64")) im->bad = "a data: URL that is not base64";
                e->prefix = 2;
            } else if (e->npre < sizeof e->pre - 1) {
                e->pre[e->npre++] = c;
            } else {
                im->bad = "a data: URL header that is too long";
                e->prefix = 2;
            }
            continue;
        }
        e->pre[e->npre++] = c;
        if (memcmp(e->pre, "data:", e->npre) == 0) {
            if (e->npre == 5) { e->prefix = 1; e->npre = 0; }
            continue;
        }
        e->prefix = 2;
        if (ir_b64dec_feed(&e->dec, e->pre, e->npre, &im->data)) return -1;
        e->npre = 0;
    }
    if (n && ir_b64dec_feed(&e->dec, p, n, &im->data)) return -1;
    if (im->spill && im->data.n >= IR_SPILL_CHUNK && ir_spill_write(im->spill, &im->data) && !im->bad)
        im->bad = "writing the save_to file failed";
    return 0;
}

static int end_image(ir_extract *e)
{
    ir_ximg *im = &e->imgs[e->nimgs - 1];
    const char *why = NULL;
    char ph[48];
    if (e->discard) {
        im->bad = "not kept";
        snprintf(ph, sizeof ph, IR_IMG_PLACEHOLDER "%u\"", (unsigned)(e->nimgs - 1));
        return ir_buf_addstr(e->json, ph);
    }
    if (e->prefix == 0 && e->npre) { /* a short value that never left the prefix check */
        if (ir_b64dec_feed(&e->dec, e->pre, e->npre, &im->data)) return -1;
    }
    if (e->prefix == 1 && !im->bad) im->bad = "a data: URL without a comma";
    if (ir_b64dec_finish(&e->dec, &im->data, &why) && !im->bad) im->bad = why;
    if (im->spill && ir_spill_write(im->spill, &im->data) && !im->bad) im->bad = "writing the save_to file failed";
    snprintf(ph, sizeof ph, IR_IMG_PLACEHOLDER "%u\"", (unsigned)(e->nimgs - 1));
    return ir_buf_addstr(e->json, ph);
}

int ir_extract_feed(ir_extract *e, const char *p, size_t n)
{
    const char *end = p + n;
    if (e->oom) return -1;
    while (p < end) {
        const char *run;
        char c;
        switch (e->state) {
        case DIV: {
            const char *q, *bs;
            run = p;
            q = memchr(p, '"', (size_t)(end - p));
            bs = memchr(p, '\\', (size_t)((q ? q : end) - p));
            p = bs ? bs : (q ? q : end);
            if (p > run && div_feed(e, run, (size_t)(p - run))) goto oom;
            if (p == end) break;
            c = *p++;
            if (c == '\\') { e->state = DIV_ESC; break; }
            if (end_image(e)) goto oom;
            e->state = OUT;
            e->string_ended = 0;
            break;
        }
        case DIV_ESC:
            c = *p++;
            e->state = DIV;
            if (c == '/') { if (div_feed(e, "/", 1)) goto oom; }
            else if (c != 'n' && c != 'r' && c != 't') e->imgs[e->nimgs - 1].bad = "an escape sequence inside base64";
            break;
        case STR:
            run = p;
            while (p < end && *p != '"' && *p != '\\') {
                if (e->keylen < sizeof e->key) e->key[e->keylen++] = *p;
                else e->key_over = 1;
                p++;
            }
            if (ir_buf_add(e->json, run, (size_t)(p - run))) goto oom;
            if (p == end) break;
            c = *p++;
            if (ir_buf_add(e->json, &c, 1)) goto oom;
            if (c == '\\') { e->state = STR_ESC; e->key_over = 1; break; }
            e->state = OUT;
            e->string_ended = 1;
            break;
        case STR_ESC:
            c = *p++;
            if (ir_buf_add(e->json, &c, 1)) goto oom;
            e->state = STR;
            break;
        default: /* OUT */
            c = *p++;
            if (ir_buf_add(e->json, &c, 1)) goto oom;
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') break;
            if (c == ':') {
                e->want_image = e->string_ended && is_image_key(e);
                e->string_ended = 0;
                break;
            }
            e->string_ended = 0;
            if (c == '"') {
                if (e->want_image) {
                    e->want_image = 0;
                    if (begin_image(e)) goto oom;
                    e->state = DIV;
                } else {
                    e->state = STR;
                    e->keylen = 0;
                    e->key_over = 0;
                }
                break;
            }
            e->want_image = 0;
        }
    }
    return 0;
oom:
    e->oom = 1;
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* taking the extracted images (Lua context: after libcurl has returned)                       */

/* Image k was decoded into a file (opts.save_to): moves it to its name (the target itself, or
 * "<stem>-N<.ext>" when the reply holds several final images) and pushes the file-backed Image. */
int ir_take_spilled(lua_State *L, ir_extract *ex, unsigned long k, const char *field)
{
    ir_ximg *im = &ex->imgs[k];
    ir_spill *sp = im->spill;
    int ok;
    im->spill = NULL; /* taken: ir_extract_free no longer removes it */
    ir_push_numbered_path(L, ex->save_to, im->spill_no, ex->nspills);
    ok = ir_spill_take(L, sp, lua_tostring(L, -1), field);
    lua_remove(L, -2);
    return ok;
}

/* The Image at the top of the stack came as extracted image im: when that was a data: URL, its user
 * field data_url_mime is the MIME type the prefix declared (plain base64 sets nothing). */
void ir_mark_data_url(lua_State *L, const ir_ximg *im)
{
    if (!im->dataurl_mime[0]) return;
    lua_getiuservalue(L, -1, 1);
    lua_pushstring(L, im->dataurl_mime);
    lua_setfield(L, -2, "data_url_mime");
    lua_pop(L, 1);
}

/* Takes extracted image k (placeholder string at idx) as an Image pushed on the stack. Returns 0
 * with an error pushed instead when it is not a valid image. */
int ir_take_image(lua_State *L, ir_extract *ex, const char *ph, const char *field)
{
    unsigned long k = strtoul(ph + sizeof(IR_IMG_PLACEHOLDER) - 1, NULL, 10);
    ir_ximg *im;
    const char *fmt = NULL;
    if (k >= ex->nimgs) {
        ir_push_error(L, "decode", "%s: internal placeholder out of range", field);
        return 0;
    }
    im = &ex->imgs[k];
    if (im->bad) {
        ir_push_error(L, "decode", "%s is not valid base64 (%s)", field, im->bad);
        return 0;
    }
    if (im->dataurl_mime[0] && strncmp(im->dataurl_mime, "image/", 6) != 0) {
        ir_push_error(L, "decode", "%s is a data URL of type %s, not an image", field, im->dataurl_mime);
        return 0;
    }
    if (im->spill) {
        if (!ir_take_spilled(L, ex, k, field)) return 0;
        ir_mark_data_url(L, im);
        return 1;
    }
    if (!ir_sniff((const unsigned char *)im->data.p, im->data.n, &fmt)) {
        ir_push_error(L, "decode", "%s decoded to %I bytes that are not a PNG, JPEG, WebP or GIF image", field,
                      (lua_Integer)im->data.n);
        return 0;
    }
    ir_image_push(L, &im->data);
    ir_mark_data_url(L, im);
    return 1;
}

int ir_is_placeholder(lua_State *L, int idx)
{
    const char *s = lua_tostring(L, idx);
    return s && strncmp(s, IR_IMG_PLACEHOLDER, sizeof(IR_IMG_PLACEHOLDER) - 1) == 0;
}
