# kd_add_test(<name> SOURCES <src>... [DEPENDS <target>...] [LABELS <label>...])
#
# A Catch2 test executable linked with the test support library; every TEST_CASE becomes a ctest
# test. DEPENDS names plugins (or other targets) the tests load at run time.
find_package(Catch2 2 REQUIRED)
include(Catch)

# The Python that tests use to read outputs back with real tools (tensorboard): the project's
# virtual environment when there is one.
if(EXISTS "${CMAKE_SOURCE_DIR}/.venv/bin/python")
  set(KD_PYTHON "${CMAKE_SOURCE_DIR}/.venv/bin/python" CACHE FILEPATH "Python for the tests")
else()
  find_package(Python3 REQUIRED COMPONENTS Interpreter)
  set(KD_PYTHON "${Python3_EXECUTABLE}" CACHE FILEPATH "Python for the tests")
endif()

function(kd_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPENDS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE kd_test_support kd_warnings)
  kd_reuse_pch(${name})
  if(ARG_DEPENDS)
    add_dependencies(${name} ${ARG_DEPENDS})
  endif()
  # catch_discover_tests writes its PROPERTIES unquoted, so a list of labels would split into
  # separate words. The labels are set by a second script that ctest includes after the discovered
  # tests, on the list of their names catch_discover_tests leaves in <name>_TESTS.
  # --warn NoTests: an entry whose filter matches no test case (a name CMake split at a ';', a
  # renamed test) fails instead of passing without running anything.
  catch_discover_tests(${name} WORKING_DIRECTORY "${CMAKE_BINARY_DIR}" EXTRA_ARGS --warn NoTests)
  set(labels_script "${CMAKE_CURRENT_BINARY_DIR}/${name}_labels.cmake")
  file(WRITE "${labels_script}"
       "set_tests_properties(\${${name}_TESTS} PROPERTIES LABELS \"unit;${ARG_LABELS}\")\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${labels_script}")
endfunction()
