/* Lua binding of the UNet2DConditionModel and its hooks.
 *
 *   core.unet_load(weights, config_json | nil) -> unet   (nil: inferred from shapes)
 *   core.unet_load_file(path, config_json | nil, {prefix=}) -> unet
 *       a diffusers unet .safetensors, or a single-file checkpoint with
 *       CompVis/ldm names under prefix (default "model.diffusion_model.")
 *   core.unet_random(config_json | "sd15", seed) -> unet  (synthetic weights)
 *   core.random_weights(shape, seed, scale, shift, dtype) -> tensor
 *       scale * z + shift, z approximately N(0, 1) (the same generator),
 *       dtype "f32" | "f16" | "bf16" (default f32); for synthetic checkpoints
 *   unet:forward(x, t, context, {down_residuals = {...}, mid_residual = t})
 *       t: a number, a 0-d/1-element tensor or one value per sample
 *   unet.config -> table (diffusers names)      unet.num_skips -> integer
 *   unet:sites() -> {"down_blocks.0.attentions.0.transformer_blocks.0.attn1", ...}
 *   unet:hook(pattern, fn, kind) -> handle; handle:remove()
 *       kind "attn_probs" (default): fn(site, probs [B,heads,Lq,Lk]) may
 *         return a replacement tensor of the same shape;
 *       kind "kv_extend" (self-attention): fn(site, hidden [B,L,C]) returns
 *         extra key/value tokens [B,Lx,C] or nil.
 *       An error inside fn fails the forward with its message.
 *   unet:free() */
#include <stdlib.h>
#include <string.h>

#include "l_common.h"
#include "core/safetensors.h"
#include "models/unet.h"
#include "models/unet_blocks.h"
#include "models/weights.h"

#define UNET_MT "lucid.unet"
#define HOOK_MT "lucid.unet.hook"

typedef struct {
    lc_unet *u;
    lua_State *L; /* the state running the current forward (hooks call into it) */
    int next_key; /* hook functions live in the userdata's env.hooks[key] */
} unet_ud;

/* what the C registry holds for a Lua hook; the function itself stays in
 * Lua (the unet's environment), so releasing needs no lua_State */
typedef struct {
    unet_ud *owner;
    int key;
} hook_ud;

typedef struct {
    unet_ud *owner;
    int id, key;
} handle_ud;

static unet_ud *check_unet(lua_State *L, int idx)
{
    unet_ud *u = luaL_checkudata(L, idx, UNET_MT);
    if (!u->u)
        luaL_argerror(L, idx, "unet was freed");
    return u;
}

static void push_int_list(lua_State *L, int n, const int *v)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static void push_config(lua_State *L, const lc_unet *u)
{
    const lc_unet_config *c = lc_unet_get_config(u);
    int n = c->nblocks;
    lua_newtable(L);
#define SETI(k, v)                                                                                 \
    (lua_pushinteger(L, (v)), lua_setfield(L, -2, k))
#define SETN(k, v) (lua_pushnumber(L, (v)), lua_setfield(L, -2, k))
#define SETB(k, v) (lua_pushboolean(L, (v)), lua_setfield(L, -2, k))
    SETI("in_channels", c->in_channels);
    SETI("out_channels", c->out_channels);
    SETI("sample_size", c->sample_size);
    SETI("cross_attention_dim", c->cross_attention_dim);
    SETI("norm_num_groups", c->norm_num_groups);
    SETN("norm_eps", c->norm_eps);
    SETB("use_linear_projection", c->use_linear_projection);
    SETB("upcast_attention", c->upcast_attention);
    SETB("flip_sin_to_cos", c->flip_sin_to_cos);
    SETN("freq_shift", c->freq_shift);
    SETI("downsample_padding", c->downsample_padding);
    SETN("mid_block_scale_factor", c->mid_block_scale_factor);
    SETB("center_input_sample", c->center_input_sample);
    SETI("conv_in_kernel", c->conv_in_kernel);
    SETI("conv_out_kernel", c->conv_out_kernel);
    SETI("time_embedding_dim", c->time_embed_dim);
    push_int_list(L, n, c->block_out_channels);
    lua_setfield(L, -2, "block_out_channels");
    push_int_list(L, n, c->layers_per_block);
    lua_setfield(L, -2, "layers_per_block");
    push_int_list(L, n, c->heads);
    lua_setfield(L, -2, "num_attention_heads");
    push_int_list(L, n, c->transformer_layers);
    lua_setfield(L, -2, "transformer_layers_per_block");
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, c->down_cross[i] ? "CrossAttnDownBlock2D" : "DownBlock2D");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "down_block_types");
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, c->up_cross[i] ? "CrossAttnUpBlock2D" : "UpBlock2D");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "up_block_types");
    if (c->mid_cross) {
        lua_pushstring(L, "UNetMidBlock2DCrossAttn");
        lua_setfield(L, -2, "mid_block_type");
    }
#undef SETI
#undef SETN
#undef SETB
}

/* pushes the unet userdata; its environment table holds `config` and
 * `num_skips` for __index */
static void push_unet(lua_State *L, lc_unet *u)
{
    if (!u)
        ll_error(L);
    unet_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->u = u;
    ud->L = NULL;
    ud->next_key = 0;
    luaL_getmetatable(L, UNET_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);
    push_config(L, u);
    lua_setfield(L, -2, "config");
    lua_pushinteger(L, lc_unet_num_skips(u));
    lua_setfield(L, -2, "num_skips");
    lua_newtable(L);
    lua_setfield(L, -2, "hooks");
    lua_setfenv(L, -2);
}

static int get_config(lua_State *L, int idx, lc_unet_config *c, int *have)
{
    *have = 0;
    if (lua_isnoneornil(L, idx))
        return LC_OK;
    size_t n;
    const char *js = luaL_checklstring(L, idx, &n);
    *have = 1;
    return lc_unet_config_parse(c, js, "unet config");
}

static int l_unet_load(lua_State *L)
{
    lc_weights *w = ll_check_weights(L, 1);
    lc_unet_config c;
    int have;
    if (get_config(L, 2, &c, &have) != LC_OK)
        return ll_error(L);
    if (!have && lc_unet_config_infer(&c, w) != LC_OK)
        return ll_error(L);
    push_unet(L, lc_unet_new(&c, w));
    return 1;
}

static int l_unet_load_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *prefix = "model.diffusion_model.";
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "prefix");
        if (!lua_isnil(L, -1))
            prefix = luaL_checkstring(L, -1);
        lua_pop(L, 1);
    }
    lc_unet_config c;
    int have;
    if (get_config(L, 2, &c, &have) != LC_OK)
        return ll_error(L);
    lc_st_file *f = lc_st_open(path);
    if (!f)
        return ll_error(L);
    int ldm = lc_st_find(f, "conv_in.weight") < 0;
    lc_st_close(f);
    lc_weights *w = lc_weights_new();
    if (!w)
        return ll_error(L);
    int rc;
    if (ldm) {
        lc_unet_ldm_map m;
        rc = lc_unet_ldm_map_init(&m, path, prefix);
        if (rc == LC_OK && !have)
            rc = lc_unet_config_from_ldm(&c, path, prefix);
        if (rc == LC_OK)
            rc = lc_weights_load(w, path, prefix, lc_unet_ldm_key_map, &m);
    } else {
        rc = lc_weights_load(w, path, NULL, NULL, NULL);
        if (rc == LC_OK && !have)
            rc = lc_unet_config_infer(&c, w);
    }
    lc_unet *u = rc == LC_OK ? lc_unet_new(&c, w) : NULL;
    lc_weights_free(w);
    push_unet(L, u);
    return 1;
}

static int l_unet_random(lua_State *L)
{
    lc_unet_config c;
    const char *js = luaL_checkstring(L, 1);
    uint64_t seed = (uint64_t)luaL_optnumber(L, 2, 0);
    if (strcmp(js, "sd15") == 0)
        lc_unet_config_sd15(&c);
    else if (lc_unet_config_parse(&c, js, "unet config") != LC_OK)
        return ll_error(L);
    lc_weights *w = lc_unet_random_weights(&c, seed);
    if (!w)
        return ll_error(L);
    lc_unet *u = lc_unet_new(&c, w);
    lc_weights_free(w);
    push_unet(L, u);
    return 1;
}

static int l_random_weights(lua_State *L)
{
    int64_t shape[LC_MAXDIM];
    luaL_checktype(L, 1, LUA_TTABLE);
    int nd = ll_check_shape(L, 1, shape);
    double seed = luaL_checknumber(L, 2);
    if (seed < 0 || seed != (double)(uint64_t)seed)
        return luaL_argerror(L, 2, "the seed must be a non-negative integer");
    float scale = (float)luaL_optnumber(L, 3, 1.0), shift = (float)luaL_optnumber(L, 4, 0.0);
    lc_dtype dt = (lc_dtype)ll_opt_dtype(L, 5, LC_F32);
    ll_push_tensor(L, lc_random_weights((uint64_t)seed, scale, shift, dt, nd, shape));
    return 1;
}

/* timesteps argument: number, tensor, or table of numbers (new ref) */
static lc_tensor *check_timesteps(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TNUMBER)
        return lc_tensor_scalar_f32((float)lua_tonumber(L, idx));
    lc_tensor *t = ll_test_tensor(L, idx);
    if (t) {
        lc_tensor_retain(t);
        return t;
    }
    if (lua_istable(L, idx))
        return ll_to_tensor(L, idx);
    luaL_argerror(L, idx, "timestep: expected a number, a tensor or a list of numbers");
    return NULL;
}

static int l_forward(lua_State *L)
{
    unet_ud *ud = check_unet(L, 1);
    lc_tensor *x = ll_check_tensor(L, 2);
    lc_tensor *ctx = ll_check_tensor(L, 4);
    lc_tensor *res[LC_UNET_MAXBLOCKS * 40];
    lc_unet_opts o = {0};
    if (lua_istable(L, 5)) {
        lua_getfield(L, 5, "down_residuals");
        if (lua_istable(L, -1)) {
            int n = (int)lua_objlen(L, -1);
            if (n > (int)(sizeof res / sizeof *res))
                return luaL_error(L, "unet:forward: %d down residuals is too many", n);
            for (int i = 0; i < n; i++) {
                lua_rawgeti(L, -1, i + 1);
                res[i] = ll_test_tensor(L, -1);
                if (!res[i])
                    return luaL_error(L, "unet:forward: down_residuals[%d] is not a tensor", i + 1);
                lua_pop(L, 1); /* still referenced by the table on the stack */
            }
            o.down_residuals = res;
            o.n_down_residuals = n;
        } else if (!lua_isnil(L, -1)) {
            return luaL_error(L, "unet:forward: down_residuals should be a list of tensors");
        }
        lua_getfield(L, 5, "mid_residual");
        if (!lua_isnil(L, -1)) {
            o.mid_residual = ll_test_tensor(L, -1);
            if (!o.mid_residual)
                return luaL_error(L, "unet:forward: mid_residual should be a tensor");
        }
        /* both values stay on the stack (anchored) during the forward */
    } else if (!lua_isnoneornil(L, 5)) {
        return luaL_argerror(L, 5, "opts: expected a table (down_residuals, mid_residual)");
    }
    lc_tensor *t = check_timesteps(L, 3);
    if (!t)
        return ll_error(L);
    lua_State *prev = ud->L;
    ud->L = L;
    lc_tensor *y = lc_unet_forward(ud->u, x, t, ctx, &o);
    ud->L = prev;
    lc_tensor_free(t);
    ll_push_tensor(L, y);
    return 1;
}

/* the C side of a Lua hook: calls fn(site, tensor) in the forward's state.
 * It runs inside l_forward's C frame, so stack index 1 is the unet. */
static int call_hook(void *p, const char *site, lc_hook_kind kind, lc_tensor *in, lc_tensor **out)
{
    hook_ud *h = p;
    lua_State *L = h->owner->L;
    if (!L)
        return lc_err("hook at %s: no Lua state (forward not called from Lua)", site);
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 8))
        return lc_err("hook at %s: Lua stack overflow", site);
    lua_getfenv(L, 1);
    lua_getfield(L, -1, "hooks");
    lua_rawgeti(L, -1, h->key);
    lua_pushstring(L, site);
    lc_tensor_retain(in);
    ll_push_tensor(L, in);
    if (lua_pcall(L, 2, 1, 0) != 0) {
        const char *msg = lua_tostring(L, -1);
        lc_err("hook (%s) at %s: %s", lc_hook_kind_name(kind), site, msg ? msg : "error object");
        lua_settop(L, top);
        return LC_ERR;
    }
    int rc = LC_OK;
    if (!lua_isnil(L, -1)) {
        lc_tensor *r = ll_test_tensor(L, -1);
        if (r) {
            lc_tensor_retain(r);
            *out = r;
        } else {
            rc = lc_err("hook (%s) at %s: returned a %s, expected a tensor or nil",
                        lc_hook_kind_name(kind), site, luaL_typename(L, -1));
        }
    }
    lua_settop(L, top);
    return rc;
}

static void release_hook(void *p)
{
    free(p);
}

/* env.hooks[key] = value at the top (popped) for the unet at idx */
static void set_hook_fn(lua_State *L, int idx, int key)
{
    lua_getfenv(L, idx);
    lua_getfield(L, -1, "hooks");
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, key);
    lua_pop(L, 3);
}

static int l_hook(lua_State *L)
{
    unet_ud *ud = check_unet(L, 1);
    const char *pattern = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lc_hook_kind kind = LC_HOOK_ATTN_PROBS;
    if (!lua_isnoneornil(L, 4) && lc_hook_kind_from_name(luaL_checkstring(L, 4), &kind) != LC_OK)
        return ll_error(L);
    if (ud->L)
        return luaL_error(L, "unet:hook: cannot add hooks during a forward");
    handle_ud *hd = lua_newuserdata(L, sizeof *hd);
    hd->owner = ud;
    hd->id = 0;
    hd->key = ++ud->next_key;
    luaL_getmetatable(L, HOOK_MT);
    lua_setmetatable(L, -2);
    /* the handle keeps the unet alive */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);
    hook_ud *h = malloc(sizeof *h);
    if (!h)
        return luaL_error(L, "unet:hook: out of memory");
    h->owner = ud;
    h->key = hd->key;
    lua_pushvalue(L, 3);
    set_hook_fn(L, 1, hd->key);
    int id = lc_unet_hook_add(ud->u, pattern, kind, call_hook, h, release_hook);
    if (id <= 0) {
        free(h);
        lua_pushnil(L);
        set_hook_fn(L, 1, hd->key);
        return ll_error(L);
    }
    hd->id = id;
    return 1;
}

static int l_handle_remove(lua_State *L)
{
    handle_ud *hd = luaL_checkudata(L, 1, HOOK_MT);
    if (hd->id > 0 && hd->owner->u) {
        if (hd->owner->L)
            return luaL_error(L, "hook:remove: cannot remove hooks during a forward");
        if (lc_unet_hook_remove(hd->owner->u, hd->id) != LC_OK)
            return ll_error(L);
        lua_getfenv(L, 1);
        lua_rawgeti(L, -1, 1); /* the unet */
        lua_pushnil(L);
        set_hook_fn(L, lua_gettop(L) - 1, hd->key);
    }
    hd->id = 0;
    return 0;
}

static int l_sites(lua_State *L)
{
    unet_ud *ud = check_unet(L, 1);
    int n = lc_unet_num_sites(ud->u);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, lc_unet_site(ud->u, i)->name);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_free(lua_State *L)
{
    unet_ud *ud = luaL_checkudata(L, 1, UNET_MT);
    if (ud->L)
        return luaL_error(L, "unet:free: called during a forward");
    lc_unet_free(ud->u);
    ud->u = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    unet_ud *ud = luaL_checkudata(L, 1, UNET_MT);
    if (!ud->u) {
        lua_pushliteral(L, "unet (freed)");
        return 1;
    }
    const lc_unet_config *c = lc_unet_get_config(ud->u);
    lua_pushfstring(L, "unet (%d blocks, %d..%d channels, context %d, %d attention sites)",
                    c->nblocks, c->block_out_channels[0], c->block_out_channels[c->nblocks - 1],
                    c->cross_attention_dim, lc_unet_num_sites(ud->u));
    return 1;
}

static const luaL_Reg unet_methods[] = {
    {"forward", l_forward}, {"hook", l_hook}, {"sites", l_sites}, {"free", l_free}, {NULL, NULL}};

/* methods first, then the per-object environment (config, num_skips) */
static int l_index(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1))
        return 1;
    lua_settop(L, 2);
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static const luaL_Reg fns[] = {{"unet_load", l_unet_load},
                               {"unet_load_file", l_unet_load_file},
                               {"unet_random", l_unet_random},
                               {"random_weights", l_random_weights},
                               {NULL, NULL}};

void ll_open_unet(lua_State *L)
{
    luaL_newmetatable(L, UNET_MT);
    lua_newtable(L);
    luaL_register(L, NULL, unet_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newmetatable(L, HOOK_MT);
    lua_newtable(L);
    lua_pushcfunction(L, l_handle_remove);
    lua_setfield(L, -2, "remove");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    ll_register(L, fns);
}
