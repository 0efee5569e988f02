/* PyTorch-compatible generators. The CPU path follows ATen's
 * CPUGeneratorImpl, MT19937RNGEngine.h, DistributionsHelper.h,
 * TransformationHelper.h and cpu/DistributionTemplates.h (normal_fill):
 * every float operation is done in the same precision and order, because
 * the point is identical bits, not just the same distribution. */
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fused multiply-adds would change the last bit of the Box-Muller. */
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define MT_N 624
#define MT_M 397
#define STATE_MAGIC "lcrng\0v1"

typedef struct {
    uint32_t state[MT_N];
    int32_t left;
    uint32_t next;
} mt19937;

struct lc_generator {
    lc_rng_kind kind;
    uint64_t seed;
    /* CPU */
    mt19937 mt;
    int has_next_normal; /* torch's next_double_normal_sample_ */
    double next_normal;
    /* Philox */
    uint32_t offset;
};

/* Serialised state: fixed layout, native byte order. */
typedef struct {
    char magic[8];
    uint32_t kind;
    uint32_t has_next_normal;
    uint64_t seed;
    double next_normal;
    uint32_t mt_state[MT_N];
    int32_t mt_left;
    uint32_t mt_next;
    uint32_t offset;
    uint32_t pad;
} rng_state_blob;

/* ---- mt19937 as at::mt19937: only the low 32 bits of the seed count ---- */

static void mt_seed(mt19937 *mt, uint64_t seed)
{
    mt->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (uint32_t j = 1; j < MT_N; j++)
        mt->state[j] = 1812433253u * (mt->state[j - 1] ^ (mt->state[j - 1] >> 30)) + j;
    mt->left = 1;
    mt->next = 0;
}

static uint32_t mix_bits(uint32_t u, uint32_t v)
{
    return (u & 0x80000000u) | (v & 0x7fffffffu);
}

static uint32_t twist(uint32_t u, uint32_t v)
{
    return (mix_bits(u, v) >> 1) ^ ((v & 1u) ? 0x9908b0dfu : 0u);
}

static void mt_next_state(mt19937 *mt)
{
    uint32_t *p = mt->state;
    mt->left = MT_N;
    mt->next = 0;
    for (int j = MT_N - MT_M + 1; --j; p++)
        *p = p[MT_M] ^ twist(p[0], p[1]);
    for (int j = MT_M; --j; p++)
        *p = p[MT_M - MT_N] ^ twist(p[0], p[1]);
    *p = p[MT_M - MT_N] ^ twist(p[0], mt->state[0]);
}

static uint32_t mt_draw(mt19937 *mt)
{
    if (--mt->left <= 0)
        mt_next_state(mt);
    uint32_t y = mt->state[mt->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* ---- generator object ---- */

const char *lc_rng_kind_name(lc_rng_kind kind)
{
    return kind == LC_RNG_PHILOX ? "philox" : kind == LC_RNG_CPU_LIBM ? "cpu-libm" : "cpu";
}

static int is_mt_kind(lc_rng_kind kind)
{
    return kind == LC_RNG_CPU || kind == LC_RNG_CPU_LIBM;
}

int lc_rng_kind_from_name(const char *name, lc_rng_kind *out)
{
    if (!strcmp(name, "cpu") || !strcmp(name, "mt19937")) {
        *out = LC_RNG_CPU;
        return LC_OK;
    }
    if (!strcmp(name, "philox") || !strcmp(name, "nv")) {
        *out = LC_RNG_PHILOX;
        return LC_OK;
    }
    if (!strcmp(name, "cpu-libm")) {
        *out = LC_RNG_CPU_LIBM;
        return LC_OK;
    }
    return lc_err("unknown generator kind '%s' (expected \"cpu\", \"philox\" or \"cpu-libm\")",
                  name);
}

void lc_generator_manual_seed(lc_generator *g, uint64_t seed)
{
    g->seed = seed;
    g->has_next_normal = 0;
    g->next_normal = 0;
    g->offset = 0;
    if (is_mt_kind(g->kind))
        mt_seed(&g->mt, seed);
}

lc_generator *lc_generator_new(uint64_t seed, lc_rng_kind kind)
{
    if (!is_mt_kind(kind) && kind != LC_RNG_PHILOX) {
        lc_err("unknown generator kind %d", (int)kind);
        return NULL;
    }
    lc_generator *g = lc_calloc(1, sizeof *g, "generator");
    if (!g)
        return NULL;
    g->kind = kind;
    lc_generator_manual_seed(g, seed);
    return g;
}

void lc_generator_free(lc_generator *g)
{
    free(g);
}

lc_generator *lc_generator_clone(const lc_generator *g)
{
    lc_generator *c = lc_malloc(sizeof *c, "generator");
    if (c)
        *c = *g;
    return c;
}

uint64_t lc_generator_seed(const lc_generator *g)
{
    return g->seed;
}

lc_rng_kind lc_generator_kind(const lc_generator *g)
{
    return g->kind;
}

lc_tensor *lc_generator_get_state(const lc_generator *g)
{
    rng_state_blob b;
    memset(&b, 0, sizeof b);
    memcpy(b.magic, STATE_MAGIC, 8);
    b.kind = (uint32_t)g->kind;
    b.has_next_normal = (uint32_t)g->has_next_normal;
    b.seed = g->seed;
    b.next_normal = g->next_normal;
    memcpy(b.mt_state, g->mt.state, sizeof b.mt_state);
    b.mt_left = g->mt.left;
    b.mt_next = g->mt.next;
    b.offset = g->offset;
    int64_t n = (int64_t)sizeof b;
    lc_tensor *t = lc_tensor_new(LC_U8, 1, &n);
    if (t)
        memcpy(lc_tensor_data(t), &b, sizeof b);
    return t;
}

int lc_generator_set_state(lc_generator *g, const lc_tensor *state)
{
    rng_state_blob b;
    if (state->dtype != LC_U8 || state->ndim != 1 || state->shape[0] != (int64_t)sizeof b)
        return lc_err("generator state: expected a u8 tensor of shape [%zu], got %s %s",
                      sizeof b, lc_dtype_name(state->dtype), LC_SHAPE_STR(state));
    for (int64_t i = 0; i < (int64_t)sizeof b; i++)
        ((unsigned char *)&b)[i] = (unsigned char)lc_tensor_get(state, i);
    if (memcmp(b.magic, STATE_MAGIC, 8) != 0)
        return lc_err("generator state: not a lucid generator state (bad magic)");
    int same_engine = b.kind == (uint32_t)g->kind ||
                      (is_mt_kind((lc_rng_kind)b.kind) && is_mt_kind(g->kind));
    if (!same_engine)
        return lc_err("generator state: saved from a '%s' generator, this one is '%s'",
                      lc_rng_kind_name((lc_rng_kind)b.kind), lc_rng_kind_name(g->kind));
    int fresh = b.mt_left == 1 && b.mt_next == 0; /* just seeded */
    if (b.mt_left < 1 || b.mt_left > MT_N || b.mt_next > MT_N ||
        (!fresh && b.mt_next + (uint32_t)b.mt_left != MT_N + 1) || b.has_next_normal > 1)
        return lc_err("generator state: corrupt mt19937 position (left %d, next %u)",
                      (int)b.mt_left, (unsigned)b.mt_next);
    g->seed = b.seed;
    g->has_next_normal = (int)b.has_next_normal;
    g->next_normal = b.next_normal;
    memcpy(g->mt.state, b.mt_state, sizeof b.mt_state);
    g->mt.left = b.mt_left;
    g->mt.next = b.mt_next;
    g->offset = b.offset;
    return LC_OK;
}

uint32_t lc_generator_random(lc_generator *g)
{
    return mt_draw(&g->mt);
}

uint64_t lc_generator_random64(lc_generator *g)
{
    uint32_t hi = mt_draw(&g->mt);
    uint32_t lo = mt_draw(&g->mt);
    return ((uint64_t)hi << 32) | lo;
}

/* ---- uniforms (at::uniform_real_distribution on [0, 1)) ---- */

static float uniform_f32(lc_generator *g)
{
    return (float)(lc_generator_random(g) & ((1u << 24) - 1)) * (1.0f / (float)(1u << 24));
}

static double uniform_f64(lc_generator *g)
{
    return (double)(lc_generator_random64(g) & ((UINT64_C(1) << 53) - 1)) *
           (1.0 / (double)(UINT64_C(1) << 53));
}

/* ---- normals ---- */

/* at::normal_distribution<double>: used by torch for fewer than 16
 * elements (or non-contiguous output); the second value of each pair is
 * cached in the generator and returned by the next scalar draw. */
static double normal_scalar(lc_generator *g)
{
    if (g->has_next_normal) {
        g->has_next_normal = 0;
        return g->next_normal;
    }
    double u1 = uniform_f64(g);
    double u2 = uniform_f64(g);
    double r = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * M_PI * u1;
    g->next_normal = r * sin(theta);
    g->has_next_normal = 1;
    return r * cos(theta);
}

/* torch's float path on x86 (CPU_CAPABILITY_AVX2, what the golden data
 * and most users get) is normal_fill_16_AVX2 with log256_ps/sincos256_ps
 * from avx_mathfun.h: Cephes polynomials in float, with the multiply-adds
 * fused as GCC contracts them in torch's build. Ported lane by lane; fmaf
 * is exact everywhere, so this gives the same bits without AVX2. */
static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* log256_ps for one lane; only called with x in (0, 1] */
static float cephes_logf(float x)
{
    x = fmaxf(x, bits_f32(0x00800000u)); /* no denormals */
    int32_t ex = (int32_t)(f32_bits(x) >> 23) - 0x7f;
    x = bits_f32((f32_bits(x) & ~0x7f800000u) | f32_bits(0.5f));
    float e = (float)ex + 1.0f;
    int below = x < 0.707106781186547524f;
    float tmp = below ? x : 0.0f;
    x = x - 1.0f;
    e = e - (below ? 1.0f : 0.0f);
    x = x + tmp;
    float z = x * x;
    float y = 7.0376836292E-2f;
    y = fmaf(y, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = y * x;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    return fmaf(e, 0.693359375f, x);
}

/* sincos256_ps for one lane */
static void cephes_sincosf(float x, float *s, float *c)
{
    uint32_t sign_sin = f32_bits(x) & 0x80000000u;
    x = fabsf(x);
    int32_t j = (int32_t)(x * 1.27323954473516f); /* 4/pi, truncated */
    j = (j + 1) & ~1;
    float y = (float)j;
    uint32_t swap_sin = (uint32_t)(j & 4) << 29;
    int poly_cos_first = (j & 2) == 0;
    /* extended precision range reduction */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    sign_sin ^= swap_sin;
    float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;
    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, x, x);
    /* avx_mathfun blends by adding a zeroed lane: keep the + 0.0f */
    float sin_v = (poly_cos_first ? ys : yc) + 0.0f;
    float cos_v = (poly_cos_first ? yc : ys) + 0.0f;
    *s = bits_f32(f32_bits(sin_v) ^ sign_sin);
    *c = bits_f32(f32_bits(cos_v) ^ sign_cos);
}

static void normal_fill_16_f32(float *d)
{
    const float two_pi = (float)(2.0f * M_PI);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * cephes_logf(u1));
        float s, c;
        cephes_sincosf(two_pi * u2, &s, &c);
        d[j] = fmaf(radius * c, 1.0f, 0.0f);
        d[j + 8] = fmaf(radius * s, 1.0f, 0.0f);
    }
}

/* torch's generic normal_fill_16<float>: libm in float, theta through
 * double because torch multiplies by c10::pi<double> */
static void normal_fill_16_f32_libm(float *d)
{
    for (int j = 0; j < 8; j++) {
        float u1 = 1 - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2 * logf(u1));
        float theta = (float)(2.0f * M_PI * u2);
        d[j] = radius * cosf(theta) * 1.0f + 0.0f;
        d[j + 8] = radius * sinf(theta) * 1.0f + 0.0f;
    }
}

static void normal_fill_16_f64(double *d)
{
    for (int j = 0; j < 8; j++) {
        double u1 = 1 - d[j];
        double u2 = d[j + 8];
        double radius = sqrt(-2 * log(u1));
        double theta = 2.0f * M_PI * u2;
        d[j] = radius * cos(theta) * 1.0 + 0.0;
        d[j + 8] = radius * sin(theta) * 1.0 + 0.0;
    }
}

/* torch's normal_fill: all uniforms first, Box-Muller on blocks of 16
 * pairing j with j+8, and a tail that redraws 16 fresh uniforms over the
 * last 16 elements. */
static void normal_fill_f32(lc_generator *g, float *d, int64_t n)
{
    void (*fill16)(float *) =
        g->kind == LC_RNG_CPU_LIBM ? normal_fill_16_f32_libm : normal_fill_16_f32;
    for (int64_t i = 0; i < n; i++)
        d[i] = uniform_f32(g);
    for (int64_t i = 0; i < n - 15; i += 16)
        fill16(d + i);
    if (n % 16 != 0) {
        float *t = d + n - 16;
        for (int i = 0; i < 16; i++)
            t[i] = uniform_f32(g);
        fill16(t);
    }
}

static void normal_fill_f64(lc_generator *g, double *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = uniform_f64(g);
    for (int64_t i = 0; i < n - 15; i += 16)
        normal_fill_16_f64(d + i);
    if (n % 16 != 0) {
        double *t = d + n - 16;
        for (int i = 0; i < 16; i++)
            t[i] = uniform_f64(g);
        normal_fill_16_f64(t);
    }
}

/* ---- f16 / bf16: torch's normal_fill<Half> and <BFloat16> ----
 * Uniforms have 11 (f16) or 8 (bf16) random bits. c10::Half arithmetic
 * with floats stays in float and rounds on assignment; std::log/cos/sin/
 * sqrt of a BFloat16 return a BFloat16 (BFloat16-math.h), so bf16 rounds
 * after each of those as well. No AVX2 kernel exists for these types. */

static float round_half(float x, lc_dtype dt)
{
    return dt == LC_BF16 ? lc_bf16_to_f32(lc_f32_to_bf16(x)) : lc_f16_to_f32(lc_f32_to_f16(x));
}

static float uniform_half(lc_generator *g, lc_dtype dt)
{
    int digits = dt == LC_BF16 ? 8 : 11;
    return (float)(lc_generator_random(g) & ((1u << digits) - 1)) * (1.0f / (float)(1u << digits));
}

static void normal_fill_16_half(float *d, lc_dtype dt)
{
    int bf = dt == LC_BF16;
    for (int j = 0; j < 8; j++) {
        float u1 = round_half(1.0f - d[j], dt);
        float u2 = d[j + 8];
        float lg = logf(u1);
        if (bf)
            lg = round_half(lg, dt);
        float radius = round_half(sqrtf(-2.0f * lg), dt);
        float theta = round_half((float)(2.0f * M_PI * (double)u2), dt);
        float c = cosf(theta), s = sinf(theta);
        if (bf) {
            c = round_half(c, dt);
            s = round_half(s, dt);
        }
        d[j] = round_half(radius * c * 1.0f + 0.0f, dt);
        d[j + 8] = round_half(radius * s * 1.0f + 0.0f, dt);
    }
}

/* values (exactly representable in dt) into a float scratch buffer */
static void normal_fill_half(lc_generator *g, float *d, int64_t n, lc_dtype dt)
{
    for (int64_t i = 0; i < n; i++)
        d[i] = uniform_half(g, dt);
    for (int64_t i = 0; i < n - 15; i += 16)
        normal_fill_16_half(d + i, dt);
    if (n % 16 != 0) {
        float *t = d + n - 16;
        for (int i = 0; i < 16; i++)
            t[i] = uniform_half(g, dt);
        normal_fill_16_half(t, dt);
    }
}

static void store_half(void *data, int64_t i, float v, lc_dtype dt)
{
    ((uint16_t *)data)[i] = dt == LC_BF16 ? lc_f32_to_bf16(v) : lc_f32_to_f16(v);
}

/* ---- Philox 4x32-10 as A1111's rng_philox.py ---- */

static void philox4x32(uint32_t ctr[4], uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint64_t v1 = (uint64_t)ctr[0] * 0xD2511F53u;
        uint64_t v2 = (uint64_t)ctr[2] * 0xCD9E8D57u;
        uint32_t c1 = ctr[1], c3 = ctr[3];
        ctr[0] = (uint32_t)(v2 >> 32) ^ c1 ^ k0;
        ctr[1] = (uint32_t)v2;
        ctr[2] = (uint32_t)(v1 >> 32) ^ c3 ^ k1;
        ctr[3] = (uint32_t)v1;
    }
}

/* One call draws element i from counter (offset, 0, i, 0) keyed by the
 * seed; the Box-Muller is done in double as numpy promotes uint32 times a
 * float32 array, then rounded to float. */
static void philox_randn_f32(lc_generator *g, float *d, int64_t n)
{
    /* rng_philox.py's float32 constants; the second is a double product
     * rounded once to float32 */
    const double inv = (double)2.3283064e-10f;
    const double inv_2pi = (double)(float)(2.3283064e-10 * 6.2831855);
    uint32_t k0 = (uint32_t)g->seed, k1 = (uint32_t)(g->seed >> 32);
    for (int64_t i = 0; i < n; i++) {
        uint32_t ctr[4] = {g->offset, 0, (uint32_t)i, 0};
        philox4x32(ctr, k0, k1);
        double u = ctr[0] * inv + (double)(float)(inv / 2);
        double v = ctr[1] * inv_2pi + (double)(float)(inv_2pi / 2);
        double s = sqrt(-2.0 * log(u));
        d[i] = (float)(s * sin(v));
    }
    g->offset++;
}

/* ---- public fills ---- */

static int is_random_dtype(lc_dtype dt)
{
    return dt == LC_F32 || dt == LC_F64 || dt == LC_F16 || dt == LC_BF16;
}

static int check_target(lc_tensor *t, const char *what)
{
    if (!lc_tensor_is_contiguous(t))
        return lc_err("%s: the tensor must be contiguous", what);
    if (!is_random_dtype(t->dtype))
        return lc_err("%s: dtype %s is not supported (f32, f64, f16 or bf16)", what,
                      lc_dtype_name(t->dtype));
    return LC_OK;
}

static void store(void *data, int64_t i, double v, lc_dtype dt)
{
    if (dt == LC_F32)
        ((float *)data)[i] = (float)v;
    else if (dt == LC_F64)
        ((double *)data)[i] = v;
    else
        store_half(data, i, (float)v, dt); /* c10 goes double -> float -> half */
}

int lc_randn_(lc_generator *g, lc_tensor *t)
{
    if (check_target(t, "randn") != LC_OK)
        return LC_ERR;
    int64_t n = lc_tensor_numel(t);
    void *data = lc_tensor_data(t);
    lc_dtype dt = t->dtype;
    if (g->kind == LC_RNG_PHILOX) {
        if (dt != LC_F32)
            return lc_err("randn: the philox generator makes f32 noise only, not %s",
                          lc_dtype_name(dt));
        philox_randn_f32(g, data, n);
        return LC_OK;
    }
    if (n < 16) {
        for (int64_t i = 0; i < n; i++)
            store(data, i, normal_scalar(g) * 1.0 + 0.0, dt);
    } else if (dt == LC_F32) {
        normal_fill_f32(g, data, n);
    } else if (dt == LC_F64) {
        normal_fill_f64(g, data, n);
    } else {
        float *tmp = lc_malloc((size_t)n * sizeof *tmp, "randn scratch");
        if (!tmp)
            return LC_ERR;
        normal_fill_half(g, tmp, n, dt);
        for (int64_t i = 0; i < n; i++)
            store_half(data, i, tmp[i], dt);
        free(tmp);
    }
    return LC_OK;
}

int lc_rand_(lc_generator *g, lc_tensor *t)
{
    if (check_target(t, "rand") != LC_OK)
        return LC_ERR;
    if (g->kind == LC_RNG_PHILOX)
        return lc_err("rand: the philox generator only makes normal noise (use a cpu generator)");
    int64_t n = lc_tensor_numel(t);
    void *data = lc_tensor_data(t);
    lc_dtype dt = t->dtype;
    for (int64_t i = 0; i < n; i++) {
        if (dt == LC_F32)
            ((float *)data)[i] = uniform_f32(g);
        else if (dt == LC_F64)
            ((double *)data)[i] = uniform_f64(g);
        else
            store_half(data, i, uniform_half(g, dt), dt);
    }
    return LC_OK;
}

static lc_tensor *make(lc_generator *g, lc_dtype dt, int ndim, const int64_t *shape,
                       int (*fill)(lc_generator *, lc_tensor *))
{
    if (!is_random_dtype(dt)) {
        lc_err("random tensors are f32, f64, f16 or bf16, not %s", lc_dtype_name(dt));
        return NULL;
    }
    lc_tensor *t = lc_tensor_new(dt, ndim, shape);
    if (!t)
        return NULL;
    if (fill(g, t) != LC_OK) {
        lc_tensor_free(t);
        return NULL;
    }
    return t;
}

lc_tensor *lc_randn(lc_generator *g, lc_dtype dt, int ndim, const int64_t *shape)
{
    return make(g, dt, ndim, shape, lc_randn_);
}

lc_tensor *lc_rand(lc_generator *g, lc_dtype dt, int ndim, const int64_t *shape)
{
    return make(g, dt, ndim, shape, lc_rand_);
}
