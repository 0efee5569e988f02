/* Tensor operations. Every function returns a new tensor (caller frees) or
 * NULL with lc_errmsg() set; messages name the op and the shapes, e.g.
 * "matmul: [2,3] @ [4,5]: inner sizes 3 and 4 differ".
 *
 * Inputs may be strided and of any float dtype; compute is f32 (f64 inputs
 * compute in f64 where noted) and outputs are contiguous. Dimensions are
 * 0-based (negative counts from the end). Heavy ops run on the pool with
 * thread-count-independent chunking. */
#ifndef LC_OPS_H
#define LC_OPS_H

#include "../core/tensor.h"

/* ---- elementwise (src/ops/elementwise.c) ---- */

typedef enum {
    LC_ADD, LC_SUB, LC_MUL, LC_DIV, LC_POW, LC_MAXIMUM, LC_MINIMUM,
    LC_EQ, LC_LT, LC_GT, LC_LE, LC_GE, LC_NE /* comparisons give u8 0/1 */
} lc_binop;

typedef enum {
    LC_NEG, LC_ABS, LC_EXP, LC_LOG, LC_SQRT, LC_RSQRT, LC_SIN, LC_COS, LC_TANH,
    LC_SIGMOID, LC_SILU, LC_GELU /* exact, erf */, LC_GELU_TANH, LC_QUICK_GELU,
    LC_RELU, LC_FLOOR, LC_CEIL, LC_ROUND /* half to even, as torch */, LC_SQUARE,
    LC_SIGN, LC_RECIPROCAL
} lc_unop;

/* Broadcasting as numpy/torch. Result dtype: the "wider" float of the two
 * (f64 > f32 > bf16/f16; f16 with bf16 gives f32); integer pairs stay
 * integer for ADD/SUB/MUL/MAXIMUM/MINIMUM, DIV/POW of integers gives f32. */
lc_tensor *lc_binary(lc_binop op, const lc_tensor *a, const lc_tensor *b);
/* a op s (or s op a when scalar_first) */
lc_tensor *lc_binary_scalar(lc_binop op, const lc_tensor *a, double s, int scalar_first);
/* in place: a = a op b (b broadcasts to a; a keeps its dtype) */
int lc_binary_(lc_binop op, lc_tensor *a, const lc_tensor *b);
int lc_binary_scalar_(lc_binop op, lc_tensor *a, double s);
/* a += alpha * b, in place (the sampler's workhorse) */
int lc_add_scaled_(lc_tensor *a, const lc_tensor *b, double alpha);
lc_tensor *lc_unary(lc_unop op, const lc_tensor *a);
int lc_unary_(lc_unop op, lc_tensor *a);
lc_tensor *lc_clamp(const lc_tensor *a, double lo, double hi);
/* cond ? a : b with broadcasting (cond any dtype, nonzero = true) */
lc_tensor *lc_where(const lc_tensor *cond, const lc_tensor *a, const lc_tensor *b);
/* lerp: a + w * (b - a) */
lc_tensor *lc_lerp(const lc_tensor *a, const lc_tensor *b, double w);

/* ---- reductions (src/ops/reduce.c); deterministic fixed-order sums in
 * double ---- */

typedef enum { LC_RSUM, LC_RMEAN, LC_RMAX, LC_RMIN, LC_RVAR, LC_RSTD, LC_RARGMAX, LC_RARGMIN, LC_RNORM } lc_redop;

/* over all elements: result 0-d (f64 for sums, argmax/argmin give i64
 * flat index). VAR/STD use Bessel's correction (unbiased = 1) as torch's
 * default. */
lc_tensor *lc_reduce_all(lc_redop op, const lc_tensor *a, int unbiased);
/* over one dimension */
lc_tensor *lc_reduce_dim(lc_redop op, const lc_tensor *a, int dim, int keepdim, int unbiased);
/* convenience: value of a full reduction as double */
int lc_reduce_all_value(lc_redop op, const lc_tensor *a, double *out);

/* ---- linear algebra (src/ops/matmul.c) ---- */

/* torch.matmul semantics: 1-d/2-d/batched with batch broadcasting */
lc_tensor *lc_matmul(const lc_tensor *a, const lc_tensor *b);
/* x[..., in] @ w[out, in]^T + bias[out]; bias may be NULL (torch's F.linear) */
lc_tensor *lc_linear(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias);
/* y += x w^T + bias in place, y the contiguous f32 [..., out] lc_linear
 * would return: a residual add done by the GEMM as it stores its tiles,
 * without a temporary (f32, f16 or bf16 operands) */
int lc_linear_add_(lc_tensor *y, const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias);

/* ---- shape ops (src/ops/shape.c) ---- */

lc_tensor *lc_cat(lc_tensor *const *ts, int n, int dim);
lc_tensor *lc_stack(lc_tensor *const *ts, int n, int dim);
/* splits into pieces of `size` along dim (last may be smaller); returns the
 * count in *n_out and an array of views the caller frees (each, then the
 * array) */
lc_tensor **lc_split(lc_tensor *t, int64_t size, int dim, int *n_out);
lc_tensor *lc_repeat(const lc_tensor *t, int ndim, const int64_t *reps);
lc_tensor *lc_flip(const lc_tensor *t, int dim);
lc_tensor *lc_arange(double start, double end, double step, lc_dtype dt);
lc_tensor *lc_linspace(double start, double end, int64_t n, lc_dtype dt);

/* ---- neural-network ops (src/ops/conv.c, norm.c, attention.c,
 * resize.c, grid_sample.c) ---- */

typedef struct {
    int stride[2], padding[2], dilation[2], groups;
} lc_conv2d_params;

/* x [N,Cin,H,W], w [Cout,Cin/groups,kh,kw], bias [Cout] or NULL */
lc_tensor *lc_conv2d(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias,
                     const lc_conv2d_params *p);
/* conv2d (3x3 weights, stride 1, padding 1) of x upsampled 2x by nearest
 * neighbour, as a decoder's upsampler does, without the upsampled tensor:
 * each of the four output phases is a 2x2 conv of x with summed weights,
 * 4/9 of the multiply-adds, all four as one product. Small inputs (a
 * UNet's 4x4 level), where building the phase weights would cost more,
 * are upsampled and convolved. x [N,C,H,W] -> [N,Cout,2H,2W]. */
lc_tensor *lc_conv2d_up2(const lc_tensor *x, const lc_tensor *w, const lc_tensor *bias);
/* x [N,C,...], gamma/beta [C] or NULL */
lc_tensor *lc_group_norm(const lc_tensor *x, int groups, const lc_tensor *gamma,
                         const lc_tensor *beta, double eps);
/* group_norm then SiLU in one pass over the data (the UNet's and VAE's
 * resnets): the values of lc_unary_(LC_SILU, lc_group_norm(...)) */
lc_tensor *lc_group_norm_silu(const lc_tensor *x, int groups, const lc_tensor *gamma,
                              const lc_tensor *beta, double eps);
/* normalises over the last dimension; gamma/beta [D] or NULL */
lc_tensor *lc_layer_norm(const lc_tensor *x, const lc_tensor *gamma, const lc_tensor *beta,
                         double eps);
lc_tensor *lc_softmax(const lc_tensor *x, int dim);
lc_tensor *lc_log_softmax(const lc_tensor *x, int dim);
/* q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv]; mask broadcastable to
 * [B,H,Lq,Lk]: u8 (nonzero = keep) or float (added to scores) or NULL;
 * scale <= 0 means 1/sqrt(D). */
lc_tensor *lc_sdpa(const lc_tensor *q, const lc_tensor *k, const lc_tensor *v,
                   const lc_tensor *mask, double scale, int causal);
/* Multi-head convenience on [B,L,H*D] tensors: splits heads, attends,
 * merges: out [B,Lq,H*Dv] */
lc_tensor *lc_attention_heads(const lc_tensor *q, const lc_tensor *k, const lc_tensor *v,
                              int heads, const lc_tensor *mask, double scale);

typedef enum { LC_RESIZE_NEAREST, LC_RESIZE_BILINEAR, LC_RESIZE_NEAREST_EXACT } lc_resize_mode;
/* x [N,C,H,W] -> [N,C,oh,ow], torch F.interpolate semantics (nearest uses
 * floor(dst * in/out) as torch's 'nearest'; bilinear with align_corners) */
lc_tensor *lc_resize(const lc_tensor *x, int64_t oh, int64_t ow, lc_resize_mode mode,
                     int align_corners);

typedef enum { LC_PAD_ZEROS, LC_PAD_BORDER, LC_PAD_REFLECTION } lc_pad_mode;
typedef enum { LC_SAMPLE_BILINEAR, LC_SAMPLE_NEAREST } lc_sample_mode;
/* x [N,C,H,W], grid [N,Ho,Wo,2] (x, y) in [-1,1] -> [N,C,Ho,Wo] */
lc_tensor *lc_grid_sample(const lc_tensor *x, const lc_tensor *grid, lc_sample_mode mode,
                          lc_pad_mode pad, int align_corners);

/* constant/reflect/replicate padding of the last two dims: pads = {left,
 * right, top, bottom} */
typedef enum { LC_PADK_CONSTANT, LC_PADK_REFLECT, LC_PADK_REPLICATE } lc_padk;
lc_tensor *lc_pad2d(const lc_tensor *x, const int64_t pads[4], lc_padk kind, double value);

#endif
