// What LeakSanitizer leaves out of its report, for executables built with -DKD_SANITIZE=ON. The
// sanitizer runtime reads this from the executable itself, so each main() file includes it once.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
// LibTorch's pickle_load leaves the state of its zip reader allocated when its unpickler throws on
// a damaged checkpoint; kdhost reports the damage and goes on, and the leak is LibTorch's.
extern "C" const char* __lsan_default_suppressions() { return "leak:mz_zip_reader_init\n"; }
#endif
