/* Benchmarks behind `tfm bench ...`. Each takes the arguments after its own
 * name (argv[0] is the benchmark name), prints its results and returns the
 * exit status (0 ok, 1 runtime error, 2 usage error). */
#ifndef TFM_TRAIN_BENCH_H
#define TFM_TRAIN_BENCH_H

#include <stdint.h>

/* The model presets of ../shared/bench/torch_transformer.py, shared by
 * tfm bench step and tfm bench allreduce. */
typedef struct {
    const char *name;
    int64_t d_model, heads, d_ff, enc_layers, dec_layers, vocab, batch, src_len, tgt_len;
} tfm_bench_preset;
/* The preset called name (toy, small, base), or NULL. */
const tfm_bench_preset *tfm_bench_preset_find(const char *name);

/* tfm bench gemm --m M --n N --k K [--trans nn|nt|tn|tt] [--threads T] [--reps R]
 *                [--precision fp32|bf16]
 * Times tfm_gemm (or tfm_gemm_bf16) on C(M,N) = op(A)(M,K) op(B)(K,N); the last line printed is
 * gflops=<median>. */
int tfm_bench_gemm(int argc, char **argv);
/* tfm bench step --preset toy|small|base [--threads T] [--precision fp32|bf16]: one training step
 * as ../shared/bench/torch_transformer.py; the last line printed is
 * tokens_per_s=... ms_per_step=... gflops=... peak_rss_mb=... */
int tfm_bench_step(int argc, char **argv);
/* mpirun -np N tfm bench allreduce --preset toy|small|base [--reps R]: the
 * gradient reduction of data-parallel training on a preset's gradient block
 * (MPI builds); rank 0 prints preset=... ranks=... bytes_per_step=...
 * allreduce_ms_median=... */
int tfm_bench_allreduce(int argc, char **argv);

#endif
