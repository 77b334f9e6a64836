# The Python module `imram` (docs/python.md). The package is laid out in the build tree as it is
# installed: ${IMRAM_PYTHON_PACKAGE_DIR}/imram holds python/imram/* beside the compiled _imram, so
# that the tests import the build itself and python/setup.py installs the same files.
set(IMRAM_PYTHON_PACKAGE_DIR ${CMAKE_BINARY_DIR}/python)
file(GLOB IMRAM_PYTHON_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/python/src/*.cpp)
# NO_EXTRAS: no link-time optimisation of the binding (minutes on two cores for no measured gain;
# the work is in the library).
pybind11_add_module(imram_python MODULE NO_EXTRAS ${IMRAM_PYTHON_SOURCES})
set_target_properties(imram_python PROPERTIES OUTPUT_NAME _imram
                      LIBRARY_OUTPUT_DIRECTORY ${IMRAM_PYTHON_PACKAGE_DIR}/imram)
target_link_libraries(imram_python PRIVATE imram)
target_compile_definitions(imram_python PRIVATE IMRAM_VERSION="${PROJECT_VERSION}")
file(GLOB IMRAM_PYTHON_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/python/imram/*)
add_custom_target(imram_python_files ALL
  COMMAND ${CMAKE_COMMAND} -E make_directory ${IMRAM_PYTHON_PACKAGE_DIR}/imram
  COMMAND ${CMAKE_COMMAND} -E copy_if_different ${IMRAM_PYTHON_FILES} ${IMRAM_PYTHON_PACKAGE_DIR}/imram
  DEPENDS ${IMRAM_PYTHON_FILES}
  COMMENT "Python package files into ${IMRAM_PYTHON_PACKAGE_DIR}/imram")
add_dependencies(imram_python imram_python_files)
