/* tfm bench: dispatches to the benchmarks in bench_*.c. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} benchmark;

static const benchmark BENCHMARKS[] = {
    {"gemm", tfm_bench_gemm, "time the GEMM kernel on one shape, fp32 or bf16 (GFLOP/s)"},
    {"step", tfm_bench_step, "time one training step of a preset model (tokens/s)"},
    {"allreduce", tfm_bench_allreduce,
     "time the gradient reduction of data-parallel training (MPI build, under mpirun)"},
};
#define N_BENCHMARKS (sizeof BENCHMARKS / sizeof BENCHMARKS[0])

static void usage(FILE *f) {
    fprintf(f, "usage: tfm bench <benchmark> [options]\n\nbenchmarks:\n");
    for (size_t i = 0; i < N_BENCHMARKS; i++)
        fprintf(f, "  %-6s %s (options: tfm bench %s --help)\n", BENCHMARKS[i].name,
                BENCHMARKS[i].help, BENCHMARKS[i].name);
}

int tfm_cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < N_BENCHMARKS; i++)
        if (!strcmp(argv[1], BENCHMARKS[i].name)) return BENCHMARKS[i].run(argc - 1, argv + 1);
    return tfm_cli_fail(2, "bench: unknown benchmark '%s' (tfm bench --help lists them)", argv[1]);
}
