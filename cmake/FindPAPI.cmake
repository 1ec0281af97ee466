# FindPAPI.cmake - locate the Performance API (PAPI) library.
#
# Hints: PAPI_ROOT (CMake variable or environment), pkg-config "papi".
# Result variables: PAPI_FOUND, PAPI_INCLUDE_DIRS, PAPI_LIBRARIES, PAPI_VERSION
# (from papi.h's PAPI_VERSION macro, e.g. "7.0.0.0").
# Cache variables: PAPI_INCLUDE_DIR, PAPI_LIBRARY.
# Imported target: PAPI::PAPI.
# Debian/Ubuntu package: libpapi-dev.

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_PAPI QUIET papi)
endif()

find_path(PAPI_INCLUDE_DIR NAMES papi.h
  HINTS ${PC_PAPI_INCLUDEDIR} ${PC_PAPI_INCLUDE_DIRS}
  PATH_SUFFIXES include)
find_library(PAPI_LIBRARY NAMES papi
  HINTS ${PC_PAPI_LIBDIR} ${PC_PAPI_LIBRARY_DIRS}
  PATH_SUFFIXES lib lib64)

# A hand-set cache value that does not point at the header counts as missing
# (shadowed for this run only; the cache entry is left as the user set it).
if(PAPI_INCLUDE_DIR AND NOT EXISTS "${PAPI_INCLUDE_DIR}/papi.h")
  set(PAPI_INCLUDE_DIR "PAPI_INCLUDE_DIR-NOTFOUND")
endif()

unset(PAPI_VERSION)
if(PAPI_INCLUDE_DIR)
  file(STRINGS "${PAPI_INCLUDE_DIR}/papi.h" _papi_ver_line
       REGEX "^#define[ \t]+PAPI_VERSION[ \t]+PAPI_VERSION_NUMBER")
  if(_papi_ver_line MATCHES "PAPI_VERSION_NUMBER[ \t]*\\([ \t]*([0-9]+)[ \t]*,[ \t]*([0-9]+)[ \t]*,[ \t]*([0-9]+)[ \t]*,[ \t]*([0-9]+)")
    set(PAPI_VERSION "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}.${CMAKE_MATCH_3}.${CMAKE_MATCH_4}")
  elseif(PC_PAPI_VERSION)
    set(PAPI_VERSION "${PC_PAPI_VERSION}")
  endif()
  unset(_papi_ver_line)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(PAPI
  REQUIRED_VARS PAPI_LIBRARY PAPI_INCLUDE_DIR
  VERSION_VAR PAPI_VERSION)

if(PAPI_FOUND)
  set(PAPI_INCLUDE_DIRS "${PAPI_INCLUDE_DIR}")
  set(PAPI_LIBRARIES "${PAPI_LIBRARY}")
  if(NOT TARGET PAPI::PAPI)
    add_library(PAPI::PAPI UNKNOWN IMPORTED)
    set_target_properties(PAPI::PAPI PROPERTIES
      IMPORTED_LOCATION "${PAPI_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${PAPI_INCLUDE_DIR}")
  endif()
endif()

mark_as_advanced(PAPI_INCLUDE_DIR PAPI_LIBRARY)
