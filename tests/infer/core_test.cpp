// The model-independent core: sampling-parameter validation, the block manager, the
// scheduler's continuous batching and preemption, stop strings and UTF-8 holdback.
#include <gtest/gtest.h>

#include <memory>

#include "siesta/infer/block_manager.hpp"
#include "siesta/infer/error.hpp"
#include "siesta/infer/sampling_params.hpp"
#include "siesta/infer/scheduler.hpp"
#include "siesta/infer/tokenizer.hpp"

using namespace siesta::infer;

namespace {

std::string validation_message(const SamplingParams& p, int vocab = 0) {
  try {
    p.validate(vocab);
  } catch (const InferError& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    return e.what();
  }
  return "";
}

}  // namespace

TEST(SamplingParams, DefaultsAreValid) { EXPECT_EQ(validation_message(SamplingParams{}), ""); }

TEST(SamplingParams, ErrorsNameTheFieldAndTheAllowedRange) {
  SamplingParams p;
  p.temperature = -0.5f;
  EXPECT_NE(validation_message(p).find("'temperature' = -0.5"), std::string::npos);
  p = {};
  p.top_p = 0.f;
  EXPECT_NE(validation_message(p).find("0 < top_p <= 1"), std::string::npos);
  p = {};
  p.top_k = -3;
  EXPECT_NE(validation_message(p).find("'top_k'"), std::string::npos);
  p = {};
  p.max_tokens = 0;
  EXPECT_NE(validation_message(p).find("'max_tokens' = 0"), std::string::npos);
  p = {};
  p.n = 0;
  EXPECT_NE(validation_message(p).find("'n' = 0"), std::string::npos);
  p = {};
  p.stop = {""};
  EXPECT_NE(validation_message(p).find("'stop'"), std::string::npos);
  p = {};
  p.stop_token_ids = {300};
  EXPECT_NE(validation_message(p, 264).find("vocab_size (264)"), std::string::npos);
}

TEST(BlockManager, AllocatesFromTheFreeListAndFreesBack) {
  BlockManager bm(8, 4);
  EXPECT_TRUE(bm.can_allocate(32));
  EXPECT_FALSE(bm.can_allocate(33));
  bm.allocate(1, 9);   // 3 blocks
  EXPECT_EQ(bm.table(1).size(), 3u);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  std::vector<BlockCopy> cow;
  EXPECT_EQ(bm.blocks_needed_to_write(1, 9, 13), 1);
  bm.prepare_write(1, 9, 13, cow);
  EXPECT_TRUE(cow.empty());
  EXPECT_EQ(bm.table(1).size(), 4u);
  bm.free(1);
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_FALSE(bm.has(1));
}

TEST(BlockManager, ForkedSequencesShareBlocksAndCopyTheLastOnWrite) {
  BlockManager bm(8, 4);
  bm.allocate(1, 6);   // blocks: one full, one half-filled
  bm.fork(1, 2);
  bm.fork(1, 3);
  EXPECT_EQ(bm.num_free_blocks(), 6);
  EXPECT_EQ(bm.refcount(bm.table(1)[0]), 3);
  std::vector<BlockCopy> cow;
  // Writing position 6 touches the shared half-filled block: it is copied first.
  EXPECT_EQ(bm.blocks_needed_to_write(2, 6, 7), 1);
  int32_t shared = bm.table(2)[1];
  bm.prepare_write(2, 6, 7, cow);
  ASSERT_EQ(cow.size(), 1u);
  EXPECT_EQ(cow[0].src, shared);
  EXPECT_NE(bm.table(2)[1], shared);
  EXPECT_EQ(bm.table(2)[0], bm.table(1)[0]) << "full prompt blocks stay shared";
  bm.prepare_write(3, 6, 7, cow);
  EXPECT_EQ(cow.size(), 2u);
  // The last holder writes in place.
  EXPECT_EQ(bm.blocks_needed_to_write(1, 6, 7), 0);
  bm.prepare_write(1, 6, 7, cow);
  EXPECT_EQ(cow.size(), 2u);
  EXPECT_EQ(bm.table(1)[1], shared);
  bm.free(1);
  bm.free(2);
  EXPECT_EQ(bm.refcount(bm.table(3)[0]), 1);
  bm.free(3);
  EXPECT_EQ(bm.num_free_blocks(), 8);
}

TEST(BlockManager, WatermarkKeepsBlocksFreeForRunningSequences) {
  BlockManager bm(10, 4, 2);
  EXPECT_TRUE(bm.can_allocate(32));
  EXPECT_FALSE(bm.can_allocate(33));
}

TEST(BlockManager, ResetEmptiesTheCache) {
  BlockManager bm(4, 4);
  bm.allocate(7, 16);
  bm.reset();
  EXPECT_EQ(bm.num_free_blocks(), 4);
  EXPECT_EQ(bm.num_tables(), 0u);
}

namespace {

// Requests and sequences for scheduler tests (the engine owns them the same way).
struct Fixture {
  std::vector<std::unique_ptr<Request>> reqs;
  int64_t next_seq = 0;
  Sequence* add(int prompt_len, int n = 1) {
    auto r = std::make_unique<Request>();
    r->id = reqs.size();
    r->arrival = reqs.size();
    r->params.n = n;
    r->forked = n == 1;
    r->prompt.assign(size_t(prompt_len), 1);
    auto s = std::make_unique<Sequence>();
    s->id = next_seq++;
    s->request = r.get();
    s->tokens = r->prompt;
    s->prompt_len = prompt_len;
    Sequence* p = s.get();
    r->seqs.push_back(std::move(s));
    reqs.push_back(std::move(r));
    return p;
  }
  // What the engine does after a forward: the K/V are computed and one token is sampled.
  static void computed(const SchedulerOutput& out) {
    for (Sequence* s : out.seqs) {
      s->num_computed = int(s->tokens.size());
      s->tokens.push_back(2);
    }
  }
};

}  // namespace

TEST(Scheduler, PrefillAndDecodeShareAStep) {
  BlockManager bm(64, 4);
  Scheduler sch({8, 64}, bm);
  Fixture f;
  Sequence* a = f.add(10);
  sch.add_waiting(a);
  auto o1 = sch.schedule();
  ASSERT_EQ(o1.seqs.size(), 1u);
  EXPECT_EQ(o1.num_tokens, 10);
  Fixture::computed(o1);
  Sequence* b = f.add(7);
  sch.add_waiting(b);
  auto o2 = sch.schedule();
  ASSERT_EQ(o2.seqs.size(), 2u);
  EXPECT_EQ(o2.seqs[0], a);   // decode first
  EXPECT_EQ(o2.seqs[1], b);   // then the new prompt
  EXPECT_EQ(o2.num_tokens, 1 + 7);
  EXPECT_EQ(o2.num_prefills, 1);
}

TEST(Scheduler, TokenBudgetAndBatchSizeLimitAdmission) {
  BlockManager bm(64, 4);
  Scheduler sch({2, 16}, bm);
  Fixture f;
  Sequence* a = f.add(10);
  Sequence* b = f.add(10);
  Sequence* c = f.add(3);
  for (auto* s : {a, b, c}) sch.add_waiting(s);
  auto o1 = sch.schedule();
  ASSERT_EQ(o1.seqs.size(), 1u) << "b does not fit the 16-token budget; FCFS keeps c behind it";
  Fixture::computed(o1);
  auto o2 = sch.schedule();
  ASSERT_EQ(o2.seqs.size(), 2u);
  Fixture::computed(o2);
  auto o3 = sch.schedule();
  EXPECT_EQ(o3.seqs.size(), 2u) << "max_num_seqs = 2 keeps c waiting";
  EXPECT_EQ(sch.num_waiting(), 1u);
}

TEST(Scheduler, FanOutOfAPromptCountsAgainstTheBatchSize) {
  BlockManager bm(64, 4);
  Scheduler sch({4, 64}, bm);
  Fixture f;
  Sequence* a = f.add(5, 3);
  Sequence* b = f.add(5, 2);
  sch.add_waiting(a);
  sch.add_waiting(b);
  auto o = sch.schedule();
  EXPECT_EQ(o.seqs.size(), 1u) << "3 samples of a plus 2 of b exceed 4 sequences";
}

TEST(Scheduler, PreemptsTheNewestSequenceWhenBlocksRunOut) {
  BlockManager bm(4, 4);   // 16 token slots
  Scheduler sch({4, 64}, bm);
  Fixture f;
  Sequence* a = f.add(4);
  Sequence* b = f.add(4);
  sch.add_waiting(a);
  sch.add_waiting(b);
  auto o1 = sch.schedule();
  ASSERT_EQ(o1.seqs.size(), 2u);
  Fixture::computed(o1);   // each now needs a second block
  auto o2 = sch.schedule();
  ASSERT_EQ(o2.seqs.size(), 2u);
  Fixture::computed(o2);
  // Grow a to fill its second block; b still fits until both need a third block.
  for (int i = 0; i < 3; ++i) Fixture::computed(sch.schedule());
  auto o = sch.schedule();   // a and b both need a 3rd block: only one can have it
  ASSERT_EQ(o.preempted.size(), 1u);
  EXPECT_EQ(o.preempted[0], b);
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_EQ(b->status, SeqStatus::Waiting);
  EXPECT_EQ(o.seqs.size(), 1u);
  EXPECT_EQ(o.seqs[0], a);
  EXPECT_EQ(sch.num_preemptions(), 1u);
  // Once a finishes, b is readmitted and recomputes all its tokens in one prefill.
  Fixture::computed(o);
  sch.remove(a);
  auto r = sch.schedule();
  ASSERT_EQ(r.seqs.size(), 1u);
  EXPECT_EQ(r.seqs[0], b);
  EXPECT_EQ(r.num_tokens, int(b->tokens.size()));
}

TEST(Scheduler, ALoneSequenceThatCannotGrowPreemptsItself) {
  BlockManager bm(2, 4);
  Scheduler sch({4, 64}, bm);
  Fixture f;
  Sequence* a = f.add(8);
  sch.add_waiting(a);
  Fixture::computed(sch.schedule());
  auto o = sch.schedule();
  EXPECT_TRUE(o.seqs.empty());
  ASSERT_EQ(o.preempted.size(), 1u);
  EXPECT_EQ(sch.num_waiting(), 1u);
}

TEST(StopStrings, FindsTheEarliestMatchEndingInNewText) {
  std::vector<std::string> stops = {"cd", "bc"};
  auto m = find_stop_string("abcde", 2, stops);
  EXPECT_EQ(m.pos, 1u);
  EXPECT_EQ(m.which, 1);
  // A match wholly inside text already checked is not reported again.
  EXPECT_EQ(find_stop_string("abcde", 5, stops).pos, std::string::npos);
  EXPECT_EQ(find_stop_string("xyz", 0, stops).pos, std::string::npos);
}

TEST(Utf8, IncompleteTrailingCharacterIsHeldBack) {
  std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(utf8_complete_prefix("ab" + euro), 5u);
  EXPECT_EQ(utf8_complete_prefix("ab" + euro.substr(0, 2)), 2u);
  EXPECT_EQ(utf8_complete_prefix("ab" + euro.substr(0, 1)), 2u);
  EXPECT_EQ(utf8_complete_prefix("abc"), 3u);
}

TEST(ByteTokenizer, RoundTripsBytesAndSkipsSpecialIds) {
  ByteTokenizer t;
  auto ids = t.encode("hi!");
  ids.push_back(ByteTokenizer::kEos);
  EXPECT_EQ(t.decode(ids), "hi!");
}
