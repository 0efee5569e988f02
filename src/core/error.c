#include "error.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LC_ERRBUF 2048

static _Thread_local char errbuf[LC_ERRBUF];
static volatile sig_atomic_t interrupt_flag;

int lc_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return LC_ERR;
}

int lc_err_prefix(const char *fmt, ...)
{
    char prefix[LC_ERRBUF], old[LC_ERRBUF];
    static _Thread_local char joined[2 * LC_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errbuf, sizeof old);
    snprintf(joined, sizeof joined, "%s%s", prefix, old);
    memcpy(errbuf, joined, sizeof errbuf - 1);
    errbuf[sizeof errbuf - 1] = 0;
    return LC_ERR;
}

const char *lc_errmsg(void)
{
    return errbuf[0] ? errbuf : "unknown error";
}

void lc_err_clear(void)
{
    errbuf[0] = 0;
}

void *lc_malloc(size_t n, const char *what)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        lc_err("out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *lc_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        lc_err("out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void lc_interrupt_request(void)
{
    interrupt_flag = 1;
}

void lc_interrupt_clear(void)
{
    interrupt_flag = 0;
}

int lc_interrupted(void)
{
    return interrupt_flag != 0;
}
