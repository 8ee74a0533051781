# kd_add_plugin(<name> SOURCES <src>... [LIBRARIES <lib>...] [OUTPUT_DIR <dir>] [NO_INSTALL])
#
# Builds the kdhost plugin <name> as the module library libkd_<name>.so. The plugin's sources
# declare it with KD_PLUGIN(...) from <kd/plugin.h>; the name given here becomes the plugin name the
# manifest reports and the scope of its components (<name>::Component).
#
# OUTPUT_DIR puts the library somewhere else than the host's default plugin directory (it is then
# found through --plugin-path, KD_PLUGIN_PATH or a config's plugin_dirs); NO_INSTALL leaves it out
# of `cmake --install`.
#
# Works inside the kdhost source tree and, after find_package(kdhost), in any other project.
include_guard(GLOBAL)

function(kd_add_plugin name)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIR" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "kd_add_plugin(${name}): SOURCES is required")
  endif()
  if(NOT name MATCHES "^[a-z][a-z0-9_]*$")
    message(FATAL_ERROR "kd_add_plugin(${name}): a plugin name is lower-case letters, digits and '_'")
  endif()
  set(target kd_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE kdhost::kdcore ${ARG_LIBRARIES})
  target_compile_definitions(${target} PRIVATE KD_PLUGIN_NAME="${name}")
  set_target_properties(${target} PROPERTIES PREFIX "lib" OUTPUT_NAME "kd_${name}")
  # The plugin's calls to functions it defines itself (inline and template code: std::vector's,
  # torch's) stay inside it. Libraries that LibTorch loads export copies of a few std:: templates
  # built for another allocator (libcusparseLt's std::vector<bool>), which would otherwise serve
  # them.
  target_link_options(${target} PRIVATE "LINKER:-Bsymbolic-functions")
  if(TARGET kd_warnings)
    target_link_libraries(${target} PRIVATE kd_warnings)
  endif()
  if(TARGET kd_pch)
    kd_reuse_pch(${target})
  endif()
  if(ARG_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIR}")
  elseif(DEFINED KD_PLUGIN_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${KD_PLUGIN_OUTPUT_DIR}")
  endif()
  if(DEFINED KD_PLUGIN_INSTALL_DIR AND NOT ARG_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION "${KD_PLUGIN_INSTALL_DIR}")
  endif()
endfunction()
