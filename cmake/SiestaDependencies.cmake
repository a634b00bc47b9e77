# Third-party dependencies, found the ordinary way (Debian 12 packages; see scripts/setup.sh).
find_package(Threads REQUIRED)

# CAF 0.17.6 (libcaf-dev) ships no CMake config and no .pc file: make the imported targets here.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIB caf_core REQUIRED)
find_library(CAF_IO_LIB caf_io REQUIRED)
add_library(CAF::core UNKNOWN IMPORTED)
set_target_properties(CAF::core PROPERTIES IMPORTED_LOCATION ${CAF_CORE_LIB}
  INTERFACE_INCLUDE_DIRECTORIES ${CAF_INCLUDE_DIR} INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(CAF::io UNKNOWN IMPORTED)
set_target_properties(CAF::io PROPERTIES IMPORTED_LOCATION ${CAF_IO_LIB} INTERFACE_LINK_LIBRARIES CAF::core)

find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(Boost 1.81 REQUIRED COMPONENTS json)
find_package(CLI11 REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
# cpp-httplib (libcpp-httplib-dev) ships only a pkg-config file.
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
add_library(httplib::httplib ALIAS PkgConfig::HTTPLIB)

set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread x86_64-linux-gnu/openblas-pthread REQUIRED)
add_library(siesta_blas INTERFACE)
target_include_directories(siesta_blas INTERFACE ${CBLAS_INCLUDE_DIR})
target_link_libraries(siesta_blas INTERFACE ${BLAS_LIBRARIES})
add_library(BLAS::cblas ALIAS siesta_blas)
