// Weight sync over the host transport between real processes (fork): a trainer (rank 0) and
// engines (ranks 1..). Covers bit-exact delivery (with an fp32 -> bf16 cast), manifest
// mismatches reported on every rank, and lost peers ending in errors rather than hangs.
#include <gtest/gtest.h>

#include <csignal>

#include "comm_test_util.hpp"

namespace siesta::comm::test {
namespace {

constexpr size_t kBucket = 256 << 10;  // small buckets: many of them, tensors straddle edges

HostTransportOptions options(uint16_t port, int io_timeout_ms = 3000) {
  HostTransportOptions o;
  o.port = port;
  o.session_id = 42;
  o.connect_timeout_ms = 5000;
  o.io_timeout_ms = io_timeout_ms;
  return o;
}

SyncOptions sync_options() {
  SyncOptions s;
  s.bucket_bytes = kBucket;
  return s;
}

// An engine process: joins, receives into bf16 destinations of `specs`, reports the hashes of
// its weights (exit 0) or the error and whether it still calls its weights valid (exit 3).
Child engine(int rank, int world, uint16_t port, std::vector<TensorSpec> specs,
             std::function<void(size_t)> on_bucket = nullptr) {
  return fork_child([=](std::string& msg) {
    auto t = HostTransport::join(rank, world, options(port));
    auto dst = make_tensors(specs, false, 1000 + uint64_t(rank));  // garbage to overwrite
    SyncOptions so = sync_options();
    if (on_bucket) so.on_bucket = [on_bucket](size_t k, size_t) { on_bucket(k); };
    WeightReceiver r(*t, dst.tensors, so);
    try {
      r.receive();
    } catch (const CommError& e) {
      msg = std::string(e.what()) + (r.weights_valid() ? " [weights valid]" : " [weights invalid]");
      return 3;
    }
    msg = hashes_text(actual_hashes(dst));
    return r.weights_valid() ? 0 : 4;
  });
}

TEST(HostWeightSync, TwoEnginesReceiveBitIdenticalWeights) {
  auto specs = tiny_model();
  HostListener l;
  Child e1 = engine(1, 3, l.port(), specs), e2 = engine(2, 3, l.port(), specs);
  auto t = HostTransport::serve(std::move(l), 3, options(0));
  auto src = make_tensors(specs, true, 7);
  SyncStats st = WeightSender(*t, sync_options()).send(src.tensors);
  auto r1 = wait_child(e1), r2 = wait_child(e2);

  std::string want = hashes_text(expected_hashes(src));
  EXPECT_EQ(r1.exit_code, 0) << r1.message;
  EXPECT_EQ(r2.exit_code, 0) << r2.message;
  EXPECT_EQ(r1.message, want);
  EXPECT_EQ(r2.message, want);
  size_t params = 0;
  for (const auto& s : specs) params += size_t(numel(s.shape));
  EXPECT_EQ(st.bytes, params * 2);
  EXPECT_GT(st.buckets, 10u);  // several MB in 256 KiB buckets
  EXPECT_EQ(st.peak_staging_bytes, 2 * kBucket);
}

TEST(HostWeightSync, RootWithItsOwnEngineAlsoGetsTheWeights) {
  auto specs = tiny_model();
  HostListener l;
  Child e1 = engine(1, 2, l.port(), specs);
  auto t = HostTransport::serve(std::move(l), 2, options(0));
  auto src = make_tensors(specs, true, 11);
  auto local_dst = make_tensors(specs, false, 99);
  std::vector<const void*> addresses;
  for (const auto& d : local_dst.tensors) addresses.push_back(d.view.data);
  WeightReceiver local(*t, local_dst.tensors, sync_options());
  WeightSender(*t, sync_options()).send(src.tensors, &local);
  auto r1 = wait_child(e1);

  std::string want = hashes_text(expected_hashes(src));
  EXPECT_EQ(r1.exit_code, 0) << r1.message;
  EXPECT_EQ(r1.message, want);
  EXPECT_EQ(hashes_text(actual_hashes(local_dst)), want);
  EXPECT_TRUE(local.weights_valid());
  for (size_t i = 0; i < addresses.size(); ++i)  // unpacked in place
    EXPECT_EQ(local.destinations()[i].view.data, addresses[i]);
}

TEST(HostWeightSync, WorldOfOneCopiesLocallyWithAndWithoutStaging) {
  auto specs = tiny_model();
  auto src = make_tensors(specs, true, 5);
  std::string want = hashes_text(expected_hashes(src));
  for (bool fuse : {true, false}) {
    HostListener l;
    auto t = HostTransport::serve(std::move(l), 1, options(0));
    auto dst = make_tensors(specs, false, 3);
    SyncOptions so = sync_options();
    so.fuse_local = fuse;
    WeightReceiver local(*t, dst.tensors, so);
    SyncStats st = WeightSender(*t, so).send(src.tensors, &local);
    EXPECT_EQ(hashes_text(actual_hashes(dst)), want) << "fuse_local=" << fuse;
    EXPECT_EQ(st.fused_local, fuse);
    EXPECT_EQ(st.peak_staging_bytes, fuse ? 0u : 2 * kBucket);
    EXPECT_TRUE(local.weights_valid());
  }
}

// Runs a sync in which engine 2's destinations are `bad`; every rank must fail, and say why.
void expect_rejected_everywhere(const std::vector<TensorSpec>& bad, const std::string& why) {
  auto specs = tiny_model();
  HostListener l;
  Child e1 = engine(1, 3, l.port(), specs), e2 = engine(2, 3, l.port(), bad);
  auto t = HostTransport::serve(std::move(l), 3, options(0));
  auto src = make_tensors(specs, true, 7);
  std::string root_error;
  try {
    WeightSender(*t, sync_options()).send(src.tensors);
  } catch (const CommError& e) {
    root_error = e.what();
  }
  auto r1 = wait_child(e1), r2 = wait_child(e2);
  for (const std::string& m : {root_error, r1.message, r2.message}) {
    EXPECT_NE(m.find("rank 2 rejected the manifest"), std::string::npos) << m;
    EXPECT_NE(m.find(why), std::string::npos) << m;
  }
  EXPECT_EQ(r1.exit_code, 3);
  EXPECT_EQ(r2.exit_code, 3);
  EXPECT_NE(r1.message.find("[weights invalid]"), std::string::npos);
  EXPECT_FALSE(r1.timed_out || r2.timed_out);
  // Nothing moved and the group is still in step: the transport stays usable.
  EXPECT_FALSE(t->aborted());
}

TEST(HostWeightSync, WrongShapeIsRejectedOnEveryRank) {
  auto bad = tiny_model();
  bad[3].shape = {32, 256};  // k_proj of layer 0 with half the heads
  expect_rejected_everywhere(bad, "shape [64, 256] in the manifest, [32, 256] at this rank");
}

TEST(HostWeightSync, MissingTensorIsRejectedOnEveryRank) {
  auto bad = tiny_model();
  bad.pop_back();  // no lm_head
  expect_rejected_everywhere(bad, "'lm_head.weight' [1000, 256] is in the manifest but this rank "
                                  "has no destination");
}

TEST(HostWeightSync, BadSourcesFailOnEveryRankBeforeAnythingMoves) {
  auto specs = tiny_model();
  HostListener l;
  Child e1 = engine(1, 2, l.port(), specs);
  auto t = HostTransport::serve(std::move(l), 2, options(0));
  auto src = make_tensors(specs, true, 7);
  src.tensors.push_back(src.tensors.front());  // the same name twice
  EXPECT_THROW(WeightSender(*t, sync_options()).send(src.tensors), CommError);
  auto r1 = wait_child(e1);
  EXPECT_EQ(r1.exit_code, 3);
  EXPECT_NE(r1.message.find("refused to start"), std::string::npos) << r1.message;
  EXPECT_NE(r1.message.find("appears twice"), std::string::npos) << r1.message;
}

TEST(HostWeightSync, KilledEngineEndsTheSyncWithAnErrorOnEveryRank) {
  auto specs = tiny_model();
  HostListener l;
  Child e1 = engine(1, 3, l.port(), specs);
  // Engine 2 dies (SIGKILL, no cleanup) right after its first bucket arrived.
  Child e2 = engine(2, 3, l.port(), specs, [](size_t k) { if (k == 0) raise(SIGKILL); });
  auto t = HostTransport::serve(std::move(l), 3, options(0));
  auto src = make_tensors(specs, true, 7);
  auto t0 = std::chrono::steady_clock::now();
  std::string root_error;
  try {
    WeightSender(*t, sync_options()).send(src.tensors);
  } catch (const CommError& e) {
    root_error = e.what();
  }
  double root_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto r1 = wait_child(e1), r2 = wait_child(e2);
  EXPECT_EQ(r2.signal, SIGKILL);
  EXPECT_NE(root_error.find("rank 2"), std::string::npos) << root_error;
  EXPECT_NE(root_error.find("peer gone"), std::string::npos) << root_error;
  EXPECT_EQ(r1.exit_code, 3) << r1.message;
  EXPECT_NE(r1.message.find("rank 0 aborted the group"), std::string::npos) << r1.message;
  EXPECT_NE(r1.message.find("[weights invalid]"), std::string::npos) << r1.message;
  EXPECT_TRUE(t->aborted());
  // Bounded: the lost peer is noticed through the socket, far inside the 3 s I/O timeout.
  EXPECT_LT(root_s, 10.0);
  EXPECT_LT(r1.seconds, 10.0);
}

TEST(HostWeightSync, KilledTrainerEndsTheSyncWithAnErrorOnEngines) {
  auto specs = tiny_model();
  HostListener l;
  uint16_t port = l.port();
  // The trainer is a child this time, killed after its first bucket went out.
  Child trainer = fork_child([&](std::string&) {
    auto t = HostTransport::serve(std::move(l), 2, options(0));
    auto src = make_tensors(specs, true, 7);
    SyncOptions so = sync_options();
    so.on_bucket = [](size_t k, size_t) { if (k == 0) raise(SIGKILL); };
    WeightSender(*t, so).send(src.tensors);
    return 0;
  });
  { HostListener drop = std::move(l); }  // the parent's copy of the listening socket
  auto t = HostTransport::join(1, 2, options(port));
  auto dst = make_tensors(specs, false, 1);
  WeightReceiver r(*t, dst.tensors, sync_options());
  auto t0 = std::chrono::steady_clock::now();
  std::string err;
  try {
    r.receive();
  } catch (const CommError& e) {
    err = e.what();
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto rt = wait_child(trainer);
  EXPECT_EQ(rt.signal, SIGKILL);
  EXPECT_NE(err.find("rank 0 closed the connection"), std::string::npos) << err;
  EXPECT_FALSE(r.weights_valid());
  EXPECT_LT(s, 10.0);
}

TEST(HostTransport, PeerThatNeverJoinsEndsInAnErrorOnEveryRank) {
  HostListener l;
  Child e1 = engine(1, 3, l.port(), tiny_model());  // rank 2 never comes
  HostTransportOptions o = options(0);
  o.connect_timeout_ms = 1000;
  try {
    HostTransport::serve(std::move(l), 3, o);
    FAIL() << "serve() returned without rank 2";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("ranks 2 never joined"), std::string::npos) << e.what();
  }
  auto r1 = wait_child(e1);
  EXPECT_EQ(r1.exit_code, 3);
  EXPECT_NE(r1.message.find("rank 0 closed the connection"), std::string::npos) << r1.message;
}

TEST(HostTransport, PeerOfAnotherSessionIsRefused) {
  HostListener l;
  uint16_t port = l.port();
  Child stranger = fork_child([port](std::string& msg) {
    HostTransportOptions o = options(port);
    o.session_id = 7;
    try {
      HostTransport::join(1, 2, o);
    } catch (const CommError& e) {
      msg = e.what();
      return 3;
    }
    return 0;
  });
  HostTransportOptions o = options(0);
  o.connect_timeout_ms = 1000;
  EXPECT_THROW(HostTransport::serve(std::move(l), 2, o), CommError);
  auto r = wait_child(stranger);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.message.find("session 7, this group is session 42"), std::string::npos) << r.message;
}

TEST(HostTransport, BroadcastFromAnyRootAndBarrier) {
  HostListener l;
  uint16_t port = l.port();
  auto peer = [port](int rank) {
    return fork_child([port, rank](std::string& msg) {
      auto t = HostTransport::join(rank, 3, options(port));
      for (int root = 0; root < 3; ++root) {
        std::vector<int> v(1000, rank == root ? root * 10 + 1 : -1);
        t->broadcast(v.data(), v.size() * sizeof(int), root, Device::cpu());
        msg += std::to_string(v[0]) + "," + std::to_string(v[999]) + ";";
      }
      t->barrier();
      return 0;
    });
  };
  Child c1 = peer(1), c2 = peer(2);
  auto t = HostTransport::serve(std::move(l), 3, options(0));
  std::string mine;
  for (int root = 0; root < 3; ++root) {
    std::vector<int> v(1000, root == 0 ? 1 : -1);
    t->broadcast(v.data(), v.size() * sizeof(int), root, Device::cpu());
    mine += std::to_string(v[0]) + "," + std::to_string(v[999]) + ";";
  }
  t->barrier();
  auto r1 = wait_child(c1), r2 = wait_child(c2);
  EXPECT_EQ(mine, "1,1;11,11;21,21;");
  EXPECT_EQ(r1.message, mine);
  EXPECT_EQ(r2.message, mine);
}

}  // namespace
}  // namespace siesta::comm::test
