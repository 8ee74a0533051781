// Translation unit that only carries the shared precompiled header (see framework/CMakeLists.txt).
