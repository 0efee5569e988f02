/* Lua bindings of the neural-network ops: conv2d, normalisations, softmax,
 * attention, resizing, grid sampling and padding. Dimensions are 1-based
 * here; options come in a table whose names follow torch's functional API
 * (stride, padding, padding_mode, align_corners, ...). */
#include <math.h>
#include <string.h>

#include "l_common.h"
#include "ops/ops.h"

/* ---- option helpers ---- */

static int opt_int(lua_State *L, int t, const char *field, int def)
{
    if (lua_isnoneornil(L, t))
        return def;
    lua_getfield(L, t, field);
    int v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "option '%s' must be a number, got %s", field, luaL_typename(L, -1));
        lua_Number n = lua_tonumber(L, -1);
        if (n != floor(n) || fabs(n) > 1e9)
            luaL_error(L, "option '%s' must be an integer, got %f", field, n);
        v = (int)n;
    }
    lua_pop(L, 1);
    return v;
}

static double opt_num(lua_State *L, int t, const char *field, double def)
{
    if (lua_isnoneornil(L, t))
        return def;
    lua_getfield(L, t, field);
    double v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "option '%s' must be a number, got %s", field, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, int t, const char *field, int def)
{
    if (lua_isnoneornil(L, t))
        return def;
    lua_getfield(L, t, field);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static const char *opt_str(lua_State *L, int t, const char *field, const char *def)
{
    if (lua_isnoneornil(L, t))
        return def;
    lua_getfield(L, t, field);
    const char *v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "option '%s' must be a string, got %s", field, luaL_typename(L, -1));
        v = lua_tostring(L, -1); /* the options table keeps it alive */
    }
    lua_pop(L, 1);
    return v;
}

/* the value at the top of the stack, a number or {h, w}, into out[2] */
static void to_pair(lua_State *L, const char *what, double out[2])
{
    if (lua_type(L, -1) == LUA_TNUMBER) {
        out[0] = out[1] = lua_tonumber(L, -1);
    } else if (lua_istable(L, -1) && lua_objlen(L, -1) == 2) {
        for (int i = 0; i < 2; i++) {
            lua_rawgeti(L, -1, i + 1);
            if (lua_type(L, -1) != LUA_TNUMBER)
                luaL_error(L, "%s: entry %d of {h, w} is not a number", what, i + 1);
            out[i] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
    } else {
        luaL_error(L, "%s must be a number or a table {h, w}, got %s", what,
                   luaL_typename(L, -1));
    }
}

static void opt_int_pair(lua_State *L, int t, const char *field, int def, int out[2])
{
    out[0] = out[1] = def;
    if (lua_isnoneornil(L, t))
        return;
    lua_getfield(L, t, field);
    if (!lua_isnil(L, -1)) {
        double v[2];
        to_pair(L, field, v);
        for (int i = 0; i < 2; i++) {
            if (v[i] != floor(v[i]) || fabs(v[i]) > 1e9)
                luaL_error(L, "option '%s' must hold integers", field);
            out[i] = (int)v[i];
        }
    }
    lua_pop(L, 1);
}

static void check_opts(lua_State *L, int idx)
{
    if (!lua_isnoneornil(L, idx))
        luaL_checktype(L, idx, LUA_TTABLE);
}

static lc_tensor *opt_tensor(lua_State *L, int idx)
{
    return lua_isnoneornil(L, idx) ? NULL : ll_check_tensor(L, idx);
}

/* ---- conv2d ---- */

/* lucid.conv2d(x, w, bias_or_nil, {stride=, padding=, dilation=, groups=}) */
static int l_conv2d(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1), *w = ll_check_tensor(L, 2), *b = opt_tensor(L, 3);
    check_opts(L, 4);
    lc_conv2d_params p;
    opt_int_pair(L, 4, "stride", 1, p.stride);
    opt_int_pair(L, 4, "padding", 0, p.padding);
    opt_int_pair(L, 4, "dilation", 1, p.dilation);
    p.groups = opt_int(L, 4, "groups", 1);
    ll_push_tensor(L, lc_conv2d(x, w, b, &p));
    return 1;
}

/* ---- normalisation ---- */

/* lucid.group_norm(x, groups, gamma, beta, eps) */
static int l_group_norm(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    lua_Number g = luaL_checknumber(L, 2);
    if (g != floor(g) || g < 1 || g > 1e9)
        luaL_argerror(L, 2, "groups must be a positive integer");
    lc_tensor *gamma = opt_tensor(L, 3), *beta = opt_tensor(L, 4);
    double eps = luaL_optnumber(L, 5, 1e-5);
    ll_push_tensor(L, lc_group_norm(x, (int)g, gamma, beta, eps));
    return 1;
}

/* lucid.layer_norm(x, gamma, beta, eps): over the last dimension */
static int l_layer_norm(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1), *gamma = opt_tensor(L, 2), *beta = opt_tensor(L, 3);
    double eps = luaL_optnumber(L, 4, 1e-5);
    ll_push_tensor(L, lc_layer_norm(x, gamma, beta, eps));
    return 1;
}

/* ---- softmax ---- */

static int softmax_common(lua_State *L, int log)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    int nd = x->ndim > 0 ? x->ndim : 1;
    int dim = lua_isnoneornil(L, 2) ? nd - 1 : ll_check_dim(L, 2, nd);
    ll_push_tensor(L, log ? lc_log_softmax(x, dim) : lc_softmax(x, dim));
    return 1;
}

/* lucid.softmax(x, dim = -1) */
static int l_softmax(lua_State *L)
{
    return softmax_common(L, 0);
}

static int l_log_softmax(lua_State *L)
{
    return softmax_common(L, 1);
}

/* ---- attention ---- */

/* lucid.sdpa(q, k, v, {mask=, scale=, causal=}) */
static int l_sdpa(lua_State *L)
{
    lc_tensor *q = ll_check_tensor(L, 1), *k = ll_check_tensor(L, 2), *v = ll_check_tensor(L, 3);
    check_opts(L, 4);
    lc_tensor *mask = NULL;
    if (!lua_isnoneornil(L, 4)) {
        lua_getfield(L, 4, "mask");
        if (!lua_isnil(L, -1))
            mask = ll_check_tensor(L, -1); /* the options table keeps it alive */
        lua_pop(L, 1);
    }
    double scale = opt_num(L, 4, "scale", 0);
    int causal = opt_bool(L, 4, "causal", 0);
    ll_push_tensor(L, lc_sdpa(q, k, v, mask, scale, causal));
    return 1;
}

/* lucid.attention(q, k, v, heads, {mask=, scale=}) on [B, L, heads*D] */
static int l_attention(lua_State *L)
{
    lc_tensor *q = ll_check_tensor(L, 1), *k = ll_check_tensor(L, 2), *v = ll_check_tensor(L, 3);
    lua_Number h = luaL_checknumber(L, 4);
    if (h != floor(h) || h < 1 || h > 1e9)
        luaL_argerror(L, 4, "heads must be a positive integer");
    check_opts(L, 5);
    lc_tensor *mask = NULL;
    if (!lua_isnoneornil(L, 5)) {
        lua_getfield(L, 5, "mask");
        if (!lua_isnil(L, -1))
            mask = ll_check_tensor(L, -1);
        lua_pop(L, 1);
    }
    double scale = opt_num(L, 5, "scale", 0);
    ll_push_tensor(L, lc_attention_heads(q, k, v, (int)h, mask, scale));
    return 1;
}

/* ---- resizing ---- */

static lc_resize_mode check_resize_mode(lua_State *L, const char *m)
{
    if (!strcmp(m, "nearest"))
        return LC_RESIZE_NEAREST;
    if (!strcmp(m, "nearest-exact") || !strcmp(m, "nearest_exact"))
        return LC_RESIZE_NEAREST_EXACT;
    if (!strcmp(m, "bilinear"))
        return LC_RESIZE_BILINEAR;
    luaL_error(L, "interpolate: unknown mode '%s' (nearest, nearest-exact, bilinear)", m);
    return LC_RESIZE_NEAREST;
}

static int64_t check_size(lua_State *L, double v, const char *what)
{
    if (v != floor(v) || v < 1 || v > 1e9)
        luaL_error(L, "%s: output size %f must be a positive integer", what, v);
    return (int64_t)v;
}

/* lucid.interpolate(x, {size = {h, w} | scale_factor = s | {sh, sw},
 * mode = "nearest", align_corners = false}). With scale_factor the output
 * is floor(in * s) and source pixels map by in/out (torch's
 * recompute_scale_factor=True; the same as its default for integer
 * factors). */
static int l_interpolate(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lc_resize_mode mode = check_resize_mode(L, opt_str(L, 2, "mode", "nearest"));
    lua_getfield(L, 2, "align_corners");
    int has_align = !lua_isnil(L, -1), align = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (has_align && mode != LC_RESIZE_BILINEAR)
        luaL_error(L, "interpolate: align_corners only applies to mode 'bilinear'");
    if (x->ndim < 2)
        luaL_error(L, "interpolate: input %s must have at least 2 dimensions",
                   LC_SHAPE_STR(x));
    int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1], oh, ow;
    double v[2];
    lua_getfield(L, 2, "size");
    lua_getfield(L, 2, "scale_factor");
    int has_size = !lua_isnil(L, -2), has_scale = !lua_isnil(L, -1);
    if (has_size == has_scale)
        luaL_error(L, "interpolate: give exactly one of size and scale_factor");
    if (has_size) {
        lua_pop(L, 1);
        to_pair(L, "interpolate: size", v);
        oh = check_size(L, v[0], "interpolate");
        ow = check_size(L, v[1], "interpolate");
    } else {
        to_pair(L, "interpolate: scale_factor", v);
        if (!(v[0] > 0) || !(v[1] > 0))
            luaL_error(L, "interpolate: scale_factor must be positive");
        oh = check_size(L, floor((double)H * v[0]), "interpolate");
        ow = check_size(L, floor((double)W * v[1]), "interpolate");
    }
    ll_push_tensor(L, lc_resize(x, oh, ow, mode, align));
    return 1;
}

/* lucid.resize(x, h, w, mode = "bilinear", align_corners = false) */
static int l_resize(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    int64_t oh = check_size(L, luaL_checknumber(L, 2), "resize");
    int64_t ow = check_size(L, luaL_checknumber(L, 3), "resize");
    lc_resize_mode mode = check_resize_mode(L, luaL_optstring(L, 4, "bilinear"));
    ll_push_tensor(L, lc_resize(x, oh, ow, mode, lua_toboolean(L, 5)));
    return 1;
}

/* lucid.grid_sample(x, grid, {mode = "bilinear", padding_mode = "zeros",
 * align_corners = false}) */
static int l_grid_sample(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1), *grid = ll_check_tensor(L, 2);
    check_opts(L, 3);
    const char *m = opt_str(L, 3, "mode", "bilinear");
    const char *pm = opt_str(L, 3, "padding_mode", "zeros");
    lc_sample_mode mode;
    lc_pad_mode pad;
    if (!strcmp(m, "bilinear"))
        mode = LC_SAMPLE_BILINEAR;
    else if (!strcmp(m, "nearest"))
        mode = LC_SAMPLE_NEAREST;
    else
        return luaL_error(L, "grid_sample: unknown mode '%s' (bilinear, nearest)", m);
    if (!strcmp(pm, "zeros"))
        pad = LC_PAD_ZEROS;
    else if (!strcmp(pm, "border"))
        pad = LC_PAD_BORDER;
    else if (!strcmp(pm, "reflection"))
        pad = LC_PAD_REFLECTION;
    else
        return luaL_error(L, "grid_sample: unknown padding_mode '%s' (zeros, border, reflection)",
                          pm);
    ll_push_tensor(L, lc_grid_sample(x, grid, mode, pad, opt_bool(L, 3, "align_corners", 0)));
    return 1;
}

/* lucid.pad(x, {left, right, top, bottom}, mode = "constant", value = 0);
 * {left, right} pads only the last dimension */
static int l_pad(lua_State *L)
{
    lc_tensor *x = ll_check_tensor(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)lua_objlen(L, 2);
    if (n != 2 && n != 4)
        return luaL_error(L, "pad: pads must be {left, right} or {left, right, top, bottom}, "
                             "got %d entries",
                          n);
    int64_t pads[4] = {0, 0, 0, 0};
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 2, i + 1);
        lua_Number v = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || v != floor(v) || fabs(v) > 1e9)
            return luaL_error(L, "pad: entry %d of pads is not an integer", i + 1);
        pads[i] = (int64_t)v;
        lua_pop(L, 1);
    }
    const char *m = luaL_optstring(L, 3, "constant");
    lc_padk kind;
    if (!strcmp(m, "constant"))
        kind = LC_PADK_CONSTANT;
    else if (!strcmp(m, "reflect"))
        kind = LC_PADK_REFLECT;
    else if (!strcmp(m, "replicate"))
        kind = LC_PADK_REPLICATE;
    else
        return luaL_error(L, "pad: unknown mode '%s' (constant, reflect, replicate)", m);
    ll_push_tensor(L, lc_pad2d(x, pads, kind, luaL_optnumber(L, 4, 0)));
    return 1;
}

static const luaL_Reg fns[] = {
    {"conv2d", l_conv2d},
    {"group_norm", l_group_norm},
    {"layer_norm", l_layer_norm},
    {"softmax", l_softmax},
    {"log_softmax", l_log_softmax},
    {"sdpa", l_sdpa},
    {"attention", l_attention},
    {"interpolate", l_interpolate},
    {"resize", l_resize},
    {"grid_sample", l_grid_sample},
    {"pad", l_pad},
    {NULL, NULL},
};

/* the ops whose first argument is naturally "the" tensor */
static const luaL_Reg methods[] = {
    {"conv2d", l_conv2d},
    {"group_norm", l_group_norm},
    {"layer_norm", l_layer_norm},
    {"softmax", l_softmax},
    {"log_softmax", l_log_softmax},
    {"interpolate", l_interpolate},
    {"resize", l_resize},
    {"grid_sample", l_grid_sample},
    {"pad", l_pad},
    {NULL, NULL},
};

void ll_open_nn(lua_State *L)
{
    ll_register(L, fns);
    ll_register_methods(L, methods);
}
