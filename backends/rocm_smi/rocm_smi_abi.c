/*
 * rocm_smi_abi.c - ties the ROCm SMI declarations of kfm_rocm_smi.h to
 * rocm_smi/rocm_smi.h where the build finds it (librocm-smi-dev, ROCm).
 * The backend declares by hand the types and constants it uses, so it
 * builds and dlopen's any librocm_smi64 without the header; here each is
 * checked against the header, so a copy that drifts stops the build.
 * Without the header this file compiles to nothing.
 */
#include "kfm_rocm_smi.h"

#include <stddef.h>

#if defined(__has_include)
#if __has_include(<rocm_smi/rocm_smi.h>)
#include <rocm_smi/rocm_smi.h>
#if __has_include(<rocm_smi/rocm_smi64Config.h>)
#include <rocm_smi/rocm_smi64Config.h>
#endif

/* Every status code and name of the X-macro table. */
#define KFM_RSMI_SAME_STATUS(num, name)                                                            \
  _Static_assert((unsigned long long)(name) == (unsigned long long)(num),                          \
                 #name " is not " #num " in rocm_smi.h");
KFM__RSMI_STATUS_MAP(KFM_RSMI_SAME_STATUS)
#undef KFM_RSMI_SAME_STATUS

_Static_assert(sizeof(kfm__rsmi_status_t) == sizeof(rsmi_status_t), "rsmi_status_t size");
_Static_assert((long long)KFM__RSMI_SUCCESS == (long long)RSMI_STATUS_SUCCESS, "SUCCESS");
_Static_assert((long long)KFM__RSMI_NOT_SUPPORTED == (long long)RSMI_STATUS_NOT_SUPPORTED, "NOT_SUPPORTED");
_Static_assert((long long)KFM__RSMI_INIT_ERROR == (long long)RSMI_STATUS_INIT_ERROR, "INIT_ERROR");
_Static_assert((long long)KFM__RSMI_INVALID_ARGS == (long long)RSMI_STATUS_INVALID_ARGS, "INVALID_ARGS");
_Static_assert((long long)KFM__RSMI_CLK_TYPE_SYS == (long long)RSMI_CLK_TYPE_SYS && (long long)KFM__RSMI_CLK_TYPE_MEM == (long long)RSMI_CLK_TYPE_MEM,
               "rsmi_clk_type_t");
_Static_assert((long long)KFM__RSMI_MEM_TYPE_VRAM == (long long)RSMI_MEM_TYPE_VRAM, "rsmi_memory_type_t");
_Static_assert((long long)KFM__RSMI_TEMP_TYPE_EDGE == (long long)RSMI_TEMP_TYPE_EDGE &&
                   (long long)KFM__RSMI_TEMP_TYPE_JUNCTION == (long long)RSMI_TEMP_TYPE_JUNCTION,
               "rsmi_temperature_type_t");
_Static_assert((long long)KFM__RSMI_TEMP_CURRENT == (long long)RSMI_TEMP_CURRENT, "rsmi_temperature_metric_t");
_Static_assert(sizeof(rsmi_frequencies_t) <= KFM__RSMI_FREQ_BUF,
               "rsmi_frequencies_t larger than the buffer the backend passes");

_Static_assert(sizeof(struct kfm__rsmi_version) == sizeof(rsmi_version_t), "rsmi_version_t size");
_Static_assert(offsetof(struct kfm__rsmi_version, major) == offsetof(rsmi_version_t, major) &&
                   offsetof(struct kfm__rsmi_version, minor) == offsetof(rsmi_version_t, minor) &&
                   offsetof(struct kfm__rsmi_version, patch) == offsetof(rsmi_version_t, patch) &&
                   offsetof(struct kfm__rsmi_version, build) == offsetof(rsmi_version_t, build),
               "rsmi_version_t layout");

/* The init flag, where the header is new enough to name it (librocm_smi64
 * 7, ROCm 6; Debian's ROCm 5.2 header, library 1.0, lacks it, and
 * rocm_smi.c falls back to no flag if a library refuses it). */
#if defined(rocm_smi_VERSION_MAJOR) && rocm_smi_VERSION_MAJOR >= 7
_Static_assert((long long)KFM__RSMI_INIT_FLAG_THREAD_ONLY_MUTEX == (long long)RSMI_INIT_FLAG_THRAD_ONLY_MUTEX,
               "RSMI_INIT_FLAG_THRAD_ONLY_MUTEX");
#endif

#endif
#endif

/* ISO C wants a translation unit to declare something. */
typedef int kfm__rsmi_abi_checked;
