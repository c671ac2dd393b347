/* tfm/average.h: checkpoint averaging. The element-wise mean of the weights
 * of the last few checkpoints of a run usually translates better than any
 * one of them (Vaswani et al. 2017 average the last 5 or 20; Marian,
 * fairseq and OpenNMT ship the same tool):
 *
 *   const char *in[] = {"run/checkpoint-00009000.tfm", "run/checkpoint-00010000.tfm"};
 *   if (tfm_checkpoint_average(in, 2, "run/averaged.tfm")) die(tfm_last_error());
 *
 * The result is an ordinary weights-only checkpoint that translate and
 * export read like any other. */
#ifndef TFM_AVERAGE_H
#define TFM_AVERAGE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most checkpoints one average takes (tfm average, --average-last). */
#define TFM_AVERAGE_MAX 4096

/* Writes the mean of the parameters of the n checkpoints `paths` to
 * out_path (crash-safe, like every checkpoint). They must hold the same
 * tensors (names, shapes, order) and the same configuration: every
 * "model.*" key and "data.kind" equal, else an error names the two files and
 * the setting that differs. The mean is summed in double and rounded once,
 * so averaging a checkpoint with itself gives it back bit for bit. The
 * metadata (configuration, training state) is that of the last path, plus
 * average.count and average.inputs; the optimizer state is not kept.
 * out_path may be one of the inputs. Returns 0, or non-zero with
 * tfm_last_error() set. */
int tfm_checkpoint_average(const char *const *paths, int64_t n, const char *out_path);

#ifdef __cplusplus
}
#endif

#endif
