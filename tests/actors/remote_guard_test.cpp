// Guards for a remote worker's actors (remote_guard.hpp): requests and replies pass through
// unchanged, and once the guarded actor is gone the request in flight and every later one fail
// with an error naming the worker, instead of waiting for their timeout. Also: every type the
// join protocol sends between processes is registered (only registered types cross the
// middleman).
#include <gtest/gtest.h>

#include "siesta/actors/protocol.hpp"
#include "siesta/actors/remote_guard.hpp"

using namespace siesta::actors;

namespace {

using HeldSamples = std::vector<caf::typed_response_promise<MemorySnapshot>>;

// A memory manager whose `sample` never answers: like a request to a process that died.
memory_actor::behavior_type silent_memory(memory_actor::pointer self,
                                          std::shared_ptr<HeldSamples> held) {
  return {
      [](reserve_atom, const MemoryRequest& r) -> uint64_t { return r.bytes + 1; },
      [](release_atom, const MemoryRequest&) -> uint64_t { return 0; },
      [=](sample_atom) -> caf::result<MemorySnapshot> {
        auto rp = self->make_response_promise<MemorySnapshot>();
        held->push_back(rp);
        return rp;
      },
  };
}

struct GuardRig : ::testing::Test {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::shared_ptr<HeldSamples> held = std::make_shared<HeldSamples>();
  memory_actor remote;
  memory_actor guard;
  std::shared_ptr<std::vector<std::string>> losses = std::make_shared<std::vector<std::string>>();
  std::mutex mu;

  void SetUp() override {
    register_types(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    remote = sys->spawn(silent_memory, held);
    guard = guard_remote(*sys, remote, "worker rank 1 (test)", "memory manager",
                         [this](const std::string& why) {
                           std::lock_guard<std::mutex> lock(mu);
                           losses->push_back(why);
                         });
  }
  void TearDown() override {
    caf::anon_send_exit(remote, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(guard, caf::exit_reason::user_shutdown);
    remote = nullptr;
    guard = nullptr;
    held->clear();
    sys.reset();
  }
};

}  // namespace

TEST_F(GuardRig, ForwardsRequestsAndReplies) {
  caf::scoped_actor self{*sys};
  uint64_t got = 0;
  self->request(guard, std::chrono::seconds(60), reserve_atom_v, MemoryRequest{"engine", "weights", 41})
      .receive([&](uint64_t x) { got = x; }, [&](caf::error& e) { ADD_FAILURE() << sys->render(e); });
  EXPECT_EQ(got, 42u);
}

TEST_F(GuardRig, LostActorFailsTheRequestInFlightAndLaterOnesNamingTheWorker) {
  caf::scoped_actor self{*sys};
  // The request reaches the remote actor, which never answers; then the remote actor dies.
  // Without the guard this request would end only with request_timeout (60 s).
  auto pending = self->request(guard, std::chrono::seconds(60), sample_atom_v);
  // Ask once more so the sample above has surely been forwarded and held before the exit.
  self->request(guard, std::chrono::seconds(60), reserve_atom_v, MemoryRequest{"a", "b", 1})
      .receive([](uint64_t) {}, [&](caf::error& e) { ADD_FAILURE() << sys->render(e); });
  caf::anon_send_exit(remote, caf::exit_reason::kill);
  std::string err;
  pending.receive([](MemorySnapshot&) { ADD_FAILURE() << "a reply from a dead actor"; },
                  [&](caf::error& e) { err = sys->render(e); });
  EXPECT_NE(err.find("worker rank 1 (test)"), std::string::npos) << err;
  EXPECT_NE(err.find("memory manager stopped"), std::string::npos) << err;
  EXPECT_EQ(err.find("request_timeout"), std::string::npos) << err;

  std::string later;
  self->request(guard, std::chrono::seconds(60), reserve_atom_v, MemoryRequest{"a", "b", 1})
      .receive([](uint64_t) { ADD_FAILURE() << "a reply after the loss"; },
               [&](caf::error& e) { later = sys->render(e); });
  EXPECT_NE(later.find("worker rank 1 (test)"), std::string::npos) << later;
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(losses->size(), 1u);
  EXPECT_NE(losses->front().find("memory manager"), std::string::npos) << losses->front();
}

TEST(JoinProtocolTypes, EveryTypeSentBetweenProcessesIsRegistered) {
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  for (const char* name :
       {"siesta::actors::JoinInfo", "siesta::actors::JoinedWorker", "siesta::actors::WorkerHandles",
        "siesta::actors::RolloutRequest", "siesta::actors::RolloutBatch",
        "siesta::actors::TrainReport", "siesta::actors::EngineStatus",
        "siesta::actors::MemoryRequest", "siesta::actors::MemorySnapshot",
        "siesta::actors::SyncReport", "siesta::actors::TrainStage"})
    EXPECT_TRUE(sys.types().make_value(name)) << name << " is not registered";
}

TEST(JoinProtocolTypes, JoinInfoSurvivesSerialization) {
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  JoinInfo in;
  in.workflow_yaml = "version: 1\nname: x\n";
  in.world_size = 3;
  in.transport = "nccl";
  in.host_port = 4242;
  in.session_id = 0xfeedbeefcafeull;
  for (size_t i = 0; i < in.nccl_id.bytes.size(); ++i) in.nccl_id.bytes[i] = uint8_t(i * 7);
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  ASSERT_FALSE(sink(in));
  JoinInfo out;
  caf::binary_deserializer source{sys, buf};
  ASSERT_FALSE(source(out));
  EXPECT_EQ(out.workflow_yaml, in.workflow_yaml);
  EXPECT_EQ(out.world_size, 3);
  EXPECT_EQ(out.transport, "nccl");
  EXPECT_EQ(out.host_port, 4242);
  EXPECT_EQ(out.session_id, in.session_id);
  EXPECT_EQ(out.nccl_id.bytes, in.nccl_id.bytes);
}
