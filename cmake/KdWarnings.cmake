# Warnings are errors in the project's own code; third-party headers come in as SYSTEM includes.
add_library(kd_warnings INTERFACE)
target_compile_options(kd_warnings INTERFACE -Wall -Wextra -Werror)
if(KD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
  # GCC's flow analysis gives false "may be used uninitialized" warnings in libstdc++ (<regex>,
  # std::function) when the sanitizers instrument the code.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(kd_warnings INTERFACE -Wno-maybe-uninitialized)
  endif()
endif()

# Compiles `target` with the shared precompiled header (kd_pch). Every user must compile with the
# PCH's code-model flags: executables would default to -fPIE, so they get -fPIC like the libraries
# (they still link as position-independent executables).
function(kd_reuse_pch target)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
  target_precompile_headers(${target} REUSE_FROM kd_pch)
endfunction()
