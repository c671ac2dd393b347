/* One variant's kernel table (compiled once per variant with TFM_ISA set;
 * see dispatch.h). Its name and CPU needs come from the compiler's macros,
 * i.e. from the -march the variant was compiled with. */
#ifdef TFM_ISA
#include "dispatch.h"

const tfm_kernel_table TFM_ISA_NAME(tfm_kernel_table) = {
#if defined(__AVX512F__)
    .name = "avx512",
#elif defined(__AVX2__) && defined(__FMA__)
    .name = "avx2",
#else
    .name = "generic",
#endif
    .needs = 0
#ifdef __SSE4_2__
             | TFM_CPU_SSE42
#endif
#ifdef __POPCNT__
             | TFM_CPU_POPCNT
#endif
#ifdef __AVX__
             | TFM_CPU_AVX
#endif
#ifdef __AVX2__
             | TFM_CPU_AVX2
#endif
#ifdef __FMA__
             | TFM_CPU_FMA
#endif
#ifdef __BMI__
             | TFM_CPU_BMI
#endif
#ifdef __BMI2__
             | TFM_CPU_BMI2
#endif
#ifdef __AVX512F__
             | TFM_CPU_AVX512F
#endif
#ifdef __AVX512BW__
             | TFM_CPU_AVX512BW
#endif
#ifdef __AVX512DQ__
             | TFM_CPU_AVX512DQ
#endif
#ifdef __AVX512VL__
             | TFM_CPU_AVX512VL
#endif
#ifdef __AVX512CD__
             | TFM_CPU_AVX512CD
#endif
    ,
#define TFM_KERNEL_ENTRY(f) .f = tfm_##f,
    TFM_KERNEL_FUNCS(TFM_KERNEL_ENTRY)
#undef TFM_KERNEL_ENTRY
};
#else
/* compiled without variants (e.g. the fuzz build): nothing to collect */
typedef int tfm_no_kernel_variants;
#endif
