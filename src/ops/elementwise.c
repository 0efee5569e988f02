/* Elementwise ops: binary with broadcasting, unary, where, lerp, clamp.
 *
 * One engine runs them all. Operands are expanded to the output shape,
 * dimensions that can be walked as one are merged, and the flat output
 * range is cut into chunks for the pool. Inside a chunk, rows of the
 * innermost dimension are processed in blocks of BLK elements: each input
 * block is used in place when it already has the compute type and unit
 * stride (the common contiguous f32 case), otherwise it is gathered and
 * converted into a stack buffer; the op runs as a tight loop over the block
 * with the op switch outside the loop; the result goes straight to the
 * output or is converted and scattered.
 *
 * Compute happens in one of three domains: f32 (f32, f16, bf16 results),
 * f64, or i64 (integer results). Results do not depend on the chunking, so
 * they are the same for any thread count.
 *
 * The block loops are written to vectorize: GCC's -O2 cost model declines
 * almost all of them, and -ftrapping-math blocks if-conversion of the
 * selects, so both are relaxed for this file (neither changes a value).
 * exp and erf have branch-free versions below for the same reason. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic", "no-trapping-math")
#endif
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/pool.h"
#include "ops.h"
#include "ops/prof.h"

#define BLK 512

/* The f32 compute loops also get an AVX2+FMA clone picked at load time by
 * the CPU (GCC's target_clones): 4x wider than the x86-64 baseline, and
 * what makes exp/GELU/SiLU cheap. Results are still the same for any
 * thread count; they may differ in the last bit between CPUs with and
 * without FMA. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define EW_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EW_CLONES
#endif

enum { DOM_F32, DOM_F64, DOM_I64 };
enum { K_UNARY, K_BINARY, K_WHERE, K_LERP, K_CLAMP, K_ADDSCALED };

typedef struct {
    int kind, op, dom;
    double p0, p1;
    int nin; /* operands 1..nin are inputs, 0 is the output */
    int nd;
    int64_t shape[LC_MAXDIM];
    int64_t stride[4][LC_MAXDIM];
    char *base[4];
    lc_dtype dt[4];
    size_t esz[4];
} ew_job;

static const char *binop_names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                    "eq", "lt", "gt", "le", "ge", "ne"};
static const char *unop_names[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "sin",
                                   "cos", "tanh", "sigmoid", "silu", "gelu", "gelu_tanh",
                                   "quick_gelu", "relu", "floor", "ceil", "round", "square",
                                   "sign", "reciprocal"};

static int is_cmp(lc_binop op)
{
    return op >= LC_EQ;
}

/* ---- dtype rules ---- */

static int float_rank(lc_dtype d)
{
    switch (d) {
    case LC_F64: return 3;
    case LC_F32: return 2;
    case LC_F16:
    case LC_BF16: return 1;
    default: return 0;
    }
}

static int int_rank(lc_dtype d)
{
    return d == LC_I64 ? 3 : d == LC_I32 ? 2 : 1;
}

/* The wider of two dtypes of the same category. */
static lc_dtype wider(lc_dtype a, lc_dtype b)
{
    if (a == b)
        return a;
    int fa = lc_dtype_is_float(a), fb = lc_dtype_is_float(b);
    if (fa && fb) {
        int ra = float_rank(a), rb = float_rank(b);
        if (ra == 1 && rb == 1)
            return LC_F32; /* f16 with bf16: neither holds the other */
        return ra > rb ? a : b;
    }
    if (fa || fb)
        return fa ? a : b;
    return int_rank(a) >= int_rank(b) ? a : b;
}

/* Result dtype of a op b. As torch, a 0-d operand does not widen a
 * dimensioned one of the same category, so `x / x:std()` keeps x's dtype. */
static lc_dtype promote(lc_binop op, const lc_tensor *a, const lc_tensor *b)
{
    lc_dtype r;
    int fa = lc_dtype_is_float(a->dtype), fb = lc_dtype_is_float(b->dtype);
    if ((a->ndim == 0) != (b->ndim == 0) && fa == fb)
        r = a->ndim ? a->dtype : b->dtype;
    else
        r = wider(a->dtype, b->dtype);
    if (!lc_dtype_is_float(r) && (op == LC_DIV || op == LC_POW))
        r = LC_F32;
    return r;
}

static lc_dtype promote_scalar(lc_binop op, lc_dtype a, double s)
{
    if (lc_dtype_is_float(a))
        return a;
    if (op == LC_DIV || op == LC_POW || s != floor(s) || !isfinite(s))
        return LC_F32;
    return a;
}

static int domain_of(lc_dtype d)
{
    return d == LC_F64 ? DOM_F64 : lc_dtype_is_float(d) ? DOM_F32 : DOM_I64;
}

static int unop_keeps_int(lc_unop op)
{
    switch (op) {
    case LC_NEG: case LC_ABS: case LC_RELU: case LC_FLOOR: case LC_CEIL: case LC_ROUND:
    case LC_SQUARE: case LC_SIGN:
        return 1;
    default:
        return 0;
    }
}

/* ---- broadcasting ---- */

static int broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                           int64_t *out)
{
    int n = na > nb ? na : nb;
    int64_t r[LC_MAXDIM]; /* out may alias sa or sb */
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nb);
        int64_t x = ia >= 0 ? sa[ia] : 1, y = ib >= 0 ? sb[ib] : 1;
        if (x != y && x != 1 && y != 1)
            return LC_ERR;
        r[i] = x == 1 ? y : x;
    }
    memcpy(out, r, sizeof(int64_t) * (size_t)n);
    *nout = n;
    return LC_OK;
}

/* ---- loads and stores between storage dtypes and compute buffers ---- */

/* unit stride gets its own loop so it vectorizes */
#define LOAD_LOOP(T, expr)                                                                    \
    do {                                                                                      \
        const T *p = (const T *)src;                                                          \
        if (s == 1)                                                                           \
            for (int64_t i = 0; i < n; i++)                                                   \
                dst[i] = expr(p[i]);                                                          \
        else                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                   \
                dst[i] = expr(p[i * s]);                                                      \
    } while (0)
#define AS_IS(v) (v)

static void load_f32(float *dst, const char *src, lc_dtype dt, int64_t s, int64_t n)
{
    switch (dt) {
    case LC_F32: LOAD_LOOP(float, AS_IS); break;
    case LC_F16: LOAD_LOOP(uint16_t, lc_f16_to_f32); break;
    case LC_BF16: LOAD_LOOP(uint16_t, lc_bf16_to_f32); break;
    case LC_I32: LOAD_LOOP(int32_t, (float)); break;
    case LC_I64: LOAD_LOOP(int64_t, (float)); break;
    case LC_U8: LOAD_LOOP(uint8_t, (float)); break;
    case LC_F64: LOAD_LOOP(double, (float)); break;
    default: break;
    }
}

static void load_f64(double *dst, const char *src, lc_dtype dt, int64_t s, int64_t n)
{
    switch (dt) {
    case LC_F32: LOAD_LOOP(float, (double)); break;
    case LC_F16: LOAD_LOOP(uint16_t, (double)lc_f16_to_f32); break;
    case LC_BF16: LOAD_LOOP(uint16_t, (double)lc_bf16_to_f32); break;
    case LC_I32: LOAD_LOOP(int32_t, (double)); break;
    case LC_I64: LOAD_LOOP(int64_t, (double)); break;
    case LC_U8: LOAD_LOOP(uint8_t, (double)); break;
    case LC_F64: LOAD_LOOP(double, AS_IS); break;
    default: break;
    }
}

/* float to integer without undefined behaviour: NaN gives 0, out of range
 * saturates */
static int64_t sat_i64(double v)
{
    if (!(v == v))
        return 0;
    if (v >= 9.2233720368547758e18)
        return INT64_MAX;
    if (v <= -9.2233720368547758e18)
        return INT64_MIN;
    return (int64_t)v;
}

static int64_t sat_i64_of(double v) { return sat_i64(v); }

static void load_i64(int64_t *dst, const char *src, lc_dtype dt, int64_t s, int64_t n)
{
    switch (dt) {
    case LC_F32: LOAD_LOOP(float, sat_i64_of); break;
    case LC_F16: LOAD_LOOP(uint16_t, (int64_t)lc_f16_to_f32); break;
    case LC_BF16: LOAD_LOOP(uint16_t, (int64_t)lc_bf16_to_f32); break;
    case LC_I32: LOAD_LOOP(int32_t, (int64_t)); break;
    case LC_I64: LOAD_LOOP(int64_t, AS_IS); break;
    case LC_U8: LOAD_LOOP(uint8_t, (int64_t)); break;
    case LC_F64: LOAD_LOOP(double, sat_i64_of); break;
    default: break;
    }
}

#define STORE_LOOP(T, expr)                                                                   \
    do {                                                                                      \
        T *p = (T *)dst;                                                                      \
        if (s == 1)                                                                           \
            for (int64_t i = 0; i < n; i++)                                                   \
                p[i] = expr(src[i]);                                                          \
        else                                                                                  \
            for (int64_t i = 0; i < n; i++)                                                   \
                p[i * s] = expr(src[i]);                                                      \
    } while (0)

static int32_t sat_i32(double v)
{
    if (!(v == v))
        return 0;
    return v >= 2147483647.0 ? INT32_MAX : v <= -2147483648.0 ? INT32_MIN : (int32_t)v;
}

static uint8_t sat_u8(double v)
{
    return (uint8_t)(v > 0 ? (v < 255 ? v : 255) : 0);
}

static uint16_t f64_to_f16(double v) { return lc_f32_to_f16((float)v); }
static uint16_t f64_to_bf16(double v) { return lc_f32_to_bf16((float)v); }

static void store_f32(char *dst, lc_dtype dt, int64_t s, const float *src, int64_t n)
{
    switch (dt) {
    case LC_F32: STORE_LOOP(float, AS_IS); break;
    case LC_F16: STORE_LOOP(uint16_t, lc_f32_to_f16); break;
    case LC_BF16: STORE_LOOP(uint16_t, lc_f32_to_bf16); break;
    case LC_I32: STORE_LOOP(int32_t, sat_i32); break;
    case LC_I64: STORE_LOOP(int64_t, sat_i64); break;
    case LC_U8: STORE_LOOP(uint8_t, sat_u8); break;
    case LC_F64: STORE_LOOP(double, (double)); break;
    default: break;
    }
}

static void store_f64(char *dst, lc_dtype dt, int64_t s, const double *src, int64_t n)
{
    switch (dt) {
    case LC_F32: STORE_LOOP(float, (float)); break;
    case LC_F16: STORE_LOOP(uint16_t, f64_to_f16); break;
    case LC_BF16: STORE_LOOP(uint16_t, f64_to_bf16); break;
    case LC_I32: STORE_LOOP(int32_t, sat_i32); break;
    case LC_I64: STORE_LOOP(int64_t, sat_i64); break;
    case LC_U8: STORE_LOOP(uint8_t, sat_u8); break;
    case LC_F64: STORE_LOOP(double, AS_IS); break;
    default: break;
    }
}

/* integer results wrap on narrowing, as integer arithmetic does */
static void store_i64(char *dst, lc_dtype dt, int64_t s, const int64_t *src, int64_t n)
{
    switch (dt) {
    case LC_F32: STORE_LOOP(float, (float)); break;
    case LC_F16: STORE_LOOP(uint16_t, f64_to_f16); break;
    case LC_BF16: STORE_LOOP(uint16_t, f64_to_bf16); break;
    case LC_I32: STORE_LOOP(int32_t, (int32_t)); break;
    case LC_I64: STORE_LOOP(int64_t, AS_IS); break;
    case LC_U8: STORE_LOOP(uint8_t, (uint8_t)); break;
    case LC_F64: STORE_LOOP(double, (double)); break;
    default: break;
    }
}

/* ---- the ops, one tight loop per op and domain ---- */

#define LOOP(body)                                                                            \
    for (int64_t i = 0; i < n; i++) {                                                         \
        body;                                                                                 \
    }

EW_CLONES
static void binary_f32(int op, const float *x, const float *y, float *o, int64_t n)
{
    switch (op) {
    case LC_ADD: LOOP(o[i] = x[i] + y[i]) break;
    case LC_SUB: LOOP(o[i] = x[i] - y[i]) break;
    case LC_MUL: LOOP(o[i] = x[i] * y[i]) break;
    case LC_DIV: LOOP(o[i] = x[i] / y[i]) break;
    case LC_POW: LOOP(o[i] = y[i] == 2.0f ? x[i] * x[i] : powf(x[i], y[i])) break;
    case LC_MAXIMUM: LOOP(o[i] = (x[i] > y[i] || x[i] != x[i]) ? x[i] : y[i]) break;
    case LC_MINIMUM: LOOP(o[i] = (x[i] < y[i] || x[i] != x[i]) ? x[i] : y[i]) break;
    case LC_EQ: LOOP(o[i] = x[i] == y[i]) break;
    case LC_LT: LOOP(o[i] = x[i] < y[i]) break;
    case LC_GT: LOOP(o[i] = x[i] > y[i]) break;
    case LC_LE: LOOP(o[i] = x[i] <= y[i]) break;
    case LC_GE: LOOP(o[i] = x[i] >= y[i]) break;
    case LC_NE: LOOP(o[i] = x[i] != y[i]) break;
    }
}

static void binary_f64(int op, const double *x, const double *y, double *o, int64_t n)
{
    switch (op) {
    case LC_ADD: LOOP(o[i] = x[i] + y[i]) break;
    case LC_SUB: LOOP(o[i] = x[i] - y[i]) break;
    case LC_MUL: LOOP(o[i] = x[i] * y[i]) break;
    case LC_DIV: LOOP(o[i] = x[i] / y[i]) break;
    case LC_POW: LOOP(o[i] = y[i] == 2.0 ? x[i] * x[i] : pow(x[i], y[i])) break;
    case LC_MAXIMUM: LOOP(o[i] = (x[i] > y[i] || x[i] != x[i]) ? x[i] : y[i]) break;
    case LC_MINIMUM: LOOP(o[i] = (x[i] < y[i] || x[i] != x[i]) ? x[i] : y[i]) break;
    case LC_EQ: LOOP(o[i] = x[i] == y[i]) break;
    case LC_LT: LOOP(o[i] = x[i] < y[i]) break;
    case LC_GT: LOOP(o[i] = x[i] > y[i]) break;
    case LC_LE: LOOP(o[i] = x[i] <= y[i]) break;
    case LC_GE: LOOP(o[i] = x[i] >= y[i]) break;
    case LC_NE: LOOP(o[i] = x[i] != y[i]) break;
    }
}

/* integer add/sub/mul wrap (two's complement) instead of overflowing */
static void binary_i64(int op, const int64_t *x, const int64_t *y, int64_t *o, int64_t n)
{
    switch (op) {
    case LC_ADD: LOOP(o[i] = (int64_t)((uint64_t)x[i] + (uint64_t)y[i])) break;
    case LC_SUB: LOOP(o[i] = (int64_t)((uint64_t)x[i] - (uint64_t)y[i])) break;
    case LC_MUL: LOOP(o[i] = (int64_t)((uint64_t)x[i] * (uint64_t)y[i])) break;
    case LC_MAXIMUM: LOOP(o[i] = x[i] > y[i] ? x[i] : y[i]) break;
    case LC_MINIMUM: LOOP(o[i] = x[i] < y[i] ? x[i] : y[i]) break;
    case LC_EQ: LOOP(o[i] = x[i] == y[i]) break;
    case LC_LT: LOOP(o[i] = x[i] < y[i]) break;
    case LC_GT: LOOP(o[i] = x[i] > y[i]) break;
    case LC_LE: LOOP(o[i] = x[i] <= y[i]) break;
    case LC_GE: LOOP(o[i] = x[i] >= y[i]) break;
    case LC_NE: LOOP(o[i] = x[i] != y[i]) break;
    default: break; /* DIV and POW never compute in integers */
    }
}

/* exp written so a loop of it vectorizes: Cephes' expf (reduction by ln 2
 * in two parts, degree-5 polynomial, 2^n through the exponent bits), branch
 * free; within 1.5 ulp of expf. */
static inline float vexpf(float x)
{
    const float hi = 88.3762626647949f, lo = -87.3365447505531f;
    /* NaN clamps to hi here (so the integer conversion below is defined)
     * and is passed through at the end */
    float xc = x < hi ? x : hi;
    xc = xc > lo ? xc : lo;
    /* round to nearest with the 1.5 * 2^23 trick (SSE2 has no roundps) */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* n + 127 in [1, 255] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = e * scale;
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

/* exact (erf) GELU, x * Phi(x) = 0.5 x erfc(-x / sqrt 2), with erfc from
 * Numerical Recipes' Chebyshev fit (relative error < 1.2e-7 before f32
 * rounding), so the negative tail keeps its relative accuracy; within
 * 4e-7 absolute of the double-precision formula */
static inline float vgeluf(float x)
{
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float half_erfc = 0.5f * t * vexpf(-z * z + p);
    return x * (x < 0.0f ? half_erfc : 1.0f - half_erfc);
}

EW_CLONES
static void unary_f32(int op, const float *x, float *o, int64_t n)
{
    switch (op) {
    case LC_NEG: LOOP(o[i] = -x[i]) break;
    case LC_ABS: LOOP(o[i] = fabsf(x[i])) break;
    case LC_EXP: LOOP(o[i] = vexpf(x[i])) break;
    case LC_LOG: LOOP(o[i] = logf(x[i])) break;
    case LC_SQRT: LOOP(o[i] = sqrtf(x[i])) break;
    case LC_RSQRT: LOOP(o[i] = 1.0f / sqrtf(x[i])) break;
    case LC_SIN: LOOP(o[i] = sinf(x[i])) break;
    case LC_COS: LOOP(o[i] = cosf(x[i])) break;
    case LC_TANH: LOOP(o[i] = tanhf(x[i])) break;
    case LC_SIGMOID: LOOP(o[i] = 1.0f / (1.0f + vexpf(-x[i]))) break;
    case LC_SILU: LOOP(o[i] = x[i] / (1.0f + vexpf(-x[i]))) break;
    case LC_GELU: LOOP(o[i] = vgeluf(x[i])) break;
    case LC_GELU_TANH: {
        const float k = 0.7978845608028654f; /* sqrt(2/pi) */
        LOOP(float v = x[i]; o[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v))))
        break;
    }
    case LC_QUICK_GELU: LOOP(o[i] = x[i] / (1.0f + vexpf(-1.702f * x[i]))) break;
    case LC_RELU: LOOP(o[i] = x[i] < 0.0f ? 0.0f : x[i]) break;
    case LC_FLOOR: LOOP(o[i] = floorf(x[i])) break;
    case LC_CEIL: LOOP(o[i] = ceilf(x[i])) break;
    case LC_ROUND: LOOP(o[i] = rintf(x[i])) break; /* default mode: half to even */
    case LC_SQUARE: LOOP(o[i] = x[i] * x[i]) break;
    case LC_SIGN: LOOP(o[i] = (float)((x[i] > 0.0f) - (x[i] < 0.0f))) break;
    case LC_RECIPROCAL: LOOP(o[i] = 1.0f / x[i]) break;
    }
}

static void unary_f64(int op, const double *x, double *o, int64_t n)
{
    switch (op) {
    case LC_NEG: LOOP(o[i] = -x[i]) break;
    case LC_ABS: LOOP(o[i] = fabs(x[i])) break;
    case LC_EXP: LOOP(o[i] = exp(x[i])) break;
    case LC_LOG: LOOP(o[i] = log(x[i])) break;
    case LC_SQRT: LOOP(o[i] = sqrt(x[i])) break;
    case LC_RSQRT: LOOP(o[i] = 1.0 / sqrt(x[i])) break;
    case LC_SIN: LOOP(o[i] = sin(x[i])) break;
    case LC_COS: LOOP(o[i] = cos(x[i])) break;
    case LC_TANH: LOOP(o[i] = tanh(x[i])) break;
    case LC_SIGMOID: LOOP(o[i] = 1.0 / (1.0 + exp(-x[i]))) break;
    case LC_SILU: LOOP(o[i] = x[i] / (1.0 + exp(-x[i]))) break;
    case LC_GELU: LOOP(o[i] = 0.5 * x[i] * (1.0 + erf(x[i] * M_SQRT1_2))) break;
    case LC_GELU_TANH: {
        const double k = 0.7978845608028654;
        LOOP(double v = x[i]; o[i] = 0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v))))
        break;
    }
    case LC_QUICK_GELU: LOOP(o[i] = x[i] / (1.0 + exp(-1.702 * x[i]))) break;
    case LC_RELU: LOOP(o[i] = x[i] < 0.0 ? 0.0 : x[i]) break;
    case LC_FLOOR: LOOP(o[i] = floor(x[i])) break;
    case LC_CEIL: LOOP(o[i] = ceil(x[i])) break;
    case LC_ROUND: LOOP(o[i] = rint(x[i])) break;
    case LC_SQUARE: LOOP(o[i] = x[i] * x[i]) break;
    case LC_SIGN: LOOP(o[i] = (double)((x[i] > 0.0) - (x[i] < 0.0))) break;
    case LC_RECIPROCAL: LOOP(o[i] = 1.0 / x[i]) break;
    }
}

static void unary_i64(int op, const int64_t *x, int64_t *o, int64_t n)
{
    switch (op) {
    case LC_NEG: LOOP(o[i] = (int64_t)(0 - (uint64_t)x[i])) break;
    case LC_ABS: LOOP(o[i] = x[i] < 0 ? (int64_t)(0 - (uint64_t)x[i]) : x[i]) break;
    case LC_RELU: LOOP(o[i] = x[i] < 0 ? 0 : x[i]) break;
    case LC_SQUARE: LOOP(o[i] = (int64_t)((uint64_t)x[i] * (uint64_t)x[i])) break;
    case LC_SIGN: LOOP(o[i] = (x[i] > 0) - (x[i] < 0)) break;
    default: LOOP(o[i] = x[i]) break; /* floor, ceil, round of an integer */
    }
}

/* torch's lerp: the two forms keep the end points exact */
EW_CLONES
static void compute_f32(const ew_job *j, const float *x, const float *y, const float *z, float *o,
                        int64_t n)
{
    switch (j->kind) {
    case K_UNARY: unary_f32(j->op, x, o, n); break;
    case K_BINARY: binary_f32(j->op, x, y, o, n); break;
    case K_WHERE: LOOP(o[i] = x[i] != 0.0f ? y[i] : z[i]) break;
    case K_LERP: {
        float w = (float)j->p0;
        if (fabsf(w) < 0.5f)
            LOOP(o[i] = x[i] + w * (y[i] - x[i]))
        else
            LOOP(o[i] = y[i] - (y[i] - x[i]) * (1.0f - w))
        break;
    }
    case K_CLAMP: {
        float lo = (float)j->p0, hi = (float)j->p1;
        LOOP(float v = x[i] < lo ? lo : x[i]; o[i] = v > hi ? hi : v)
        break;
    }
    case K_ADDSCALED: {
        float al = (float)j->p0;
        LOOP(o[i] = x[i] + al * y[i])
        break;
    }
    }
}

static void compute_f64(const ew_job *j, const double *x, const double *y, const double *z,
                        double *o, int64_t n)
{
    switch (j->kind) {
    case K_UNARY: unary_f64(j->op, x, o, n); break;
    case K_BINARY: binary_f64(j->op, x, y, o, n); break;
    case K_WHERE: LOOP(o[i] = x[i] != 0.0 ? y[i] : z[i]) break;
    case K_LERP: {
        double w = j->p0;
        if (fabs(w) < 0.5)
            LOOP(o[i] = x[i] + w * (y[i] - x[i]))
        else
            LOOP(o[i] = y[i] - (y[i] - x[i]) * (1.0 - w))
        break;
    }
    case K_CLAMP: LOOP(double v = x[i] < j->p0 ? j->p0 : x[i]; o[i] = v > j->p1 ? j->p1 : v) break;
    case K_ADDSCALED: LOOP(o[i] = x[i] + j->p0 * y[i]) break;
    }
}

static void compute_i64(const ew_job *j, const int64_t *x, const int64_t *y, const int64_t *z,
                        int64_t *o, int64_t n)
{
    switch (j->kind) {
    case K_UNARY: unary_i64(j->op, x, o, n); break;
    case K_BINARY: binary_i64(j->op, x, y, o, n); break;
    case K_WHERE: LOOP(o[i] = x[i] != 0 ? y[i] : z[i]) break;
    case K_CLAMP: {
        /* bounds are integral or infinite here (see lc_clamp) */
        int64_t lo = sat_i64(j->p0), hi = sat_i64(j->p1);
        LOOP(int64_t v = x[i] < lo ? lo : x[i]; o[i] = v > hi ? hi : v)
        break;
    }
    case K_ADDSCALED: {
        int64_t al = sat_i64(j->p0);
        LOOP(o[i] = (int64_t)((uint64_t)x[i] + (uint64_t)al * (uint64_t)y[i]))
        break;
    }
    default: break; /* lerp is float only */
    }
}

/* ---- the engine ---- */

typedef union {
    float f[BLK];
    double d[BLK];
    int64_t i[BLK];
} ew_buf;

/* buffers of a chunk, and which broadcast element each input buffer
 * already holds (a scalar operand is converted and spread once) */
typedef struct {
    ew_buf buf[4];
    const char *bcast[4];
    int64_t bcast_n[4];
} ew_scratch;

static void fill_bcast(const ew_job *j, ew_buf *b, const char *p, lc_dtype dt, int64_t n)
{
    if (j->dom == DOM_F32) {
        load_f32(b->f, p, dt, 0, 1);
        for (int64_t i = 1; i < n; i++)
            b->f[i] = b->f[0];
    } else if (j->dom == DOM_F64) {
        load_f64(b->d, p, dt, 0, 1);
        for (int64_t i = 1; i < n; i++)
            b->d[i] = b->d[0];
    } else {
        load_i64(b->i, p, dt, 0, 1);
        for (int64_t i = 1; i < n; i++)
            b->i[i] = b->i[0];
    }
}

static void run_block(const ew_job *j, const int64_t *off, int64_t n, ew_scratch *sc)
{
    ew_buf *buf = sc->buf;
    int last = j->nd - 1;
    const void *in[3] = {NULL, NULL, NULL};
    lc_dtype want = j->dom == DOM_F32 ? LC_F32 : j->dom == DOM_F64 ? LC_F64 : LC_I64;
    for (int k = 1; k <= j->nin; k++) {
        const char *p = j->base[k] + off[k] * (int64_t)j->esz[k];
        int64_t s = j->stride[k][last];
        if (j->dt[k] == want && s == 1) {
            in[k - 1] = p;
            continue;
        }
        in[k - 1] = &buf[k];
        if (s == 0) {
            if (sc->bcast[k] != p || sc->bcast_n[k] < n) {
                fill_bcast(j, &buf[k], p, j->dt[k], n);
                sc->bcast[k] = p;
                sc->bcast_n[k] = n;
            }
            continue;
        }
        sc->bcast[k] = NULL;
        if (j->dom == DOM_F32)
            load_f32(buf[k].f, p, j->dt[k], s, n);
        else if (j->dom == DOM_F64)
            load_f64(buf[k].d, p, j->dt[k], s, n);
        else
            load_i64(buf[k].i, p, j->dt[k], s, n);
    }
    char *po = j->base[0] + off[0] * (int64_t)j->esz[0];
    int64_t so = j->stride[0][last];
    int direct = j->dt[0] == want && so == 1;
    /* in place, the output is an input: the vectorized loops' overlap
     * check would send that to their scalar path, so compute into the
     * buffer and copy (a store of one same-type unit-stride block) */
    for (int k = 0; k < j->nin && direct; k++)
        if ((const void *)po == in[k])
            direct = 0;
    void *o = direct ? (void *)po : (void *)&buf[0];
    if (j->dom == DOM_F32) {
        compute_f32(j, in[0], in[1], in[2], o, n);
        if (!direct)
            store_f32(po, j->dt[0], so, o, n);
    } else if (j->dom == DOM_F64) {
        compute_f64(j, in[0], in[1], in[2], o, n);
        if (!direct)
            store_f64(po, j->dt[0], so, o, n);
    } else {
        compute_i64(j, in[0], in[1], in[2], o, n);
        if (!direct)
            store_i64(po, j->dt[0], so, o, n);
    }
}

static void ew_chunk(void *ctx, int64_t begin, int64_t end)
{
    const ew_job *j = ctx;
    ew_scratch sc;
    memset(sc.bcast, 0, sizeof sc.bcast);
    int nd = j->nd, last = nd - 1;
    int64_t idx[LC_MAXDIM], rem = begin;
    for (int d = last; d >= 0; d--) {
        idx[d] = rem % j->shape[d];
        rem /= j->shape[d];
    }
    int64_t pos = begin;
    while (pos < end) {
        int64_t cnt = j->shape[last] - idx[last];
        if (cnt > end - pos)
            cnt = end - pos;
        int64_t off[4];
        for (int k = 0; k <= j->nin; k++) {
            off[k] = 0;
            for (int d = 0; d < nd; d++)
                off[k] += idx[d] * j->stride[k][d];
        }
        for (int64_t done = 0; done < cnt; done += BLK) {
            int64_t n = cnt - done < BLK ? cnt - done : BLK, o2[4];
            for (int k = 0; k <= j->nin; k++)
                o2[k] = off[k] + done * j->stride[k][last];
            run_block(j, o2, n, &sc);
        }
        pos += cnt;
        idx[last] += cnt;
        for (int d = last; d > 0 && idx[d] >= j->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

/* Runs job j writing `out` from inputs that broadcast to out's shape. */
static int ew_run(ew_job *j, lc_tensor *out, const lc_tensor *const *ins, int nin)
{
    lc_tensor *ex[3] = {NULL, NULL, NULL};
    int rc = LC_OK;
    j->nin = nin;
    for (int k = 0; k < nin; k++) {
        ex[k] = lc_tensor_expand((lc_tensor *)ins[k], out->ndim, out->shape);
        if (!ex[k]) {
            rc = LC_ERR;
            goto done;
        }
    }
    const lc_tensor *ops[4] = {out, ex[0], ex[1], ex[2]};
    for (int k = 0; k <= nin; k++) {
        j->base[k] = lc_tensor_data(ops[k]);
        j->dt[k] = ops[k]->dtype;
        j->esz[k] = lc_dtype_size(ops[k]->dtype);
    }
    /* merge dimensions every operand can walk as one; drop size-1 ones */
    int nd = 0;
    for (int d = 0; d < out->ndim; d++) {
        if (out->shape[d] == 1)
            continue;
        int merge = nd > 0;
        for (int k = 0; k <= nin && merge; k++)
            if (j->stride[k][nd - 1] != ops[k]->stride[d] * out->shape[d])
                merge = 0;
        if (merge) {
            j->shape[nd - 1] *= out->shape[d];
            for (int k = 0; k <= nin; k++)
                j->stride[k][nd - 1] = ops[k]->stride[d];
        } else {
            j->shape[nd] = out->shape[d];
            for (int k = 0; k <= nin; k++)
                j->stride[k][nd] = ops[k]->stride[d];
            nd++;
        }
    }
    if (nd == 0) {
        j->shape[0] = 1;
        for (int k = 0; k <= nin; k++)
            j->stride[k][0] = 0;
        nd = 1;
    }
    j->nd = nd;
    int64_t numel = lc_tensor_numel(out);
    if (numel > 0)
        rc = lc_parallel_for(numel, lc_grain_for(numel, 32768), ew_chunk, j);
done:
    for (int k = 0; k < nin; k++)
        lc_tensor_free(ex[k]);
    return rc;
}

/* new output of the broadcast shape of the inputs, or NULL with a message */
static lc_tensor *new_broadcast(const char *op, lc_dtype dt, const lc_tensor *const *ins, int nin)
{
    int nd = ins[0]->ndim;
    int64_t shape[LC_MAXDIM];
    memcpy(shape, ins[0]->shape, sizeof(int64_t) * (size_t)nd);
    for (int k = 1; k < nin; k++) {
        if (broadcast_shape(nd, shape, ins[k]->ndim, ins[k]->shape, &nd, shape) != LC_OK) {
            if (nin == 2)
                lc_err("%s: shapes %s and %s cannot broadcast", op, LC_SHAPE_STR(ins[0]),
                       LC_SHAPE_STR(ins[1]));
            else
                lc_err("%s: shapes %s, %s and %s cannot broadcast", op, LC_SHAPE_STR(ins[0]),
                       LC_SHAPE_STR(ins[1]), LC_SHAPE_STR(ins[2]));
            return NULL;
        }
    }
    return lc_tensor_new(dt, nd, shape);
}

static lc_tensor *run_new(ew_job *j, const char *op, lc_dtype dt, const lc_tensor *const *ins,
                          int nin)
{
    lc_tensor *out = new_broadcast(op, dt, ins, nin);
    if (!out)
        return NULL;
    if (ew_run(j, out, ins, nin) != LC_OK) {
        lc_err_prefix("%s: ", op);
        lc_tensor_free(out);
        return NULL;
    }
    return out;
}

/* b must broadcast to a's shape without changing it */
static int check_inplace(const char *op, const lc_tensor *a, const lc_tensor *b)
{
    int ok = b->ndim <= a->ndim;
    for (int i = 0; ok && i < b->ndim; i++) {
        int64_t have = b->shape[i], want = a->shape[a->ndim - b->ndim + i];
        ok = have == want || have == 1;
    }
    if (!ok)
        return lc_err("%s_: shape %s cannot broadcast to %s", op, LC_SHAPE_STR(b), LC_SHAPE_STR(a));
    return LC_OK;
}

static int valid_binop(lc_binop op)
{
    if ((unsigned)op > LC_NE)
        return lc_err("binary op: invalid op %d", (int)op);
    return LC_OK;
}

/* ---- public API ---- */

static lc_tensor *binary_impl(lc_binop op, const lc_tensor *a, const lc_tensor *b)
{
    if (valid_binop(op) != LC_OK)
        return NULL;
    lc_dtype rt = promote(op, a, b);
    ew_job j = {.kind = K_BINARY, .op = op, .dom = domain_of(rt)};
    const lc_tensor *ins[2] = {a, b};
    return run_new(&j, binop_names[op], is_cmp(op) ? LC_U8 : rt, ins, 2);
}

static lc_tensor *binary_scalar_impl(lc_binop op, const lc_tensor *a, double s,
                                     int scalar_first)
{
    if (valid_binop(op) != LC_OK)
        return NULL;
    lc_dtype rt = promote_scalar(op, a->dtype, s);
    lc_tensor *st = lc_tensor_new(LC_F64, 0, NULL);
    if (!st)
        return NULL;
    *(double *)lc_tensor_data(st) = s;
    ew_job j = {.kind = K_BINARY, .op = op, .dom = domain_of(rt)};
    const lc_tensor *ins[2] = {scalar_first ? st : a, scalar_first ? a : st};
    lc_tensor *r = run_new(&j, binop_names[op], is_cmp(op) ? LC_U8 : rt, ins, 2);
    lc_tensor_free(st);
    return r;
}

static int binary_inplace_impl(lc_binop op, lc_tensor *a, const lc_tensor *b)
{
    if (valid_binop(op) != LC_OK || check_inplace(binop_names[op], a, b) != LC_OK)
        return LC_ERR;
    ew_job j = {.kind = K_BINARY, .op = op, .dom = domain_of(wider(a->dtype, b->dtype))};
    if (!is_cmp(op) && (op == LC_DIV || op == LC_POW) && j.dom == DOM_I64)
        j.dom = DOM_F32;
    const lc_tensor *ins[2] = {a, b};
    return ew_run(&j, a, ins, 2) == LC_OK ? LC_OK : lc_err_prefix("%s_: ", binop_names[op]);
}

static int binary_scalar_inplace_impl(lc_binop op, lc_tensor *a, double s)
{
    if (valid_binop(op) != LC_OK)
        return LC_ERR;
    lc_tensor *st = lc_tensor_new(LC_F64, 0, NULL);
    if (!st)
        return LC_ERR;
    *(double *)lc_tensor_data(st) = s;
    ew_job j = {.kind = K_BINARY, .op = op, .dom = domain_of(promote_scalar(op, a->dtype, s))};
    const lc_tensor *ins[2] = {a, st};
    int rc = ew_run(&j, a, ins, 2);
    lc_tensor_free(st);
    return rc == LC_OK ? LC_OK : lc_err_prefix("%s_: ", binop_names[op]);
}

static int add_scaled_inplace_impl(lc_tensor *a, const lc_tensor *b, double alpha)
{
    if (check_inplace("add", a, b) != LC_OK)
        return LC_ERR;
    int dom = domain_of(wider(a->dtype, b->dtype));
    if (dom == DOM_I64 && alpha != floor(alpha))
        dom = DOM_F64;
    ew_job j = {.kind = K_ADDSCALED, .dom = dom, .p0 = alpha};
    const lc_tensor *ins[2] = {a, b};
    return ew_run(&j, a, ins, 2) == LC_OK ? LC_OK : lc_err_prefix("add_: ");
}

static lc_dtype unary_dtype(lc_unop op, lc_dtype d)
{
    return lc_dtype_is_float(d) || unop_keeps_int(op) ? d : LC_F32;
}

static lc_tensor *unary_impl(lc_unop op, const lc_tensor *a)
{
    if ((unsigned)op > LC_RECIPROCAL) {
        lc_err("unary op: invalid op %d", (int)op);
        return NULL;
    }
    lc_dtype rt = unary_dtype(op, a->dtype);
    ew_job j = {.kind = K_UNARY, .op = op, .dom = domain_of(rt)};
    return run_new(&j, unop_names[op], rt, &a, 1);
}

static int unary_inplace_impl(lc_unop op, lc_tensor *a)
{
    if ((unsigned)op > LC_RECIPROCAL)
        return lc_err("unary op: invalid op %d", (int)op);
    ew_job j = {.kind = K_UNARY, .op = op, .dom = domain_of(unary_dtype(op, a->dtype))};
    const lc_tensor *ins[1] = {a};
    return ew_run(&j, a, ins, 1) == LC_OK ? LC_OK : lc_err_prefix("%s_: ", unop_names[op]);
}

lc_tensor *lc_clamp(const lc_tensor *a, double lo, double hi)
{
    if (lo != lo || hi != hi) {
        lc_err("clamp: bounds must not be NaN");
        return NULL;
    }
    lc_dtype rt = a->dtype;
    if (!lc_dtype_is_float(rt) && ((isfinite(lo) && lo != floor(lo)) ||
                                   (isfinite(hi) && hi != floor(hi))))
        rt = LC_F32;
    ew_job j = {.kind = K_CLAMP, .dom = domain_of(rt), .p0 = lo, .p1 = hi};
    return run_new(&j, "clamp", rt, &a, 1);
}

lc_tensor *lc_where(const lc_tensor *cond, const lc_tensor *a, const lc_tensor *b)
{
    lc_dtype rt = promote(LC_ADD, a, b);
    /* the condition is loaded in the compute type: any nonzero (or NaN)
     * stays nonzero there */
    ew_job j = {.kind = K_WHERE, .dom = domain_of(rt)};
    if (j.dom == DOM_I64 && lc_dtype_is_float(cond->dtype))
        j.dom = DOM_F64;
    const lc_tensor *ins[3] = {cond, a, b};
    return run_new(&j, "where", rt, ins, 3);
}

lc_tensor *lc_lerp(const lc_tensor *a, const lc_tensor *b, double w)
{
    lc_dtype rt = promote(LC_ADD, a, b);
    if (!lc_dtype_is_float(rt))
        rt = LC_F32;
    ew_job j = {.kind = K_LERP, .dom = domain_of(rt), .p0 = w};
    const lc_tensor *ins[2] = {a, b};
    return run_new(&j, "lerp", rt, ins, 2);
}

lc_tensor *lc_binary(lc_binop op, const lc_tensor *a, const lc_tensor *b)
{
    LC_PROF_BEGIN();
    lc_tensor *r = binary_impl(op, a, b);
    LC_PROF_END(LC_PROF_ELEM, 0);
    return r;
}

lc_tensor *lc_binary_scalar(lc_binop op, const lc_tensor *a, double s, int scalar_first)
{
    LC_PROF_BEGIN();
    lc_tensor *r = binary_scalar_impl(op, a, s, scalar_first);
    LC_PROF_END(LC_PROF_ELEM, 0);
    return r;
}

int lc_binary_(lc_binop op, lc_tensor *a, const lc_tensor *b)
{
    LC_PROF_BEGIN();
    int r = binary_inplace_impl(op, a, b);
    LC_PROF_END(LC_PROF_ELEM, 0);
    return r;
}

int lc_binary_scalar_(lc_binop op, lc_tensor *a, double s)
{
    LC_PROF_BEGIN();
    int r = binary_scalar_inplace_impl(op, a, s);
    LC_PROF_END(LC_PROF_ELEM, 0);
    return r;
}

int lc_add_scaled_(lc_tensor *a, const lc_tensor *b, double alpha)
{
    LC_PROF_BEGIN();
    int r = add_scaled_inplace_impl(a, b, alpha);
    LC_PROF_END(LC_PROF_ELEM, 0);
    return r;
}

lc_tensor *lc_unary(lc_unop op, const lc_tensor *a)
{
    LC_PROF_BEGIN();
    lc_tensor *r = unary_impl(op, a);
    LC_PROF_END(LC_PROF_ELEM, 0);
    return r;
}

int lc_unary_(lc_unop op, lc_tensor *a)
{
    LC_PROF_BEGIN();
    int r = unary_inplace_impl(op, a);
    LC_PROF_END(LC_PROF_ELEM, 0);
    return r;
}
