// The registry and the plugin loader, with the misbehaving plugins of tests/plugins.
#include <catch2/catch.hpp>

#include "host/host.h"
#include "host/options_impl.h"
#include "host/plugin_loader.h"
#include "kd/abi.h"
#include "kd/plugin.h"
#include "test_support.h"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path TestPluginDir() { return kd::test::BuildDir() / "tests" / "plugins"; }
fs::path TestPlugin(const std::string& name) { return TestPluginDir() / ("libkd_" + name + ".so"); }

std::string ErrorOf(const absl::Status& status) {
  REQUIRE_FALSE(status.ok());
  return std::string(status.message());
}

kd::ComponentInfo Component(kd::Kind kind, const std::string& plugin, const std::string& name) {
  kd::ComponentInfo info;
  info.kind = kind;
  info.plugin = plugin;
  info.name = name;
  info.factory = [](const kd::Options&, const kd::BuildContext&) { return nullptr; };
  return info;
}

kd::PluginRecord Record(const std::string& name) {
  return {name, "1.0", "", "/plugins/libkd_" + name + ".so", ""};
}

}  // namespace

TEST_CASE("the ABI rule: same major, plugin minor <= host minor, same torch and C++ ABI") {
  const kd::AbiStamp host{1, 2, "2.11.0", "gcc 12", 1};
  REQUIRE(kd::CheckAbiCompatible(host, {1, 2, "2.11.0", "clang 14", 1}).ok());
  REQUIRE(kd::CheckAbiCompatible(host, {1, 0, "2.11.0", "gcc 12", 1}).ok());
  REQUIRE_THAT(ErrorOf(kd::CheckAbiCompatible(host, {2, 0, "2.11.0", "gcc 12", 1})),
               Contains("kd API major version 2 != host's 1") && Contains("rebuild the plugin"));
  REQUIRE_THAT(ErrorOf(kd::CheckAbiCompatible(host, {1, 3, "2.11.0", "gcc 12", 1})),
               Contains("plugin needs kd API 1.3 but the host provides 1.2"));
  REQUIRE_THAT(ErrorOf(kd::CheckAbiCompatible(host, {1, 2, "2.10.0", "gcc 12", 1})),
               Contains("torch 2.10.0 != host's torch 2.11.0"));
  REQUIRE_THAT(ErrorOf(kd::CheckAbiCompatible(host, {1, 2, "2.11.0", "gcc 12", 0})),
               Contains("_GLIBCXX_USE_CXX11_ABI=0 != host's 1"));
}

TEST_CASE("components resolve by scoped name, and by bare name when it is unique") {
  kd::Registry registry;
  REQUIRE(registry
              .Commit(Record("alpha"), {Component(kd::Kind::kLoss, "alpha", "Focal"),
                                        Component(kd::Kind::kLoss, "alpha", "Dice")})
              .ok());
  REQUIRE(registry
              .Commit(Record("beta"), {Component(kd::Kind::kLoss, "beta", "Focal"),
                                       Component(kd::Kind::kMetric, "beta", "Dice")})
              .ok());
  REQUIRE((*registry.Find(kd::Kind::kLoss, "alpha::Focal"))->plugin == "alpha");
  REQUIRE((*registry.Find(kd::Kind::kLoss, "beta::Focal"))->plugin == "beta");
  REQUIRE((*registry.Find(kd::Kind::kLoss, "Dice"))->plugin == "alpha");  // unique among losses
  REQUIRE_THAT(ErrorOf(registry.Find(kd::Kind::kLoss, "Focal").status()),
               Contains("'Focal' is ambiguous in the loss registry: alpha::Focal, beta::Focal"));
  REQUIRE(registry.List(kd::Kind::kLoss).size() == 3);
  REQUIRE(registry.FindAnyKind("Dice").size() == 2);
}

TEST_CASE("an unknown name lists the known ones and suggests the nearest spellings") {
  kd::Registry registry;
  REQUIRE(registry
              .Commit(Record("resnet"), {Component(kd::Kind::kBackbone, "resnet", "ResNet"),
                                         Component(kd::Kind::kBackbone, "resnet", "SmallCNN")})
              .ok());
  REQUIRE_THAT(ErrorOf(registry.Find(kd::Kind::kBackbone, "ResNte").status()),
               Contains("'ResNte' is not in the backbone registry; known: resnet::ResNet, "
                        "resnet::SmallCNN; did you mean resnet::ResNet?"));
  REQUIRE_THAT(
      ErrorOf(registry.Find(kd::Kind::kHead, "ResNet").status()),
      Contains("the head registry (it is empty") && Contains("resnet::ResNet is a backbone"));
}

TEST_CASE("a duplicate registration is refused naming both plugins, and nothing is added") {
  kd::Registry registry;
  REQUIRE(registry.Commit(Record("alpha"), {Component(kd::Kind::kLoss, "alpha", "Focal")}).ok());
  kd::PluginRecord again = Record("alpha");
  again.path = "/elsewhere/libkd_alpha.so";
  REQUIRE_THAT(ErrorOf(registry.Commit(again, {Component(kd::Kind::kLoss, "alpha", "Other")})),
               Contains("/elsewhere/libkd_alpha.so is refused") &&
                   Contains("already loaded from /plugins/libkd_alpha.so"));
  REQUIRE_THAT(
      ErrorOf(registry.Commit(Record("gamma"), {Component(kd::Kind::kLoss, "gamma", "A"),
                                                Component(kd::Kind::kLoss, "gamma", "A")})),
      Contains("registers the loss gamma::A twice"));
  REQUIRE(registry.FindPlugin("gamma") == nullptr);
  REQUIRE(registry.List(kd::Kind::kLoss).size() == 1);
}

TEST_CASE("a plugin with a wrong ABI stamp is refused before its register function runs") {
  kd::host::Host host;
  const std::string error = ErrorOf(host.loader().LoadFile(TestPlugin("test_bad_abi")));
  REQUIRE_THAT(error, Contains("libkd_test_bad_abi.so: plugin refused: incompatible ABI stamp") &&
                          Contains("kd API major version 6 != host's 5") &&
                          Contains("plugin: kd API 6.0") && Contains("host:   kd API 5.0") &&
                          Contains("rebuild the plugin against this kdhost"));
  REQUIRE_THAT(error, !Contains("register must not run"));
  REQUIRE(host.registry().FindPlugin("test_bad_abi") == nullptr);
}

TEST_CASE("a plugin whose register function throws leaves none of its components behind") {
  kd::host::Host host;
  const std::string error = ErrorOf(host.loader().LoadFile(TestPlugin("test_register_throws")));
  REQUIRE_THAT(error, Contains("plugin 'test_register_throws' failed in its register function") &&
                          Contains("register failed on purpose after two components") &&
                          Contains("none of its components were registered"));
  REQUIRE(host.registry().FindAnyKind("First").empty());
  REQUIRE(host.registry().FindAnyKind("Second").empty());
  REQUIRE(host.registry().FindPlugin("test_register_throws") == nullptr);
  // The host carries on: a good plugin still loads afterwards.
  REQUIRE(host.loader().LoadFile(TestPlugin("test_good")).ok());
  REQUIRE(host.registry().Find(kd::Kind::kLoss, "test_good::Widget").ok());
}

TEST_CASE("a plugin registering a name twice is refused as a whole") {
  kd::host::Host host;
  REQUIRE_THAT(ErrorOf(host.loader().LoadFile(TestPlugin("test_dup_name"))),
               Contains("registers the loss test_dup_name::Widget twice"));
  REQUIRE(host.registry().FindAnyKind("Unique").empty());
}

TEST_CASE("the same bare name from two plugins needs the scoped name") {
  kd::host::Host host;
  REQUIRE(host.loader().LoadFile(TestPlugin("test_good")).ok());
  REQUIRE(host.loader().LoadFile(TestPlugin("test_other")).ok());
  REQUIRE_THAT(ErrorOf(host.registry().Find(kd::Kind::kLoss, "Widget").status()),
               Contains("test_good::Widget, test_other::Widget"));
  REQUIRE(host.registry().Find(kd::Kind::kLoss, "Gadget").ok());
}

TEST_CASE("failing factories give errors naming the component and plugin, and the host survives") {
  kd::host::Host host;
  REQUIRE(host.loader().LoadFile(TestPlugin("test_factory_throws")).ok());
  kd::BuildContext ctx(host.registry(), torch::kCPU);
  auto build = [&](const std::string& type) -> std::string {
    kd::host::CNode table(kd::host::CTable{},
                          kd::host::SourceLoc{std::make_shared<const std::string>("c.toml"), 4, 1});
    table.table().emplace("type", kd::host::CNode(type));
    try {
      ctx.BuildComponent(kd::Kind::kLoss, kd::host::MakeOptions(std::move(table), "loss"));
    } catch (const kd::Error& e) {
      return e.what();
    }
    FAIL("building " << type << " should have failed");
    return "";
  };
  REQUIRE_THAT(build("test_factory_throws::Exploding"),
               Contains("c.toml:4:1: loss: test_factory_throws::Exploding (plugin "
                        "test_factory_throws): factory threw: exploded on purpose"));
  REQUIRE_THAT(build("test_factory_throws::Null"), Contains("factory returned null"));
  REQUIRE_THAT(build("test_factory_throws::WrongKind"),
               Contains("registered as a loss but does not implement that interface"));
}

TEST_CASE("files that are not plugins are reported, not loaded") {
  kd::host::Host host;
  REQUIRE_THAT(ErrorOf(host.loader().LoadFile(TestPlugin("test_not_a_plugin"))),
               Contains("not a kdhost plugin: it exports no 'kd_plugin_manifest' entry"));
  REQUIRE_THAT(ErrorOf(host.loader().LoadFile(TestPlugin("test_misnamed"))),
               Contains("named for plugin 'test_misnamed' but the plugin calls itself "
                        "'something_else'"));
  const fs::path junk = kd::test::ScratchDir("plugin_junk") / "libkd_junk.so";
  kd::test::WriteText(junk, "this is not an ELF file");
  REQUIRE_THAT(ErrorOf(host.loader().LoadFile(junk)), Contains("cannot load the library"));
}

TEST_CASE("loading a directory reports each bad plugin, loads the rest and skips a shadowed name") {
  kd::host::Host host;
  const fs::path shadow_dir = kd::test::BuildDir() / "tests" / "plugins-shadow";
  host.loader().LoadAll({TestPluginDir(), shadow_dir});
  REQUIRE(host.registry().FindPlugin("test_good") != nullptr);
  REQUIRE(host.registry().FindPlugin("test_good")->version == "0.1.0");
  REQUIRE(host.registry().FindPlugin("test_other") != nullptr);
  REQUIRE(host.registry().FindPlugin("test_factory_throws") != nullptr);
  std::vector<std::string> messages;
  for (const auto& p : host.loader().problems()) messages.push_back(p.path + ": " + p.message);
  auto mentions = [&](const std::string& text) {
    return std::any_of(messages.begin(), messages.end(),
                       [&](const std::string& m) { return m.find(text) != std::string::npos; });
  };
  REQUIRE(mentions("test_bad_abi"));
  REQUIRE(mentions("test_register_throws"));
  REQUIRE(mentions("test_dup_name"));
  REQUIRE(mentions("test_not_a_plugin"));
  REQUIRE(mentions("shadowed by " + TestPlugin("test_good").string()));
}

TEST_CASE("a named plugin that cannot be found lists where it looked and what exists") {
  kd::host::Host host;
  REQUIRE_THAT(ErrorOf(host.loader().LoadNamed({"nonexistent"}, {TestPluginDir()})),
               Contains("plugin 'nonexistent' not found (no libkd_nonexistent.so in: " +
                        TestPluginDir().string()) &&
                   Contains("available: ") && Contains("test_good"));
}

TEST_CASE("the search path puts --plugin-path first, then KD_PLUGIN_PATH, config dirs, default") {
  setenv("KD_PLUGIN_PATH", "/env/a:/env/b", 1);
  auto dirs = kd::host::PluginSearchPath({"/cli/x:/cli/y"}, {"/config/dir"});
  unsetenv("KD_PLUGIN_PATH");
  REQUIRE(dirs.size() == 6);
  REQUIRE(dirs[0] == "/cli/x");
  REQUIRE(dirs[1] == "/cli/y");
  REQUIRE(dirs[2] == "/env/a");
  REQUIRE(dirs[3] == "/env/b");
  REQUIRE(dirs[4] == "/config/dir");
  REQUIRE(dirs[5] == kd::host::DefaultPluginDir());
}

TEST_CASE("a plugin registering hundreds of components loads beside the others") {
  kd::host::Host host;
  host.loader().LoadAll({TestPluginDir()});
  REQUIRE(host.registry().FindPlugin("test_many") != nullptr);
  REQUIRE(host.registry().FindPlugin("test_good") != nullptr);
  size_t from_many = 0;
  for (const kd::ComponentInfo* info : host.registry().List(kd::Kind::kLoss)) {
    if (info->plugin == "test_many") ++from_many;
  }
  REQUIRE(from_many == 600);

  kd::BuildContext ctx(host.registry(), torch::kCPU);
  kd::host::CNode table(kd::host::CTable{},
                        kd::host::SourceLoc{std::make_shared<const std::string>("c.toml"), 1, 1});
  table.table().emplace("type", kd::host::CNode(std::string("Loss599")));
  auto loss = std::dynamic_pointer_cast<kd::Loss>(
      ctx.BuildComponent(kd::Kind::kLoss, kd::host::MakeOptions(std::move(table), "loss")));
  REQUIRE(loss != nullptr);
  // mean([1, 2, 3]) = 2, times 599.
  const kd::TensorDict terms = loss->Forward({{"logits", torch::tensor({1.0, 2.0, 3.0})}}, {});
  REQUIRE(terms.at("loss.scaled").item<double>() == Approx(1198.0));
}
