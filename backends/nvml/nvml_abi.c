/*
 * nvml_abi.c - ties the NVML declarations of kfm_nvml.h to NVIDIA's nvml.h
 * where the build finds it (the CUDA toolkit's include directory, the
 * nvidia-nvml-dev wheel's, or KFM_NVML_INCLUDE_DIR: see
 * cmake/KfmDependencies.cmake).  kfm_nvml.h declares by hand the few types
 * and constants the backend uses, so that the backend builds without the
 * header; every such declaration is checked here against the header, so a
 * copy that drifts stops the build instead of reading a field at the wrong
 * offset.  Without nvml.h this file compiles to nothing.
 */
#include "kfm_nvml.h"

#include <stddef.h>

#if defined(__has_include)
#if __has_include(<nvml.h>)
#include <nvml.h>

#define KFM_SAME_LAYOUT(ours, theirs, field)                                                       \
  _Static_assert(offsetof(ours, field) == offsetof(theirs, field),                                 \
                 #ours "." #field " is not where " #theirs " has it")

_Static_assert(sizeof(kfm__nvml_return_t) == sizeof(nvmlReturn_t), "nvmlReturn_t size");
_Static_assert((long long)KFM__NVML_SUCCESS == (long long)NVML_SUCCESS, "NVML_SUCCESS");
_Static_assert((long long)KFM__NVML_ERROR_NOT_SUPPORTED == (long long)NVML_ERROR_NOT_SUPPORTED, "NOT_SUPPORTED");
_Static_assert((long long)KFM__NVML_ERROR_NO_PERMISSION == (long long)NVML_ERROR_NO_PERMISSION, "NO_PERMISSION");
_Static_assert((long long)KFM__NVML_ERROR_INSUFFICIENT_SIZE == (long long)NVML_ERROR_INSUFFICIENT_SIZE,
               "INSUFFICIENT_SIZE");
_Static_assert((long long)KFM__NVML_ERROR_DRIVER_NOT_LOADED == (long long)NVML_ERROR_DRIVER_NOT_LOADED,
               "DRIVER_NOT_LOADED");
_Static_assert((long long)KFM__NVML_ERROR_UNKNOWN == (long long)NVML_ERROR_UNKNOWN, "UNKNOWN");
_Static_assert((long long)KFM__NVML_CLOCK_SM == (long long)NVML_CLOCK_SM && (long long)KFM__NVML_CLOCK_MEM == (long long)NVML_CLOCK_MEM,
               "nvmlClockType_t");
_Static_assert((long long)KFM__NVML_TEMPERATURE_GPU == (long long)NVML_TEMPERATURE_GPU, "nvmlTemperatureSensors_t");
_Static_assert((long long)KFM__NVML_PCIE_UTIL_TX_BYTES == (long long)NVML_PCIE_UTIL_TX_BYTES &&
                   (long long)KFM__NVML_PCIE_UTIL_RX_BYTES == (long long)NVML_PCIE_UTIL_RX_BYTES,
               "nvmlPcieUtilCounter_t");
_Static_assert((long long)KFM__NVML_NAME_SIZE == (long long)NVML_DEVICE_NAME_V2_BUFFER_SIZE, "name buffer");
_Static_assert((long long)KFM__NVML_BUS_ID_SIZE == (long long)NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE, "bus id buffer");
_Static_assert((long long)KFM__NVML_UUID_SIZE == (long long)NVML_DEVICE_UUID_V2_BUFFER_SIZE, "uuid buffer");
_Static_assert((long long)KFM__NVML_MIG_ENABLE == (long long)NVML_DEVICE_MIG_ENABLE, "NVML_DEVICE_MIG_ENABLE");
_Static_assert((long long)KFM__NVML_FI_DEV_POWER_INSTANT == (long long)NVML_FI_DEV_POWER_INSTANT,
               "NVML_FI_DEV_POWER_INSTANT");
_Static_assert((long long)KFM__NVML_VALUE_TYPE_UNSIGNED_INT == (long long)NVML_VALUE_TYPE_UNSIGNED_INT,
               "NVML_VALUE_TYPE_UNSIGNED_INT");

_Static_assert(sizeof(struct kfm__nvml_pci_info) == sizeof(nvmlPciInfo_t), "nvmlPciInfo_t size");
KFM_SAME_LAYOUT(struct kfm__nvml_pci_info, nvmlPciInfo_t, busIdLegacy);
KFM_SAME_LAYOUT(struct kfm__nvml_pci_info, nvmlPciInfo_t, domain);
KFM_SAME_LAYOUT(struct kfm__nvml_pci_info, nvmlPciInfo_t, pciSubSystemId);
KFM_SAME_LAYOUT(struct kfm__nvml_pci_info, nvmlPciInfo_t, busId);

_Static_assert(sizeof(struct kfm__nvml_utilization) == sizeof(nvmlUtilization_t), "utilization");
KFM_SAME_LAYOUT(struct kfm__nvml_utilization, nvmlUtilization_t, gpu);
KFM_SAME_LAYOUT(struct kfm__nvml_utilization, nvmlUtilization_t, memory);

_Static_assert(sizeof(struct kfm__nvml_memory) == sizeof(nvmlMemory_t), "nvmlMemory_t size");
KFM_SAME_LAYOUT(struct kfm__nvml_memory, nvmlMemory_t, total);
KFM_SAME_LAYOUT(struct kfm__nvml_memory, nvmlMemory_t, free);
KFM_SAME_LAYOUT(struct kfm__nvml_memory, nvmlMemory_t, used);

_Static_assert(sizeof(struct kfm__nvml_process_info_v1) == sizeof(nvmlProcessInfo_v1_t),
               "nvmlProcessInfo_v1_t size");
KFM_SAME_LAYOUT(struct kfm__nvml_process_info_v1, nvmlProcessInfo_v1_t, pid);
KFM_SAME_LAYOUT(struct kfm__nvml_process_info_v1, nvmlProcessInfo_v1_t, usedGpuMemory);
_Static_assert(sizeof(struct kfm__nvml_process_info_v2) == sizeof(nvmlProcessInfo_t),
               "nvmlProcessInfo_t size");
KFM_SAME_LAYOUT(struct kfm__nvml_process_info_v2, nvmlProcessInfo_t, pid);
KFM_SAME_LAYOUT(struct kfm__nvml_process_info_v2, nvmlProcessInfo_t, usedGpuMemory);
KFM_SAME_LAYOUT(struct kfm__nvml_process_info_v2, nvmlProcessInfo_t, gpuInstanceId);
KFM_SAME_LAYOUT(struct kfm__nvml_process_info_v2, nvmlProcessInfo_t, computeInstanceId);

_Static_assert(sizeof(struct kfm__nvml_field_value) == sizeof(nvmlFieldValue_t),
               "nvmlFieldValue_t size");
KFM_SAME_LAYOUT(struct kfm__nvml_field_value, nvmlFieldValue_t, fieldId);
KFM_SAME_LAYOUT(struct kfm__nvml_field_value, nvmlFieldValue_t, timestamp);
KFM_SAME_LAYOUT(struct kfm__nvml_field_value, nvmlFieldValue_t, valueType);
KFM_SAME_LAYOUT(struct kfm__nvml_field_value, nvmlFieldValue_t, nvmlReturn);
KFM_SAME_LAYOUT(struct kfm__nvml_field_value, nvmlFieldValue_t, value);
_Static_assert(sizeof(((struct kfm__nvml_field_value *)0)->value) == sizeof(nvmlValue_t),
               "nvmlValue_t size");

/* The process-list readers take pid at offset 0 and the memory at 8. */
_Static_assert(offsetof(nvmlProcessInfo_t, usedGpuMemory) == 8, "kfm__nvml_proc_mem offsets");

#undef KFM_SAME_LAYOUT
#endif
#endif

/* ISO C wants a translation unit to declare something. */
typedef int kfm__nvml_abi_checked;
