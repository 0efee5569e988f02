/* The lucid program: a LuaJIT host. Everything after start-up is Lua
 * (lua/lucid/cli.lua); C sets up the pool, the module paths, the Ctrl-C
 * hook, and runs the CLI under a protected call with a traceback. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "core/error.h"
#include "core/pool.h"
#include "lua/host.h"
#include "lua/l_common.h"

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The build tree runs from the sources' lua/ and recipes/; an installed
 * binary from the data directory chosen at configure time. LUCID_HOME
 * overrides both (a relocated install). */
static void find_home(char *out, size_t n)
{
    const char *env = getenv("LUCID_HOME");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = 0;
        char real_build[PATH_MAX];
        if (realpath(LUCID_BUILDDIR, real_build) && !strcmp(real_build, exe)) {
            snprintf(out, n, "%s", LUCID_SRCDIR);
            return;
        }
    }
    snprintf(out, n, "%s", LUCID_DATADIR);
    if (!is_dir(out))
        snprintf(out, n, "%s", LUCID_SRCDIR);
}

int main(int argc, char **argv)
{
    char home[PATH_MAX];
    find_home(home, sizeof home);

    /* --threads N anywhere on the line sizes the pool before anything runs;
     * the CLI also sees it and records it */
    int threads = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
    if (lc_pool_init(threads) != LC_OK) {
        fprintf(stderr, "lucid: %s\n", lc_errmsg());
        return 1;
    }
    int rc = lucid_host_main(home, argc, argv);
    lc_pool_shutdown();
    return rc;
}
