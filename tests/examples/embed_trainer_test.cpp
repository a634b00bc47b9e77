// examples/embed_trainer: an application with its own trainer (REINFORCE) embedded in siesta's
// actors. Runs the built binary and checks what it prints, the message trace it records and the
// checkpoint its trainer writes.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "process.hpp"
#include "siesta/actors/trace.hpp"

using siesta::test::run_process;
namespace fs = std::filesystem;

namespace {

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("siesta_embed_" + std::to_string(::getpid()) + "_" + name);
}

// The value after `key` on the line that starts with `line_start`, or -1.
double number_after(const std::string& out, const std::string& line_start, const std::string& key) {
  std::smatch m;
  std::regex re("(^|\n)" + line_start + "[^\n]*" + key + " ([-+0-9.e]+)");
  return std::regex_search(out, m, re) ? std::stod(m[2]) : -1;
}

}  // namespace

TEST(EmbedTrainer, OwnTrainerRunsStepsAndTheEngineReceivesItsWeights) {
  auto trace = temp_path("trace.jsonl");
  auto ckpt = temp_path("ckpt");
  auto r = run_process(EMBED_TRAINER_BIN, {"--steps", "60", "--trace", trace.string(),
                                           "--checkpoint", ckpt.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (int s : {1, 30, 60})
    EXPECT_NE(r.out.find("\nstep " + std::to_string(s) + " reward "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("weights synced: engine holds the trainer's weights (27 tensors"),
            std::string::npos) << r.out;
  EXPECT_GT(number_after(r.out, "step 60", "sync_gbps"), 0) << r.out;
  // REINFORCE climbs from the untrained policy's reward (measured: 0.085 -> 0.129 over the
  // first and last 15 steps, deterministic on the CPU); a wrong sign or no update would not.
  const double first = number_after(r.out, "rollout reward:", "first 15 steps");
  const double last = number_after(r.out, "rollout reward:", "last 15 steps");
  EXPECT_GT(last, first + 0.02) << r.out;

  // The trace shows siesta's actors driving the application's trainer through the step.
  auto t = siesta::actors::read_trace(trace);
  int trains = 0, syncs = 0, offloads = 0;
  for (const auto& e : t.events) {
    trains += e.to == "trainer/0" && e.type == "train" && e.error.empty();
    offloads += e.to == "trainer/0" && e.type == "offload" && e.error.empty();
    syncs += e.to == "syncer/0" && e.type == "sync" && e.error.empty() &&
             e.reply.as_object().at("bytes").to_number<double>() > 0;
  }
  EXPECT_EQ(trains, 60);
  EXPECT_EQ(syncs, 61) << "the initial sync and one per step";
  EXPECT_EQ(offloads, 1 + 2 * 60) << "at start, then keep-weights and full offload each step";
  // The checkpoint is an HF folder (config.json + safetensors) of the trained policy.
  EXPECT_TRUE(fs::exists(ckpt / "policy" / "config.json"));
  EXPECT_TRUE(fs::exists(ckpt / "policy" / "model.safetensors"));
  EXPECT_NE(r.out.find("checkpoint: " + (ckpt / "policy").string()), std::string::npos) << r.out;
  fs::remove(trace);
  fs::remove_all(ckpt);
}

TEST(EmbedTrainer, BadArgumentExitsTwoNamingWhatIsAllowed) {
  auto r = run_process(EMBED_TRAINER_BIN, {"--group", "1"});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.err.find("--group takes an integer in [2, 1000000] (got '1')"), std::string::npos) << r.err;
  r = run_process(EMBED_TRAINER_BIN, {"--device", "gpu"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--device takes cpu or cuda:I (got 'gpu')"), std::string::npos) << r.err;
}
