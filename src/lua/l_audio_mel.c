/* Lua bindings of the mel spectrogram code (src/audio/mel.h) and of
 * UNet2DModel (src/models/unet2d.h). The Mel object of
 * lua/lucid/audio_diffusion.lua is built on these. A mel config is a
 * table {x_res, y_res, sample_rate, n_fft, hop_length, top_db, n_iter};
 * missing fields take teticio's defaults. */
#include <string.h>

#include "../audio/mel.h"
#include "../core/rng.h"
#include "../models/unet2d.h"
#include "../models/weights.h"
#include "l_common.h"

#define UNET2D_MT "lucid.unet2d"

static int opt_field_int(lua_State *L, int idx, const char *k, int def)
{
    lua_getfield(L, idx, k);
    int v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "mel config: %s should be a number", k);
        v = (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static void check_config(lua_State *L, int idx, lc_mel_config *c)
{
    lc_mel_config_default(c);
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    c->x_res = opt_field_int(L, idx, "x_res", c->x_res);
    c->y_res = opt_field_int(L, idx, "y_res", c->y_res);
    c->sample_rate = opt_field_int(L, idx, "sample_rate", c->sample_rate);
    c->n_fft = opt_field_int(L, idx, "n_fft", c->n_fft);
    c->hop_length = opt_field_int(L, idx, "hop_length", c->hop_length);
    c->n_iter = opt_field_int(L, idx, "n_iter", c->n_iter);
    lua_getfield(L, idx, "top_db");
    if (!lua_isnil(L, -1))
        c->top_db = luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (lc_mel_config_check(c) != LC_OK)
        ll_error(L);
}

/* mel_power(slice, config) -> f32 [y_res, frames] */
static int l_mel_power(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    lc_mel_config c;
    check_config(L, 2, &c);
    ll_push_tensor(L, lc_mel_power(&c, x));
    return 1;
}

static int l_mel_power_to_db(lua_State *L)
{
    ll_push_tensor(L, lc_mel_power_to_db(ll_check_tensor(L, 1), luaL_optnumber(L, 2, 80)));
    return 1;
}

static int l_mel_db_to_image(lua_State *L)
{
    ll_push_tensor(L, lc_mel_db_to_image(ll_check_tensor(L, 1), luaL_optnumber(L, 2, 80)));
    return 1;
}

/* mel_image(slice, config) -> u8 [y_res, x_res] */
static int l_mel_image(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    lc_mel_config c;
    check_config(L, 2, &c);
    ll_push_tensor(L, lc_mel_image(&c, x));
    return 1;
}

/* mel_filterbank(sample_rate, n_fft, n_mels, fmin=0, fmax=sr/2) */
static int l_mel_filterbank(lua_State *L)
{
    int sr = (int)luaL_checkinteger(L, 1);
    ll_push_tensor(L, lc_mel_filterbank(sr, (int)luaL_checkinteger(L, 2),
                                        (int)luaL_checkinteger(L, 3), luaL_optnumber(L, 4, 0),
                                        luaL_optnumber(L, 5, sr / 2.0)));
    return 1;
}

static int l_mel_image_to_power(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    lc_mel_config c;
    check_config(L, 2, &c);
    ll_push_tensor(L, lc_mel_image_to_power(&c, x));
    return 1;
}

static int l_mel_to_stft(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    lc_mel_config c;
    check_config(L, 2, &c);
    ll_push_tensor(L, lc_mel_to_stft_mag(&c, x));
    return 1;
}

/* phase options: {generator = g} (random), {init = "zero"}, or
 * {angles_real = t, angles_imag = t}; n_iter overrides the config */
static lc_gl_init check_init(lua_State *L, int idx, lc_generator **g, lc_tensor **re,
                             lc_tensor **im, int *n_iter)
{
    *g = NULL;
    *re = *im = NULL;
    if (lua_isnoneornil(L, idx))
        return LC_GL_ZERO;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "n_iter");
    if (!lua_isnil(L, -1))
        *n_iter = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, idx, "angles_real");
    lua_getfield(L, idx, "angles_imag");
    if (!lua_isnil(L, -2) || !lua_isnil(L, -1)) {
        *re = ll_check_tensor(L, -2);
        *im = ll_check_tensor(L, -1);
        lua_pop(L, 2); /* still referenced by the options table */
        return LC_GL_GIVEN;
    }
    lua_pop(L, 2);
    lua_getfield(L, idx, "generator");
    if (!lua_isnil(L, -1)) {
        *g = ll_check_generator(L, -1);
        lua_pop(L, 1);
        return LC_GL_RANDOM;
    }
    lua_pop(L, 1);
    lua_getfield(L, idx, "init");
    const char *s = lua_isnil(L, -1) ? "zero" : luaL_checkstring(L, -1);
    lua_pop(L, 1);
    if (strcmp(s, "zero") != 0)
        luaL_error(L, "griffin_lim: init \"%s\" unknown (\"zero\", or give a generator or "
                      "angles_real/angles_imag)", s);
    return LC_GL_ZERO;
}

/* griffin_lim(mag, config, opts) -> f32 audio */
static int l_griffin_lim(lua_State *L)
{
    lc_tensor *mag = ll_check_tensor(L, 1), *re, *im;
    lc_mel_config c;
    check_config(L, 2, &c);
    lc_generator *g;
    int n_iter = c.n_iter;
    lc_gl_init init = check_init(L, 3, &g, &re, &im, &n_iter);
    ll_push_tensor(L, lc_griffin_lim(&c, mag, n_iter, init, g, re, im));
    return 1;
}

/* mel_image_to_audio(image u8 [y_res, W], config, opts) -> f32 audio */
static int l_mel_image_to_audio(lua_State *L)
{
    lc_tensor *img = ll_check_tensor(L, 1), *re, *im;
    lc_mel_config c;
    check_config(L, 2, &c);
    lc_generator *g;
    lc_gl_init init = check_init(L, 3, &g, &re, &im, &c.n_iter);
    ll_push_tensor(L, lc_mel_image_to_audio(&c, img, init, g, re, im));
    return 1;
}

/* ---- UNet2DModel ---- */

typedef struct {
    lc_unet2d *u;
} unet2d_ud;

static lc_unet2d *check_unet2d(lua_State *L, int idx)
{
    unet2d_ud *ud = luaL_checkudata(L, idx, UNET2D_MT);
    if (!ud->u)
        luaL_error(L, "unet2d: model was freed");
    return ud->u;
}

static int l_unet2d_gc(lua_State *L)
{
    unet2d_ud *ud = luaL_checkudata(L, 1, UNET2D_MT);
    lc_unet2d_free(ud->u);
    ud->u = NULL;
    return 0;
}

static void push_ints(lua_State *L, const char *k, int n, const int *v)
{
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, k);
}

static void push_unet2d(lua_State *L, lc_unet2d *u)
{
    if (!u)
        ll_error(L);
    unet2d_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->u = u;
    luaL_getmetatable(L, UNET2D_MT);
    lua_setmetatable(L, -2);
}

/* unet2d:config() -> table */
static int l_unet2d_config(lua_State *L)
{
    const lc_unet2d_config *c = lc_unet2d_get_config(check_unet2d(L, 1));
    lua_newtable(L);
    lua_pushinteger(L, c->in_channels);
    lua_setfield(L, -2, "in_channels");
    lua_pushinteger(L, c->out_channels);
    lua_setfield(L, -2, "out_channels");
    lua_pushinteger(L, c->layers_per_block);
    lua_setfield(L, -2, "layers_per_block");
    push_ints(L, "block_out_channels", c->nblocks, c->block_out_channels);
    push_ints(L, "sample_size", 2, (int[]){c->sample_h, c->sample_w});
    return 1;
}

/* unet2d:forward(x, t) -> tensor */
static int l_unet2d_forward(lua_State *L)
{
    lc_unet2d *u = check_unet2d(L, 1);
    lc_tensor *x = ll_check_tensor(L, 2), *t;
    if (lua_type(L, 3) == LUA_TNUMBER) {
        t = lc_tensor_scalar_f32((float)lua_tonumber(L, 3));
    } else {
        t = ll_check_tensor(L, 3);
        lc_tensor_retain(t);
    }
    if (!t)
        return ll_error(L);
    lc_tensor *y = lc_unet2d_forward(u, x, t);
    lc_tensor_free(t);
    ll_push_tensor(L, y);
    return 1;
}

static int l_unet2d_free(lua_State *L)
{
    return l_unet2d_gc(L);
}

/* unet2d_load(config_json, weights_or_path) */
static int l_unet2d_load(lua_State *L)
{
    const char *js = luaL_checkstring(L, 1);
    lc_unet2d_config c;
    if (lc_unet2d_config_parse(&c, js, "unet config.json") != LC_OK)
        return ll_error(L);
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *path = lua_tostring(L, 2);
        lc_weights *w = lc_weights_new();
        if (!w || lc_weights_load(w, path, NULL, NULL, NULL) != LC_OK) {
            lc_weights_free(w);
            return ll_error(L);
        }
        lc_unet2d *u = lc_unet2d_new(&c, w);
        lc_weights_free(w);
        push_unet2d(L, u);
        return 1;
    }
    push_unet2d(L, lc_unet2d_new(&c, ll_check_weights(L, 2)));
    return 1;
}

void ll_open_mel(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"mel_power", l_mel_power},
        {"mel_power_to_db", l_mel_power_to_db},
        {"mel_db_to_image", l_mel_db_to_image},
        {"mel_image", l_mel_image},
        {"mel_filterbank", l_mel_filterbank},
        {"mel_image_to_power", l_mel_image_to_power},
        {"mel_to_stft", l_mel_to_stft},
        {"griffin_lim", l_griffin_lim},
        {"mel_image_to_audio", l_mel_image_to_audio},
        {"unet2d_load", l_unet2d_load},
        {NULL, NULL},
    };
    static const luaL_Reg methods[] = {
        {"forward", l_unet2d_forward},
        {"config", l_unet2d_config},
        {"free", l_unet2d_free},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, UNET2D_MT)) {
        lua_pushcfunction(L, l_unet2d_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        luaL_register(L, NULL, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    ll_register(L, fns);
}
