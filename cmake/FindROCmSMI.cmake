# FindROCmSMI.cmake - locate the ROCm System Management Interface library.
#
# The rocm_smi-config.cmake shipped by Debian's librocm-smi-dev points its
# include directory at a path that does not exist, so kfm uses this module
# instead (module mode: find_package(ROCmSMI)).
#
# Hints: ROCmSMI_ROOT (CMake variable or environment), ROCM_PATH (environment),
# /opt/rocm.
# Result variables: ROCmSMI_FOUND, ROCmSMI_INCLUDE_DIRS, ROCmSMI_LIBRARIES,
# ROCmSMI_VERSION (from rocm_smi/rocm_smi64Config.h when present).
# Cache variables: ROCmSMI_INCLUDE_DIR (the directory holding rocm_smi/),
# ROCmSMI_LIBRARY.
# Imported target: ROCmSMI::ROCmSMI.
# Debian/Ubuntu package: librocm-smi-dev.

set(_rsmi_hints)
if(DEFINED ENV{ROCM_PATH})
  list(APPEND _rsmi_hints "$ENV{ROCM_PATH}")
endif()
list(APPEND _rsmi_hints /opt/rocm)

find_path(ROCmSMI_INCLUDE_DIR NAMES rocm_smi/rocm_smi.h
  HINTS ${_rsmi_hints}
  PATH_SUFFIXES include)
find_library(ROCmSMI_LIBRARY NAMES rocm_smi64
  HINTS ${_rsmi_hints}
  PATH_SUFFIXES lib lib64)
unset(_rsmi_hints)

if(ROCmSMI_INCLUDE_DIR AND NOT EXISTS "${ROCmSMI_INCLUDE_DIR}/rocm_smi/rocm_smi.h")
  set(ROCmSMI_INCLUDE_DIR "ROCmSMI_INCLUDE_DIR-NOTFOUND")
endif()

unset(ROCmSMI_VERSION)
if(ROCmSMI_INCLUDE_DIR AND EXISTS "${ROCmSMI_INCLUDE_DIR}/rocm_smi/rocm_smi64Config.h")
  file(STRINGS "${ROCmSMI_INCLUDE_DIR}/rocm_smi/rocm_smi64Config.h" _rsmi_ver_lines
       REGEX "^#define[ \t]+rocm_smi_VERSION_(MAJOR|MINOR|PATCH)[ \t]+[0-9]+")
  foreach(_part MAJOR MINOR PATCH)
    set(_rsmi_${_part} "")
    foreach(_line IN LISTS _rsmi_ver_lines)
      if(_line MATCHES "rocm_smi_VERSION_${_part}[ \t]+([0-9]+)")
        set(_rsmi_${_part} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()
  if(NOT _rsmi_MAJOR STREQUAL "" AND NOT _rsmi_MINOR STREQUAL "" AND NOT _rsmi_PATCH STREQUAL "")
    set(ROCmSMI_VERSION "${_rsmi_MAJOR}.${_rsmi_MINOR}.${_rsmi_PATCH}")
  endif()
  unset(_rsmi_ver_lines)
  unset(_rsmi_MAJOR)
  unset(_rsmi_MINOR)
  unset(_rsmi_PATCH)
  unset(_part)
  unset(_line)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(ROCmSMI
  REQUIRED_VARS ROCmSMI_LIBRARY ROCmSMI_INCLUDE_DIR
  VERSION_VAR ROCmSMI_VERSION)

if(ROCmSMI_FOUND)
  set(ROCmSMI_INCLUDE_DIRS "${ROCmSMI_INCLUDE_DIR}")
  set(ROCmSMI_LIBRARIES "${ROCmSMI_LIBRARY}")
  if(NOT TARGET ROCmSMI::ROCmSMI)
    add_library(ROCmSMI::ROCmSMI UNKNOWN IMPORTED)
    set_target_properties(ROCmSMI::ROCmSMI PROPERTIES
      IMPORTED_LOCATION "${ROCmSMI_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${ROCmSMI_INCLUDE_DIR}")
  endif()
endif()

mark_as_advanced(ROCmSMI_INCLUDE_DIR ROCmSMI_LIBRARY)
