/* lucid.json: decode/encode through cJSON, for configs, manifests and
 * provenance records. JSON null decodes to lucid.json.null (a sentinel) so
 * that keys with null values survive a round trip; arrays become 1-based
 * Lua lists. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "l_common.h"

#define LL_JSON_MAXDEPTH 200

static char null_sentinel;

static void push_json(lua_State *L, const cJSON *j, int depth)
{
    if (depth > LL_JSON_MAXDEPTH)
        luaL_error(L, "json: nested deeper than %d levels", LL_JSON_MAXDEPTH);
    luaL_checkstack(L, 4, "json");
    if (cJSON_IsNull(j)) {
        lua_pushlightuserdata(L, &null_sentinel);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else if (cJSON_IsNumber(j)) {
        lua_pushnumber(L, j->valuedouble);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring);
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        int i = 1;
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c, depth + 1);
            lua_rawseti(L, -2, i++);
        }
    } else if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) {
            push_json(L, c, depth + 1);
            lua_setfield(L, -2, c->string ? c->string : "");
        }
    } else {
        lua_pushnil(L);
    }
}

static int json_depth(const cJSON *j)
{
    int d = 0;
    for (const cJSON *c = j->child; c; c = c->next) {
        int cd = json_depth(c);
        if (cd > d)
            d = cd;
    }
    return d + 1;
}

/* lucid.json.decode(text) -> value; errors name the position */
static int l_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *end = NULL;
    /* Python's json (diffusers configs, golden files) writes Infinity,
     * -Infinity and NaN, which cJSON rejects: rewrite them outside strings
     * as 1e999 (strtod gives inf) and null */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int in_str = 0, changed = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\' && i + 1 < len) {
                luaL_addchar(&b, c);
                c = s[++i];
            } else if (c == '"') {
                in_str = 0;
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c == 'I' && len - i >= 8 && !memcmp(s + i, "Infinity", 8)) {
            luaL_addstring(&b, "1e999");
            i += 7;
            changed = 1;
            continue;
        } else if (c == 'N' && len - i >= 3 && !memcmp(s + i, "NaN", 3)) {
            luaL_addstring(&b, "null");
            i += 2;
            changed = 1;
            continue;
        }
        luaL_addchar(&b, c);
    }
    luaL_pushresult(&b);
    if (changed)
        s = lua_tolstring(L, -1, &len);
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!j) {
        const char *where = cJSON_GetErrorPtr();
        size_t off = where && where >= s && where <= s + len ? (size_t)(where - s) : 0;
        return luaL_error(L, "json: parse error at byte %d", (int)off);
    }
    /* cJSON stops after the first value; "{}x" or two documents glued
     * together are not JSON and usually mean a damaged file */
    while (end && end < s + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (end && end < s + len) {
        size_t off = (size_t)(end - s);
        cJSON_Delete(j);
        return luaL_error(L, "json: parse error at byte %d (unexpected text after the JSON value)",
                          (int)off);
    }
    /* a too-deep document is refused before building anything, so
     * push_json cannot raise with the tree still allocated */
    if (json_depth(j) > LL_JSON_MAXDEPTH) {
        cJSON_Delete(j);
        return luaL_error(L, "json: nested deeper than %d levels", LL_JSON_MAXDEPTH);
    }
    push_json(L, j, 0);
    cJSON_Delete(j);
    return 1;
}

static int is_array(lua_State *L, int idx, int *n)
{
    int count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            return 0;
        }
        double k = lua_tonumber(L, -1);
        if (k < 1 || k != floor(k)) {
            lua_pop(L, 1);
            return 0;
        }
        if (k > max)
            max = (int)k;
        count++;
    }
    *n = max;
    return count == max;
}

static cJSON *to_json(lua_State *L, int idx, int depth)
{
    if (depth > LL_JSON_MAXDEPTH)
        return NULL;
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return cJSON_CreateNull();
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, idx) == &null_sentinel ? cJSON_CreateNull() : NULL;
    case LUA_TBOOLEAN:
        return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
        double v = lua_tonumber(L, idx);
        if (!isfinite(v))
            return NULL;
        return cJSON_CreateNumber(v);
    }
    case LUA_TSTRING:
        return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE: {
        int n;
        luaL_checkstack(L, 4, "json");
        if (is_array(L, idx, &n) && (n > 0 || lua_objlen(L, idx) == 0)) {
            /* an empty table encodes as an object unless marked */
            cJSON *a = n > 0 ? cJSON_CreateArray() : cJSON_CreateObject();
            for (int i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, i);
                cJSON *c = to_json(L, -1, depth + 1);
                lua_pop(L, 1);
                if (!c) {
                    cJSON_Delete(a);
                    return NULL;
                }
                cJSON_AddItemToArray(a, c);
            }
            return a;
        }
        cJSON *o = cJSON_CreateObject();
        /* sorted keys: the same table always encodes to the same bytes */
        lua_newtable(L);
        int keys = lua_gettop(L), nk = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
                lua_pop(L, 2);
                cJSON_Delete(o);
                return NULL;
            }
            lua_pushvalue(L, -1);
            lua_tostring(L, -1);
            lua_rawseti(L, keys, ++nk);
        }
        lua_getglobal(L, "table");
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, keys);
        lua_call(L, 1, 0);
        lua_pop(L, 1);
        for (int i = 1; i <= nk; i++) {
            lua_rawgeti(L, keys, i);
            const char *k = lua_tostring(L, -1);
            lua_getfield(L, idx, k);
            if (lua_isnil(L, -1)) { /* numeric key stored as string */
                lua_pop(L, 1);
                lua_pushnumber(L, lua_tonumber(L, -1));
                lua_gettable(L, idx);
            }
            cJSON *c = to_json(L, -1, depth + 1);
            if (!c) {
                lua_pop(L, 3);
                cJSON_Delete(o);
                return NULL;
            }
            cJSON_AddItemToObject(o, k, c);
            lua_pop(L, 2);
        }
        lua_pop(L, 1);
        return o;
    }
    default:
        return NULL;
    }
}

/* lucid.json.encode(value, pretty) -> text */
static int l_encode(lua_State *L)
{
    lua_settop(L, 2);
    int pretty = lua_toboolean(L, 2);
    cJSON *j = to_json(L, 1, 0);
    if (!j)
        return luaL_error(L, "json: cannot encode (a function, userdata, NaN/inf, a "
                             "non-string key or nesting deeper than %d)",
                          LL_JSON_MAXDEPTH);
    char *s = pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        return luaL_error(L, "json: out of memory");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

void ll_open_json(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushlightuserdata(L, &null_sentinel);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");
}
