/* lucid.tokenizer(dir, opts) -> CLIP tokenizer object:
 *   tok:encode(text, max_len)  i64 tensor [1, max_len] (the model's 77 by
 *                              default), truncated keeping EOS, padded; a
 *                              list of texts gives [#texts, max_len]
 *   tok:encode_raw(text)       list of ids with BOS/EOS, no limit
 *   tok:tokens(text)           list of token strings ("cat</w>")
 *   tok:decode(ids, skip_special)  list or tensor of ids -> text
 *   tok:id(token) tok:token(id) tok:info()
 * opts.clean = "hf" (transformers, default) or "openai"; opts.max_length
 * overrides the folder's model_max_length. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../models/clip_tokenizer.h"
#include "l_common.h"

#define LL_TOKENIZER_MT "lucid.clip_tokenizer"

typedef struct {
    lc_clip_tokenizer *t;
} ll_tokenizer_ud;

static lc_clip_tokenizer *check_tok(lua_State *L, int idx)
{
    ll_tokenizer_ud *ud = luaL_checkudata(L, idx, LL_TOKENIZER_MT);
    if (!ud->t)
        luaL_argerror(L, idx, "tokenizer was freed");
    return ud->t;
}

static int l_tokenizer(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    lc_clip_clean mode = LC_CLIP_CLEAN_HF;
    int max_length = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "clean");
        if (!lua_isnil(L, -1)) {
            const char *c = luaL_checkstring(L, -1);
            if (!strcmp(c, "openai"))
                mode = LC_CLIP_CLEAN_OPENAI;
            else if (strcmp(c, "hf") != 0)
                luaL_error(L, "tokenizer: clean must be \"hf\" or \"openai\", not \"%s\"", c);
        }
        lua_pop(L, 1);
        lua_getfield(L, 2, "max_length");
        if (!lua_isnil(L, -1))
            max_length = (int)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    ll_tokenizer_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->t = NULL;
    luaL_getmetatable(L, LL_TOKENIZER_MT);
    lua_setmetatable(L, -2);
    ud->t = lc_clip_tokenizer_load(dir);
    if (!ud->t)
        ll_error(L);
    lc_clip_tokenizer_set_clean(ud->t, mode);
    if (max_length && lc_clip_tokenizer_set_max_length(ud->t, max_length) != LC_OK)
        ll_error(L);
    return 1;
}

/* tok:encode(text or {texts...}, max_len) -> i64 [1 or #texts, max_len] */
static int m_encode(lua_State *L)
{
    lc_clip_tokenizer *t = check_tok(L, 1);
    int max_len = (int)luaL_optinteger(L, 3, 0);
    if (!lua_istable(L, 2)) {
        size_t len;
        const char *text = luaL_checklstring(L, 2, &len);
        ll_push_tensor(L, lc_clip_encode_padded(t, text, len, max_len));
        return 1;
    }
    int n = (int)lua_objlen(L, 2);
    if (n < 1)
        return luaL_argerror(L, 2, "expected a non-empty list of strings");
    if (max_len <= 0)
        max_len = lc_clip_tokenizer_info(t).max_length;
    int64_t shape[2] = {n, max_len};
    ll_push_tensor(L, lc_tensor_new(LC_I64, 2, shape));
    lc_tensor *out = ll_check_tensor(L, -1);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 2, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "encode: entry %d of the list is not a string", i + 1);
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        lc_tensor *row = lc_clip_encode_padded(t, text, len, max_len);
        if (!row)
            return ll_error(L);
        memcpy((int64_t *)lc_tensor_data(out) + (size_t)i * (size_t)max_len, lc_tensor_data(row),
               sizeof(int64_t) * (size_t)max_len);
        lc_tensor_free(row);
        lua_pop(L, 1);
    }
    return 1;
}

static int m_encode_raw(lua_State *L)
{
    lc_clip_tokenizer *t = check_tok(L, 1);
    int32_t *ids;
    int n;
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    if (lc_clip_encode(t, text, len, &ids, &n) != LC_OK)
        ll_error(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
    free(ids);
    return 1;
}

static int m_tokens(lua_State *L)
{
    lc_clip_tokenizer *t = check_tok(L, 1);
    const char **toks;
    int n;
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    if (lc_clip_tokens(t, text, len, &toks, &n) != LC_OK)
        ll_error(L);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushstring(L, toks[i]);
        lua_rawseti(L, -2, i + 1);
    }
    free(toks);
    return 1;
}

static int32_t id_value(lua_State *L, double v)
{
    if (v != floor(v) || v < 0 || v > 2147483647.0)
        luaL_error(L, "decode: %f is not a token id", v);
    return (int32_t)v;
}

static int m_decode(lua_State *L)
{
    lc_clip_tokenizer *t = check_tok(L, 1);
    int skip = lua_toboolean(L, 3);
    lc_tensor *tensor = ll_test_tensor(L, 2);
    int64_t n;
    if (tensor)
        n = lc_tensor_numel(tensor);
    else if (lua_istable(L, 2))
        n = (int64_t)lua_objlen(L, 2);
    else
        return luaL_argerror(L, 2, "expected a list or tensor of token ids");
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    if (!ids)
        return luaL_error(L, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        double v;
        if (tensor) {
            v = lc_tensor_get(tensor, i);
        } else {
            lua_rawgeti(L, 2, (int)i + 1);
            if (!lua_isnumber(L, -1)) {
                free(ids);
                return luaL_error(L, "decode: entry %d is not a number", (int)i + 1);
            }
            v = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        if (v != floor(v) || v < 0 || v > 2147483647.0) {
            free(ids);
            return luaL_error(L, "decode: entry %d (%f) is not a token id", (int)i + 1, v);
        }
        ids[i] = (int32_t)v;
    }
    char *s = lc_clip_decode(t, ids, (int)n, skip);
    free(ids);
    if (!s)
        ll_error(L);
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int m_id(lua_State *L)
{
    int32_t id = lc_clip_token_id(check_tok(L, 1), luaL_checkstring(L, 2));
    if (id < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, id);
    return 1;
}

static int m_token(lua_State *L)
{
    lc_clip_tokenizer *t = check_tok(L, 1);
    const char *s = lc_clip_token_str(t, id_value(L, luaL_checknumber(L, 2)));
    if (s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
    return 1;
}

static int m_info(lua_State *L)
{
    lc_clip_info i = lc_clip_tokenizer_info(check_tok(L, 1));
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, i.bos);
    lua_setfield(L, -2, "bos");
    lua_pushinteger(L, i.eos);
    lua_setfield(L, -2, "eos");
    lua_pushinteger(L, i.pad);
    lua_setfield(L, -2, "pad");
    lua_pushinteger(L, i.unk);
    lua_setfield(L, -2, "unk");
    lua_pushinteger(L, i.max_length);
    lua_setfield(L, -2, "max_length");
    lua_pushinteger(L, i.vocab_size);
    lua_setfield(L, -2, "vocab_size");
    lua_pushinteger(L, i.n_merges);
    lua_setfield(L, -2, "merges");
    return 1;
}

static int m_gc(lua_State *L)
{
    ll_tokenizer_ud *ud = luaL_checkudata(L, 1, LL_TOKENIZER_MT);
    lc_clip_tokenizer_free(ud->t);
    ud->t = NULL;
    return 0;
}

static int m_tostring(lua_State *L)
{
    lc_clip_info i = lc_clip_tokenizer_info(check_tok(L, 1));
    lua_pushfstring(L, "lucid.tokenizer(CLIP BPE, %d tokens, max length %d)", i.vocab_size,
                    i.max_length);
    return 1;
}

void ll_open_tokenizer(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"encode", m_encode}, {"encode_raw", m_encode_raw}, {"tokens", m_tokens},
        {"decode", m_decode}, {"id", m_id},                 {"token", m_token},
        {"info", m_info},     {NULL, NULL},
    };
    static const luaL_Reg fns[] = {{"tokenizer", l_tokenizer}, {NULL, NULL}};
    luaL_newmetatable(L, LL_TOKENIZER_MT);
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
