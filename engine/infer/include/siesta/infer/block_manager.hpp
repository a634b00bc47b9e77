// The paged KV cache's bookkeeping (vLLM's block manager): a free list of fixed-size blocks,
// one block table per sequence, and reference counts so that the samples of one prompt share
// its blocks. A shared block that is about to be written is copied first (copy-on-write); the
// copies are returned to the caller, which performs them on the device before the forward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace siesta::infer {

struct BlockCopy {
  int32_t src = 0;
  int32_t dst = 0;
};

class BlockManager {
 public:
  // watermark_blocks are kept free when admitting new sequences, so that running ones can
  // grow a little before anyone has to be preempted (vLLM keeps 1%).
  BlockManager(int num_blocks, int block_size, int watermark_blocks = 0);

  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  int num_free_blocks() const { return int(free_.size()); }
  int watermark_blocks() const { return watermark_; }
  int blocks_for(int num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  // A new sequence of num_tokens tokens (none cached yet) fits while keeping the watermark.
  bool can_allocate(int num_tokens) const;
  // Gives seq_id a table covering num_tokens. Throws InferError if it exists or does not fit.
  void allocate(int64_t seq_id, int num_tokens);

  // Blocks needed so that seq_id's tokens [from, to) can be written: new blocks past the end
  // of its table plus copies of shared blocks in the range.
  int blocks_needed_to_write(int64_t seq_id, int from, int to) const;
  // Makes [from, to) writable (allocating and copying on write); appends the copies to cow.
  // Throws InferError when there are not enough free blocks (check blocks_needed_to_write).
  void prepare_write(int64_t seq_id, int from, int to, std::vector<BlockCopy>& cow);

  // child gets parent's table; every block's refcount goes up by one.
  void fork(int64_t parent, int64_t child);
  // Drops seq_id's table; blocks whose refcount reaches 0 return to the free list.
  void free(int64_t seq_id);
  // Forgets every table and frees every block (after a KV wake the cache is empty).
  void reset();

  bool has(int64_t seq_id) const { return tables_.count(seq_id) != 0; }
  const std::vector<int32_t>& table(int64_t seq_id) const;
  int refcount(int32_t block) const { return refs_.at(size_t(block)); }
  size_t num_tables() const { return tables_.size(); }

 private:
  int32_t take_block();
  void release_block(int32_t b);

  int num_blocks_, block_size_, watermark_;
  std::vector<int32_t> free_;     // stack: the most recently freed block is reused first
  std::vector<int32_t> refs_;
  std::unordered_map<int64_t, std::vector<int32_t>> tables_;
};

}  // namespace siesta::infer
