// Reading the launch environment of a data-parallel run: torchrun's variables, the plain ones,
// Slurm's, and the errors for incomplete or inconsistent settings.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "host/distributed.h"

using Catch::Matchers::Contains;

namespace {

absl::StatusOr<kd::host::LaunchEnv> Read(const std::string& launcher,
                                         const std::map<std::string, std::string>& vars) {
  return kd::host::ReadLaunchEnv(launcher, [&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace

TEST_CASE("without RANK and WORLD_SIZE kdhost runs as one process") {
  auto env = Read("auto", {{"MASTER_ADDR", "10.0.0.1"}});
  REQUIRE(env.ok());
  REQUIRE_FALSE(env->distributed());
  REQUIRE(env->launcher.empty());
}

TEST_CASE("torchrun's variables: ranks, the agent's store and the restart count") {
  auto env = Read("auto", {{"RANK", "3"},
                           {"WORLD_SIZE", "8"},
                           {"LOCAL_RANK", "1"},
                           {"LOCAL_WORLD_SIZE", "2"},
                           {"MASTER_ADDR", "node7"},
                           {"MASTER_PORT", "29400"},
                           {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                           {"TORCHELASTIC_RESTART_COUNT", "2"},
                           {"TORCHELASTIC_RUN_ID", "job"}});
  REQUIRE(env.ok());
  REQUIRE(env->distributed());
  REQUIRE(env->rank == 3);
  REQUIRE(env->world_size == 8);
  REQUIRE(env->local_rank == 1);
  REQUIRE(env->local_world_size == 2);
  REQUIRE(env->master_addr == "node7");
  REQUIRE(env->master_port == 29400);
  REQUIRE(env->agent_store);
  REQUIRE(env->restart_count == 2);
  REQUIRE(env->launcher == "torchrun");
}

TEST_CASE("plain variables: rank 0 serves the store and LOCAL_RANK defaults to RANK") {
  auto env = Read("auto", {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}});
  REQUIRE(env.ok());
  REQUIRE(env->local_rank == 1);
  REQUIRE(env->master_port == 29500);
  REQUIRE_FALSE(env->agent_store);
  REQUIRE(env->launcher == "environment");
}

TEST_CASE("Slurm's variables, with the master taken from the node list") {
  REQUIRE(kd::host::FirstSlurmHost("gpu[03-05,9],cpu1") == "gpu03");
  REQUIRE(kd::host::FirstSlurmHost("a1,b2") == "a1");
  REQUIRE(kd::host::FirstSlurmHost("single") == "single");
  auto env = Read("slurm", {{"SLURM_PROCID", "5"},
                            {"SLURM_NTASKS", "8"},
                            {"SLURM_LOCALID", "1"},
                            {"SLURM_NTASKS_PER_NODE", "4"},
                            {"SLURM_JOB_NODELIST", "gpu[03-04]"}});
  REQUIRE(env.ok());
  REQUIRE(env->rank == 5);
  REQUIRE(env->world_size == 8);
  REQUIRE(env->local_rank == 1);
  REQUIRE(env->local_world_size == 4);
  REQUIRE(env->master_addr == "gpu03");
  REQUIRE(env->launcher == "slurm");
}

TEST_CASE("incomplete or inconsistent launch settings are refused with what to set") {
  auto no_master = Read("auto", {{"RANK", "0"}, {"WORLD_SIZE", "2"}});
  REQUIRE_FALSE(no_master.ok());
  REQUIRE_THAT(std::string(no_master.status().message()), Contains("MASTER_ADDR is not"));
  auto rank_too_big =
      Read("auto", {{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}});
  REQUIRE_THAT(std::string(rank_too_big.status().message()),
               Contains("rank 2 is not below the world size 2"));
  auto not_a_number = Read("env", {{"RANK", "one"}, {"WORLD_SIZE", "2"}});
  REQUIRE_THAT(std::string(not_a_number.status().message()),
               Contains("RANK=\"one\" is not a non-negative integer"));
  auto missing = Read("env", {});
  REQUIRE_THAT(std::string(missing.status().message()), Contains("RANK is not set"));
  auto slurm = Read("slurm", {{"SLURM_NTASKS", "2"}});
  REQUIRE_THAT(std::string(slurm.status().message()), Contains("SLURM_PROCID is not set"));
  auto bad_port = Read(
      "auto", {{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}});
  REQUIRE_THAT(std::string(bad_port.status().message()), Contains("is not a TCP port"));
  REQUIRE_FALSE(Read("mpi", {}).ok());
}
