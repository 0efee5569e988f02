/* Lua binding of ControlNetModel and the control-image preprocessors.
 *
 *   core.controlnet_load_file(path, config_json | nil) -> controlnet
 *       a diffusers .safetensors or an original single file
 *       (control_model.* names); nil config: inferred from shapes
 *   cn:forward(x, t, context, cond, scale, guess_mode) -> {down...}, mid
 *       cond [N or 1,3,8h,8w] in [0,1]; scale default 1
 *   cn.config -> table (diffusers names)   cn.num_skips -> integer
 *   cn:free()
 *   core.image_canny(img, low, high, blur_sigma) -> [N,3,H,W] edges in {0,1}
 *   core.image_gray(img) -> [N,3,H,W];  core.image_invert(img) -> 1 - img
 *   core.image_resize_lanczos(img, h, w) -> [N,C,h,w] as PIL's LANCZOS */
#include <string.h>

#include "l_common.h"
#include "models/controlnet.h"
#include "ops/image_ops.h"

#define CN_MT "lucid.controlnet"

typedef struct {
    lc_controlnet *cn;
} cn_ud;

static cn_ud *check_cn(lua_State *L, int idx)
{
    cn_ud *u = luaL_checkudata(L, idx, CN_MT);
    if (!u->cn)
        luaL_argerror(L, idx, "controlnet was freed");
    return u;
}

static void push_ints(lua_State *L, int n, const int *v, const char *key)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, key);
}

static void push_config(lua_State *L, const lc_controlnet *cn)
{
    const lc_controlnet_config *c = lc_controlnet_get_config(cn);
    const lc_unet_config *u = &c->unet;
    lua_newtable(L);
    lua_pushinteger(L, u->in_channels);
    lua_setfield(L, -2, "in_channels");
    lua_pushinteger(L, u->cross_attention_dim);
    lua_setfield(L, -2, "cross_attention_dim");
    lua_pushinteger(L, c->conditioning_channels);
    lua_setfield(L, -2, "conditioning_channels");
    lua_pushstring(L, c->bgr ? "bgr" : "rgb");
    lua_setfield(L, -2, "controlnet_conditioning_channel_order");
    lua_pushboolean(L, c->global_pool);
    lua_setfield(L, -2, "global_pool_conditions");
    lua_pushboolean(L, u->use_linear_projection);
    lua_setfield(L, -2, "use_linear_projection");
    push_ints(L, u->nblocks, u->block_out_channels, "block_out_channels");
    push_ints(L, u->nblocks, u->layers_per_block, "layers_per_block");
    push_ints(L, u->nblocks, u->heads, "num_attention_heads");
    push_ints(L, c->ncond, c->cond_channels, "conditioning_embedding_out_channels");
    /* the control image is this many times the latent size */
    lua_pushinteger(L, 1 << (c->ncond - 1));
    lua_setfield(L, -2, "conditioning_factor");
}

static int l_load_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *js = luaL_optstring(L, 2, NULL);
    lc_controlnet *cn = lc_controlnet_load_file(path, js);
    if (!cn)
        return ll_error(L);
    cn_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->cn = cn;
    luaL_getmetatable(L, CN_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);
    push_config(L, cn);
    lua_setfield(L, -2, "config");
    lua_pushinteger(L, lc_controlnet_num_skips(cn));
    lua_setfield(L, -2, "num_skips");
    lua_setfenv(L, -2);
    return 1;
}

static int l_forward(lua_State *L)
{
    cn_ud *ud = check_cn(L, 1);
    lc_tensor *x = ll_check_tensor(L, 2);
    lc_tensor *ctx = ll_check_tensor(L, 4);
    lc_tensor *cond = ll_check_tensor(L, 5);
    double scale = luaL_optnumber(L, 6, 1.0);
    int guess = lua_toboolean(L, 7);
    lc_tensor *t;
    if (lua_type(L, 3) == LUA_TNUMBER) {
        t = lc_tensor_scalar_f32((float)lua_tonumber(L, 3));
    } else if (ll_test_tensor(L, 3)) {
        t = ll_test_tensor(L, 3);
        lc_tensor_retain(t);
    } else {
        return luaL_argerror(L, 3, "timestep: expected a number or a tensor");
    }
    if (!t)
        return ll_error(L);
    int n = lc_controlnet_num_skips(ud->cn);
    lc_tensor **down = lua_newuserdata(L, sizeof *down * (size_t)n); /* freed by the GC */
    lc_tensor *mid = NULL;
    int rc = lc_controlnet_forward(ud->cn, x, t, ctx, cond, scale, guess, down, &mid);
    lc_tensor_free(t);
    if (rc != LC_OK)
        return ll_error(L);
    /* every tensor is anchored in a userdata before anything can raise */
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lc_tensor *d = down[i];
        down[i] = NULL;
        ll_push_tensor(L, d);
        lua_rawseti(L, -2, i + 1);
    }
    ll_push_tensor(L, mid);
    return 2;
}

static int l_free(lua_State *L)
{
    cn_ud *ud = luaL_checkudata(L, 1, CN_MT);
    lc_controlnet_free(ud->cn);
    ud->cn = NULL;
    return 0;
}

static int l_tostring(lua_State *L)
{
    cn_ud *ud = luaL_checkudata(L, 1, CN_MT);
    if (!ud->cn) {
        lua_pushliteral(L, "controlnet (freed)");
        return 1;
    }
    const lc_controlnet_config *c = lc_controlnet_get_config(ud->cn);
    lua_pushfstring(L, "controlnet (%d blocks, %d..%d channels, context %d, %d residuals)",
                    c->unet.nblocks, c->unet.block_out_channels[0],
                    c->unet.block_out_channels[c->unet.nblocks - 1],
                    c->unet.cross_attention_dim, lc_controlnet_num_skips(ud->cn));
    return 1;
}

static const luaL_Reg cn_methods[] = {{"forward", l_forward}, {"free", l_free}, {NULL, NULL}};

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

static int l_canny(lua_State *L)
{
    lc_tensor *img = ll_check_tensor(L, 1);
    double low = luaL_optnumber(L, 2, 100), high = luaL_optnumber(L, 3, 200);
    double sigma = luaL_optnumber(L, 4, 0);
    ll_push_tensor(L, lc_image_canny(img, low, high, sigma));
    return 1;
}

static int l_gray(lua_State *L)
{
    ll_push_tensor(L, lc_image_gray(ll_check_tensor(L, 1)));
    return 1;
}

static int l_invert(lua_State *L)
{
    ll_push_tensor(L, lc_image_invert(ll_check_tensor(L, 1)));
    return 1;
}

static int l_resize(lua_State *L)
{
    lc_tensor *img = ll_check_tensor(L, 1);
    lua_Integer h = luaL_checkinteger(L, 2), w = luaL_checkinteger(L, 3);
    ll_push_tensor(L, lc_image_resize_lanczos(img, h, w));
    return 1;
}

static const luaL_Reg fns[] = {{"controlnet_load_file", l_load_file},
                               {"image_resize_lanczos", l_resize},
                               {"image_canny", l_canny},
                               {"image_gray", l_gray},
                               {"image_invert", l_invert},
                               {NULL, NULL}};

void ll_open_controlnet(lua_State *L)
{
    luaL_newmetatable(L, CN_MT);
    lua_newtable(L);
    luaL_register(L, NULL, cn_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    ll_register(L, fns);
}
