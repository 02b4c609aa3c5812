/* cuda_stub.c - the CUDA entry points of a build without the GPU backend (CUDA=0):
 * no device is ever available, so every caller takes its CPU path. */
#include "kernels_cuda.h"

#ifndef S2S_CUDA
int s2s_cuda_available(void) { return 0; }
const char *s2s_cuda_device_name(void) { return "none"; }
#else
typedef int s2s_cuda_stub_unused; /* ISO C: a translation unit is never empty */
#endif
