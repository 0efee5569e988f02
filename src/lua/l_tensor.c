/* The tensor userdata: construction, views, element access, conversion to
 * and from tables, and the GC accounting that keeps big tensors from piling
 * up (LuaJIT's GC does not see C memory). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "l_common.h"

#define LL_METHODS "lucid.tensor.methods"

/* ---- GC accounting ---- */

static size_t gc_mark; /* live bytes right after the last forced collection */

static void maybe_collect(lua_State *L)
{
    size_t live = lc_tensor_live_bytes();
    size_t slack = gc_mark / 2;
    if (slack < ((size_t)64 << 20))
        slack = (size_t)64 << 20;
    if (live > gc_mark + slack) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        gc_mark = lc_tensor_live_bytes();
    }
}

int ll_error(lua_State *L)
{
    return luaL_error(L, "%s", lc_errmsg());
}

void ll_push_tensor(lua_State *L, lc_tensor *t)
{
    if (!t)
        ll_error(L);
    /* the userdata exists before any further allocation can fail, so the
     * reference is never leaked */
    ll_tensor_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->t = t;
    luaL_getmetatable(L, LL_TENSOR_MT);
    lua_setmetatable(L, -2);
    maybe_collect(L);
}

lc_tensor *ll_test_tensor(lua_State *L, int idx)
{
    ll_tensor_ud *ud = lua_touserdata(L, idx);
    if (!ud || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, LL_TENSOR_MT);
    int ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return ok ? ud->t : NULL;
}

lc_tensor *ll_check_tensor(lua_State *L, int idx)
{
    ll_tensor_ud *ud = luaL_checkudata(L, idx, LL_TENSOR_MT);
    if (!ud->t)
        luaL_argerror(L, idx, "tensor was freed");
    return ud->t;
}

void ll_push_shape(lua_State *L, int ndim, const int64_t *shape)
{
    lua_createtable(L, ndim, 0);
    for (int i = 0; i < ndim; i++) {
        lua_pushnumber(L, (lua_Number)shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int64_t check_int(lua_State *L, int idx)
{
    lua_Number v = luaL_checknumber(L, idx);
    if (v != floor(v) || fabs(v) > 9.0e15)
        luaL_argerror(L, idx, "expected an integer");
    return (int64_t)v;
}

int ll_check_shape(lua_State *L, int idx, int64_t *shape)
{
    int n = 0;
    if (lua_istable(L, idx)) {
        n = (int)lua_objlen(L, idx);
        if (n > LC_MAXDIM)
            luaL_error(L, "shape has %d dimensions (at most %d)", n, LC_MAXDIM);
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, idx, i + 1);
            if (!lua_isnumber(L, -1))
                luaL_error(L, "shape entry %d is not a number", i + 1);
            shape[i] = check_int(L, -1);
            lua_pop(L, 1);
        }
    } else {
        int top = lua_gettop(L);
        for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
            if (n >= LC_MAXDIM)
                luaL_error(L, "shape has more than %d dimensions", LC_MAXDIM);
            shape[n++] = check_int(L, i);
        }
    }
    for (int i = 0; i < n; i++)
        if (shape[i] < 0)
            luaL_error(L, "shape entry %d is negative (%d)", i + 1, (int)shape[i]);
    return n;
}

int ll_check_dim(lua_State *L, int idx, int ndim)
{
    int64_t d = check_int(L, idx);
    if (d < 0)
        d += ndim + 1;
    if (d < 1 || d > ndim)
        luaL_error(L, "dimension %d out of range for a %d-d tensor (dimensions are 1-based)",
                   (int)check_int(L, idx), ndim);
    return (int)d - 1;
}

int ll_opt_dtype(lua_State *L, int idx, lc_dtype def)
{
    if (lua_isnoneornil(L, idx))
        return def;
    lc_dtype dt;
    if (lc_dtype_from_name(luaL_checkstring(L, idx), &dt) != LC_OK)
        ll_error(L);
    return dt;
}

void ll_register(lua_State *L, const luaL_Reg *fns)
{
    for (; fns->name; fns++) {
        lua_pushcfunction(L, fns->func);
        lua_setfield(L, -2, fns->name);
    }
}

void ll_register_methods(lua_State *L, const luaL_Reg *methods)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LL_METHODS);
    for (; methods->name; methods++) {
        lua_pushcfunction(L, methods->func);
        lua_setfield(L, -2, methods->name);
    }
    lua_pop(L, 1);
}

/* ---- tables <-> tensors ---- */

/* nested table: infer shape from the first element at each depth */
static int table_shape(lua_State *L, int idx, int64_t *shape)
{
    int n = 0;
    lua_pushvalue(L, idx);
    while (lua_istable(L, -1)) {
        if (n >= LC_MAXDIM)
            luaL_error(L, "tensor: table nested deeper than %d", LC_MAXDIM);
        shape[n++] = (int64_t)lua_objlen(L, -1);
        if (shape[n - 1] == 0)
            break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
    return n;
}

static void fill_from_table(lua_State *L, int idx, lc_tensor *t, int depth, int64_t *flat)
{
    int64_t n = (int64_t)lua_objlen(L, idx);
    if (n != t->shape[depth])
        luaL_error(L, "tensor: ragged table (dimension %d has %d and %d entries)", depth + 1,
                   (int)t->shape[depth], (int)n);
    for (int64_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        if (depth + 1 < t->ndim) {
            if (!lua_istable(L, -1))
                luaL_error(L, "tensor: ragged table (expected a table at depth %d)", depth + 2);
            fill_from_table(L, lua_gettop(L), t, depth + 1, flat);
        } else {
            if (lua_type(L, -1) == LUA_TBOOLEAN)
                lc_tensor_set(t, (*flat)++, lua_toboolean(L, -1));
            else if (lua_isnumber(L, -1))
                lc_tensor_set(t, (*flat)++, lua_tonumber(L, -1));
            else
                luaL_error(L, "tensor: element is a %s, not a number", luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
}

static lc_tensor *tensor_from_table(lua_State *L, int idx, lc_dtype dt)
{
    int64_t shape[LC_MAXDIM];
    int nd = table_shape(L, idx, shape);
    lc_tensor *t = lc_tensor_zeros(dt, nd, shape);
    if (!t)
        ll_error(L);
    /* push first so a table error frees it through __gc */
    ll_push_tensor(L, t);
    int64_t flat = 0;
    if (lc_tensor_numel(t) > 0)
        fill_from_table(L, idx < 0 ? idx - 1 : idx, t, 0, &flat);
    lua_pop(L, 1);
    lc_tensor_retain(t);
    return t;
}

lc_tensor *ll_to_tensor(lua_State *L, int idx)
{
    lc_tensor *t = ll_test_tensor(L, idx);
    if (t) {
        if (!t)
            luaL_argerror(L, idx, "tensor was freed");
        lc_tensor_retain(t);
        return t;
    }
    if (lua_type(L, idx) == LUA_TNUMBER) {
        t = lc_tensor_scalar_f32((float)lua_tonumber(L, idx));
        if (!t)
            ll_error(L);
        return t;
    }
    if (lua_istable(L, idx))
        return tensor_from_table(L, idx, LC_F32);
    luaL_argerror(L, idx, lua_pushfstring(L, "expected a tensor, number or table, got %s",
                                          luaL_typename(L, idx)));
    return NULL;
}

static void push_totable(lua_State *L, const lc_tensor *t, int depth, int64_t *flat)
{
    if (depth == t->ndim) {
        lua_pushnumber(L, lc_tensor_get(t, (*flat)++));
        return;
    }
    lua_createtable(L, (int)t->shape[depth], 0);
    for (int64_t i = 0; i < t->shape[depth]; i++) {
        push_totable(L, t, depth + 1, flat);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/* ---- constructors ---- */

/* lucid.tensor{...} (data, nested tables) | lucid.tensor(2, 3) (zeros) */
static int l_tensor(lua_State *L)
{
    if (lua_istable(L, 1)) {
        lc_dtype dt = ll_opt_dtype(L, 2, LC_F32);
        ll_push_tensor(L, tensor_from_table(L, 1, dt));
        return 1;
    }
    int64_t shape[LC_MAXDIM];
    int nd = ll_check_shape(L, 1, shape);
    ll_push_tensor(L, lc_tensor_zeros(ll_opt_dtype(L, nd + 1, LC_F32), nd, shape));
    return 1;
}

/* lucid.zeros(shape, dtype) / ones / full(shape, value, dtype) / empty */
static int l_zeros(lua_State *L)
{
    int64_t shape[LC_MAXDIM];
    int nd = ll_check_shape(L, 1, shape);
    int didx = lua_istable(L, 1) ? 2 : nd + 1;
    ll_push_tensor(L, lc_tensor_zeros(ll_opt_dtype(L, didx, LC_F32), nd, shape));
    return 1;
}

static int l_full(lua_State *L)
{
    int64_t shape[LC_MAXDIM];
    luaL_checktype(L, 1, LUA_TTABLE);
    int nd = ll_check_shape(L, 1, shape);
    double v = luaL_checknumber(L, 2);
    lc_tensor *t = lc_tensor_new(ll_opt_dtype(L, 3, LC_F32), nd, shape);
    ll_push_tensor(L, t);
    if (lc_tensor_fill_(t, v) != LC_OK)
        ll_error(L);
    return 1;
}

static int l_ones(lua_State *L)
{
    int64_t shape[LC_MAXDIM];
    int nd = ll_check_shape(L, 1, shape);
    int didx = lua_istable(L, 1) ? 2 : nd + 1;
    lc_tensor *t = lc_tensor_new(ll_opt_dtype(L, didx, LC_F32), nd, shape);
    ll_push_tensor(L, t);
    if (lc_tensor_fill_(t, 1.0) != LC_OK)
        ll_error(L);
    return 1;
}

static int l_is_tensor(lua_State *L)
{
    lua_pushboolean(L, ll_test_tensor(L, 1) != NULL);
    return 1;
}

/* ---- methods ---- */

static int m_gc(lua_State *L)
{
    ll_tensor_ud *ud = luaL_checkudata(L, 1, LL_TENSOR_MT);
    lc_tensor_free(ud->t);
    ud->t = NULL;
    return 0;
}

static int m_shape(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    ll_push_shape(L, t->ndim, t->shape);
    return 1;
}

static int m_stride(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    ll_push_shape(L, t->ndim, t->stride);
    return 1;
}

static int m_size(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    if (lua_isnoneornil(L, 2))
        return m_shape(L);
    lua_pushnumber(L, (lua_Number)t->shape[ll_check_dim(L, 2, t->ndim)]);
    return 1;
}

static int m_dim(lua_State *L)
{
    lua_pushinteger(L, ll_check_tensor(L, 1)->ndim);
    return 1;
}

static int m_dtype(lua_State *L)
{
    lua_pushstring(L, lc_dtype_name(ll_check_tensor(L, 1)->dtype));
    return 1;
}

static int m_numel(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)lc_tensor_numel(ll_check_tensor(L, 1)));
    return 1;
}

static int m_nbytes(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)lc_tensor_nbytes(ll_check_tensor(L, 1)));
    return 1;
}

static int m_is_contiguous(lua_State *L)
{
    lua_pushboolean(L, lc_tensor_is_contiguous(ll_check_tensor(L, 1)));
    return 1;
}

static int m_clone(lua_State *L)
{
    ll_push_tensor(L, lc_tensor_clone(ll_check_tensor(L, 1)));
    return 1;
}

static int m_contiguous(lua_State *L)
{
    ll_push_tensor(L, lc_tensor_contiguous(ll_check_tensor(L, 1)));
    return 1;
}

static int m_to(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    lc_dtype dt = ll_opt_dtype(L, 2, t->dtype);
    ll_push_tensor(L, lc_tensor_to(t, dt));
    return 1;
}

static int m_view(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int64_t shape[LC_MAXDIM];
    int nd;
    if (lua_istable(L, 2)) {
        nd = (int)lua_objlen(L, 2);
        if (nd > LC_MAXDIM)
            luaL_error(L, "view: %d dimensions (at most %d)", nd, LC_MAXDIM);
        for (int i = 0; i < nd; i++) {
            lua_rawgeti(L, 2, i + 1);
            shape[i] = check_int(L, -1);
            lua_pop(L, 1);
        }
    } else {
        nd = 0;
        for (int i = 2; i <= lua_gettop(L); i++) {
            if (nd >= LC_MAXDIM)
                luaL_error(L, "view: more than %d dimensions", LC_MAXDIM);
            shape[nd++] = check_int(L, i);
        }
    }
    ll_push_tensor(L, lc_tensor_view(t, nd, shape));
    return 1;
}

static int m_permute(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int perm[LC_MAXDIM], n = 0;
    if (lua_istable(L, 2)) {
        n = (int)lua_objlen(L, 2);
        for (int i = 0; i < n && i < LC_MAXDIM; i++) {
            lua_rawgeti(L, 2, i + 1);
            perm[i] = ll_check_dim(L, -1, t->ndim);
            lua_pop(L, 1);
        }
    } else {
        n = lua_gettop(L) - 1;
        for (int i = 0; i < n && i < LC_MAXDIM; i++)
            perm[i] = ll_check_dim(L, i + 2, t->ndim);
    }
    if (n != t->ndim)
        luaL_error(L, "permute: %d dimensions given for a %d-d tensor", n, t->ndim);
    ll_push_tensor(L, lc_tensor_permute(t, perm));
    return 1;
}

static int m_transpose(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int a = ll_check_dim(L, 2, t->ndim), b = ll_check_dim(L, 3, t->ndim);
    ll_push_tensor(L, lc_tensor_transpose(t, a, b));
    return 1;
}

/* t:narrow(dim, start, len), start 1-based */
static int m_narrow(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int d = ll_check_dim(L, 2, t->ndim);
    int64_t start = check_int(L, 3), len = check_int(L, 4);
    if (start < 1)
        luaL_error(L, "narrow: start %d is before the first index 1", (int)start);
    ll_push_tensor(L, lc_tensor_narrow(t, d, start - 1, len));
    return 1;
}

/* t:select(dim, index), index 1-based */
static int m_select(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int d = ll_check_dim(L, 2, t->ndim);
    int64_t i = check_int(L, 3);
    if (i < 0)
        i += t->shape[d] + 1;
    ll_push_tensor(L, lc_tensor_select(t, d, i - 1));
    return 1;
}

static int m_expand(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int64_t shape[LC_MAXDIM];
    int nd = 0;
    if (lua_istable(L, 2)) {
        nd = (int)lua_objlen(L, 2);
        for (int i = 0; i < nd && i < LC_MAXDIM; i++) {
            lua_rawgeti(L, 2, i + 1);
            shape[i] = check_int(L, -1);
            lua_pop(L, 1);
        }
    } else {
        for (int i = 2; i <= lua_gettop(L) && nd < LC_MAXDIM; i++)
            shape[nd++] = check_int(L, i);
    }
    if (nd > LC_MAXDIM)
        luaL_error(L, "expand: more than %d dimensions", LC_MAXDIM);
    ll_push_tensor(L, lc_tensor_expand(t, nd, shape));
    return 1;
}

static int m_unsqueeze(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int64_t d = check_int(L, 2);
    if (d < 0)
        d += t->ndim + 2;
    if (d < 1 || d > t->ndim + 1)
        luaL_error(L, "unsqueeze: dimension %d out of range", (int)check_int(L, 2));
    ll_push_tensor(L, lc_tensor_unsqueeze(t, (int)d - 1));
    return 1;
}

static int m_squeeze(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int d = lua_isnoneornil(L, 2) ? -100 : ll_check_dim(L, 2, t->ndim);
    ll_push_tensor(L, lc_tensor_squeeze(t, d));
    return 1;
}

static int m_item(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    if (lc_tensor_numel(t) != 1)
        luaL_error(L, "item: tensor %s has %d elements, not 1", LC_SHAPE_STR(t),
                   (int)lc_tensor_numel(t));
    lua_pushnumber(L, lc_tensor_get(t, 0));
    return 1;
}

/* t:get(i, j, ...) / t:set(v, i, j, ...) with 1-based indices */
static int64_t flat_index(lua_State *L, lc_tensor *t, int first)
{
    int n = lua_gettop(L) - first + 1;
    if (n != t->ndim)
        luaL_error(L, "index: %d indices for a %d-d tensor", n, t->ndim);
    int64_t flat = 0;
    for (int i = 0; i < t->ndim; i++) {
        int64_t ix = check_int(L, first + i);
        if (ix < 0)
            ix += t->shape[i] + 1;
        if (ix < 1 || ix > t->shape[i])
            luaL_error(L, "index %d out of range 1..%d in dimension %d", (int)check_int(L, first + i),
                       (int)t->shape[i], i + 1);
        flat = flat * t->shape[i] + (ix - 1);
    }
    return flat;
}

static int m_get(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    lua_pushnumber(L, lc_tensor_get(t, flat_index(L, t, 2)));
    return 1;
}

static int m_set(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    double v = luaL_checknumber(L, 2);
    lc_tensor_set(t, flat_index(L, t, 3), v);
    lua_settop(L, 1);
    return 1;
}

static int m_totable(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int64_t flat = 0;
    if (lc_tensor_numel(t) > 10000000)
        luaL_error(L, "totable: %d elements is too many for a Lua table", (int)lc_tensor_numel(t));
    push_totable(L, t, 0, &flat);
    return 1;
}

static int m_fill_(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    if (lc_tensor_fill_(t, luaL_checknumber(L, 2)) != LC_OK)
        ll_error(L);
    lua_settop(L, 1);
    return 1;
}

static int m_copy_(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    lc_tensor *s = ll_to_tensor(L, 2);
    int rc = lc_tensor_copy_(t, s);
    lc_tensor_free(s);
    if (rc != LC_OK)
        ll_error(L);
    lua_settop(L, 1);
    return 1;
}

static int m_free(lua_State *L)
{
    ll_tensor_ud *ud = luaL_checkudata(L, 1, LL_TENSOR_MT);
    lc_tensor_free(ud->t);
    ud->t = NULL;
    return 0;
}

static int m_is_freed(lua_State *L)
{
    ll_tensor_ud *ud = luaL_checkudata(L, 1, LL_TENSOR_MT);
    lua_pushboolean(L, ud->t == NULL);
    return 1;
}

/* storage identity, to tell views from copies in tests */
static int m_storage_id(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    lua_pushfstring(L, "%p", (void *)t->storage);
    return 1;
}

static int l_live_bytes(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)lc_tensor_live_bytes());
    return 1;
}

static int m_index(lua_State *L)
{
    /* methods first; the Lua side may add more to the same table */
    lua_getfield(L, LUA_REGISTRYINDEX, LL_METHODS);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int m_len(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    lua_pushnumber(L, t->ndim ? (lua_Number)t->shape[0] : 0);
    return 1;
}

static int l_methods(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LL_METHODS);
    return 1;
}

static int l_metatable(lua_State *L)
{
    luaL_getmetatable(L, LL_TENSOR_MT);
    return 1;
}

static const luaL_Reg methods[] = {
    {"shape", m_shape}, {"size", m_size}, {"stride", m_stride}, {"dim", m_dim},
    {"dtype", m_dtype}, {"numel", m_numel}, {"nbytes", m_nbytes},
    {"is_contiguous", m_is_contiguous}, {"clone", m_clone}, {"contiguous", m_contiguous},
    {"to", m_to}, {"view", m_view}, {"reshape", m_view}, {"permute", m_permute},
    {"transpose", m_transpose}, {"narrow", m_narrow}, {"select", m_select},
    {"expand", m_expand}, {"unsqueeze", m_unsqueeze}, {"squeeze", m_squeeze},
    {"item", m_item}, {"get", m_get}, {"set", m_set}, {"totable", m_totable},
    {"fill_", m_fill_}, {"copy_", m_copy_}, {"free", m_free}, {"is_freed", m_is_freed},
    {"storage_id", m_storage_id}, {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros}, {"ones", l_ones}, {"full", l_full},
    {"is_tensor", l_is_tensor}, {"live_bytes", l_live_bytes},
    {"tensor_methods", l_methods}, {"tensor_metatable", l_metatable}, {NULL, NULL}};

void ll_open_tensor(lua_State *L)
{
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, LL_METHODS);
    luaL_newmetatable(L, LL_TENSOR_MT);
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_len);
    lua_setfield(L, -2, "__len");
    lua_pushliteral(L, "tensor");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    ll_register_methods(L, methods);
    ll_register(L, functions);
}
