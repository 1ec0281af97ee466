# KfmDependencies.cmake - resolve the optional backend dependencies.
#
# Included from the top-level CMakeLists.txt (same scope, so imported targets
# and KFM_HAVE_* variables are visible there).  For each of PAPI, HWLOC,
# CUPTI, NVML and ROCM_SMI it reads the tri-state cache option KFM_WITH_<X>
# (AUTO: use when found; ON: required; OFF: never) and sets:
#   KFM_HAVE_<X>      ON/OFF
#   KFM_<X>_TARGETS   imported targets to link (may be empty)
#   KFM_<X>_INCLUDES  extra include directories (may be empty)
#   KFM_<X>_DETAIL    what was found, or why the backend is off
# An option forced ON whose dependency is missing stops configuration with a
# message naming the package to install.

set(KFM_OPTIONAL_DEPS PAPI HWLOC CUPTI NVML ROCM_SMI)

# Normalise a KFM_WITH_<X> value to AUTO, ON or OFF (accepting CMake booleans).
function(kfm__tristate out name)
  string(TOUPPER "${${name}}" v)
  if(v STREQUAL "AUTO")
    set(r AUTO)
  elseif(v MATCHES "^(ON|YES|TRUE|Y|1)$")
    set(r ON)
  elseif(v MATCHES "^(OFF|NO|FALSE|N|0|)$")
    set(r OFF)
  else()
    message(FATAL_ERROR "${name}='${${name}}': expected AUTO, ON or OFF")
  endif()
  set(${out} ${r} PARENT_SCOPE)
endfunction()

foreach(_dep IN LISTS KFM_OPTIONAL_DEPS)
  set(KFM_WITH_${_dep} AUTO CACHE STRING
      "Build the ${_dep} backend: AUTO (when found), ON (required), OFF")
  set_property(CACHE KFM_WITH_${_dep} PROPERTY STRINGS AUTO ON OFF)
  kfm__tristate(_KFM_MODE_${_dep} KFM_WITH_${_dep})
  set(KFM_HAVE_${_dep} OFF)
  set(KFM_${_dep}_TARGETS "")
  set(KFM_${_dep}_INCLUDES "")
  set(KFM_${_dep}_DETAIL "disabled by KFM_WITH_${_dep}=OFF")
endforeach()

# ---- PAPI: linked (libpapi) ------------------------------------------------
if(NOT _KFM_MODE_PAPI STREQUAL "OFF")
  find_package(PAPI QUIET)
  if(PAPI_FOUND)
    set(KFM_HAVE_PAPI ON)
    set(KFM_PAPI_TARGETS PAPI::PAPI)
    set(KFM_PAPI_DETAIL "${PAPI_LIBRARY}, version ${PAPI_VERSION}")
  else()
    set(KFM_PAPI_DETAIL "papi.h or libpapi not found")
  endif()
endif()
set(_KFM_PKG_PAPI "the Debian package libpapi-dev (or set PAPI_ROOT to a PAPI install)")

# ---- hwloc: linked, found through pkg-config ---------------------------------
if(NOT _KFM_MODE_HWLOC STREQUAL "OFF")
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(HWLOC QUIET IMPORTED_TARGET hwloc)
    if(HWLOC_FOUND)
      set(KFM_HAVE_HWLOC ON)
      set(KFM_HWLOC_TARGETS PkgConfig::HWLOC)
      find_library(_KFM_HWLOC_LIB NAMES hwloc HINTS ${HWLOC_LIBRARY_DIRS} NO_CACHE)
      set(KFM_HWLOC_DETAIL "${_KFM_HWLOC_LIB}, version ${HWLOC_VERSION}")
    else()
      set(KFM_HWLOC_DETAIL "pkg-config module hwloc not found")
    endif()
  else()
    set(KFM_HWLOC_DETAIL "pkg-config not found (needed to locate hwloc)")
  endif()
endif()
set(_KFM_PKG_HWLOC "the Debian packages libhwloc-dev and pkg-config (or add hwloc.pc to PKG_CONFIG_PATH)")

# ---- CUPTI: headers only; libcupti is dlopen'ed at run time ------------------
if(NOT _KFM_MODE_CUPTI STREQUAL "OFF")
  if(NOT DEFINED CUDAToolkit_ROOT AND NOT DEFINED ENV{CUDAToolkit_ROOT}
     AND NOT DEFINED ENV{CUDA_PATH} AND EXISTS "/usr/local/cuda")
    set(CUDAToolkit_ROOT "/usr/local/cuda")
  endif()
  find_package(CUDAToolkit QUIET)
  set(_kfm_cupti_hints)
  if(CUDAToolkit_FOUND)
    list(APPEND _kfm_cupti_hints ${CUDAToolkit_INCLUDE_DIRS})
    if(CUDAToolkit_LIBRARY_ROOT)
      list(APPEND _kfm_cupti_hints "${CUDAToolkit_LIBRARY_ROOT}/extras/CUPTI/include")
    endif()
    if(CUDAToolkit_BIN_DIR)
      list(APPEND _kfm_cupti_hints "${CUDAToolkit_BIN_DIR}/../extras/CUPTI/include")
    endif()
  endif()
  find_path(KFM_CUPTI_INCLUDE_DIR NAMES cupti.h HINTS ${_kfm_cupti_hints}
            PATH_SUFFIXES extras/CUPTI/include)
  mark_as_advanced(KFM_CUPTI_INCLUDE_DIR)
  set(_kfm_cupti_inc "${KFM_CUPTI_INCLUDE_DIR}")
  if(_kfm_cupti_inc AND NOT EXISTS "${_kfm_cupti_inc}/cupti.h")
    set(_kfm_cupti_inc "")
  endif()
  if(NOT CUDAToolkit_FOUND)
    set(KFM_CUPTI_DETAIL "CUDA toolkit not found (CUDAToolkit_ROOT=${CUDAToolkit_ROOT})")
  elseif(NOT _kfm_cupti_inc)
    set(KFM_CUPTI_DETAIL "cupti.h not found in CUDA toolkit ${CUDAToolkit_VERSION} (KFM_CUPTI_INCLUDE_DIR=${KFM_CUPTI_INCLUDE_DIR})")
  else()
    set(KFM_HAVE_CUPTI ON)
    # cupti.h includes cuda.h, which lives in the toolkit's include directory.
    set(KFM_CUPTI_INCLUDES ${_kfm_cupti_inc} ${CUDAToolkit_INCLUDE_DIRS})
    list(REMOVE_DUPLICATES KFM_CUPTI_INCLUDES)
    set(KFM_CUPTI_DETAIL "headers ${_kfm_cupti_inc}, CUDA ${CUDAToolkit_VERSION}; libcupti dlopen'ed at run time")
  endif()
  unset(_kfm_cupti_hints)
  unset(_kfm_cupti_inc)
endif()
set(_KFM_PKG_CUPTI "the CUDA toolkit with CUPTI (Debian nvidia-cuda-toolkit, or NVIDIA's CUDA at /usr/local/cuda; set CUDAToolkit_ROOT)")

# ---- NVML: nothing at build time; the backend declares what it uses and
#      dlopen's libnvidia-ml.so.1 at run time --------------------------------
if(NOT _KFM_MODE_NVML STREQUAL "OFF")
  set(KFM_HAVE_NVML ON)
  set(KFM_NVML_DETAIL "no build dependency; libnvidia-ml.so.1 dlopen'ed at run time")
  # nvml.h is optional: where found, backends/nvml/nvml_abi.c checks the
  # backend's hand-written NVML declarations against it.  The CUDA toolkit
  # ships it (cuda-nvml-dev); so does PyPI's nvidia-nvml-dev
  # (site-packages/nvidia/cu13/include): set KFM_NVML_INCLUDE_DIR to it.
  find_path(KFM_NVML_INCLUDE_DIR NAMES nvml.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NVML_INCLUDE_DIR /usr/local/cuda/include)
  mark_as_advanced(KFM_NVML_INCLUDE_DIR)
  if(KFM_NVML_INCLUDE_DIR)
    set(KFM_NVML_INCLUDES ${KFM_NVML_INCLUDE_DIR})
    string(APPEND KFM_NVML_DETAIL "; declarations checked against ${KFM_NVML_INCLUDE_DIR}/nvml.h")
  endif()
endif()
set(_KFM_PKG_NVML "nothing")

# ---- ROCm SMI: found at build time, dlopen'ed at run time --------------------
# The backend loads librocm_smi64 with dlopen (one binary runs with or without
# ROCm); linking it is only for builds that want the dependency explicit.
option(KFM_LINK_ROCM_SMI
       "Link librocm_smi64 into libkfm (default OFF: the backend dlopen's it)" OFF)
if(NOT _KFM_MODE_ROCM_SMI STREQUAL "OFF")
  find_package(ROCmSMI QUIET)
  if(ROCmSMI_FOUND)
    set(KFM_HAVE_ROCM_SMI ON)
    if(KFM_LINK_ROCM_SMI)
      set(KFM_ROCM_SMI_TARGETS ROCmSMI::ROCmSMI)
      set(KFM_ROCM_SMI_DETAIL "${ROCmSMI_LIBRARY}, version ${ROCmSMI_VERSION}")
    else()
      set(KFM_ROCM_SMI_INCLUDES ${ROCmSMI_INCLUDE_DIR})
      set(KFM_ROCM_SMI_DETAIL "headers ${ROCmSMI_INCLUDE_DIR}, not linked (KFM_LINK_ROCM_SMI=OFF)")
    endif()
  else()
    set(KFM_ROCM_SMI_DETAIL "rocm_smi/rocm_smi.h or librocm_smi64 not found")
  endif()
endif()
set(_KFM_PKG_ROCM_SMI "the Debian package librocm-smi-dev (or set ROCmSMI_ROOT / ROCM_PATH)")

# ---- Enforce ON, print the summary ------------------------------------------
foreach(_dep IN LISTS KFM_OPTIONAL_DEPS)
  string(TOLOWER "${_dep}" _name)
  if(_KFM_MODE_${_dep} STREQUAL "ON" AND NOT KFM_HAVE_${_dep})
    message(FATAL_ERROR
      "KFM_WITH_${_dep}=ON but ${_name} is unusable: ${KFM_${_dep}_DETAIL}.\n"
      "Install ${_KFM_PKG_${_dep}}, or configure with -DKFM_WITH_${_dep}=AUTO or OFF.")
  endif()
endforeach()

foreach(_dep IN LISTS KFM_OPTIONAL_DEPS)
  string(TOLOWER "${_dep}" _name)
  if(KFM_HAVE_${_dep})
    message(STATUS "kfm: ${_name} ON (${KFM_${_dep}_DETAIL})")
  else()
    message(STATUS "kfm: ${_name} OFF (${KFM_${_dep}_DETAIL})")
  endif()
endforeach()
unset(_dep)
unset(_name)
