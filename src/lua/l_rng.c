/* Generators for Lua: lucid.generator(seed, kind) (kind "cpu" by default,
 * "philox" or "cpu-libm"; see core/rng.h) with g:randn / g:rand /
 * g:seed / g:manual_seed / g:clone / g:get_state / g:set_state, and
 * lucid.randn / lucid.rand(shape, seed_or_generator, dtype).
 *
 * Seeds are integers up to 2^53 as Lua numbers (negative ones wrap modulo
 * 2^64 as torch does) or decimal strings for the full 64-bit range. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"
#include "l_common.h"

#define LL_GENERATOR_MT "lucid.generator"

/* torch's default_rng_seed_val: lucid.randn without a seed draws from a
 * default generator that starts where a fresh torch process does. */
#define DEFAULT_SEED UINT64_C(67280421310721)

typedef struct {
    lc_generator *g;
} ll_generator_ud;

static uint64_t check_seed(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        const char *p = s;
        while (*p == ' ')
            p++;
        if (*p < '0' || *p > '9')
            luaL_error(L, "seed '%s' is not a non-negative decimal integer", s);
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno == ERANGE)
            luaL_error(L, "seed '%s' does not fit in 64 bits", s);
        if (*end != '\0')
            luaL_error(L, "seed '%s' is not a decimal integer", s);
        return (uint64_t)v;
    }
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_argerror(L, idx, "expected a seed (integer or decimal string)");
    lua_Number v = lua_tonumber(L, idx);
    if (v != floor(v) || fabs(v) > 9007199254740992.0)
        luaL_error(L, "seed %f is not an integer within +-2^53 (pass larger seeds as a decimal string)",
                   (double)v);
    if (v < 0)
        return (uint64_t)(int64_t)v; /* two's complement wrap, like torch */
    return (uint64_t)v;
}

static void push_seed(lua_State *L, uint64_t seed)
{
    /* exact as a number when it can be; otherwise a decimal string that
     * lucid.generator accepts back */
    if (seed <= (UINT64_C(1) << 53)) {
        lua_pushnumber(L, (lua_Number)seed);
    } else {
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
        lua_pushstring(L, buf);
    }
}

static void push_generator(lua_State *L, lc_generator *g)
{
    if (!g)
        ll_error(L);
    ll_generator_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->g = g;
    luaL_getmetatable(L, LL_GENERATOR_MT);
    lua_setmetatable(L, -2);
}

lc_generator *ll_check_generator(lua_State *L, int idx)
{
    ll_generator_ud *ud = luaL_checkudata(L, idx, LL_GENERATOR_MT);
    if (!ud->g)
        luaL_argerror(L, idx, "generator was freed");
    return ud->g;
}

static lc_generator *test_generator(lua_State *L, int idx)
{
    ll_generator_ud *ud = luaL_testudata(L, idx, LL_GENERATOR_MT);
    return ud ? ud->g : NULL;
}

static lc_generator *default_generator(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "lucid.default_generator");
    lc_generator *g = test_generator(L, -1);
    lua_pop(L, 1);
    if (!g) {
        push_generator(L, lc_generator_new(DEFAULT_SEED, LC_RNG_CPU));
        g = test_generator(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "lucid.default_generator");
    }
    return g;
}

static int l_generator(lua_State *L)
{
    uint64_t seed = lua_isnoneornil(L, 1) ? DEFAULT_SEED : check_seed(L, 1);
    lc_rng_kind kind = LC_RNG_CPU;
    if (!lua_isnoneornil(L, 2) && lc_rng_kind_from_name(luaL_checkstring(L, 2), &kind) != LC_OK)
        ll_error(L);
    push_generator(L, lc_generator_new(seed, kind));
    return 1;
}

/* shape as a table or as integer varargs starting at idx, then an optional
 * dtype name */
static int check_shape_dtype(lua_State *L, int idx, int64_t *shape, lc_dtype *dt)
{
    int nd = ll_check_shape(L, idx, shape);
    int didx = lua_istable(L, idx) ? idx + 1 : idx + nd;
    *dt = ll_opt_dtype(L, didx, LC_F32);
    return nd;
}

typedef lc_tensor *(*draw_fn)(lc_generator *, lc_dtype, int, const int64_t *);

static int draw_method(lua_State *L, draw_fn fn)
{
    lc_generator *g = ll_check_generator(L, 1);
    int64_t shape[LC_MAXDIM];
    lc_dtype dt;
    int nd = check_shape_dtype(L, 2, shape, &dt);
    ll_push_tensor(L, fn(g, dt, nd, shape));
    return 1;
}

static int m_randn(lua_State *L)
{
    return draw_method(L, lc_randn);
}

static int m_rand(lua_State *L)
{
    return draw_method(L, lc_rand);
}

/* lucid.randn(shape, seed_or_generator, dtype): a number or string seed
 * makes a fresh generator; nil draws from the default generator. */
static int draw_function(lua_State *L, draw_fn fn)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t shape[LC_MAXDIM];
    int nd = ll_check_shape(L, 1, shape);
    lc_dtype dt = ll_opt_dtype(L, 3, LC_F32);
    lc_generator *g = test_generator(L, 2);
    if (g) {
        ll_push_tensor(L, fn(g, dt, nd, shape));
        return 1;
    }
    if (lua_isnoneornil(L, 2)) {
        ll_push_tensor(L, fn(default_generator(L), dt, nd, shape));
        return 1;
    }
    lc_generator *fresh = lc_generator_new(check_seed(L, 2), LC_RNG_CPU);
    if (!fresh)
        ll_error(L);
    lc_tensor *t = fn(fresh, dt, nd, shape);
    lc_generator_free(fresh);
    ll_push_tensor(L, t);
    return 1;
}

static int l_randn(lua_State *L)
{
    return draw_function(L, lc_randn);
}

static int l_rand(lua_State *L)
{
    return draw_function(L, lc_rand);
}

static int l_manual_seed(lua_State *L)
{
    lc_generator_manual_seed(default_generator(L), check_seed(L, 1));
    return 0;
}

static int l_is_generator(lua_State *L)
{
    lua_pushboolean(L, test_generator(L, 1) != NULL);
    return 1;
}

static int m_seed(lua_State *L)
{
    push_seed(L, lc_generator_seed(ll_check_generator(L, 1)));
    return 1;
}

static int m_manual_seed(lua_State *L)
{
    lc_generator_manual_seed(ll_check_generator(L, 1), check_seed(L, 2));
    lua_settop(L, 1);
    return 1;
}

static int m_kind(lua_State *L)
{
    lua_pushstring(L, lc_rng_kind_name(lc_generator_kind(ll_check_generator(L, 1))));
    return 1;
}

static int m_clone(lua_State *L)
{
    push_generator(L, lc_generator_clone(ll_check_generator(L, 1)));
    return 1;
}

static int m_get_state(lua_State *L)
{
    ll_push_tensor(L, lc_generator_get_state(ll_check_generator(L, 1)));
    return 1;
}

static int m_set_state(lua_State *L)
{
    lc_generator *g = ll_check_generator(L, 1);
    if (lc_generator_set_state(g, ll_check_tensor(L, 2)) != LC_OK)
        ll_error(L);
    lua_settop(L, 1);
    return 1;
}

static int m_gc(lua_State *L)
{
    ll_generator_ud *ud = luaL_checkudata(L, 1, LL_GENERATOR_MT);
    lc_generator_free(ud->g);
    ud->g = NULL;
    return 0;
}

static int m_tostring(lua_State *L)
{
    lc_generator *g = ll_check_generator(L, 1);
    lua_pushfstring(L, "lucid.generator(%s, seed ", lc_rng_kind_name(lc_generator_kind(g)));
    push_seed(L, lc_generator_seed(g));
    lua_pushstring(L, ")");
    lua_concat(L, 3);
    return 1;
}

void ll_open_rng(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"randn", m_randn},         {"rand", m_rand},
        {"seed", m_seed},           {"initial_seed", m_seed},
        {"manual_seed", m_manual_seed}, {"kind", m_kind},
        {"clone", m_clone},         {"get_state", m_get_state},
        {"set_state", m_set_state}, {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"generator", l_generator}, {"randn", l_randn},
        {"rand", l_rand},           {"manual_seed", l_manual_seed},
        {"is_generator", l_is_generator}, {NULL, NULL},
    };
    luaL_newmetatable(L, LL_GENERATOR_MT);
    lua_newtable(L);
    for (const luaL_Reg *m = methods; m->name; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    ll_register(L, fns);
}
