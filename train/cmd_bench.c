/* tfm bench: dispatches to the benchmarks in bench_*.c. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "commands.h"

int tfm_cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: tfm bench gemm --m M --n N --k K [--trans nn|nt|tn|tt] [--threads T]"
                " [--reps R] [--precision fp32|bf16]\n       tfm bench step ...\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "gemm")) return tfm_bench_gemm(argc - 1, argv + 1);
    if (!strcmp(argv[1], "step")) return tfm_bench_step(argc - 1, argv + 1);
    return tfm_cli_fail(2, "bench: unknown benchmark '%s' (gemm or step)", argv[1]);
}
