# IMRAM_CORE_ONLY: imram_core's own tests (tests/data, tests/util, the metrics and image header
# tests) and, with IMRAM_FUZZ, the libFuzzer targets. Nothing here needs LibTorch, so a
# sanitizer build of it is cheap enough for every CI run; a test added to those folders must not
# need LibTorch either.
if(IMRAM_BUILD_TESTS)
  enable_testing()
  find_package(GTest REQUIRED)
  include(GoogleTest)
  file(GLOB IMRAM_CORE_TEST_SOURCES CONFIGURE_DEPENDS
    ${CMAKE_SOURCE_DIR}/tests/data/*.cpp ${CMAKE_SOURCE_DIR}/tests/util/*.cpp
    ${CMAKE_SOURCE_DIR}/tests/metrics/test_recall.cpp ${CMAKE_SOURCE_DIR}/tests/image/test_image_header.cpp)
  # A picture's header is read without OpenCV: its parser and tests run in the checking builds.
  add_executable(imram_core_tests ${IMRAM_CORE_TEST_SOURCES} ${CMAKE_SOURCE_DIR}/src/image/image_header.cpp)
  target_link_libraries(imram_core_tests PRIVATE imram_core GTest::gtest GTest::gtest_main)
  file(GENERATE OUTPUT ${CMAKE_BINARY_DIR}/generated/test_paths.h CONTENT
    "#pragma once\n#define IMRAM_TESTDATA_DIR \"${CMAKE_SOURCE_DIR}/tests/testdata\"\n#define IMRAM_BINARY \"\"\n")
  target_include_directories(imram_core_tests PRIVATE ${CMAKE_BINARY_DIR}/generated ${CMAKE_SOURCE_DIR}/tests)
  gtest_discover_tests(imram_core_tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)
endif()

if(IMRAM_FUZZ)
  add_subdirectory(${CMAKE_SOURCE_DIR}/fuzz ${CMAKE_BINARY_DIR}/fuzz)
endif()
