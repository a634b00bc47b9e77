# Helpers shared by every folder: one library per top-level folder, tests with ctest labels.

# -Wno-restrict: GCC 12 reports false positives on std::string concatenation at -O2
# (GCC bug 105329); the warning is right nowhere in this code base.
set(SIESTA_WARNINGS -Wall -Wextra -Wno-restrict)

# siesta_library(NAME SOURCES... [CUDA_SOURCES ...]) creates siesta_NAME and the alias siesta::NAME,
# with include/ as its public include directory.
function(siesta_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;CUDA_SOURCES" ${ARGN})
  set(srcs ${ARG_SOURCES})
  if(SIESTA_WITH_CUDA)
    list(APPEND srcs ${ARG_CUDA_SOURCES})
  endif()
  add_library(siesta_${name} STATIC ${srcs})
  add_library(siesta::${name} ALIAS siesta_${name})
  target_include_directories(siesta_${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                             PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_compile_options(siesta_${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${SIESTA_WARNINGS}>)
  set_target_properties(siesta_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON
                        CUDA_SEPARABLE_COMPILATION OFF)
  if(SIESTA_WITH_CUDA)
    target_compile_definitions(siesta_${name} PUBLIC SIESTA_WITH_CUDA=1)
    target_compile_options(siesta_${name} PRIVATE
      $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wall>)
  endif()
endfunction()

# siesta_test(NAME LABEL SOURCES... LIBS ...) builds a GoogleTest binary and registers each test
# with the given ctest label (unit, gpu or e2e).
function(siesta_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  target_compile_options(${name} PRIVATE ${SIESTA_WARNINGS})
  target_compile_definitions(${name} PRIVATE
    SIESTA_SOURCE_DIR="${PROJECT_SOURCE_DIR}" SIESTA_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${name} PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT}
                       DISCOVERY_TIMEOUT 60)
endfunction()

include(GoogleTest)
