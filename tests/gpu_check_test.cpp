// The GPU check (tools/gpu/check.sh, tools/gpu/check.py) on a machine without a GPU: the shell
// entry says so and builds nothing; the benchmark driver runs its whole procedure on the CPU with
// tiny inputs (the bench configs, the teachers trained first, kdhost --bench --json, the PyTorch
// reference) and kdhost's and the reference's models have the same parameter counts.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

bool HasGpu() {
  return kd::test::RunCommand("nvidia-smi -L 2>/dev/null | grep -q GPU").exit_code == 0;
}

std::vector<std::map<std::string, std::string>> ReadCsv(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::map<std::string, std::string>> rows;
  std::string line;
  std::vector<std::string> header;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream s(line);
    std::string cell;
    while (std::getline(s, cell, ',')) cells.push_back(cell);
    if (header.empty()) {
      header = cells;
      continue;
    }
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < header.size(); ++i) row[header[i]] = i < cells.size() ? cells[i] : "";
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

TEST_CASE(
    "tools/gpu/check.sh without a GPU says so, writes skipped.txt, builds nothing and exits 0") {
  if (HasGpu()) {
    SUCCEED("this machine has a GPU: the skip path does not apply");
    return;
  }
  const fs::path out = kd::test::ScratchDir("gpu_check_skip_" + std::to_string(getpid()));
  const auto result = kd::test::RunCommand(
      "cd " + kd::test::SourceDir().string() + " && bash tools/gpu/check.sh --build-dir " +
      (out / "build-gpu").string() + " --out " + (out / "gpu-check").string());
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("no GPU on this machine"));
  std::ifstream skipped(out / "gpu-check" / "skipped.txt");
  std::string text((std::istreambuf_iterator<char>(skipped)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Contains("nothing was built or run"));
  CHECK_FALSE(fs::exists(out / "build-gpu"));
  CHECK_FALSE(fs::exists(out / "gpu-check" / "bench.csv"));
}

TEST_CASE(
    "tools/gpu/check.py on the CPU with tiny inputs: every row runs in kdhost and in the "
    "PyTorch reference, with equal parameter counts") {
  const fs::path out = kd::test::ScratchDir("gpu_check_tiny_" + std::to_string(getpid()));
  const auto result = kd::test::RunCommand(
      kd::test::PythonPath() + " " + (kd::test::SourceDir() / "tools/gpu/check.py").string() +
      " --device cpu --tiny --steps 3 --budget-s 100000 --build-dir " +
      kd::test::BuildDir().string() + " --out " + out.string() +
      " --rows quickstart,psd.student,rdd.student,lskd.iterative 2>&1");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const auto rows = ReadCsv(out / "bench.csv");
  // 6 rows x the CPU variants fp32 and fp32_cl.
  REQUIRE(rows.size() == 12);
  // The parameter counts of the models (the same for any input size), by hand from the
  // architectures: e.g. the quickstart student, SmallCNN 8-16-32 on one channel and a linear
  // head over 10 labels: convs 72 + 576 + 1152 + 2304 + 4608 + 9216 (3 x 3, no bias), batch norms
  // a weight and a bias per channel 2 x (8 + 8 + 16 + 16 + 32 + 32), head 32 x 10 + 10.
  std::map<std::string, std::string> params;
  for (const auto& row : rows) {
    INFO(row.at("row") << " " << row.at("variant"));
    CHECK(row.at("kdhost_exit") == "0");
    CHECK(std::stod(row.at("kdhost_ms")) > 0);
    if (row.at("row") != "lskd.iterative") {
      CHECK(row.at("torch_exit") == "0");
      CHECK(row.at("torch_params") == row.at("kdhost_params"));
    }
    params[row.at("row")] = row.at("kdhost_params");
  }
  CHECK(params.at("quickstart.student") ==
        std::to_string(72 + 576 + 1152 + 2304 + 4608 + 9216 + 2 * (8 + 8 + 16 + 16 + 32 + 32) +
                       32 * 10 + 10));
  CHECK(params.at("quickstart.student_kd") == params.at("quickstart.student"));
  std::ifstream summary(out / "summary.md");
  std::string text((std::istreambuf_iterator<char>(summary)), std::istreambuf_iterator<char>());
  CHECK_THAT(text, Contains("| psd.student | fp32_cl |"));
}
