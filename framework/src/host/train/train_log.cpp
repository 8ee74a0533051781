#include "host/train/train_log.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/train/cuda_probe.h"
#include "kd/error.h"

namespace kd::host {

double SecondsSince(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

std::string FormatMetrics(const std::vector<MetricValue>& metrics) {
  std::vector<std::string> parts;
  for (const MetricValue& m : metrics) parts.push_back(absl::StrFormat("%s %.4f", m.name, m.value));
  return absl::StrJoin(parts, ", ");
}

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

TrainLog::TrainLog(std::string stage, int64_t total_steps, bool progress, bool writes,
                   const std::filesystem::path& dir, int processes, const torch::Device& device)
    : stage_(std::move(stage)),
      total_steps_(total_steps),
      processes_(processes),
      progress_(std::make_unique<Progress>(stage_, total_steps, progress)),
      device_(device) {
  if (writes) {
    log_ = std::make_unique<MetricsLog>();
    ThrowIfError(log_->Open(dir / "metrics.jsonl"));
    tb_ = std::make_unique<TensorBoardWriter>();
    ThrowIfError(tb_->Open(dir / "tb"));
  }
  window_start_ = loop_start_ = Clock::now();
}

void TrainLog::Line(const std::string& text) { progress_->Line(text); }

void TrainLog::StartLoop(int64_t start_step) {
  start_step_ = start_step;
  window_start_ = loop_start_ = Clock::now();
}

void TrainLog::AddMicroBatch(const TensorDict& terms, int64_t accumulate, int64_t samples) {
  std::vector<std::pair<std::string, double>> values;
  for (const auto& [name, value] : terms) values.emplace_back(name, value.item<double>());
  AddMicroBatch(values, accumulate, samples);
}

void TrainLog::AddMicroBatch(const std::vector<std::pair<std::string, double>>& terms,
                             int64_t accumulate, int64_t samples) {
  for (const auto& [name, value] : terms) {
    window_terms_[name] += value / static_cast<double>(accumulate);
  }
  window_samples_ += samples;
}

std::vector<std::pair<std::string, double>> TrainLog::WindowMeans() const {
  std::vector<std::pair<std::string, double>> shown;
  double loss_sum = 0;
  for (const auto& [name, sum] : window_terms_) {
    shown.emplace_back(name, sum / static_cast<double>(window_steps_));
    loss_sum += sum / static_cast<double>(window_steps_);
  }
  shown.insert(shown.begin(), {"loss", loss_sum});
  return shown;
}

void TrainLog::StepDone(int64_t step, int64_t epoch, int64_t total_epochs, int64_t target,
                        int64_t interval, double lr) {
  ++window_steps_;
  if (step % interval == 0 || step == target) Report(step, epoch, total_epochs, target, lr);
}

void TrainLog::Report(int64_t step, int64_t epoch, int64_t total_epochs, int64_t target,
                      double lr) {
  const double elapsed = SecondsSince(window_start_);
  // Samples per second over all processes (rank 0's count times the processes).
  const double rate = elapsed > 0 ? window_samples_ * processes_ / elapsed : 0;
  const double per_step = SecondsSince(loop_start_) / static_cast<double>(step - start_step_);
  Progress::Window window;
  window.terms = WindowMeans();
  window.lr = lr;
  window.samples_per_second = rate;
  window.data_fraction = elapsed > 0 ? std::min(1.0, window_data_seconds_ / elapsed) : -1;
  window.memory_bytes = device_.is_cuda() ? CudaPeakAllocated(device_) : ResidentBytes();
  window.eta_seconds = per_step * static_cast<double>(target - step);
  progress_->Update(step, epoch, total_epochs, window);
  if (log_) {
    std::vector<std::pair<std::string, MetricsLog::Value>> record = {
        {"stage", stage_},
        {"kind", std::string("train")},
        {"step", step},
        {"epoch", epoch},
        {"lr", lr},
        {"samples_per_s", rate},
        {"data_fraction", window.data_fraction},
        {"memory_bytes", window.memory_bytes}};
    for (const auto& [name, value] : window.terms) {
      record.emplace_back(name, value);
      ThrowIfError(tb_->AddScalar("train/" + name, value, step));
    }
    ThrowIfError(tb_->AddScalar("train/lr", lr, step));
    ThrowIfError(log_->Write(record));
  }
  window_terms_.clear();
  window_steps_ = 0;
  window_samples_ = 0;
  window_data_seconds_ = 0;
  window_start_ = Clock::now();
}

std::string EvaluationLine(const std::string& stage, int64_t step, int64_t total_steps,
                           int64_t epoch, int64_t total_epochs,
                           const std::vector<MetricValue>& shown, const std::string& best) {
  return absl::StrFormat("[%s] epoch %d/%d step %d/%d: %s%s", stage, epoch, total_epochs, step,
                         total_steps, FormatMetrics(shown), best.empty() ? "" : "; " + best);
}

void TrainLog::Evaluation(int64_t step, int64_t epoch, int64_t shown_epoch, int64_t total_epochs,
                          const std::vector<MetricValue>& values,
                          const std::vector<MetricValue>& shown, const std::string& best) {
  if (log_) {
    std::vector<std::pair<std::string, MetricsLog::Value>> record = {
        {"stage", stage_}, {"kind", std::string("val")}, {"step", step}, {"epoch", epoch}};
    for (const MetricValue& m : values) {
      record.emplace_back(m.name, m.value);
      ThrowIfError(tb_->AddScalar("val/" + m.name, m.value, step));
    }
    ThrowIfError(log_->Write(record));
  }
  progress_->Line(
      EvaluationLine(stage_, step, total_steps_, shown_epoch, total_epochs, shown, best));
}

void TrainLog::Finish() { progress_->Finish(); }

}  // namespace kd::host
