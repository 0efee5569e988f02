/* Lua bindings of the core tensor ops: elementwise (functions, methods and
 * the arithmetic operators), reductions, matmul/linear and shape ops.
 *
 * Dims are 1-based here, as everywhere in Lua; so are the indices argmax,
 * argmin and max/min over a dim return. Numbers are accepted wherever a
 * tensor is: with a tensor they use the scalar ops (no promotion to the
 * number's type), alone they become 0-d f32 tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/ops.h"
#include "l_common.h"

#define LL_METHODS "lucid.tensor.methods"

/* A borrowed tensor for argument idx. A number or table is converted and
 * put back in the argument's slot, so the GC owns the new tensor even if a
 * later argument raises. */
static lc_tensor *arg_tensor(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TUSERDATA)
        return ll_check_tensor(L, idx);
    lc_tensor *t = ll_to_tensor(L, idx);
    ll_push_tensor(L, t);
    lua_replace(L, idx);
    return t;
}

static int is_tensor_arg(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TUSERDATA || lua_type(L, idx) == LUA_TTABLE;
}

static int upvalue_int(lua_State *L, int n)
{
    return (int)lua_tointeger(L, lua_upvalueindex(n));
}

/* ---- elementwise ---- */

/* a op b for tensors or numbers; upvalue 1: the op */
static int binary_of(lua_State *L, lc_binop op, int ia, int ib)
{
    lc_tensor *r;
    if (lua_type(L, ib) == LUA_TNUMBER)
        r = lc_binary_scalar(op, arg_tensor(L, ia), lua_tonumber(L, ib), 0);
    else if (lua_type(L, ia) == LUA_TNUMBER)
        r = lc_binary_scalar(op, arg_tensor(L, ib), lua_tonumber(L, ia), 1);
    else
        r = lc_binary(op, arg_tensor(L, ia), arg_tensor(L, ib));
    ll_push_tensor(L, r);
    return 1;
}

/* add(a, b, alpha) / sub(a, b, alpha): a +- alpha * b */
static int l_binary(lua_State *L)
{
    lc_binop op = (lc_binop)upvalue_int(L, 1);
    if ((op == LC_ADD || op == LC_SUB) && !lua_isnoneornil(L, 3)) {
        double alpha = luaL_checknumber(L, 3);
        if (lua_type(L, 2) == LUA_TNUMBER) {
            lua_pushnumber(L, lua_tonumber(L, 2) * alpha);
            lua_replace(L, 2);
        } else {
            ll_push_tensor(L, lc_binary_scalar(LC_MUL, arg_tensor(L, 2), alpha, 0));
            lua_replace(L, 2);
        }
    }
    return binary_of(L, op, 1, 2);
}

/* t:add_(u, alpha) and friends: in place, returns t */
static int l_binary_(lua_State *L)
{
    lc_binop op = (lc_binop)upvalue_int(L, 1);
    lc_tensor *t = ll_check_tensor(L, 1);
    int rc;
    double alpha = luaL_optnumber(L, 3, 1.0);
    if (!lua_isnoneornil(L, 3) && op != LC_ADD && op != LC_SUB)
        luaL_argerror(L, 3, "alpha only applies to add_ and sub_");
    if (lua_type(L, 2) == LUA_TNUMBER) {
        double s = lua_tonumber(L, 2);
        rc = lc_binary_scalar_(op, t, op == LC_ADD || op == LC_SUB ? s * alpha : s);
    } else if (op == LC_ADD || op == LC_SUB) {
        rc = lc_add_scaled_(t, arg_tensor(L, 2), op == LC_ADD ? alpha : -alpha);
    } else {
        rc = lc_binary_(op, t, arg_tensor(L, 2));
    }
    if (rc != LC_OK)
        ll_error(L);
    lua_settop(L, 1);
    return 1;
}

/* metamethods: Lua passes both operands, either may be the number */
static int mm_binary(lua_State *L)
{
    return binary_of(L, (lc_binop)upvalue_int(L, 1), 1, 2);
}

static int mm_unm(lua_State *L)
{
    ll_push_tensor(L, lc_unary(LC_NEG, arg_tensor(L, 1)));
    return 1;
}

/* gelu(x, "tanh") or gelu(x, {approximate = "tanh"}) */
static lc_unop gelu_variant(lua_State *L, int idx)
{
    const char *mode = NULL;
    if (lua_type(L, idx) == LUA_TSTRING) {
        mode = lua_tostring(L, idx);
    } else if (lua_istable(L, idx)) {
        lua_getfield(L, idx, "approximate");
        mode = lua_tostring(L, -1);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, idx)) {
        luaL_argerror(L, idx, "expected \"tanh\", \"none\" or {approximate = ...}");
    }
    if (!mode || !strcmp(mode, "none") || !strcmp(mode, "erf"))
        return LC_GELU;
    if (!strcmp(mode, "tanh"))
        return LC_GELU_TANH;
    luaL_error(L, "gelu: unknown approximation '%s' (expected \"none\" or \"tanh\")", mode);
    return LC_GELU;
}

/* upvalue 1: the op, upvalue 2: in place */
static int l_unary(lua_State *L)
{
    lc_unop op = (lc_unop)upvalue_int(L, 1);
    if (op == LC_GELU)
        op = gelu_variant(L, 2);
    if (upvalue_int(L, 2)) {
        if (lc_unary_(op, ll_check_tensor(L, 1)) != LC_OK)
            ll_error(L);
        lua_settop(L, 1);
        return 1;
    }
    ll_push_tensor(L, lc_unary(op, arg_tensor(L, 1)));
    return 1;
}

static double opt_bound(lua_State *L, int idx, double def)
{
    return lua_isnoneornil(L, idx) ? def : luaL_checknumber(L, idx);
}

/* clamp(t, lo, hi); a nil bound is open */
static int l_clamp(lua_State *L)
{
    lc_tensor *t = arg_tensor(L, 1);
    ll_push_tensor(L, lc_clamp(t, opt_bound(L, 2, -INFINITY), opt_bound(L, 3, INFINITY)));
    return 1;
}

static int l_clamp_(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    double lo = opt_bound(L, 2, -INFINITY), hi = opt_bound(L, 3, INFINITY);
    if (lo != lo || hi != hi)
        luaL_error(L, "clamp_: bounds must not be NaN");
    /* max then min: NaN elements stay NaN, lo > hi gives hi, as clamp */
    if ((lo > -INFINITY && lc_binary_scalar_(LC_MAXIMUM, t, lo) != LC_OK) ||
        (hi < INFINITY && lc_binary_scalar_(LC_MINIMUM, t, hi) != LC_OK))
        ll_error(L);
    lua_settop(L, 1);
    return 1;
}

static int l_where(lua_State *L)
{
    lc_tensor *c = arg_tensor(L, 1), *a = arg_tensor(L, 2), *b = arg_tensor(L, 3);
    ll_push_tensor(L, lc_where(c, a, b));
    return 1;
}

static int l_lerp(lua_State *L)
{
    lc_tensor *a = arg_tensor(L, 1), *b = arg_tensor(L, 2);
    ll_push_tensor(L, lc_lerp(a, b, luaL_checknumber(L, 3)));
    return 1;
}

/* ---- reductions ---- */

/* 0-based indices from the core become 1-based, in place */
static void to_one_based(lua_State *L, lc_tensor *idx)
{
    if (lc_binary_scalar_(LC_ADD, idx, 1) != LC_OK)
        ll_error(L);
}

/* Reduction over the list of dims at idx (sum, mean, var, std, norm): the
 * reduced dims are permuted to the end, made contiguous and flattened into
 * one, which is then reduced in a single pass, so var/std/norm are exact
 * too. Pushes the result. */
static void reduce_dims(lua_State *L, lc_redop op, lc_tensor *t, int idx, int keepdim,
                        int unbiased)
{
    int nd = t->ndim, n = (int)lua_objlen(L, idx), red[LC_MAXDIM] = {0};
    if (n < 1)
        luaL_error(L, "reduce: empty list of dimensions");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        int d = ll_check_dim(L, -1, nd);
        lua_pop(L, 1);
        if (red[d])
            luaL_error(L, "reduce: dimension %d listed twice", d + 1);
        red[d] = 1;
    }
    int perm[LC_MAXDIM], np = 0, nk = 0;
    int64_t shape[LC_MAXDIM], kshape[LC_MAXDIM], R = 1;
    for (int d = 0; d < nd; d++)
        if (!red[d]) {
            perm[np++] = d;
            shape[nk++] = t->shape[d];
        }
    for (int d = 0; d < nd; d++) {
        if (red[d]) {
            perm[np++] = d;
            R *= t->shape[d];
        }
        kshape[d] = red[d] ? 1 : t->shape[d];
    }
    shape[nk] = R;
    lc_tensor *pv = lc_tensor_permute(t, perm);
    ll_push_tensor(L, pv);
    lc_tensor *flat = lc_tensor_view(pv, nk + 1, shape); /* copies when it must */
    ll_push_tensor(L, flat);
    lc_tensor *r = lc_reduce_dim(op, flat, nk, 0, unbiased);
    ll_push_tensor(L, r);
    if (keepdim)
        ll_push_tensor(L, lc_tensor_view(r, nd, kshape));
}

/* t:sum() -> 0-d; t:sum(dim, keepdim) with a dim or (sum, mean, var, std,
 * norm) a list of dims; var/std take unbiased as the 4th argument (default
 * true). max/min with a dim return values and indices; with a tensor as
 * the second argument they are maximum/minimum.
 * upvalue 1: the op */
static int l_reduce(lua_State *L)
{
    lc_redop op = (lc_redop)upvalue_int(L, 1);
    lc_tensor *t = arg_tensor(L, 1);
    if ((op == LC_RMAX || op == LC_RMIN) && is_tensor_arg(L, 2))
        return binary_of(L, op == LC_RMAX ? LC_MAXIMUM : LC_MINIMUM, 1, 2);
    int unbiased = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
    if (lua_istable(L, 2)) {
        if (op == LC_RARGMAX || op == LC_RARGMIN)
            luaL_argerror(L, 2, "argmax/argmin take one dimension");
        reduce_dims(L, op, t, 2, lua_toboolean(L, 3), unbiased);
        return 1;
    }
    int arg = op == LC_RARGMAX || op == LC_RARGMIN;
    if (lua_isnoneornil(L, 2)) {
        lc_tensor *r = lc_reduce_all(op, t, unbiased);
        ll_push_tensor(L, r);
        if (arg)
            to_one_based(L, r);
        return 1;
    }
    int d = ll_check_dim(L, 2, t->ndim);
    int keepdim = lua_toboolean(L, 3);
    lc_tensor *r = lc_reduce_dim(op, t, d, keepdim, unbiased);
    ll_push_tensor(L, r);
    if (arg)
        to_one_based(L, r);
    if (op != LC_RMAX && op != LC_RMIN)
        return 1;
    lc_tensor *idx = lc_reduce_dim(op == LC_RMAX ? LC_RARGMAX : LC_RARGMIN, t, d, keepdim, 1);
    ll_push_tensor(L, idx);
    to_one_based(L, idx);
    return 2;
}

/* ---- linear algebra ---- */

static int l_matmul(lua_State *L)
{
    lc_tensor *a = arg_tensor(L, 1), *b = arg_tensor(L, 2);
    ll_push_tensor(L, lc_matmul(a, b));
    return 1;
}

/* linear(x, w, bias): x @ w^T + bias */
static int l_linear(lua_State *L)
{
    lc_tensor *x = arg_tensor(L, 1), *w = arg_tensor(L, 2);
    lc_tensor *b = lua_isnoneornil(L, 3) ? NULL : arg_tensor(L, 3);
    ll_push_tensor(L, lc_linear(x, w, b));
    return 1;
}

/* ---- shape ops ---- */

/* the tensors of a Lua list, in scratch memory the GC frees; the list
 * keeps them alive */
static lc_tensor **check_list(lua_State *L, int idx, int *n, const char *op)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int)lua_objlen(L, idx);
    if (*n < 1)
        luaL_error(L, "%s: expected a non-empty list of tensors", op);
    lc_tensor **ts = lua_newuserdata(L, sizeof *ts * (size_t)*n);
    for (int i = 0; i < *n; i++) {
        lua_rawgeti(L, idx, i + 1);
        ts[i] = ll_test_tensor(L, -1);
        if (!ts[i])
            luaL_error(L, "%s: list entry %d is a %s, not a tensor", op, i + 1,
                       luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    return ts;
}

static int l_cat(lua_State *L)
{
    int n;
    lua_settop(L, 2); /* the list's scratch memory goes above the dim */
    lc_tensor **ts = check_list(L, 1, &n, "cat");
    int d = lua_isnoneornil(L, 2) ? 0 : ll_check_dim(L, 2, ts[0]->ndim);
    ll_push_tensor(L, lc_cat(ts, n, d));
    return 1;
}

/* stack(list, dim): dim in 1..ndim+1, negative counts from the end */
static int l_stack(lua_State *L)
{
    int n;
    lua_settop(L, 2);
    lc_tensor **ts = check_list(L, 1, &n, "stack");
    int nd = ts[0]->ndim;
    lua_Integer d = luaL_optinteger(L, 2, 1);
    if (d < 0)
        d += nd + 2;
    if (d < 1 || d > nd + 1)
        luaL_error(L, "stack: dimension %d out of range 1..%d for %d-d tensors",
                   (int)luaL_optinteger(L, 2, 1), nd + 1, nd);
    ll_push_tensor(L, lc_stack(ts, n, (int)d - 1));
    return 1;
}

/* split(t, size, dim) -> list of views */
static int l_split(lua_State *L)
{
    lc_tensor *t = arg_tensor(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    int d = lua_isnoneornil(L, 3) ? 0 : ll_check_dim(L, 3, t->ndim);
    if (t->ndim == 0)
        luaL_error(L, "split: cannot split a 0-d tensor");
    int n = 0;
    lc_tensor **parts = lc_split(t, size, d, &n);
    if (!parts)
        ll_error(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        ll_push_tensor(L, parts[i]);
        parts[i] = NULL;
        lua_rawseti(L, -2, i + 1);
    }
    free(parts);
    return 1;
}

/* repeat_(t, r1, r2, ...) or repeat_(t, {r1, r2, ...}) */
static int l_repeat(lua_State *L)
{
    lc_tensor *t = arg_tensor(L, 1);
    int64_t reps[LC_MAXDIM];
    int n = ll_check_shape(L, 2, reps);
    ll_push_tensor(L, lc_repeat(t, n, reps));
    return 1;
}

/* flip(t, dim, ...) reverses each given dim (default: the first) */
static int l_flip(lua_State *L)
{
    lc_tensor *t = arg_tensor(L, 1);
    int top = lua_gettop(L);
    if (top < 2) {
        ll_push_tensor(L, lc_flip(t, 0));
        return 1;
    }
    lua_pushvalue(L, 1);
    for (int i = 2; i <= top; i++) {
        lc_tensor *cur = ll_check_tensor(L, -1);
        ll_push_tensor(L, lc_flip(cur, ll_check_dim(L, i, t->ndim)));
        lua_remove(L, -2);
    }
    return 1;
}

static lc_dtype trailing_dtype(lua_State *L, int *nnum, lc_dtype def)
{
    int top = lua_gettop(L), i = 1;
    while (i <= top && lua_type(L, i) == LUA_TNUMBER)
        i++;
    *nnum = i - 1;
    return (lc_dtype)ll_opt_dtype(L, i, def);
}

/* arange(end) | arange(start, end) | arange(start, end, step), then an
 * optional dtype; default i64 when every argument is an integer, as torch */
static int l_arange(lua_State *L)
{
    int n;
    double a[3] = {0, 0, 1};
    int integral = 1;
    for (int i = 1; i <= 3 && lua_type(L, i) == LUA_TNUMBER; i++)
        integral = integral && lua_tonumber(L, i) == floor(lua_tonumber(L, i));
    lc_dtype dt = trailing_dtype(L, &n, integral ? LC_I64 : LC_F32);
    if (n < 1 || n > 3)
        luaL_error(L, "arange: expected (end), (start, end) or (start, end, step), then a dtype");
    if (n == 1) {
        a[1] = lua_tonumber(L, 1);
    } else {
        for (int i = 0; i < n; i++)
            a[i] = lua_tonumber(L, i + 1);
    }
    ll_push_tensor(L, lc_arange(a[0], a[1], a[2], dt));
    return 1;
}

static int l_linspace(lua_State *L)
{
    double start = luaL_checknumber(L, 1), end = luaL_checknumber(L, 2);
    lua_Number n = luaL_checknumber(L, 3);
    if (n != floor(n) || n < 0 || n > 1e12)
        luaL_argerror(L, 3, "expected a non-negative integer count");
    ll_push_tensor(L, lc_linspace(start, end, (int64_t)n, ll_opt_dtype(L, 4, LC_F32)));
    return 1;
}

/* ---- registration ---- */

static const struct {
    const char *name;
    lc_binop op;
} binops[] = {{"add", LC_ADD},         {"sub", LC_SUB},         {"mul", LC_MUL},
              {"div", LC_DIV},         {"pow", LC_POW},         {"maximum", LC_MAXIMUM},
              {"minimum", LC_MINIMUM}, {"eq", LC_EQ},           {"lt", LC_LT},
              {"gt", LC_GT},           {"le", LC_LE},           {"ge", LC_GE},
              {"ne", LC_NE}};

static const char *const unop_names[] = {
    "neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "silu", "gelu",
    "gelu_tanh", "quick_gelu", "relu", "floor", "ceil", "round", "square", "sign", "reciprocal"};

static const struct {
    const char *name;
    lc_redop op;
} redops[] = {{"sum", LC_RSUM},   {"mean", LC_RMEAN},     {"max", LC_RMAX},
              {"min", LC_RMIN},   {"var", LC_RVAR},       {"std", LC_RSTD},
              {"argmax", LC_RARGMAX}, {"argmin", LC_RARGMIN}, {"norm", LC_RNORM}};

static const luaL_Reg functions[] = {
    {"clamp", l_clamp}, {"where", l_where}, {"lerp", l_lerp}, {"matmul", l_matmul},
    {"linear", l_linear}, {"cat", l_cat}, {"stack", l_stack}, {"split", l_split},
    {"repeat_", l_repeat}, {"flip", l_flip}, {"arange", l_arange}, {"linspace", l_linspace},
    {NULL, NULL}};

static const luaL_Reg methods[] = {
    {"clamp", l_clamp}, {"clamp_", l_clamp_}, {"lerp", l_lerp}, {"matmul", l_matmul},
    {"linear", l_linear}, {"split", l_split}, {"repeat_", l_repeat}, {"flip", l_flip}, {NULL, NULL}};

/* sets t[name] = closure(fn, a, b) for the table at the top of the stack */
static void set_closure(lua_State *L, const char *name, lua_CFunction fn, int a, int b)
{
    lua_pushinteger(L, a);
    lua_pushinteger(L, b);
    lua_pushcclosure(L, fn, 2);
    lua_setfield(L, -2, name);
}

/* the op closures into the table at the top of the stack; `in_place`
 * adds the name_ variants (methods only) */
static void register_ops(lua_State *L, int in_place)
{
    char name[32];
    for (size_t i = 0; i < sizeof binops / sizeof *binops; i++) {
        set_closure(L, binops[i].name, l_binary, binops[i].op, 0);
        if (in_place && binops[i].op < LC_EQ) {
            snprintf(name, sizeof name, "%s_", binops[i].name);
            set_closure(L, name, l_binary_, binops[i].op, 0);
        }
    }
    for (int op = LC_NEG; op <= LC_RECIPROCAL; op++) {
        set_closure(L, unop_names[op], l_unary, op, 0);
        if (in_place) {
            snprintf(name, sizeof name, "%s_", unop_names[op]);
            set_closure(L, name, l_unary, op, 1);
        }
    }
    for (size_t i = 0; i < sizeof redops / sizeof *redops; i++)
        set_closure(L, redops[i].name, l_reduce, redops[i].op, 0);
}

void ll_open_ops(lua_State *L)
{
    /* lucid.core is at the top of the stack */
    register_ops(L, 0);
    ll_register(L, functions);

    lua_getfield(L, LUA_REGISTRYINDEX, LL_METHODS);
    register_ops(L, 1);
    lua_pop(L, 1);
    ll_register_methods(L, methods);

    luaL_getmetatable(L, LL_TENSOR_MT);
    static const struct {
        const char *name;
        lc_binop op;
    } mms[] = {{"__add", LC_ADD}, {"__sub", LC_SUB}, {"__mul", LC_MUL}, {"__div", LC_DIV},
               {"__pow", LC_POW}};
    for (size_t i = 0; i < sizeof mms / sizeof *mms; i++)
        set_closure(L, mms[i].name, mm_binary, mms[i].op, 0);
    lua_pushcfunction(L, mm_unm);
    lua_setfield(L, -2, "__unm");
    lua_pop(L, 1);
}
