#include "host/progress.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kd::host {

Progress::Progress(std::string stage, int64_t total_steps, bool enabled)
    : stage_(std::move(stage)),
      total_steps_(total_steps),
      enabled_(enabled),
      tty_(isatty(fileno(stderr)) != 0) {}

std::string Progress::FormatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string Progress::FormatBytes(int64_t bytes) {
  const double mib = static_cast<double>(bytes) / (1024.0 * 1024.0);
  if (mib >= 1024.0) return absl::StrFormat("%.1f GiB", mib / 1024.0);
  return absl::StrFormat("%.0f MiB", mib);
}

std::string Progress::Format(const std::string& stage, int64_t step, int64_t total_steps,
                             int64_t epoch, int64_t total_epochs, const Window& window) {
  std::string line = absl::StrFormat("[%s] epoch %d/%d step %d/%d", stage, epoch + 1, total_epochs,
                                     step, total_steps);
  for (const auto& [name, value] : window.terms) {
    absl::StrAppendFormat(&line, " %s %.4g", name, value);
  }
  absl::StrAppendFormat(&line, " lr %.3g %.0f samples/s", window.lr, window.samples_per_second);
  if (window.data_fraction >= 0) {
    absl::StrAppendFormat(&line, " data %.0f%%", 100.0 * window.data_fraction);
  }
  if (window.memory_bytes > 0) absl::StrAppend(&line, " mem ", FormatBytes(window.memory_bytes));
  absl::StrAppend(&line, " ETA ", FormatDuration(window.eta_seconds));
  return line;
}

void Progress::Update(int64_t step, int64_t epoch, int64_t total_epochs, const Window& window) {
  if (!enabled_) return;
  const std::string line = Format(stage_, step, total_steps_, epoch, total_epochs, window);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    live_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::Line(const std::string& text) {
  if (!enabled_) return;
  if (live_) std::fprintf(stderr, "\r\033[K");
  live_ = false;
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
}

void Progress::Finish() {
  if (enabled_ && live_) std::fprintf(stderr, "\n");
  live_ = false;
}

}  // namespace kd::host
