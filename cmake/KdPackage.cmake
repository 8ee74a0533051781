# Installs libkdcore, its public headers and a CMake package so that plugins can be built outside
# this tree with find_package(kdhost) and kd_add_plugin(...).
include(CMakePackageConfigHelpers)
set(KD_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/kdhost")
install(TARGETS kdcore EXPORT kdhostTargets
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(DIRECTORY framework/include/kd DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT kdhostTargets NAMESPACE kdhost:: DESTINATION "${KD_CMAKE_INSTALL_DIR}")
configure_package_config_file(cmake/kdhostConfig.cmake.in
  "${CMAKE_BINARY_DIR}/kdhostConfig.cmake" INSTALL_DESTINATION "${KD_CMAKE_INSTALL_DIR}")
write_basic_package_version_file("${CMAKE_BINARY_DIR}/kdhostConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES "${CMAKE_BINARY_DIR}/kdhostConfig.cmake" "${CMAKE_BINARY_DIR}/kdhostConfigVersion.cmake"
        cmake/KdPlugin.cmake DESTINATION "${KD_CMAKE_INSTALL_DIR}")
