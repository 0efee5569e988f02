/* Error reporting for the core: functions return LC_OK or LC_ERR and leave a
 * message (what, which file/tensor, expected vs found) in a thread-local
 * buffer. The core never exits, aborts or raises. */
#ifndef LC_ERROR_H
#define LC_ERROR_H

#include <stddef.h>

#define LC_OK 0
#define LC_ERR (-1)

#if defined(__GNUC__)
#define LC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LC_PRINTF(a, b)
#endif

/* Sets the message and returns LC_ERR so callers can `return lc_err(...)`. */
int lc_err(const char *fmt, ...) LC_PRINTF(1, 2);
/* Prepends context ("loading x.safetensors: ") to the current message. */
int lc_err_prefix(const char *fmt, ...) LC_PRINTF(1, 2);
const char *lc_errmsg(void);
void lc_err_clear(void);

/* Out-of-memory helpers: set a message naming what was being allocated. */
void *lc_malloc(size_t n, const char *what);
void *lc_calloc(size_t n, size_t size, const char *what);

/* Cooperative interruption (Ctrl-C in the REPL): long-running C code polls
 * lc_interrupted() between chunks of work and fails with "interrupted". */
void lc_interrupt_request(void);
void lc_interrupt_clear(void);
int lc_interrupted(void);

#endif
