/* Central-difference gradient check for anything built on the tape.
 *
 * The function under test builds its graph from tape tensors holding the
 * inputs and returns an output of any shape. The harness turns it into the
 * scalar f(x) = sum(out * R) for a fixed random R (R from tfm_rand_uniform,
 * in [-1, 1)), runs backward, and compares every element of every input that
 * wants a gradient with
 *     (f(x + h e_i) - f(x - h e_i)) / 2h,
 * where f is accumulated in double from the float outputs, so that outputs
 * the perturbation does not touch cancel exactly.
 *
 *   static tfm_tensor *fwd(tfm_tape *t, tfm_tensor *const *in, void *ctx) {
 *       return tfm_softmax(t, in[0]);
 *   }
 *   float x[12];  tfm_test_fill(x, 12, 1, -2, 2);
 *   tfm_gc_input in[1] = {{"x", 2, {3, 4}, x, 1, NULL}};
 *   tfm_gc_opts o = tfm_gc_defaults();
 *   ck_assert(tfm_gradcheck("softmax", &tape, fwd, NULL, in, 1, &o) == 0);
 *
 * The tape is reset before every evaluation (its seed, step and training
 * flag are kept), so dropout draws the same mask each time: f is then a
 * fixed piecewise-linear-in-the-mask function and can be checked too. */
#ifndef TFM_TEST_GRADCHECK_H
#define TFM_TEST_GRADCHECK_H

#include "tfm/ops.h"

typedef struct {
    const char *name; /* "x", "gamma": used in the printed lines */
    int ndim;
    int64_t shape[TFM_MAX_DIMS];
    float *data;     /* caller-owned values; perturbed during the check, then restored */
    int needs_grad;  /* check this input's gradient (else it is a constant) */
    float *grad_out; /* optional (n floats): receives the analytic gradient */
} tfm_gc_input;

/* Builds the graph under test; in[i] is a fresh tape tensor with the values
 * of inputs[i] (and a zeroed gradient when needs_grad). NULL on error. */
typedef tfm_tensor *(*tfm_gc_fn)(tfm_tape *t, tfm_tensor *const *in, void *ctx);

typedef struct {
    float h;           /* central-difference step */
    double atol, rtol; /* element passes when |an - num| <= atol + rtol * max(|an|, |num|) */
    /* Optional: return non-zero to skip element i of input `input` (kinks
     * such as ReLU at 0, or rows that by design get no gradient). */
    int (*skip)(void *ctx, int input, int64_t i, const float *data);
    double max_skip_frac; /* fail when more than this fraction of elements is skipped */
    uint64_t seed;        /* for R */
    int quiet;            /* do not print the per-tensor lines */
} tfm_gc_opts;

/* h 1e-2, atol 1e-3, rtol 1e-2, at most 25% skipped, seed 12345. */
tfm_gc_opts tfm_gc_defaults(void);

typedef struct {
    double max_abs, max_rel; /* over checked elements of one input */
    int64_t checked, skipped, failed;
} tfm_gc_result;

/* Returns 0 when every checked element passes (and the forward and backward
 * ran), else the number of failing elements (or -1 when the graph failed to
 * build or backward errored, with the reason printed). Prints one line per
 * checked input: "what: x  max abs err 1e-5  max rel err 3e-4  (n checked,
 * k skipped)". results (n_in entries) is optional. */
int tfm_gradcheck(const char *what, tfm_tape *t, tfm_gc_fn fn, void *ctx, tfm_gc_input *inputs,
                  int n_in, const tfm_gc_opts *opts, tfm_gc_result *results);

/* Directional check (KANN style) for large graphs: one random direction u
 * over every needs_grad input; compares sum_i grad_i u_i with
 * (f(x + h u) - f(x - h u)) / 2h. Two forwards instead of two per element.
 * Returns 0 when |an - num| <= atol + rtol * max(|an|, |num|), else 1 (-1 on
 * a failed graph); the values are stored in *analytic / *numeric if non-NULL. */
int tfm_gradcheck_directional(const char *what, tfm_tape *t, tfm_gc_fn fn, void *ctx,
                              tfm_gc_input *inputs, int n_in, const tfm_gc_opts *opts,
                              double *analytic, double *numeric);

/* Evaluates fn once on the inputs with the same harness (R-weighted loss),
 * fills grad_out of each input that has one; returns the loss f(x) or NAN on
 * failure. Useful to compare two graphs that should agree (fused op vs
 * composition): same R, same inputs, same gradients. out_copy (optional,
 * out_cap floats) receives the output values, *out_n their count. */
double tfm_gc_eval(tfm_tape *t, tfm_gc_fn fn, void *ctx, tfm_gc_input *inputs, int n_in,
                   uint64_t seed, float *out_copy, int64_t out_cap, int64_t *out_n);

#endif
