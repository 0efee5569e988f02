/* lucid.core.sys: what the command line and the REPL need from C — version
 * strings, the thread pool size, Ctrl-C state, a tty test, file types and
 * directory listings, and a libedit line editor with history and a Lua
 * completion callback. */
#include <dirent.h>
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

#include <histedit.h>
#include <luajit.h>

#include "../core/error.h"
#include "../core/pool.h"
#include "config.h"
#include "kernels.h"
#include "l_common.h"

/* ---- versions, threads, interrupts ---- */

static int s_interrupt_clear(lua_State *L)
{
    lc_interrupt_clear();
    /* a Ctrl-C that arrived after the last Lua instruction of a line left
     * the host's hook armed; it must not fire on the next line */
    lua_sethook(L, NULL, 0, 0);
    return 0;
}

static int s_interrupted(lua_State *L)
{
    lua_pushboolean(L, lc_interrupted());
    return 1;
}

static int s_threads(lua_State *L)
{
    lua_pushinteger(L, lc_pool_threads());
    return 1;
}

static int s_set_threads(lua_State *L)
{
    lua_Number n = luaL_checknumber(L, 1);
    if (n != (int)n || n < 0 || n > 4096)
        return luaL_error(L, "threads: expected an integer in [0, 4096], got %f", n);
    if (lc_pool_init((int)n) != LC_OK)
        return ll_error(L);
    lua_pushinteger(L, lc_pool_threads());
    return 1;
}

static int s_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 0)));
    return 1;
}

static const char *type_name(mode_t m)
{
    return S_ISREG(m) ? "file" : S_ISDIR(m) ? "directory" : "other";
}

/* stat(path) -> {type = "file"|"directory"|"other", size =, mtime =} |
 * nil, message */
static int s_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_createtable(L, 0, 3);
    lua_pushstring(L, type_name(st.st_mode));
    lua_setfield(L, -2, "type");
    lua_pushnumber(L, (lua_Number)st.st_size);
    lua_setfield(L, -2, "size");
    lua_pushnumber(L, (lua_Number)st.st_mtime);
    lua_setfield(L, -2, "mtime");
    return 1;
}

/* file_type(path) -> "file" | "directory" | "other" | nil, message */
static int s_file_type(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushstring(L, type_name(st.st_mode));
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* listdir(path) -> sorted names (without . and ..) | nil, message */
static int s_listdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR *d = opendir(path);
    if (!d) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(errno));
        return 2;
    }
    size_t n = 0, cap = 16;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    while (names && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n == cap) {
            char **bigger = realloc(names, 2 * cap * sizeof *names);
            if (!bigger)
                break;
            names = bigger;
            cap *= 2;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (!names)
        return luaL_error(L, "listdir %s: out of memory", path);
    qsort(names, n, sizeof *names, cmp_str);
    /* (out of memory while pushing would leak the names; nothing else can
     * raise here) */
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return 1;
}

/* ---- the line editor ---- */

static EditLine *el;
static History *hist;
static char prompt_buf[256];
static volatile sig_atomic_t got_sigint;
static lua_State *completer_L; /* valid only inside s_readline */

#define COMPLETER_KEY "lucid.sys.completer"

static char *prompt_fn(EditLine *e)
{
    (void)e;
    return prompt_buf;
}

static void on_sigint_read(int sig)
{
    (void)sig;
    got_sigint = 1;
}

/* Our own character reader: libedit's retries a read() interrupted by a
 * signal, so Ctrl-C would need pressing twice. This one gives up at once and
 * el_gets returns with the line abandoned. */
static int getc_fn(EditLine *e, wchar_t *wc)
{
    (void)e;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    char buf[MB_LEN_MAX];
    size_t n = 0;
    for (;;) {
        if (got_sigint)
            return -1;
        ssize_t r = read(STDIN_FILENO, buf + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? 0 : -1;
        n++;
        mbstate_t tmp = st;
        size_t k = mbrtowc(wc, buf, n, &tmp);
        if (k == (size_t)-2 && n < sizeof buf)
            continue;
        if (k == (size_t)-1 || k == (size_t)-2) {
            /* not valid in this locale: pass the byte through */
            *wc = (unsigned char)buf[0];
            return 1;
        }
        if (k == 0)
            *wc = 0;
        return 1;
    }
}

static void print_columns(char **items, int n)
{
    int width = 0;
    for (int i = 0; i < n; i++) {
        int w = (int)strlen(items[i]);
        if (w > width)
            width = w;
    }
    width += 2;
    int cols = 80 / width;
    if (cols < 1)
        cols = 1;
    fputc('\n', stdout);
    for (int i = 0; i < n; i++) {
        fprintf(stdout, "%-*s", (i % cols == cols - 1 || i == n - 1) ? 0 : width, items[i]);
        if (i % cols == cols - 1 || i == n - 1)
            fputc('\n', stdout);
    }
    fflush(stdout);
}

/* Tab: asks the Lua completer for (n, {candidates}) — the last n bytes
 * before the cursor are replaced by a candidate — inserts the candidates'
 * common prefix, and lists them when that makes no progress. */
static unsigned char complete_fn(EditLine *e, int ch)
{
    (void)ch;
    lua_State *L = completer_L;
    if (!L)
        return CC_ERROR;
    const LineInfo *li = el_line(e);
    int top = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, COMPLETER_KEY);
    if (!lua_isfunction(L, -1)) {
        lua_settop(L, top);
        return CC_ERROR;
    }
    lua_pushlstring(L, li->buffer, (size_t)(li->cursor - li->buffer));
    if (lua_pcall(L, 1, 2, 0) != 0 || !lua_isnumber(L, -2) || !lua_istable(L, -1)) {
        lua_settop(L, top);
        return CC_REFRESH_BEEP;
    }
    int wordlen = (int)lua_tointeger(L, -2);
    int n = (int)lua_objlen(L, -1);
    if (n == 0 || wordlen < 0 || wordlen > li->cursor - li->buffer) {
        lua_settop(L, top);
        return CC_REFRESH_BEEP;
    }
    char **items = malloc(sizeof *items * (size_t)n);
    if (!items) {
        lua_settop(L, top);
        return CC_ERROR;
    }
    int m = 0;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *s = lua_tostring(L, -1);
        if (s)
            items[m++] = (char *)s; /* kept alive by the table on the stack */
        lua_pop(L, 1);
    }
    size_t common = m ? strlen(items[0]) : 0;
    for (int i = 1; i < m; i++) {
        size_t k = 0;
        while (k < common && items[i][k] == items[0][k])
            k++;
        common = k;
    }
    unsigned char rc = CC_REFRESH;
    if (m > 0 && common > (size_t)wordlen) {
        char *ins = malloc(common + 1);
        if (ins) {
            memcpy(ins, items[0], common);
            ins[common] = 0;
            el_deletestr(e, wordlen);
            el_insertstr(e, ins);
            free(ins);
        }
    } else if (m > 1) {
        print_columns(items, m);
        rc = CC_REDISPLAY;
    } else if (m == 0 || common <= (size_t)wordlen) {
        rc = m == 1 ? CC_REFRESH : CC_REFRESH_BEEP;
    }
    free(items);
    lua_settop(L, top);
    return rc;
}

static void editor_init(void)
{
    if (el)
        return;
    /* libedit converts between bytes and wide characters by LC_CTYPE: without
     * the user's locale, UTF-8 input (a prompt with "é") is mangled. Only
     * LC_CTYPE: LC_NUMERIC would change how Lua prints numbers. */
    setlocale(LC_CTYPE, "");
    hist = history_init();
    HistEvent ev;
    history(hist, &ev, H_SETSIZE, 2000);
    history(hist, &ev, H_SETUNIQUE, 1);
    el = el_init("lucid", stdin, stdout, stderr);
    el_set(el, EL_EDITOR, "emacs");
    el_set(el, EL_SIGNAL, 0);
    el_set(el, EL_PROMPT, prompt_fn);
    el_set(el, EL_HIST, history, hist);
    el_set(el, EL_GETCFN, getc_fn);
    el_set(el, EL_ADDFN, "lucid-complete", "complete a name or field", complete_fn);
    el_set(el, EL_BIND, "^I", "lucid-complete", NULL);
    el_source(el, NULL); /* ~/.editrc, for those who keep one */
}

/* readline(prompt) -> line (without the newline) | nil at end of input |
 * false when Ctrl-C abandoned the line */
static int s_readline(lua_State *L)
{
    const char *p = luaL_optstring(L, 1, "> ");
    snprintf(prompt_buf, sizeof prompt_buf, "%s", p);
    editor_init();

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint_read;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: read() must return */
    got_sigint = 0;
    sigaction(SIGINT, &sa, &old);
    completer_L = L;
    int count = 0;
    const char *line = el_gets(el, &count);
    completer_L = NULL;
    sigaction(SIGINT, &old, NULL);

    if (got_sigint) {
        got_sigint = 0;
        el_reset(el);
        fputc('\n', stdout);
        fflush(stdout);
        lua_pushboolean(L, 0);
        return 1;
    }
    if (!line || count <= 0) {
        lua_pushnil(L);
        return 1;
    }
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    lua_pushlstring(L, line, n);
    return 1;
}

static int s_set_completer(lua_State *L)
{
    if (!lua_isnil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, COMPLETER_KEY);
    return 0;
}

static int s_history_add(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    editor_init();
    HistEvent ev;
    if (*s)
        history(hist, &ev, H_ENTER, s);
    return 0;
}

static int s_history_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    editor_init();
    HistEvent ev;
    lua_pushboolean(L, history(hist, &ev, H_LOAD, path) >= 0);
    return 1;
}

static int s_history_save(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    editor_init();
    HistEvent ev;
    if (history(hist, &ev, H_SAVE, path) < 0)
        return luaL_error(L, "cannot write history file %s: %s", path, strerror(errno));
    lua_pushboolean(L, 1);
    return 1;
}

/* restores the terminal and frees the editor when the state closes */
static int s_editor_gc(lua_State *L)
{
    (void)L;
    if (el) {
        el_end(el);
        el = NULL;
    }
    if (hist) {
        history_end(hist);
        hist = NULL;
    }
    return 0;
}

static const luaL_Reg sys_fns[] = {
    {"interrupt_clear", s_interrupt_clear}, {"interrupted", s_interrupted},
    {"file_type", s_file_type}, {"stat", s_stat}, {"listdir", s_listdir}, {"threads", s_threads}, {"set_threads", s_set_threads}, {"isatty", s_isatty},
    {"readline", s_readline}, {"set_completer", s_set_completer},
    {"history_add", s_history_add}, {"history_load", s_history_load},
    {"history_save", s_history_save}, {NULL, NULL}};

void ll_open_sys(lua_State *L)
{
    lua_pushliteral(L, PACKAGE_VERSION);
    lua_setfield(L, -2, "version");

    lua_newtable(L);
    luaL_register(L, NULL, sys_fns);
    lua_pushliteral(L, PACKAGE_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushliteral(L, LUAJIT_VERSION);
    lua_setfield(L, -2, "luajit");
    lua_pushstring(L, lk_arch_name(lk_current_arch()));
    lua_setfield(L, -2, "arch");
#if defined(__x86_64__)
    lua_pushliteral(L, "x86_64");
#elif defined(__aarch64__)
    lua_pushliteral(L, "aarch64");
#else
    lua_pushliteral(L, "unknown");
#endif
    lua_setfield(L, -2, "machine");

    lua_newuserdata(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, s_editor_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "_editor");

    lua_setfield(L, -2, "sys");
}
