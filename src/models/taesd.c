/* TAESD encoder and decoder (see taesd.h). The layer lists mirror
 * upstream taesd.py's nn.Sequential, whose indices name the weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "taesd.h"

#define NF 64
#define MAXL 24

typedef enum { L_CONV, L_CONV_S2, L_CONV_NOBIAS, L_BLOCK, L_RELU, L_UP, L_CLAMP } ltype;

typedef struct {
    ltype type;
    lc_tensor *w, *b;       /* conv */
    lc_tensor *cw[3], *cb[3], *skip; /* block */
} layer;

typedef struct {
    int n;
    layer l[MAXL];
} stack;

struct lc_taesd {
    int latent;
    int has_enc, has_dec;
    stack enc, dec;
};

/* upstream Encoder(4) / Decoder(4), index = position in the Sequential */
static const ltype ENC[] = {L_CONV, L_BLOCK, L_CONV_S2, L_BLOCK, L_BLOCK, L_BLOCK,
                            L_CONV_S2, L_BLOCK, L_BLOCK, L_BLOCK, L_CONV_S2, L_BLOCK,
                            L_BLOCK, L_BLOCK, L_CONV};
static const ltype DEC[] = {L_CLAMP, L_CONV, L_RELU, L_BLOCK, L_BLOCK, L_BLOCK, L_UP,
                            L_CONV_NOBIAS, L_BLOCK, L_BLOCK, L_BLOCK, L_UP, L_CONV_NOBIAS,
                            L_BLOCK, L_BLOCK, L_BLOCK, L_UP, L_CONV_NOBIAS, L_BLOCK, L_CONV};

static lc_tensor *take(lc_weights *w, const char *name, int ndim, int64_t a, int64_t b, int64_t k)
{
    int64_t shape[4] = {a, b, k, k};
    lc_tensor *t = lc_weights_need(w, name, ndim, shape);
    if (t)
        lc_tensor_retain(t);
    return t;
}

static void free_stack(stack *s)
{
    for (int i = 0; i < s->n; i++) {
        layer *l = &s->l[i];
        lc_tensor_free(l->w), lc_tensor_free(l->b), lc_tensor_free(l->skip);
        for (int k = 0; k < 3; k++)
            lc_tensor_free(l->cw[k]), lc_tensor_free(l->cb[k]);
    }
    s->n = 0;
}

void lc_taesd_free(lc_taesd *m)
{
    if (!m)
        return;
    free_stack(&m->enc);
    free_stack(&m->dec);
    free(m);
}

/* Fills s from w following types[]; the first conv's input and the last
 * conv's output channel counts are cin and cout. */
static int build(stack *s, lc_weights *w, const ltype *types, int n, int cin, int cout,
                 const char *what)
{
    char name[64];
    int last_conv = -1;
    for (int i = 0; i < n; i++)
        if (types[i] == L_CONV)
            last_conv = i;
    int first = 1;
    for (int i = 0; i < n; i++) {
        layer *l = &s->l[i];
        l->type = types[i];
        s->n = i + 1;
        int ok = 1;
        if (types[i] == L_CONV || types[i] == L_CONV_S2 || types[i] == L_CONV_NOBIAS) {
            int64_t in = first ? cin : NF, out = i == last_conv && !first ? cout : NF;
            first = 0;
            snprintf(name, sizeof name, "%d.weight", i);
            ok = (l->w = take(w, name, 4, out, in, 3)) != NULL;
            if (ok && types[i] == L_CONV) {
                snprintf(name, sizeof name, "%d.bias", i);
                ok = (l->b = take(w, name, 1, out, 0, 0)) != NULL;
            }
        } else if (types[i] == L_BLOCK) {
            for (int k = 0; ok && k < 3; k++) {
                snprintf(name, sizeof name, "%d.conv.%d.weight", i, 2 * k);
                ok = (l->cw[k] = take(w, name, 4, NF, NF, 3)) != NULL;
                snprintf(name, sizeof name, "%d.conv.%d.bias", i, 2 * k);
                ok = ok && (l->cb[k] = take(w, name, 1, NF, 0, 0)) != NULL;
            }
        }
        if (!ok)
            return lc_err_prefix("taesd %s: ", what);
    }
    return lc_weights_check_unused(w, what[0] == 'e' ? "taesd encoder" : "taesd decoder");
}

lc_taesd *lc_taesd_new(lc_weights *enc, lc_weights *dec)
{
    lc_taesd *m = lc_calloc(1, sizeof *m, "taesd");
    if (!m)
        return NULL;
    m->latent = 4;
    /* latent channels from the weights themselves (TAESD3/TAEF1 use 16) */
    lc_tensor *t = dec ? lc_weights_get(dec, "1.weight") : NULL;
    if (t && t->ndim == 4)
        m->latent = (int)t->shape[1];
    else if (enc && (t = lc_weights_get(enc, "14.weight")) && t->ndim == 4)
        m->latent = (int)t->shape[0];
    int ok = 1;
    if (enc) {
        ok = build(&m->enc, enc, ENC, (int)(sizeof ENC / sizeof *ENC), 3, m->latent,
                   "encoder") == LC_OK;
        m->has_enc = ok;
    }
    if (ok && dec) {
        ok = build(&m->dec, dec, DEC, (int)(sizeof DEC / sizeof *DEC), m->latent, 3,
                   "decoder") == LC_OK;
        m->has_dec = ok;
    }
    if (!ok) {
        lc_taesd_free(m);
        return NULL;
    }
    return m;
}

int lc_taesd_latent_channels(const lc_taesd *m)
{
    return m->latent;
}

static lc_tensor *conv(const lc_tensor *x, const lc_tensor *w, const lc_tensor *b, int stride)
{
    lc_conv2d_params p = {{stride, stride}, {1, 1}, {1, 1}, 1};
    return lc_conv2d(x, w, b, &p);
}

static lc_tensor *relu(lc_tensor *x)
{
    if (x && lc_unary_(LC_RELU, x) != LC_OK) {
        lc_tensor_free(x);
        return NULL;
    }
    return x;
}

/* consumes x: relu(conv(relu(conv(relu(conv(x))))) + x) */
static lc_tensor *block(const layer *l, lc_tensor *x)
{
    lc_tensor *h = relu(conv(x, l->cw[0], l->cb[0], 1));
    lc_tensor *h2 = h ? relu(conv(h, l->cw[1], l->cb[1], 1)) : NULL;
    lc_tensor_free(h);
    h = h2 ? conv(h2, l->cw[2], l->cb[2], 1) : NULL;
    lc_tensor_free(h2);
    if (!h || lc_binary_(LC_ADD, h, x) != LC_OK) {
        lc_tensor_free(h);
        lc_tensor_free(x);
        return NULL;
    }
    lc_tensor_free(x);
    return relu(h);
}

static lc_tensor *run(const stack *s, const lc_tensor *in)
{
    lc_tensor *x = lc_tensor_f32((lc_tensor *)in);
    for (int i = 0; x && i < s->n; i++) {
        const layer *l = &s->l[i];
        lc_tensor *y = NULL;
        if (lc_interrupted()) {
            lc_tensor_free(x);
            lc_err("interrupted");
            return NULL;
        }
        switch (l->type) {
        case L_CONV:
        case L_CONV_NOBIAS:
            y = conv(x, l->w, l->b, 1);
            break;
        case L_CONV_S2:
            y = conv(x, l->w, NULL, 2);
            break;
        case L_BLOCK:
            lc_tensor_retain(x);
            y = block(l, x);
            break;
        case L_RELU:
            y = lc_unary(LC_RELU, x);
            break;
        case L_UP:
            y = lc_resize(x, 2 * x->shape[2], 2 * x->shape[3], LC_RESIZE_NEAREST, 0);
            break;
        case L_CLAMP: /* 3 tanh(x / 3) */
            y = lc_binary_scalar(LC_DIV, x, 3.0, 0);
            if (y && (lc_unary_(LC_TANH, y) != LC_OK || lc_binary_scalar_(LC_MUL, y, 3.0) != LC_OK)) {
                lc_tensor_free(y);
                y = NULL;
            }
            break;
        }
        lc_tensor_free(x);
        x = y;
    }
    return x;
}

lc_tensor *lc_taesd_encode(lc_taesd *m, const lc_tensor *x)
{
    if (!m->has_enc) {
        lc_err("taesd: no encoder weights loaded");
        return NULL;
    }
    if (x->ndim != 4 || x->shape[1] != 3 || x->shape[2] % 8 || x->shape[3] % 8 || !x->shape[2] ||
        !x->shape[3]) {
        lc_err("taesd encode: image %s, expected [N,3,H,W] with H and W multiples of 8",
               LC_SHAPE_STR(x));
        return NULL;
    }
    lc_tensor *y = run(&m->enc, x);
    if (!y)
        lc_err_prefix("taesd encode: ");
    return y;
}

lc_tensor *lc_taesd_decode(lc_taesd *m, const lc_tensor *z)
{
    if (!m->has_dec) {
        lc_err("taesd: no decoder weights loaded");
        return NULL;
    }
    if (z->ndim != 4 || z->shape[1] != m->latent || !z->shape[2] || !z->shape[3]) {
        lc_err("taesd decode: latent %s, expected [N,%d,h,w]", LC_SHAPE_STR(z), m->latent);
        return NULL;
    }
    lc_tensor *y = run(&m->dec, z);
    lc_tensor *c = y ? lc_clamp(y, 0.0, 1.0) : NULL;
    lc_tensor_free(y);
    if (!c)
        lc_err_prefix("taesd decode: ");
    return c;
}
