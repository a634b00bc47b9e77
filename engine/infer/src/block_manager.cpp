// BlockManager: free list + refcounted block tables (see the header for the model).
#include "siesta/infer/block_manager.hpp"

#include <algorithm>
#include <string>

#include "siesta/infer/error.hpp"

namespace siesta::infer {

BlockManager::BlockManager(int num_blocks, int block_size, int watermark_blocks)
    : num_blocks_(num_blocks), block_size_(block_size), watermark_(watermark_blocks) {
  if (num_blocks < 1 || block_size < 1 || watermark_blocks < 0 || watermark_blocks >= num_blocks)
    throw InferError(ErrorKind::InvalidArgument,
                     "block manager needs num_blocks >= 1 (got " + std::to_string(num_blocks) +
                         "), block_size >= 1 (got " + std::to_string(block_size) +
                         ") and 0 <= watermark < num_blocks (got " +
                         std::to_string(watermark_blocks) + ")");
  reset();
}

void BlockManager::reset() {
  tables_.clear();
  refs_.assign(size_t(num_blocks_), 0);
  free_.clear();
  // Reversed so that block 0 is handed out first: tables read naturally in tests and logs.
  for (int b = num_blocks_ - 1; b >= 0; --b) free_.push_back(b);
}

int32_t BlockManager::take_block() {
  int32_t b = free_.back();
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void BlockManager::release_block(int32_t b) {
  if (--refs_[size_t(b)] == 0) free_.push_back(b);
}

bool BlockManager::can_allocate(int num_tokens) const {
  return blocks_for(num_tokens) + watermark_ <= num_free_blocks();
}

void BlockManager::allocate(int64_t seq_id, int num_tokens) {
  if (has(seq_id))
    throw InferError(ErrorKind::Internal,
                     "sequence " + std::to_string(seq_id) + " already has a block table");
  int need = blocks_for(num_tokens);
  if (need > num_free_blocks())
    throw InferError(ErrorKind::OutOfMemory,
                     "KV cache: " + std::to_string(num_tokens) + " tokens need " +
                         std::to_string(need) + " blocks, " + std::to_string(num_free_blocks()) +
                         " free of " + std::to_string(num_blocks_));
  auto& t = tables_[seq_id];
  t.reserve(size_t(need));
  for (int i = 0; i < need; ++i) t.push_back(take_block());
}

const std::vector<int32_t>& BlockManager::table(int64_t seq_id) const {
  auto it = tables_.find(seq_id);
  if (it == tables_.end())
    throw InferError(ErrorKind::Internal,
                     "sequence " + std::to_string(seq_id) + " has no block table");
  return it->second;
}

int BlockManager::blocks_needed_to_write(int64_t seq_id, int from, int to) const {
  const auto& t = table(seq_id);
  int need = std::max(0, blocks_for(to) - int(t.size()));
  if (to > from)
    for (int i = from / block_size_; i <= (to - 1) / block_size_ && i < int(t.size()); ++i)
      if (refs_[size_t(t[size_t(i)])] > 1) ++need;
  return need;
}

void BlockManager::prepare_write(int64_t seq_id, int from, int to, std::vector<BlockCopy>& cow) {
  int need = blocks_needed_to_write(seq_id, from, to);
  if (need > num_free_blocks())
    throw InferError(ErrorKind::OutOfMemory,
                     "KV cache: writing tokens [" + std::to_string(from) + ", " +
                         std::to_string(to) + ") of sequence " + std::to_string(seq_id) +
                         " needs " + std::to_string(need) + " blocks, " +
                         std::to_string(num_free_blocks()) + " free");
  auto& t = tables_.at(seq_id);
  if (to > from)
    for (int i = from / block_size_; i <= (to - 1) / block_size_ && i < int(t.size()); ++i) {
      int32_t& b = t[size_t(i)];
      if (refs_[size_t(b)] > 1) {
        int32_t fresh = take_block();
        cow.push_back({b, fresh});
        release_block(b);
        b = fresh;
      }
    }
  while (int(t.size()) < blocks_for(to)) t.push_back(take_block());
}

void BlockManager::fork(int64_t parent, int64_t child) {
  if (has(child))
    throw InferError(ErrorKind::Internal,
                     "sequence " + std::to_string(child) + " already has a block table");
  auto t = table(parent);
  for (int32_t b : t) ++refs_[size_t(b)];
  tables_[child] = std::move(t);
}

void BlockManager::free(int64_t seq_id) {
  auto it = tables_.find(seq_id);
  if (it == tables_.end()) return;
  for (int32_t b : it->second) release_block(b);
  tables_.erase(it);
}

}  // namespace siesta::infer
