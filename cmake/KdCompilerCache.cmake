# ccache for every C++ compile when it is installed. The sloppiness settings let ccache cache
# translation units that use the shared precompiled header.
find_program(KD_CCACHE ccache)
if(KD_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      "${CMAKE_COMMAND};-E;env;CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime;CCACHE_BASEDIR=${CMAKE_SOURCE_DIR};CCACHE_NOHASHDIR=1;${KD_CCACHE}")
endif()
