/* File bindings: the tables lucid.safetensors, lucid.image and lucid.audio
 * (registered as sub-tables of lucid.core; lua/lucid/init.lua copies them).
 *
 *   safetensors.load(path) -> {name = tensor}, metadata      (tensors map the file)
 *   safetensors.save(path, {name = tensor}, metadata)
 *   safetensors.open(path) -> f;  f:keys() f:get(name) f:info(name) f:has(name)
 *                                 f:metadata() f:path() f:close()  #f
 *   image.load(path) -> [1,3,H,W] f32 in [0,1]
 *   image.save(t, path, text)     image.read_text(path) -> {key = value}
 *   audio.load(path, sample_rate, mono) -> [channels, samples], rate
 *   audio.save(t, path, sample_rate, metadata, {encoding = "pcm16"|"pcm24"|"float"})
 *   audio.info(path) -> {sample_rate, channels, frames, duration, format, subtype, metadata}
 *   audio.resample(t, from_rate, to_rate)
 *
 * String tables passed to C are copied into an anchor table on the stack
 * first, so every const char * stays alive until the call returns, and
 * pointer arrays are userdata, so a Lua error leaks nothing. */
#include <stdlib.h>
#include <string.h>

#include "core/audio.h"
#include "core/image.h"
#include "core/safetensors.h"
#include "l_common.h"

#define ST_MT "lucid.safetensors_file"

/* ---- string maps ---- */

typedef struct {
    int n;
    const char **keys, **vals;
} strmap;

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reads a {string = string|number|boolean} table at idx (nil: empty) into
 * key/value arrays sorted by key (so files do not depend on table order).
 * Pushes one anchor table that keeps the strings and arrays alive. */
static strmap check_strmap(lua_State *L, int idx, const char *what)
{
    strmap m = {0, NULL, NULL};
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    /* test before pushing: an absent argument's index may be the anchor's */
    int absent = lua_isnoneornil(L, idx);
    lua_newtable(L);
    int anchor = lua_gettop(L);
    if (absent)
        return m;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: expected a table of strings, got a %s", what, luaL_typename(L, idx));
    int n = 0;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1))
        n++;
    const char **p = lua_newuserdata(L, (size_t)(4 * n + 1) * sizeof *p);
    lua_setfield(L, anchor, "ptrs");
    int i = 0;
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: keys must be strings (found a %s key)", what,
                       luaL_typename(L, -2));
        int t = lua_type(L, -1);
        if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
            luaL_error(L, "%s: value of '%s' must be a string (got a %s)", what,
                       lua_tostring(L, -2), luaL_typename(L, -1));
        lua_pushvalue(L, -2);
        p[2 * i] = lua_tostring(L, -1);
        lua_rawseti(L, anchor, 2 * i + 1);
        if (t == LUA_TBOOLEAN)
            lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
        else
            lua_pushvalue(L, -1);
        p[2 * i + 1] = lua_tostring(L, -1); /* converts the copy, never the key */
        lua_rawseti(L, anchor, 2 * i + 2);
        i++;
    }
    qsort(p, (size_t)n, 2 * sizeof *p, cmp_key);
    m.n = n;
    m.keys = p + 2 * n;
    m.vals = p + 3 * n;
    for (int k = 0; k < n; k++) {
        m.keys[k] = p[2 * k];
        m.vals[k] = p[2 * k + 1];
    }
    return m;
}

static void push_strmap(lua_State *L, int n, char **keys, char **vals)
{
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, vals[i]);
        lua_setfield(L, -2, keys[i]);
    }
}

/* ---- safetensors ---- */

typedef struct {
    lc_st_file *f;
} st_ud;

static lc_st_file *check_st(lua_State *L, int idx)
{
    st_ud *u = luaL_checkudata(L, idx, ST_MT);
    if (!u->f)
        luaL_argerror(L, idx, "safetensors file was closed");
    return u->f;
}

static void push_st_metadata(lua_State *L, lc_st_file *f)
{
    int n = lc_st_metadata_count(f);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        const char *k = lc_st_metadata_key(f, i);
        lua_pushstring(L, lc_st_metadata(f, k));
        lua_setfield(L, -2, k);
    }
}

static int st_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    st_ud *u = lua_newuserdata(L, sizeof *u);
    u->f = NULL;
    luaL_getmetatable(L, ST_MT);
    lua_setmetatable(L, -2);
    if (!(u->f = lc_st_open(path)))
        return ll_error(L);
    return 1;
}

static int st_load(lua_State *L)
{
    st_open(L); /* userdata at the top: closed by the GC if a get fails */
    lc_st_file *f = check_st(L, -1);
    int ud = lua_gettop(L);
    int n = lc_st_count(f);
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
        ll_push_tensor(L, lc_st_get_index(f, i));
        lua_setfield(L, -2, lc_st_name(f, i));
    }
    push_st_metadata(L, f);
    st_ud *u = lua_touserdata(L, ud);
    lc_st_close(u->f); /* tensors keep the mapping */
    u->f = NULL;
    return 2;
}

static int st_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    strmap meta = check_strmap(L, 3, "safetensors.save metadata");
    int n = 0;
    for (lua_pushnil(L); lua_next(L, 2); lua_pop(L, 1)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "safetensors.save: tensor names must be strings (found a %s "
                                 "key)", luaL_typename(L, -2));
        if (!ll_test_tensor(L, -1))
            return luaL_error(L, "safetensors.save: '%s' is a %s, not a tensor",
                              lua_tostring(L, -2), luaL_typename(L, -1));
        n++;
    }
    const char **names = lua_newuserdata(L, (size_t)(n + 1) * sizeof *names);
    lc_tensor **ts = lua_newuserdata(L, (size_t)(n + 1) * sizeof *ts);
    int i = 0;
    /* keys are strings of the table at 2, which stays on the stack */
    for (lua_pushnil(L); lua_next(L, 2); lua_pop(L, 1)) {
        names[i] = lua_tostring(L, -2);
        ts[i] = ll_check_tensor(L, -1);
        i++;
    }
    if (lc_st_save(path, n, names, ts, meta.n, meta.keys, meta.vals) != LC_OK)
        return ll_error(L);
    return 0;
}

static int stm_keys(lua_State *L)
{
    lc_st_file *f = check_st(L, 1);
    int n = lc_st_count(f);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, lc_st_name(f, i));
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int stm_get(lua_State *L)
{
    lc_st_file *f = check_st(L, 1);
    ll_push_tensor(L, lc_st_get(f, luaL_checkstring(L, 2)));
    return 1;
}

static int stm_has(lua_State *L)
{
    lua_pushboolean(L, lc_st_find(check_st(L, 1), luaL_checkstring(L, 2)) >= 0);
    return 1;
}

static int stm_info(lua_State *L)
{
    lc_st_file *f = check_st(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int i = lc_st_find(f, name);
    if (i < 0)
        return luaL_error(L, "%s: no tensor named '%s'", lc_st_path(f), name);
    lc_dtype dt;
    int nd;
    int64_t shape[LC_MAXDIM];
    lc_st_info(f, i, &dt, &nd, shape);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, lc_dtype_name(dt));
    lua_setfield(L, -2, "dtype");
    ll_push_shape(L, nd, shape);
    lua_setfield(L, -2, "shape");
    int64_t numel = 1;
    for (int d = 0; d < nd; d++)
        numel *= shape[d];
    lua_pushnumber(L, (lua_Number)numel * (lua_Number)lc_dtype_size(dt));
    lua_setfield(L, -2, "nbytes");
    return 1;
}

static int stm_metadata(lua_State *L)
{
    push_st_metadata(L, check_st(L, 1));
    return 1;
}

static int stm_path(lua_State *L)
{
    lua_pushstring(L, lc_st_path(check_st(L, 1)));
    return 1;
}

static int stm_len(lua_State *L)
{
    lua_pushinteger(L, lc_st_count(check_st(L, 1)));
    return 1;
}

static int stm_close(lua_State *L)
{
    st_ud *u = luaL_checkudata(L, 1, ST_MT);
    lc_st_close(u->f);
    u->f = NULL;
    return 0;
}

static int stm_tostring(lua_State *L)
{
    st_ud *u = luaL_checkudata(L, 1, ST_MT);
    if (!u->f)
        lua_pushliteral(L, "safetensors file (closed)");
    else
        lua_pushfstring(L, "safetensors file %s (%d tensors)", lc_st_path(u->f),
                        lc_st_count(u->f));
    return 1;
}

/* ---- images ---- */

static int img_load(lua_State *L)
{
    ll_push_tensor(L, lc_image_load(luaL_checkstring(L, 1)));
    return 1;
}

static int img_save(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    const char *path = luaL_checkstring(L, 2);
    strmap m = check_strmap(L, 3, "image.save text");
    if (lc_image_save(t, path, m.keys, m.vals, m.n) != LC_OK)
        return ll_error(L);
    return 0;
}

static int img_read_text(lua_State *L)
{
    char **k, **v;
    int n;
    if (lc_image_read_text(luaL_checkstring(L, 1), &k, &v, &n) != LC_OK)
        return ll_error(L);
    /* lua_setfield can raise only on out-of-memory; accept that leak */
    push_strmap(L, n, k, v);
    lc_image_text_free(k, v, n);
    return 1;
}

/* ---- audio ---- */

static int check_rate(lua_State *L, int idx, int allow_nil)
{
    if (allow_nil && lua_isnoneornil(L, idx))
        return 0;
    lua_Number r = luaL_checknumber(L, idx);
    if (!(r >= 1 && r <= LC_AUDIO_MAX_RATE) || r != (lua_Number)(int)r)
        return luaL_error(L, "sample rate %f Hz is not an integer from 1 to %d", (double)r,
                          LC_AUDIO_MAX_RATE);
    return (int)r;
}

static int au_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int rate = check_rate(L, 2, 1);
    int mono = 0;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "mono");
        mono = lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else {
        mono = lua_toboolean(L, 3);
    }
    int got = 0;
    ll_push_tensor(L, lc_audio_load(path, rate, mono, &got));
    lua_pushinteger(L, got);
    return 2;
}

static int au_save(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    const char *path = luaL_checkstring(L, 2);
    int rate = check_rate(L, 3, 0);
    strmap m = check_strmap(L, 4, "audio.save metadata");
    lc_audio_encoding enc = LC_AUDIO_PCM16;
    if (lua_istable(L, 5)) {
        lua_getfield(L, 5, "encoding");
        const char *e = lua_tostring(L, -1);
        if (!e || !strcmp(e, "pcm16"))
            enc = LC_AUDIO_PCM16;
        else if (!strcmp(e, "pcm24"))
            enc = LC_AUDIO_PCM24;
        else if (!strcmp(e, "float"))
            enc = LC_AUDIO_FLOAT;
        else
            return luaL_error(L, "audio.save: unknown encoding '%s' (pcm16, pcm24 or float)", e);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 5)) {
        return luaL_argerror(L, 5, "expected an options table");
    }
    if (lc_audio_save(t, path, rate, enc, m.n, m.keys, m.vals) != LC_OK)
        return ll_error(L);
    return 0;
}

static int au_info(lua_State *L)
{
    lc_audio_info info;
    if (lc_audio_info_read(luaL_checkstring(L, 1), &info) != LC_OK)
        return ll_error(L);
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, info.sample_rate);
    lua_setfield(L, -2, "sample_rate");
    lua_pushinteger(L, info.channels);
    lua_setfield(L, -2, "channels");
    lua_pushnumber(L, (lua_Number)info.frames);
    lua_setfield(L, -2, "frames");
    lua_pushnumber(L, (lua_Number)info.frames / info.sample_rate);
    lua_setfield(L, -2, "duration");
    lua_pushstring(L, info.format);
    lua_setfield(L, -2, "format");
    lua_pushstring(L, info.subtype);
    lua_setfield(L, -2, "subtype");
    lua_createtable(L, 0, info.nmeta);
    for (int i = 0; i < info.nmeta; i++) {
        lua_pushstring(L, info.meta_val[i]);
        lua_setfield(L, -2, info.meta_key[i]);
    }
    lua_setfield(L, -2, "metadata");
    lc_audio_info_clear(&info);
    return 1;
}

static int au_resample(lua_State *L)
{
    lc_tensor *t = ll_check_tensor(L, 1);
    int from = check_rate(L, 2, 0), to = check_rate(L, 3, 0);
    ll_push_tensor(L, lc_audio_resample(t, from, to));
    return 1;
}

/* ---- registration ---- */

static const luaL_Reg st_fns[] = {
    {"load", st_load}, {"save", st_save}, {"open", st_open}, {NULL, NULL}};
static const luaL_Reg st_methods[] = {
    {"keys", stm_keys}, {"get", stm_get}, {"has", stm_has}, {"info", stm_info},
    {"metadata", stm_metadata}, {"path", stm_path}, {"close", stm_close}, {NULL, NULL}};
static const luaL_Reg img_fns[] = {
    {"load", img_load}, {"save", img_save}, {"read_text", img_read_text}, {NULL, NULL}};
static const luaL_Reg au_fns[] = {
    {"load", au_load}, {"save", au_save}, {"info", au_info}, {"resample", au_resample},
    {NULL, NULL}};

static void sub_table(lua_State *L, const char *name, const luaL_Reg *fns)
{
    lua_newtable(L);
    ll_register(L, fns);
    lua_setfield(L, -2, name);
}

void ll_open_files(lua_State *L)
{
    luaL_newmetatable(L, ST_MT);
    lua_newtable(L);
    ll_register(L, st_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, stm_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, stm_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, stm_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    sub_table(L, "safetensors", st_fns);
    sub_table(L, "image", img_fns);
    sub_table(L, "audio", au_fns);
}
