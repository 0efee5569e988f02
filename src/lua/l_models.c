/* Bindings for model weights, the CLIP text encoder, AutoencoderKL and
 * TAESD. These are the raw C objects; lua/lucid/pipeline.lua builds the
 * API.md surface (pipe.vae:decode in [0,1], scaling factor, ...) on top.
 *
 *   core.weights_new() -> weights
 *   core.weights_load(path, opts) -> weights (and, for layout ldm_clip, whether it is OpenCLIP)
 *     opts.layout: nil (names as stored) | "diffusers_vae" | "diffusers_clip" |
 *                  "ldm_vae" | "ldm_clip";  opts.prefix: only names with it (stripped)
 *   w:names() w:count() w:get(name) w:put(name, t) w:has_prefix(p) w:need(name, shape)
 *   w:check_unused(what)
 *   core.checkpoint_probe(path) -> {unet=, vae=, clip=, openclip=, ...}
 *   core.checkpoint_check(path)              raises "not a Stable Diffusion checkpoint"
 *   core.ldm_name("vae" | "clip", diffusers_name, path) -> the name in a single file
 *   core.clip_text_load(weights, config_json | nil, act_for_inference) -> te
 *     te:forward(ids, {clip_skip=}) -> hidden;  te:forward_all(ids, opts) -> hidden, pooled
 *     te:config() -> table
 *   core.vae_load(weights, config_json | nil) -> vae
 *     vae:encode_moments(x in [-1,1]) -> mean, logvar;  vae:decode_raw(z, {tile=, overlap=})
 *     vae:config() -> table (scaling_factor, ...)
 *   core.taesd_load(encoder_path | nil, decoder_path | nil) -> taesd
 *     taesd:encode(x in [0,1]) -> scaled latent;  taesd:decode(z) -> image in [0,1] */
#include <string.h>

#include "l_common.h"
#include "models/clip_text.h"
#include "models/ldm_keys.h"
#include "models/taesd.h"
#include "models/vae.h"
#include "models/weights.h"

#define CLIP_MT "lucid.clip_text"
#define VAE_MT "lucid.vae_kl"
#define TAESD_MT "lucid.taesd"

typedef struct {
    void *p;
} obj_ud;

static void *check_obj(lua_State *L, int idx, const char *mt)
{
    obj_ud *u = luaL_checkudata(L, idx, mt);
    if (!u->p)
        luaL_argerror(L, idx, "object was freed");
    return u->p;
}

/* pushes an empty userdata first, so a failing constructor leaks nothing */
static obj_ud *new_obj(lua_State *L, const char *mt)
{
    obj_ud *u = lua_newuserdata(L, sizeof *u);
    u->p = NULL;
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    return u;
}

/* ---- weights ---- */

struct lc_weights *ll_check_weights(lua_State *L, int idx)
{
    return check_obj(L, idx, LL_WEIGHTS_MT);
}

static int w_gc(lua_State *L)
{
    obj_ud *u = luaL_checkudata(L, 1, LL_WEIGHTS_MT);
    lc_weights_free(u->p);
    u->p = NULL;
    return 0;
}

static int l_weights_new(lua_State *L)
{
    obj_ud *u = new_obj(L, LL_WEIGHTS_MT);
    if (!(u->p = lc_weights_new()))
        return ll_error(L);
    return 1;
}

static int l_weights_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *layout = NULL, *prefix = NULL;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "layout");
        layout = lua_tostring(L, -1);
        lua_getfield(L, 2, "prefix");
        prefix = lua_tostring(L, -1);
        lua_pop(L, 2); /* strings stay alive: they are fields of arg 2 */
    }
    obj_ud *u = new_obj(L, LL_WEIGHTS_MT);
    if (!(u->p = lc_weights_new()))
        return ll_error(L);
    int rc, openclip = 0;
    if (!layout)
        rc = lc_weights_load(u->p, path, prefix, NULL, NULL);
    else if (strcmp(layout, "diffusers_vae") == 0)
        rc = lc_vae_load_diffusers(u->p, path);
    else if (strcmp(layout, "diffusers_clip") == 0)
        rc = lc_clip_load_diffusers(u->p, path);
    else if (strcmp(layout, "ldm_vae") == 0)
        rc = lc_ldm_load_vae(u->p, path);
    else if (strcmp(layout, "ldm_clip") == 0)
        rc = lc_ldm_load_clip(u->p, path, &openclip);
    else
        return luaL_error(L, "weights_load: unknown layout \"%s\" (diffusers_vae, "
                             "diffusers_clip, ldm_vae, ldm_clip)", layout);
    if (rc != LC_OK)
        return ll_error(L);
    if (!layout || strcmp(layout, "ldm_clip") != 0)
        return 1;
    lua_pushboolean(L, openclip);
    return 2;
}

static int w_names(lua_State *L)
{
    lc_weights *w = ll_check_weights(L, 1);
    int n = lc_weights_count(w);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, lc_weights_name(w, i));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int w_count(lua_State *L)
{
    lua_pushinteger(L, lc_weights_count(ll_check_weights(L, 1)));
    return 1;
}

static int w_get(lua_State *L)
{
    lc_tensor *t = lc_weights_get(ll_check_weights(L, 1), luaL_checkstring(L, 2));
    if (!t) {
        lua_pushnil(L);
        return 1;
    }
    lc_tensor_retain(t);
    ll_push_tensor(L, t);
    return 1;
}

static int w_put(lua_State *L)
{
    lc_weights *w = ll_check_weights(L, 1);
    const char *name = luaL_checkstring(L, 2);
    lc_tensor *t = ll_check_tensor(L, 3);
    lc_tensor_retain(t);
    if (lc_weights_put(w, name, t) != LC_OK)
        return ll_error(L);
    return 0;
}

static int w_has_prefix(lua_State *L)
{
    lua_pushboolean(L, lc_weights_has_prefix(ll_check_weights(L, 1), luaL_checkstring(L, 2)));
    return 1;
}

static int w_need(lua_State *L)
{
    lc_weights *w = ll_check_weights(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int64_t shape[LC_MAXDIM];
    int nd = lua_isnoneornil(L, 3) ? -1 : ll_check_shape(L, 3, shape);
    lc_tensor *t = lc_weights_need(w, name, nd, shape);
    if (!t)
        return ll_error(L);
    lc_tensor_retain(t);
    ll_push_tensor(L, t);
    return 1;
}

static int w_check_unused(lua_State *L)
{
    if (lc_weights_check_unused(ll_check_weights(L, 1), luaL_optstring(L, 2, "weights")) != LC_OK)
        return ll_error(L);
    return 0;
}

/* ---- checkpoint probing ---- */

static int l_checkpoint_probe(lua_State *L)
{
    lc_ldm_probe p;
    if (lc_ldm_probe_file(luaL_checkstring(L, 1), &p) != LC_OK)
        return ll_error(L);
    lua_createtable(L, 0, 12);
#define F(name)                   \
    lua_pushinteger(L, p.name);   \
    lua_setfield(L, -2, #name);
    F(unet) F(vae) F(clip) F(openclip) F(sdxl) F(diffusers_unet) F(diffusers_vae)
    F(diffusers_clip) F(ldm_vae_only) F(taesd) F(controlnet) F(lora) F(total)
#undef F
    return 1;
}

static int l_checkpoint_check(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lc_ldm_probe p;
    if (lc_ldm_probe_file(path, &p) != LC_OK || lc_ldm_check_sd(path, &p) != LC_OK)
        return ll_error(L);
    return 0;
}

/* core.ldm_name(kind, diffusers_name, path) -> the name that tensor has in
 * the single file at path ("vae": first_stage_model.*, "clip": SD 1.x's
 * cond_stage_model.transformer.*), or nil when there is no such mapping */
static int l_ldm_name(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1), *name = luaL_checkstring(L, 2);
    const char *path = luaL_checkstring(L, 3);
    char out[512];
    if (strcmp(kind, "vae") == 0) {
        lc_ldm_vae_name(name, lc_ldm_vae_levels(path), out, sizeof out);
        lua_pushstring(L, out);
    } else if (strcmp(kind, "clip") == 0) {
        lua_pushfstring(L, "cond_stage_model.transformer.%s", name);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

/* ---- CLIP text encoder ---- */

static int clip_gc(lua_State *L)
{
    obj_ud *u = luaL_checkudata(L, 1, CLIP_MT);
    lc_clip_text_free(u->p);
    u->p = NULL;
    return 0;
}

static int l_clip_text_load(lua_State *L)
{
    lc_weights *w = ll_check_weights(L, 1);
    const char *json = luaL_optstring(L, 2, NULL);
    const char *act = luaL_optstring(L, 3, "quick_gelu");
    lc_clip_config c;
    int rc = json ? lc_clip_config_parse(&c, json)
                  : lc_clip_config_infer(&c, w, strcmp(act, "gelu") == 0 ? LC_ACT_GELU
                                                                          : LC_ACT_QUICK_GELU);
    if (rc != LC_OK)
        return ll_error(L);
    obj_ud *u = new_obj(L, CLIP_MT);
    if (!(u->p = lc_clip_text_new(&c, w)))
        return ll_error(L);
    return 1;
}

static int clip_run(lua_State *L, int want_pooled)
{
    lc_clip_text *m = check_obj(L, 1, CLIP_MT);
    lc_tensor *ids = ll_check_tensor(L, 2);
    int skip = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "clip_skip");
        skip = (int)luaL_optinteger(L, -1, 0);
        lua_pop(L, 1);
    }
    lc_tensor *h, *p = NULL;
    if (lc_clip_text_forward(m, ids, skip, &h, want_pooled ? &p : NULL) != LC_OK)
        return ll_error(L);
    ll_push_tensor(L, h);
    if (want_pooled)
        ll_push_tensor(L, p);
    return want_pooled ? 2 : 1;
}

static int clip_forward(lua_State *L)
{
    return clip_run(L, 0);
}

static int clip_forward_all(lua_State *L)
{
    return clip_run(L, 1);
}

static int clip_config(lua_State *L)
{
    const lc_clip_config *c = lc_clip_text_config(check_obj(L, 1, CLIP_MT));
    lua_createtable(L, 0, 9);
#define I(key, v)             \
    lua_pushinteger(L, (v)); \
    lua_setfield(L, -2, key);
    I("vocab_size", c->vocab_size) I("hidden_size", c->hidden)
    I("intermediate_size", c->intermediate) I("num_hidden_layers", c->layers)
    I("num_attention_heads", c->heads) I("max_position_embeddings", c->max_pos)
    I("eos_token_id", c->eos_token_id)
#undef I
    lua_pushnumber(L, c->eps);
    lua_setfield(L, -2, "layer_norm_eps");
    lua_pushstring(L, c->act == LC_ACT_GELU ? "gelu" : "quick_gelu");
    lua_setfield(L, -2, "hidden_act");
    return 1;
}

/* ---- AutoencoderKL ---- */

static int vae_gc(lua_State *L)
{
    obj_ud *u = luaL_checkudata(L, 1, VAE_MT);
    lc_vae_free(u->p);
    u->p = NULL;
    return 0;
}

static int l_vae_load(lua_State *L)
{
    lc_weights *w = ll_check_weights(L, 1);
    const char *json = luaL_optstring(L, 2, NULL);
    lc_vae_config c;
    if ((json ? lc_vae_config_parse(&c, json) : lc_vae_config_infer(&c, w)) != LC_OK)
        return ll_error(L);
    obj_ud *u = new_obj(L, VAE_MT);
    if (!(u->p = lc_vae_new(&c, w)))
        return ll_error(L);
    return 1;
}

static int vae_encode_moments(lua_State *L)
{
    lc_vae *m = check_obj(L, 1, VAE_MT);
    lc_tensor *mean, *logvar;
    if (lc_vae_encode(m, ll_check_tensor(L, 2), &mean, &logvar) != LC_OK)
        return ll_error(L);
    ll_push_tensor(L, mean);
    ll_push_tensor(L, logvar);
    return 2;
}

static int vae_decode_raw(lua_State *L)
{
    lc_vae *m = check_obj(L, 1, VAE_MT);
    lc_tensor *z = ll_check_tensor(L, 2);
    int tile = 0, overlap = -1, tiled = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "tile");
        if (!lua_isnil(L, -1)) {
            tiled = 1;
            tile = (int)luaL_checkinteger(L, -1);
        }
        lua_getfield(L, 3, "overlap");
        if (!lua_isnil(L, -1)) {
            tiled = 1;
            overlap = (int)luaL_checkinteger(L, -1);
        }
        lua_getfield(L, 3, "tiled");
        if (lua_toboolean(L, -1))
            tiled = 1;
        lua_pop(L, 3);
    }
    ll_push_tensor(L, tiled ? lc_vae_decode_tiled(m, z, tile, overlap) : lc_vae_decode(m, z));
    return 1;
}

static int vae_config(lua_State *L)
{
    const lc_vae_config *c = lc_vae_config_of(check_obj(L, 1, VAE_MT));
    lua_createtable(L, 0, 10);
#define I(key, v)             \
    lua_pushinteger(L, (v)); \
    lua_setfield(L, -2, key);
    I("in_channels", c->in_channels) I("out_channels", c->out_channels)
    I("latent_channels", c->latent_channels) I("layers_per_block", c->layers_per_block)
    I("norm_num_groups", c->groups)
#undef I
    lua_createtable(L, c->nblocks, 0);
    for (int i = 0; i < c->nblocks; i++) {
        lua_pushinteger(L, c->block_out[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "block_out_channels");
    lua_pushnumber(L, c->scaling_factor);
    lua_setfield(L, -2, "scaling_factor");
    lua_pushnumber(L, c->shift_factor);
    lua_setfield(L, -2, "shift_factor");
    lua_pushinteger(L, 1 << (c->nblocks - 1));
    lua_setfield(L, -2, "scale_factor");
    return 1;
}

/* ---- TAESD ---- */

static int taesd_gc(lua_State *L)
{
    obj_ud *u = luaL_checkudata(L, 1, TAESD_MT);
    lc_taesd_free(u->p);
    u->p = NULL;
    return 0;
}

static int l_taesd_load(lua_State *L)
{
    const char *ep = luaL_optstring(L, 1, NULL), *dp = luaL_optstring(L, 2, NULL);
    if (!ep && !dp)
        return luaL_error(L, "taesd_load: give an encoder and/or a decoder path");
    obj_ud *u = new_obj(L, TAESD_MT);
    lc_weights *e = ep ? lc_weights_new() : NULL, *d = dp ? lc_weights_new() : NULL;
    int ok = (!ep || (e && lc_weights_load(e, ep, NULL, NULL, NULL) == LC_OK)) &&
             (!dp || (d && lc_weights_load(d, dp, NULL, NULL, NULL) == LC_OK));
    if (ok)
        u->p = lc_taesd_new(e, d);
    lc_weights_free(e);
    lc_weights_free(d);
    if (!u->p)
        return ll_error(L);
    return 1;
}

static int taesd_encode(lua_State *L)
{
    ll_push_tensor(L, lc_taesd_encode(check_obj(L, 1, TAESD_MT), ll_check_tensor(L, 2)));
    return 1;
}

static int taesd_decode(lua_State *L)
{
    ll_push_tensor(L, lc_taesd_decode(check_obj(L, 1, TAESD_MT), ll_check_tensor(L, 2)));
    return 1;
}

static int taesd_latent_channels(lua_State *L)
{
    lua_pushinteger(L, lc_taesd_latent_channels(check_obj(L, 1, TAESD_MT)));
    return 1;
}

/* ---- registration ---- */

static void new_class(lua_State *L, const char *mt, lua_CFunction gc, const luaL_Reg *methods)
{
    luaL_newmetatable(L, mt);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    for (; methods->name; methods++) {
        lua_pushcfunction(L, methods->func);
        lua_setfield(L, -2, methods->name);
    }
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "free");
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, mt);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}

void ll_open_models(lua_State *L)
{
    static const luaL_Reg wm[] = {{"names", w_names},   {"count", w_count},
                                  {"get", w_get},       {"put", w_put},
                                  {"has_prefix", w_has_prefix}, {"need", w_need},
                                  {"check_unused", w_check_unused}, {NULL, NULL}};
    static const luaL_Reg cm[] = {{"forward", clip_forward},
                                  {"forward_all", clip_forward_all},
                                  {"config", clip_config},
                                  {NULL, NULL}};
    static const luaL_Reg vm[] = {{"encode_moments", vae_encode_moments},
                                  {"decode_raw", vae_decode_raw},
                                  {"config", vae_config},
                                  {NULL, NULL}};
    static const luaL_Reg tm[] = {{"encode", taesd_encode},
                                  {"decode", taesd_decode},
                                  {"latent_channels", taesd_latent_channels},
                                  {NULL, NULL}};
    new_class(L, LL_WEIGHTS_MT, w_gc, wm);
    new_class(L, CLIP_MT, clip_gc, cm);
    new_class(L, VAE_MT, vae_gc, vm);
    new_class(L, TAESD_MT, taesd_gc, tm);
    static const luaL_Reg fns[] = {{"weights_new", l_weights_new},
                                   {"weights_load", l_weights_load},
                                   {"checkpoint_probe", l_checkpoint_probe},
                                   {"checkpoint_check", l_checkpoint_check},
                                   {"ldm_name", l_ldm_name},
                                   {"clip_text_load", l_clip_text_load},
                                   {"vae_load", l_vae_load},
                                   {"taesd_load", l_taesd_load},
                                   {NULL, NULL}};
    ll_register(L, fns);
}
