// Multi-process runs end to end on the CPU, with the real binary: `siesta run` with
// devices.launch processes starts a `siesta worker` for rank 1 and both ranks complete the run;
// a worker killed mid-run stops the run cleanly (exit 1, the lost rank named on stderr and in
// metrics.jsonl, the last checkpoint kept); a worker started torchrun-style (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT) joins a run with launch external; bad launches fail clearly.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <boost/json.hpp>

#include "child_process.hpp"
#include "process.hpp"
#include "run_folder.hpp"

using namespace siesta::test;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// The default CPU workflow, 5 SFT + 5 GRPO steps, rank 1 in a `siesta worker` process.
std::vector<std::string> two_process_args(const fs::path& dir) {
  return {"run", "--set", "outputs.run_dir=" + dir.string(),
          "--set", "algorithm.stages[0].steps=5", "--set", "algorithm.stages[1].steps=5",
          "--set", "schedule.eval_every=0", "--set", "devices.workers_per_node=2",
          "--set", "devices.launch=processes", "--set", "devices.master_port=0"};
}

// Rank 1's start-event entry, once metrics.jsonl has one.
std::optional<json::object> rank_entry(const fs::path& metrics, int rank) {
  if (!fs::exists(metrics)) return std::nullopt;
  for (const auto& s : of_kind(metric_events(metrics), "start"))
    for (const auto& r : s.at("ranks").as_array())
      if (r.at("rank").to_number<int>() == rank) return r.as_object();
  return std::nullopt;
}

}  // namespace

TEST(WorkersE2E, TwoProcessRunCompletesWithBothRanks) {
  auto dir = fresh_dir("siesta_workers_e2e", "two");
  auto r = run_siesta(two_process_args(dir), "", 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  auto ev = metric_events(dir / "metrics.jsonl");
  auto starts = of_kind(ev, "start");
  ASSERT_EQ(starts.size(), 1u);
  const auto& ranks = starts[0].at("ranks").as_array();
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_NE(ranks[0].at("pid").to_number<int64_t>(), ranks[1].at("pid").to_number<int64_t>())
      << "rank 1 runs in a process of its own";
  ASSERT_EQ(of_kind(ev, "step").size(), 11u);   // 5 SFT + 5 GRPO + 1 eval
  ASSERT_EQ(of_kind(ev, "end").size(), 1u);

  // Rank 1 joined, generated its share of the rollouts (prompt i goes to engine i % 2), and
  // was told the run completed.
  EXPECT_NE(r.err.find("siesta worker 1/2: joined the coordinator"), std::string::npos) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex(
      "siesta worker 1/2: the run ended \\(completed\\); this rank's engine generated ([0-9]+) tokens")))
      << r.err;
  EXPECT_GT(std::stoll(m[1].str()), 0);

  auto rep = run_siesta({"replay", (dir / "trace.jsonl").string()});
  EXPECT_EQ(rep.exit_code, 0) << rep.out << rep.err;
  EXPECT_NE(rep.out.find("no divergence"), std::string::npos) << rep.out;

  // Rank 1's handlers ran in its own process: their messages are in its own trace, which
  // replays against rank 1's engine lifecycle and memory budget.
  const auto rank1_trace = dir / "trace.rank-1.jsonl";
  ASSERT_TRUE(fs::exists(rank1_trace)) << r.err;
  const std::string t1 = slurp(rank1_trace);
  EXPECT_NE(t1.find("\"to\":\"engine/1\""), std::string::npos);
  EXPECT_NE(t1.find("\"type\":\"generate\""), std::string::npos);
  EXPECT_NE(t1.find("\"type\":\"receive_weights\""), std::string::npos);
  auto rep1 = run_siesta({"replay", rank1_trace.string()});
  EXPECT_EQ(rep1.exit_code, 0) << rep1.out << rep1.err;
  EXPECT_NE(rep1.out.find("no divergence"), std::string::npos) << rep1.out;
  fs::remove_all(dir);
}

TEST(WorkersE2E, KilledWorkerStopsTheRunCleanlyAndKeepsTheCheckpoint) {
  auto dir = fresh_dir("siesta_workers_e2e", "kill");
  ChildProcess run;
  // The full default (261 steps) with a checkpoint every 5: long enough to kill rank 1 mid-run.
  run.spawn(siesta_binary(), {"run", "--set", "outputs.run_dir=" + dir.string(), "--set",
                              "schedule.eval_every=0", "--set", "schedule.checkpoint_every=5",
                              "--set", "devices.workers_per_node=2", "--set",
                              "devices.launch=processes", "--set", "devices.master_port=0"});
  const auto metrics = dir / "metrics.jsonl";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool checkpointed = false;
  while (!checkpointed && std::chrono::steady_clock::now() < deadline && !run.poll_exit()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (fs::exists(metrics))
      for (const auto& c : of_kind(metric_events(metrics), "checkpoint"))
        checkpointed = checkpointed || c.at("step").to_number<int64_t>() >= 10;
  }
  ASSERT_TRUE(checkpointed) << run.err();
  auto rank1 = rank_entry(metrics, 1);
  ASSERT_TRUE(rank1) << "no start event naming rank 1";
  const auto pid = pid_t(rank1->at("pid").to_number<int64_t>());
  ASSERT_EQ(::kill(pid, SIGKILL), 0);

  auto code = run.wait_exit(60);
  ASSERT_TRUE(code.has_value()) << "siesta run did not stop within 60 s of losing rank 1\n" << run.err();
  EXPECT_EQ(*code, 1) << run.err();
  const std::string err = run.err();
  EXPECT_NE(err.find("worker rank 1 (pid " + std::to_string(pid)), std::string::npos) << err;
  EXPECT_NE(err.find("was lost"), std::string::npos) << err;
  EXPECT_NE(err.find("killed by signal 9"), std::string::npos) << err;

  auto ev = metric_events(metrics);
  auto errors = of_kind(ev, "error");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(std::string(errors[0].at("message").as_string()).find("worker rank 1"), std::string::npos);
  EXPECT_TRUE(of_kind(ev, "end").empty());
  const int64_t failed_step = errors[0].at("step").to_number<int64_t>();

  // The last checkpoint is one a completed step wrote, and it is whole.
  auto state = json::parse(slurp(dir / "checkpoints" / "state.json")).as_object();
  const int64_t covered = state.at("steps_done").to_number<int64_t>();
  EXPECT_GE(covered, 10);
  EXPECT_LE(covered, failed_step);
  EXPECT_TRUE(fs::exists(std::string(state.at("checkpoint").as_string())));
  int64_t last_checkpoint_event = 0;
  for (const auto& c : of_kind(ev, "checkpoint"))
    last_checkpoint_event = c.at("step").to_number<int64_t>();
  EXPECT_EQ(covered, last_checkpoint_event);
  fs::remove_all(dir);
}

TEST(WorkersE2E, TorchrunStyleWorkerJoinsAnExternalLaunch) {
  auto dir = fresh_dir("siesta_workers_e2e", "external");
  const std::string port = std::to_string(free_port());
  ChildProcess run, worker;
  run.spawn(siesta_binary(), {"run", "--set", "outputs.run_dir=" + dir.string(),
                              "--set", "algorithm.stages[0].steps=3", "--set",
                              "algorithm.stages[1].steps=3", "--set", "schedule.eval_every=0",
                              "--set", "devices.workers_per_node=2", "--set",
                              "devices.launch=external", "--set", "devices.master_port=" + port});
  // Started at the same time, as torchrun does: the worker retries until the coordinator is up.
  worker.spawn(siesta_binary(), {"worker"},
               {"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=127.0.0.1",
                "MASTER_PORT=" + port});
  auto run_code = run.wait_exit(240);
  auto worker_code = worker.wait_exit(30);
  ASSERT_TRUE(run_code.has_value()) << run.err();
  EXPECT_EQ(*run_code, 0) << run.err() << "\n--- worker:\n" << worker.err();
  ASSERT_TRUE(worker_code.has_value()) << worker.err();
  EXPECT_EQ(*worker_code, 0) << worker.err();
  EXPECT_NE(run.err().find("waiting for 1 worker(s) at 127.0.0.1:" + port), std::string::npos)
      << run.err();
  EXPECT_NE(worker.err().find("the run ended (completed)"), std::string::npos) << worker.err();
  fs::remove_all(dir);
}

TEST(WorkersE2E, WorkerNeedsItsRankAndACoordinator) {
  auto r = run_siesta({"worker"}, "env -u RANK -u WORLD_SIZE -u MASTER_PORT");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("RANK"), std::string::npos) << r.err;

  auto zero = run_siesta({"worker", "--rank", "0", "--world-size", "2", "--master-port", "1"});
  EXPECT_EQ(zero.exit_code, 2) << zero.err;
  EXPECT_NE(zero.err.find("siesta run"), std::string::npos) << zero.err;

  // Nobody listens on this port: the worker gives up after --connect-timeout and says where
  // it looked.
  const std::string port = std::to_string(free_port());
  auto none = run_siesta({"worker", "--rank", "1", "--world-size", "2", "--master-addr",
                          "127.0.0.1", "--master-port", port, "--connect-timeout", "1"});
  EXPECT_EQ(none.exit_code, 1) << none.err;
  EXPECT_NE(none.err.find("no coordinator at 127.0.0.1:" + port), std::string::npos) << none.err;
}

TEST(WorkersE2E, SeveralNodesNeedWorkerProcessesAndAFixedPort) {
  auto dir = fresh_dir("siesta_workers_e2e", "nodes");
  auto r = run_siesta({"run", "--set", "outputs.run_dir=" + dir.string(), "--set",
                       "devices.nodes=2", "--set", "devices.master_addr=10.1.2.3"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("devices.launch"), std::string::npos) << r.err;
  auto p = run_siesta({"run", "--set", "outputs.run_dir=" + dir.string(), "--set",
                       "devices.launch=external", "--set", "devices.master_port=0"});
  EXPECT_EQ(p.exit_code, 2) << p.err;
  EXPECT_NE(p.err.find("devices.master_port"), std::string::npos) << p.err;
  EXPECT_FALSE(fs::exists(dir));
}
