/* UNet2DConditionModel: golden outputs of tiny-a in both weight layouts,
 * config parsing and inference, the ldm key map, hooks, residuals,
 * per-sample timesteps, and the full-size SD 1.5 architecture. */
#include <time.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "models/hooks.h"
#include "models/unet.h"
#include "models/weights.h"
#include "ops/ops.h"
#include "ops/prof.h"
#include "testutil.h"

#define GOLD "golden/tiny-a/"

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static void tiny_config(lc_unet_config *c)
{
    char *js = read_text(lt_data(GOLD "unet/config.json"));
    ck_assert_msg(lc_unet_config_parse(c, js, "tiny-a unet") == LC_OK, "%s", lc_errmsg());
    free(js);
}

static lc_unet *load_diffusers(void)
{
    lc_unet_config c;
    tiny_config(&c);
    lc_weights *w = lc_weights_new();
    ck_assert_msg(lc_weights_load(w, lt_data(GOLD "unet/diffusion_pytorch_model.safetensors"), NULL,
                                  NULL, NULL) == LC_OK,
                  "%s", lc_errmsg());
    lc_unet *u = lc_unet_new(&c, w);
    ck_assert_msg(u != NULL, "%s", lc_errmsg());
    lc_weights_free(w);
    return u;
}

static lc_unet *load_ldm(void)
{
    lc_unet_config c;
    tiny_config(&c); /* head counts are not in the tensors */
    lc_unet_ldm_map m;
    const char *path = lt_data(GOLD "model_ldm.safetensors");
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    ck_assert_msg(lc_unet_ldm_map_init(&m, p, NULL) == LC_OK, "%s", lc_errmsg());
    ck_assert_int_eq(m.layers_per_block, 2);
    lc_weights *w = lc_weights_new();
    ck_assert_msg(lc_weights_load(w, p, "model.diffusion_model.", lc_unet_ldm_key_map, &m) == LC_OK,
                  "%s", lc_errmsg());
    lc_unet *u = lc_unet_new(&c, w);
    ck_assert_msg(u != NULL, "%s", lc_errmsg());
    lc_weights_free(w);
    return u;
}

static lc_st_file *golden(void)
{
    lc_st_file *g = lc_st_open(lt_data(GOLD "golden.safetensors"));
    ck_assert_msg(g != NULL, "%s", lc_errmsg());
    return g;
}

static lc_tensor *gget(lc_st_file *g, const char *fmt, const char *a)
{
    char name[256];
    snprintf(name, sizeof name, fmt, a);
    lc_tensor *t = lc_st_get(g, name);
    ck_assert_msg(t != NULL, "%s", lc_errmsg());
    return t;
}

/* runs a golden unet case; returns max|diff| / max|ref| */
static double run_case(lc_unet *u, lc_st_file *g, const char *cs, int with_res, const char *layout)
{
    lc_tensor *x = gget(g, "%s/sample", cs), *t = gget(g, "%s/timestep", cs);
    lc_tensor *ctx = gget(g, "%s/encoder_hidden_states", cs);
    lc_tensor *ref = gget(g, with_res ? "%s/unet_out" : "%s/out", cs);
    lc_tensor *res[6] = {0}, *mid = NULL;
    lc_unet_opts o = {0};
    if (with_res) {
        char k[128];
        for (int i = 0; i < 6; i++) {
            snprintf(k, sizeof k, "%s/down_res/%d", cs, i);
            res[i] = gget(g, "%s", k);
        }
        mid = gget(g, "%s/mid_res", cs);
        o.down_residuals = res;
        o.n_down_residuals = 6;
        o.mid_residual = mid;
    }
    lc_tensor *y = lc_unet_forward(u, x, t, ctx, &o);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    double d = lt_max_abs_diff(y, ref), m = lt_max_abs(ref);
    printf("unet %-16s %-9s max|diff| %.3g  max|ref| %.3g  rel %.3g\n", cs, layout, d, m, d / m);
    lc_tensor_free(x);
    lc_tensor_free(t);
    lc_tensor_free(ctx);
    lc_tensor_free(ref);
    lc_tensor_free(y);
    lc_tensor_free(mid);
    for (int i = 0; i < 6; i++)
        lc_tensor_free(res[i]);
    return d / m;
}

static void golden_all(lc_unet *u, const char *layout)
{
    lc_st_file *g = golden();
    const char *cases[] = {"unet/t801", "unet/t1", "unet/t500_5"};
    for (int i = 0; i < 3; i++)
        ck_assert_double_le(run_case(u, g, cases[i], 0, layout), 1e-4);
    ck_assert_double_le(run_case(u, g, "controlnet/t601", 1, layout), 1e-4);
    lc_st_close(g);
}

START_TEST(golden_diffusers)
{
    lc_unet *u = load_diffusers();
    golden_all(u, "diffusers");
    lc_unet_free(u);
}
END_TEST

START_TEST(golden_ldm)
{
    lc_unet *u = load_ldm();
    golden_all(u, "ldm");
    lc_unet_free(u);
}
END_TEST

START_TEST(config_parse)
{
    lc_unet_config c;
    tiny_config(&c);
    ck_assert_int_eq(c.nblocks, 2);
    ck_assert_int_eq(c.block_out_channels[1], 64);
    ck_assert_int_eq(c.down_cross[0], 1);
    ck_assert_int_eq(c.down_cross[1], 0);
    ck_assert_int_eq(c.up_cross[0], 0);
    ck_assert_int_eq(c.up_cross[1], 1);
    /* attention_head_dim 4 with num_attention_heads null: 4 heads */
    ck_assert_int_eq(c.heads[0], 4);
    ck_assert_int_eq(c.heads[1], 4);
    ck_assert_int_eq(c.cross_attention_dim, 32);
    ck_assert_int_eq(c.time_embed_dim, 128);
    ck_assert_int_eq(c.sample_size, 8);

    const char *sd2 = "{\"attention_head_dim\": [5, 10, 20, 20], \"cross_attention_dim\": 1024,"
                      "\"use_linear_projection\": true, \"transformer_layers_per_block\": [1,2,3,4]}";
    ck_assert_int_eq(lc_unet_config_parse(&c, sd2, "sd2"), LC_OK);
    ck_assert_int_eq(c.heads[2], 20);
    ck_assert_int_eq(c.use_linear_projection, 1);
    ck_assert_int_eq(c.up_transformer_layers[0], 4);
    ck_assert_int_eq(c.up_transformer_layers[3], 1);
    ck_assert_int_eq(c.block_out_channels[3], 1280);

    ck_assert_int_eq(lc_unet_config_parse(&c, "{\"addition_embed_type\": \"text_time\"}", "xl"),
                     LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "addition_embed_type"));
    ck_assert_int_eq(lc_unet_config_parse(&c, "{\"block_out_channels\": [32, 64],"
                                              "\"down_block_types\": [\"DownBlock2D\"]}", "x"),
                     LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "down_block_types"));
    ck_assert_int_eq(lc_unet_config_parse(&c, "[1,2]", "x"), LC_ERR);
}
END_TEST

static void same_except_heads(const lc_unet_config *a, const lc_unet_config *b)
{
    ck_assert_int_eq(a->nblocks, b->nblocks);
    ck_assert_int_eq(a->in_channels, b->in_channels);
    ck_assert_int_eq(a->out_channels, b->out_channels);
    ck_assert_int_eq(a->cross_attention_dim, b->cross_attention_dim);
    ck_assert_int_eq(a->use_linear_projection, b->use_linear_projection);
    ck_assert_int_eq(a->time_embed_dim, b->time_embed_dim);
    ck_assert_int_eq(a->mid_cross, b->mid_cross);
    for (int i = 0; i < a->nblocks; i++) {
        ck_assert_int_eq(a->block_out_channels[i], b->block_out_channels[i]);
        ck_assert_int_eq(a->layers_per_block[i], b->layers_per_block[i]);
        ck_assert_int_eq(a->down_cross[i], b->down_cross[i]);
        ck_assert_int_eq(a->up_cross[i], b->up_cross[i]);
        if (a->down_cross[i] || i == a->nblocks - 1)
            ck_assert_int_eq(a->transformer_layers[i], b->transformer_layers[i]);
    }
}

START_TEST(config_infer)
{
    lc_unet_config ref, c;
    tiny_config(&ref);
    lc_weights *w = lc_weights_new();
    ck_assert_int_eq(lc_weights_load(w, lt_data(GOLD "unet/diffusion_pytorch_model.safetensors"),
                                     NULL, NULL, NULL),
                     LC_OK);
    ck_assert_msg(lc_unet_config_infer(&c, w) == LC_OK, "%s", lc_errmsg());
    same_except_heads(&ref, &c);
    ck_assert_int_eq(c.heads[0], 8); /* SD 1.x rule: context dim is not 1024 */
    lc_weights_free(w);

    char p[4096];
    snprintf(p, sizeof p, "%s", lt_data(GOLD "model_ldm.safetensors"));
    ck_assert_msg(lc_unet_config_from_ldm(&c, p, NULL) == LC_OK, "%s", lc_errmsg());
    same_except_heads(&ref, &c);

    /* a diffusers file is not an ldm checkpoint */
    snprintf(p, sizeof p, "%s", lt_data(GOLD "unet/diffusion_pytorch_model.safetensors"));
    ck_assert_int_eq(lc_unet_config_from_ldm(&c, p, NULL), LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "input_blocks"));
}
END_TEST

START_TEST(ldm_names)
{
    lc_unet_ldm_map m = {2};
    struct {
        const char *from, *to;
    } cases[] = {
        {"input_blocks.0.0.weight", "conv_in.weight"},
        {"time_embed.2.bias", "time_embedding.linear_2.bias"},
        {"input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"},
        {"input_blocks.2.0.emb_layers.1.bias", "down_blocks.0.resnets.1.time_emb_proj.bias"},
        {"input_blocks.2.1.proj_in.weight", "down_blocks.0.attentions.1.proj_in.weight"},
        {"input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"},
        {"input_blocks.4.0.skip_connection.weight", "down_blocks.1.resnets.0.conv_shortcut.weight"},
        {"input_blocks.8.1.transformer_blocks.0.attn2.to_k.weight",
         "down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight"},
        {"middle_block.2.out_layers.3.weight", "mid_block.resnets.1.conv2.weight"},
        {"middle_block.1.norm.bias", "mid_block.attentions.0.norm.bias"},
        {"output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"},
        {"output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"},
        {"output_blocks.5.1.proj_out.bias", "up_blocks.1.attentions.2.proj_out.bias"},
        {"output_blocks.4.0.out_layers.0.bias", "up_blocks.1.resnets.1.norm2.bias"},
        {"out.0.weight", "conv_norm_out.weight"},
        {"out.2.bias", "conv_out.bias"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_int_eq(lc_unet_ldm_name(&m, cases[i].from, out, sizeof out), 1);
        ck_assert_str_eq(out, cases[i].to);
    }
    ck_assert_int_eq(lc_unet_ldm_name(&m, "label_emb.0.0.weight", out, sizeof out), 0);
    ck_assert_int_eq(lc_unet_ldm_name(&m, "input_blocks.x.0.weight", out, sizeof out), 0);
    /* the map keeps unknown names so the model reports them */
    ck_assert_int_eq(lc_unet_ldm_key_map("label_emb.0.0.weight", out, sizeof out, &m), 1);
    ck_assert_str_eq(out, "label_emb.0.0.weight");
}
END_TEST

START_TEST(glob)
{
    ck_assert(lc_glob_match("*attn1", "down_blocks.0.attentions.0.transformer_blocks.0.attn1"));
    ck_assert(!lc_glob_match("*attn1", "down_blocks.0.attentions.0.transformer_blocks.0.attn2"));
    ck_assert(lc_glob_match("down_blocks.1.*", "down_blocks.1.attentions.0.x"));
    ck_assert(!lc_glob_match("down_blocks.1.*", "down_blocks.10.attentions"));
    ck_assert(lc_glob_match("mid_block.*.attn?", "mid_block.attentions.0.transformer_blocks.0.attn2"));
    ck_assert(lc_glob_match("a", "a"));
    ck_assert(!lc_glob_match("a", "ab"));
    ck_assert(lc_glob_match("*", ""));
    ck_assert(lc_glob_match("*a*b*c", "xxaxxbxxbxc"));
    ck_assert(!lc_glob_match("*a*b*c", "xxaxxbxxbx"));
}
END_TEST

/* ---- hooks ---- */

typedef struct {
    int calls;
    double worst; /* max |sum over keys - 1| */
    int64_t lk;
} probs_obs;

static int observe(void *ud, const char *site, lc_hook_kind kind, lc_tensor *in, lc_tensor **out)
{
    (void)out;
    probs_obs *o = ud;
    ck_assert_int_eq(kind, LC_HOOK_ATTN_PROBS);
    ck_assert_ptr_nonnull(strstr(site, "attn2"));
    ck_assert_int_eq(in->ndim, 4);
    int64_t rows = in->shape[0] * in->shape[1] * in->shape[2], L = in->shape[3];
    o->lk = L;
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t k = 0; k < L; k++) {
            double p = lc_tensor_get(in, r * L + k);
            ck_assert(p >= 0 && p <= 1);
            s += p;
        }
        if (fabs(s - 1) > o->worst)
            o->worst = fabs(s - 1);
    }
    o->calls++;
    return LC_OK;
}

static int copy_tokens(void *ud, const char *site, lc_hook_kind kind, lc_tensor *in, lc_tensor **out)
{
    (*(int *)ud)++;
    ck_assert_int_eq(kind, LC_HOOK_KV_EXTEND);
    ck_assert_ptr_nonnull(strstr(site, "attn1"));
    *out = lc_tensor_clone(in);
    return *out ? LC_OK : LC_ERR;
}

static int failing(void *ud, const char *site, lc_hook_kind kind, lc_tensor *in, lc_tensor **out)
{
    (void)ud, (void)kind, (void)in, (void)out;
    return lc_err("hook refused at %s", site);
}

static int n_released;

static void freed(void *ud)
{
    (void)ud;
    n_released++;
}

static lc_tensor *case_forward(lc_unet *u, lc_st_file *g, const char *cs, const lc_unet_opts *o)
{
    lc_tensor *x = gget(g, "%s/sample", cs), *t = gget(g, "%s/timestep", cs);
    lc_tensor *ctx = gget(g, "%s/encoder_hidden_states", cs);
    lc_tensor *y = lc_unet_forward(u, x, t, ctx, o);
    lc_tensor_free(x);
    lc_tensor_free(t);
    lc_tensor_free(ctx);
    return y;
}

START_TEST(hooks_probs_and_kv)
{
    lc_unet *u = load_diffusers();
    lc_st_file *g = golden();
    /* tiny-a: 2+3 transformer layers in the down/up cross blocks + mid */
    ck_assert_int_eq(lc_unet_num_sites(u), 12);
    ck_assert_str_eq(lc_unet_site(u, 0)->name, "down_blocks.0.attentions.0.transformer_blocks.0.attn1");
    lc_tensor *base = case_forward(u, g, "unet/t801", NULL);
    ck_assert_ptr_nonnull(base);

    probs_obs o = {0};
    int id = lc_unet_hook_add(u, "*attn2", LC_HOOK_ATTN_PROBS, observe, &o, freed);
    n_released = 0;
    ck_assert_int_gt(id, 0);
    lc_tensor *y = case_forward(u, g, "unet/t801", NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(o.calls, 6);
    ck_assert_int_eq(o.lk, 77);
    printf("hooks: probabilities sum to 1 within %.3g\n", o.worst);
    ck_assert_double_le(o.worst, 1e-5);
    /* the materialised path computes the same attention */
    double d = lt_max_abs_diff(y, base);
    printf("hooks: observed forward vs plain %.3g\n", d);
    ck_assert_double_le(d, 1e-5 * lt_max_abs(base));
    lc_tensor_free(y);
    ck_assert_int_eq(lc_unet_hook_remove(u, id), LC_OK);
    ck_assert_int_eq(n_released, 1);
    ck_assert_int_eq(lc_unet_hook_remove(u, id), LC_ERR);

    /* duplicated keys with duplicated values: same softmax-weighted mean */
    int calls = 0;
    id = lc_unet_hook_add(u, "*attn1", LC_HOOK_KV_EXTEND, copy_tokens, &calls, NULL);
    ck_assert_int_gt(id, 0);
    y = case_forward(u, g, "unet/t801", NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(calls, 6);
    d = lt_max_abs_diff(y, base);
    printf("hooks: identity K/V extension changes the output by %.3g\n", d);
    ck_assert_double_le(d, 1e-5);
    lc_tensor_free(y);
    ck_assert_int_eq(lc_unet_hook_remove(u, id), LC_OK);

    /* kv_extend on cross-attention only matches nothing */
    ck_assert_int_eq(lc_unet_hook_add(u, "*attn2", LC_HOOK_KV_EXTEND, copy_tokens, &calls, NULL),
                     LC_ERR);
    ck_assert_int_eq(lc_unet_hook_add(u, "nothing.here", LC_HOOK_ATTN_PROBS, observe, &o, NULL),
                     LC_ERR);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "nothing.here"));

    /* a failing hook fails the forward with its message */
    id = lc_unet_hook_add(u, "mid_block.*attn1", LC_HOOK_ATTN_PROBS, failing, NULL, NULL);
    ck_assert_int_gt(id, 0);
    y = case_forward(u, g, "unet/t801", NULL);
    ck_assert_ptr_null(y);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "hook refused at mid_block.attentions.0"));
    ck_assert_int_eq(lc_unet_hook_remove(u, id), LC_OK);

    /* unhooked again: bit-identical to the first run */
    y = case_forward(u, g, "unet/t801", NULL);
    ck_assert_double_eq(lt_max_abs_diff(y, base), 0);
    lc_tensor_free(y);
    lc_tensor_free(base);
    lc_st_close(g);
    lc_unet_free(u);
}
END_TEST

START_TEST(zero_residuals)
{
    lc_unet *u = load_diffusers();
    lc_st_file *g = golden();
    lc_tensor *base = case_forward(u, g, "unet/t500_5", NULL);
    ck_assert_ptr_nonnull(base);
    lc_tensor *res[6];
    const char *cs = "controlnet/t601";
    for (int i = 0; i < 6; i++) {
        char k[64];
        snprintf(k, sizeof k, "%s/down_res/%d", cs, i);
        lc_tensor *r = gget(g, "%s", k);
        res[i] = lc_tensor_zeros(LC_F32, r->ndim, r->shape);
        lc_tensor_free(r);
    }
    lc_tensor *mid = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){2, 64, 4, 4});
    lc_unet_opts o = {res, 6, mid};
    lc_tensor *y = case_forward(u, g, "unet/t500_5", &o);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    ck_assert_double_eq(lt_max_abs_diff(y, base), 0);
    lc_tensor_free(y);

    /* wrong count and wrong shape are errors naming the problem */
    o.n_down_residuals = 5;
    ck_assert_ptr_null(case_forward(u, g, "unet/t500_5", &o));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "5 down residuals, expected 6"));
    o.n_down_residuals = 6;
    lc_tensor *tmp = res[3];
    res[3] = res[4];
    y = case_forward(u, g, "unet/t500_5", &o);
    ck_assert_ptr_null(y);
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "down residual 4"));
    res[3] = tmp;
    for (int i = 0; i < 6; i++)
        lc_tensor_free(res[i]);
    lc_tensor_free(mid);
    lc_tensor_free(base);
    lc_st_close(g);
    lc_unet_free(u);
}
END_TEST

START_TEST(per_sample_timesteps)
{
    lc_unet *u = load_diffusers();
    lc_st_file *g = golden();
    lc_tensor *x = gget(g, "%s/sample", "unet/t801");
    lc_tensor *ctx = gget(g, "%s/encoder_hidden_states", "unet/t801");
    const float ts[2] = {801, 37.5f};
    lc_tensor *t2 = lt_tensor(1, (const int64_t[]){2}, ts);
    lc_tensor *y = lc_unet_forward(u, x, t2, ctx, NULL);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    for (int b = 0; b < 2; b++) {
        lc_tensor *xb = lc_tensor_narrow(x, 0, b, 1), *cb = lc_tensor_narrow(ctx, 0, b, 1);
        lc_tensor *tb = lt_tensor(1, (const int64_t[]){1}, &ts[b]);
        lc_tensor *yb = lc_unet_forward(u, xb, tb, cb, NULL);
        ck_assert_msg(yb != NULL, "%s", lc_errmsg());
        lc_tensor *ys = lc_tensor_narrow(y, 0, b, 1);
        double d = lt_max_abs_diff(ys, yb);
        printf("per-sample timestep %g: batch vs single %.3g\n", ts[b], d);
        ck_assert_double_le(d, 1e-5);
        lc_tensor_free(xb);
        lc_tensor_free(cb);
        lc_tensor_free(tb);
        lc_tensor_free(yb);
        lc_tensor_free(ys);
    }
    /* a context of batch 1 serves the whole batch */
    lc_tensor *c1 = lc_tensor_narrow(ctx, 0, 1, 1);
    lc_tensor *y1 = lc_unet_forward(u, x, t2, c1, NULL);
    ck_assert_ptr_nonnull(y1);
    lc_tensor *a = lc_tensor_narrow(y, 0, 1, 1), *b = lc_tensor_narrow(y1, 0, 1, 1);
    ck_assert_double_le(lt_max_abs_diff(a, b), 1e-5);
    lc_tensor_free(a);
    lc_tensor_free(b);
    lc_tensor_free(c1);
    lc_tensor_free(y1);
    /* three timesteps for two samples is an error */
    lc_tensor *t3 = lc_tensor_zeros(LC_F32, 1, (const int64_t[]){3});
    ck_assert_ptr_null(lc_unet_forward(u, x, t3, ctx, NULL));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "timesteps"));
    /* bad sample shape */
    lc_tensor *bad = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){2, 3, 8, 8});
    ck_assert_ptr_null(lc_unet_forward(u, bad, t2, ctx, NULL));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "expected [N,4,H,W]"));
    lc_tensor_free(bad);
    lc_tensor_free(t3);
    lc_tensor_free(t2);
    lc_tensor_free(y);
    lc_tensor_free(x);
    lc_tensor_free(ctx);
    lc_st_close(g);
    lc_unet_free(u);
}
END_TEST

START_TEST(odd_sizes)
{
    /* 6x10 latents: the 3x5 level upsamples to the skip's size */
    lc_unet *u = load_diffusers();
    lc_tensor *x = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){1, 4, 6, 10});
    for (int64_t i = 0; i < 60 * 4; i++)
        lc_tensor_set(x, i, sin(0.1 * (double)i));
    lc_tensor *ctx = lc_tensor_zeros(LC_F32, 3, (const int64_t[]){1, 5, 32});
    lc_tensor *t = lc_tensor_scalar_f32(10);
    lc_tensor *y = lc_unet_forward(u, x, t, ctx, NULL);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    ck_assert(lc_tensor_same_shape(x, y));
    lc_tensor_free(y);
    lc_tensor *x2 = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){1, 4, 5, 7});
    y = lc_unet_forward(u, x2, t, ctx, NULL);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    ck_assert(lc_tensor_same_shape(x2, y));
    lc_tensor_free(y);
    lc_tensor_free(x2);
    lc_tensor_free(x);
    lc_tensor_free(ctx);
    lc_tensor_free(t);
    lc_unet_free(u);
}
END_TEST

START_TEST(missing_tensor)
{
    lc_unet_config c;
    tiny_config(&c);
    lc_weights *w = lc_weights_new();
    ck_assert_int_eq(lc_weights_load(w, lt_data(GOLD "unet/diffusion_pytorch_model.safetensors"),
                                     "down_blocks.", NULL, NULL),
                     LC_OK);
    ck_assert_ptr_null(lc_unet_new(&c, w));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "conv_in.weight"));
    lc_weights_free(w);
    /* a config that does not fit the tensors names the first mismatch */
    c.cross_attention_dim = 48;
    w = lc_weights_new();
    ck_assert_int_eq(lc_weights_load(w, lt_data(GOLD "unet/diffusion_pytorch_model.safetensors"),
                                     NULL, NULL, NULL),
                     LC_OK);
    ck_assert_ptr_null(lc_unet_new(&c, w));
    ck_assert_ptr_nonnull(strstr(lc_errmsg(), "attn2.to_k.weight"));
    lc_weights_free(w);
}
END_TEST

START_TEST(infer_sd2_style)
{
    /* SD 2.x traits: context 1024 -> head dim 64, linear projections,
     * two transformer layers in one block */
    const char *js = "{\"block_out_channels\": [64, 128], \"attention_head_dim\": [1, 2],"
                     "\"cross_attention_dim\": 1024, \"use_linear_projection\": true,"
                     "\"transformer_layers_per_block\": [2, 1], \"layers_per_block\": 1,"
                     "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\"],"
                     "\"up_block_types\": [\"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";
    lc_unet_config c, d;
    ck_assert_msg(lc_unet_config_parse(&c, js, "sd2-like") == LC_OK, "%s", lc_errmsg());
    ck_assert_int_eq(c.up_transformer_layers[0], 1);
    ck_assert_int_eq(c.up_transformer_layers[1], 2);
    lc_weights *w = lc_unet_random_weights(&c, 7);
    ck_assert_msg(w != NULL, "%s", lc_errmsg());
    ck_assert_ptr_nonnull(lc_weights_get(w, "down_blocks.0.attentions.0.transformer_blocks.1.attn1.to_q.weight"));
    ck_assert_ptr_nonnull(lc_weights_get(w, "up_blocks.1.attentions.1.transformer_blocks.1.ff.net.2.bias"));
    ck_assert_int_eq(lc_weights_get(w, "mid_block.attentions.0.proj_in.weight")->ndim, 2);
    ck_assert_msg(lc_unet_config_infer(&d, w) == LC_OK, "%s", lc_errmsg());
    ck_assert_int_eq(d.use_linear_projection, 1);
    ck_assert_int_eq(d.cross_attention_dim, 1024);
    ck_assert_int_eq(d.heads[0], 1);
    ck_assert_int_eq(d.heads[1], 2);
    ck_assert_int_eq(d.transformer_layers[0], 2);
    ck_assert_int_eq(d.up_transformer_layers[1], 2);
    ck_assert_int_eq(d.layers_per_block[1], 1);
    lc_unet *u = lc_unet_new(&d, w);
    ck_assert_msg(u != NULL, "%s", lc_errmsg());
    /* 2 blocks x (1 + 2 up) transformers, block 0 with 2 layers, + mid */
    ck_assert_int_eq(lc_unet_num_sites(u), 2 * (2 * 1 + 1 * 1 + 2 * 2 + 1 * 2) + 2);
    lc_tensor *x = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){1, 4, 4, 4});
    lc_tensor *ctx = lc_tensor_zeros(LC_F32, 3, (const int64_t[]){1, 3, 1024});
    lc_tensor *t = lc_tensor_scalar_f32(3);
    lc_tensor *y = lc_unet_forward(u, x, t, ctx, NULL);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    ck_assert(isfinite(lt_max_abs(y)));
    lc_tensor_free(x);
    lc_tensor_free(ctx);
    lc_tensor_free(t);
    lc_tensor_free(y);
    lc_unet_free(u);
    lc_weights_free(w);
}
END_TEST

/* diffusers name -> CompVis/ldm name for a UNet with L layers per block,
 * written from the ldm layout (input_blocks: conv_in, then per level L
 * resnet[+attention] entries and a downsampler; output_blocks: L+1 entries
 * per level, the upsampler last) */
static int to_ldm(const char *n, int L, const lc_unet_config *c, char *out, size_t len)
{
    static const char *res_d[] = {"norm1.", "conv1.", "norm2.", "conv2.", "time_emb_proj.", "conv_shortcut."};
    static const char *res_l[] = {"in_layers.0.", "in_layers.2.", "out_layers.0.", "out_layers.3.", "emb_layers.1.", "skip_connection."};
    int b, l, k;
    char rest[200], rr[220];
#define RES(r) \
    for (k = 0; k < 6; k++) \
        if (strncmp(r, res_d[k], strlen(res_d[k])) == 0) { \
            snprintf(rr, sizeof rr, "%s%s", res_l[k], r + strlen(res_d[k])); \
            break; \
        } \
    ck_assert_int_lt(k, 6)
    if (sscanf(n, "down_blocks.%d.resnets.%d.%199s", &b, &l, rest) == 3) {
        RES(rest);
        return snprintf(out, len, "input_blocks.%d.0.%s", 1 + b * (L + 1) + l, rr);
    }
    if (sscanf(n, "down_blocks.%d.attentions.%d.%199s", &b, &l, rest) == 3)
        return snprintf(out, len, "input_blocks.%d.1.%s", 1 + b * (L + 1) + l, rest);
    if (sscanf(n, "down_blocks.%d.downsamplers.0.conv.%199s", &b, rest) == 2)
        return snprintf(out, len, "input_blocks.%d.0.op.%s", (b + 1) * (L + 1), rest);
    if (sscanf(n, "up_blocks.%d.resnets.%d.%199s", &b, &l, rest) == 3) {
        RES(rest);
        return snprintf(out, len, "output_blocks.%d.0.%s", b * (L + 1) + l, rr);
    }
    if (sscanf(n, "up_blocks.%d.attentions.%d.%199s", &b, &l, rest) == 3)
        return snprintf(out, len, "output_blocks.%d.1.%s", b * (L + 1) + l, rest);
    if (sscanf(n, "up_blocks.%d.upsamplers.0.conv.%199s", &b, rest) == 2)
        return snprintf(out, len, "output_blocks.%d.%d.conv.%s", b * (L + 1) + L, c->up_cross[b] ? 2 : 1, rest);
    if (sscanf(n, "mid_block.resnets.%d.%199s", &l, rest) == 2) {
        RES(rest);
        return snprintf(out, len, "middle_block.%d.%s", l ? 2 : 0, rr);
    }
    if (sscanf(n, "mid_block.attentions.0.%199s", rest) == 1)
        return snprintf(out, len, "middle_block.1.%s", rest);
    static const char *top_d[] = {"conv_in.", "time_embedding.linear_1.", "time_embedding.linear_2.", "conv_norm_out.", "conv_out."};
    static const char *top_l[] = {"input_blocks.0.0.", "time_embed.0.", "time_embed.2.", "out.0.", "out.2."};
    for (k = 0; k < 5; k++)
        if (strncmp(n, top_d[k], strlen(top_d[k])) == 0)
            return snprintf(out, len, "%s%s", top_l[k], n + strlen(top_d[k]));
    ck_abort_msg("no ldm name for %s", n);
    return 0;
#undef RES
}

START_TEST(ldm_four_levels)
{
    /* SD 1.x's block layout at small widths: 4 levels, attention in the
     * first three down and last three up blocks, 8 heads */
    const char *js = "{\"block_out_channels\": [32, 32, 64, 64], \"cross_attention_dim\": 24,"
                     "\"attention_head_dim\": 8, \"layers_per_block\": 2}";
    lc_unet_config c, d;
    ck_assert_msg(lc_unet_config_parse(&c, js, "sd1-like") == LC_OK, "%s", lc_errmsg());
    lc_weights *w = lc_unet_random_weights(&c, 11);
    ck_assert_msg(w != NULL, "%s", lc_errmsg());
    int n = lc_weights_count(w);
    char **names = calloc((size_t)n, sizeof *names);
    lc_tensor **ts = calloc((size_t)n, sizeof *ts);
    for (int i = 0; i < n; i++) {
        char buf[300], full[340];
        to_ldm(lc_weights_name(w, i), 2, &c, buf, sizeof buf);
        snprintf(full, sizeof full, "model.diffusion_model.%s", buf);
        names[i] = strdup(full);
        ts[i] = lc_weights_get(w, lc_weights_name(w, i));
    }
    char path[] = "/tmp/check_unet_ldm_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_msg(lc_st_save(path, n, (const char *const *)names, ts, 0, NULL, NULL) == LC_OK, "%s",
                  lc_errmsg());
    ck_assert_msg(lc_unet_config_from_ldm(&d, path, NULL) == LC_OK, "%s", lc_errmsg());
    same_except_heads(&c, &d);
    ck_assert_int_eq(d.heads[0], 8);
    lc_unet_ldm_map m;
    ck_assert_int_eq(lc_unet_ldm_map_init(&m, path, NULL), LC_OK);
    lc_weights *w2 = lc_weights_new();
    ck_assert_msg(lc_weights_load(w2, path, "model.diffusion_model.", lc_unet_ldm_key_map, &m) == LC_OK,
                  "%s", lc_errmsg());
    unlink(path);
    lc_unet *a = lc_unet_new(&c, w), *b = lc_unet_new(&d, w2);
    ck_assert_msg(a && b, "%s", lc_errmsg());
    lc_tensor *x = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){1, 4, 8, 8});
    for (int64_t i = 0; i < 256; i++)
        lc_tensor_set(x, i, sin(0.3 * (double)i));
    lc_tensor *ctx = lc_tensor_zeros(LC_F32, 3, (const int64_t[]){1, 5, 24});
    for (int64_t i = 0; i < 120; i++)
        lc_tensor_set(ctx, i, cos(0.2 * (double)i));
    lc_tensor *t = lc_tensor_scalar_f32(250);
    lc_tensor *ya = lc_unet_forward(a, x, t, ctx, NULL), *yb = lc_unet_forward(b, x, t, ctx, NULL);
    ck_assert_msg(ya && yb, "%s", lc_errmsg());
    ck_assert_double_eq(lt_max_abs_diff(ya, yb), 0);
    ck_assert_double_gt(lt_max_abs(ya), 0);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(ts);
    lc_tensor_free(x);
    lc_tensor_free(ctx);
    lc_tensor_free(t);
    lc_tensor_free(ya);
    lc_tensor_free(yb);
    lc_unet_free(a);
    lc_unet_free(b);
    lc_weights_free(w);
    lc_weights_free(w2);
}
END_TEST

START_TEST(thread_invariance)
{
    lc_unet *u = load_diffusers();
    lc_st_file *g = golden();
    lc_pool_init(1);
    lc_tensor *a = case_forward(u, g, "unet/t1", NULL);
    lc_pool_init(2);
    lc_tensor *b = case_forward(u, g, "unet/t1", NULL);
    ck_assert(a && b);
    ck_assert_double_eq(lt_max_abs_diff(a, b), 0);
    lc_tensor_free(a);
    lc_tensor_free(b);
    lc_st_close(g);
    lc_unet_free(u);
}
END_TEST

/* forward's top-level linear calls (the profile counts them) */
static lc_tensor *counted_forward(lc_unet *u, const lc_tensor *x, const lc_tensor *t,
                                  const lc_tensor *ctx, int64_t *linears)
{
    lc_prof_enable(1);
    lc_prof_reset();
    lc_tensor *y = lc_unet_forward(u, x, t, ctx, NULL);
    lc_prof_stat s;
    lc_prof_get(LC_PROF_LINEAR, &s);
    lc_prof_enable(0);
    *linears = s.calls;
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    return y;
}

/* Cross-attention k and v are kept across forwards with the same context:
 * the second forward runs two linears fewer per cross-attention and gives
 * the same bits; a context changed in place, or of another shape, is
 * noticed (the results equal a fresh model's, which has no cache). */
START_TEST(cross_kv_cache)
{
    lc_unet *u = load_diffusers();
    lc_st_file *g = golden();
    lc_tensor *x = gget(g, "%s/sample", "unet/t801"), *t = gget(g, "%s/timestep", "unet/t801");
    lc_tensor *orig = gget(g, "%s/encoder_hidden_states", "unet/t801");
    lc_tensor *ctx = lc_tensor_clone(orig);
    ck_assert_ptr_nonnull(ctx);
    int64_t n1, n2, n3, n4;
    lc_tensor *a = counted_forward(u, x, t, ctx, &n1);
    lc_tensor *b = counted_forward(u, x, t, ctx, &n2);
    ck_assert_double_eq(lt_max_abs_diff(a, b), 0);
    ck_assert_int_gt(n1 - n2, 0);
    ck_assert_int_eq((n1 - n2) % 2, 0);

    /* in place: recomputed, and equal to a model that never saw the old one */
    ck_assert_int_eq(lc_binary_scalar_(LC_MUL, ctx, 0.5), LC_OK);
    lc_tensor *c = counted_forward(u, x, t, ctx, &n3);
    ck_assert_int_eq(n3, n1);
    lc_unet *fresh = load_diffusers();
    lc_tensor *want = lc_unet_forward(fresh, x, t, ctx, NULL);
    ck_assert_ptr_nonnull(want);
    ck_assert_double_eq(lt_max_abs_diff(c, want), 0);
    ck_assert_double_gt(lt_max_abs_diff(c, a), 0);

    /* one context row for the whole batch (an expanded view), then back */
    lc_tensor *one = lc_tensor_narrow(ctx, 0, 0, 1);
    ck_assert_ptr_nonnull(one);
    lc_tensor *d = counted_forward(u, x, t, one, &n4);
    ck_assert_int_eq(n4, n1);
    lc_tensor *want1 = lc_unet_forward(fresh, x, t, one, NULL);
    ck_assert_ptr_nonnull(want1);
    ck_assert_double_eq(lt_max_abs_diff(d, want1), 0);
    lc_tensor *e = counted_forward(u, x, t, orig, &n4);
    ck_assert_int_eq(n4, n1);
    ck_assert_double_eq(lt_max_abs_diff(e, a), 0);

    lc_tensor_free(x), lc_tensor_free(t), lc_tensor_free(orig), lc_tensor_free(ctx);
    lc_tensor_free(one), lc_tensor_free(a), lc_tensor_free(b), lc_tensor_free(c);
    lc_tensor_free(d), lc_tensor_free(e), lc_tensor_free(want), lc_tensor_free(want1);
    lc_st_close(g);
    lc_unet_free(u);
    lc_unet_free(fresh);
}
END_TEST

START_TEST(sd15_full_size)
{
    lc_unet_config c;
    lc_unet_config_sd15(&c);
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lc_weights *w = lc_unet_random_weights(&c, 1234);
    ck_assert_msg(w != NULL, "%s", lc_errmsg());
    ck_assert_int_eq(lc_weights_count(w), 686);
    lc_unet *u = lc_unet_new(&c, w);
    ck_assert_msg(u != NULL, "%s", lc_errmsg());
    lc_weights_free(w);
    ck_assert_int_eq(lc_unet_num_sites(u), 32);
    ck_assert_int_eq(lc_unet_num_skips(u), 12);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    lc_tensor *x = lc_tensor_zeros(LC_F32, 4, (const int64_t[]){1, 4, 8, 8});
    for (int64_t i = 0; i < 256; i++)
        lc_tensor_set(x, i, cos(0.37 * (double)i));
    lc_tensor *ctx = lc_tensor_zeros(LC_F32, 3, (const int64_t[]){1, 77, 768});
    for (int64_t i = 0; i < 77 * 768; i++)
        lc_tensor_set(ctx, i, sin(0.01 * (double)i));
    lc_tensor *t = lc_tensor_scalar_f32(500);
    lc_tensor *y = lc_unet_forward(u, x, t, ctx, NULL);
    ck_assert_msg(y != NULL, "%s", lc_errmsg());
    clock_gettime(CLOCK_MONOTONIC, &t2);
    ck_assert(lc_tensor_same_shape(x, y));
    double m = lt_max_abs(y);
    ck_assert(isfinite(m) && m > 0);
    printf("sd15 full size: build %.2f s, forward 8x8 %.2f s, max|out| %.3g\n",
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
           (double)(t2.tv_sec - t1.tv_sec) + 1e-9 * (double)(t2.tv_nsec - t1.tv_nsec), m);
    lc_tensor_free(x);
    lc_tensor_free(ctx);
    lc_tensor_free(t);
    lc_tensor_free(y);
    lc_unet_free(u);
}
END_TEST

static void setup(void);

static Suite *suite(void)
{
    Suite *s = suite_create("unet");
    TCase *tc = tcase_create("unet");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, config_parse);
    tcase_add_test(tc, ldm_names);
    tcase_add_test(tc, glob);
    tcase_add_test(tc, golden_diffusers);
    tcase_add_test(tc, golden_ldm);
    tcase_add_test(tc, config_infer);
    tcase_add_test(tc, hooks_probs_and_kv);
    tcase_add_test(tc, zero_residuals);
    tcase_add_test(tc, per_sample_timesteps);
    tcase_add_test(tc, odd_sizes);
    tcase_add_test(tc, missing_tensor);
    tcase_add_test(tc, infer_sd2_style);
    tcase_add_test(tc, thread_invariance);
    tcase_add_test(tc, cross_kv_cache);
    tcase_add_test(tc, ldm_four_levels);
    suite_add_tcase(s, tc);
    TCase *big = tcase_create("sd15");
    tcase_add_checked_fixture(big, setup, NULL);
    tcase_set_timeout(big, 300);
    tcase_add_test(big, sd15_full_size);
    suite_add_tcase(s, big);
    return s;
}

/* The pool starts in each forked test (a checked fixture): threads
 * started before fork() do not exist in the child, and a forward large
 * enough to use the pool would wait for them forever. */
static void setup(void)
{
    lc_pool_init(2);
}

int main(void)
{
    Suite *s = suite();
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
