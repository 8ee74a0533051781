// A shared library with a plugin's file name but no kdhost entry point.
extern "C" int kd_test_not_a_plugin_value() { return 42; }
