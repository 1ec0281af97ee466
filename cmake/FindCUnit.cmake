# FindCUnit.cmake - locate the CUnit unit-testing framework.
#
# Hints: CUnit_ROOT (CMake variable or environment), pkg-config "cunit".
# Result variables: CUnit_FOUND, CUnit_INCLUDE_DIRS, CUnit_LIBRARIES,
# CUnit_VERSION (CU_VERSION "2.1-3" is reported as "2.1.3").
# Cache variables: CUnit_INCLUDE_DIR, CUnit_LIBRARY.
# Imported target: CUnit::CUnit.
# Debian/Ubuntu package: libcunit1-dev.

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_CUNIT QUIET cunit)
endif()

find_path(CUnit_INCLUDE_DIR NAMES CUnit/CUnit.h
  HINTS ${PC_CUNIT_INCLUDEDIR} ${PC_CUNIT_INCLUDE_DIRS}
  PATH_SUFFIXES include)
find_library(CUnit_LIBRARY NAMES cunit
  HINTS ${PC_CUNIT_LIBDIR} ${PC_CUNIT_LIBRARY_DIRS}
  PATH_SUFFIXES lib lib64)

if(CUnit_INCLUDE_DIR AND NOT EXISTS "${CUnit_INCLUDE_DIR}/CUnit/CUnit.h")
  set(CUnit_INCLUDE_DIR "CUnit_INCLUDE_DIR-NOTFOUND")
endif()

unset(CUnit_VERSION)
if(CUnit_INCLUDE_DIR)
  file(STRINGS "${CUnit_INCLUDE_DIR}/CUnit/CUnit.h" _cunit_ver_line
       REGEX "^#define[ \t]+CU_VERSION[ \t]+\"")
  if(_cunit_ver_line MATCHES "\"([0-9]+)\\.([0-9]+)(-([0-9]+))?\"")
    set(CUnit_VERSION "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}")
    if(CMAKE_MATCH_4)
      string(APPEND CUnit_VERSION ".${CMAKE_MATCH_4}")
    endif()
  endif()
  unset(_cunit_ver_line)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUnit
  REQUIRED_VARS CUnit_LIBRARY CUnit_INCLUDE_DIR
  VERSION_VAR CUnit_VERSION)

if(CUnit_FOUND)
  set(CUnit_INCLUDE_DIRS "${CUnit_INCLUDE_DIR}")
  set(CUnit_LIBRARIES "${CUnit_LIBRARY}")
  if(NOT TARGET CUnit::CUnit)
    add_library(CUnit::CUnit UNKNOWN IMPORTED)
    set_target_properties(CUnit::CUnit PROPERTIES
      IMPORTED_LOCATION "${CUnit_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${CUnit_INCLUDE_DIR}")
  endif()
endif()

mark_as_advanced(CUnit_INCLUDE_DIR CUnit_LIBRARY)
