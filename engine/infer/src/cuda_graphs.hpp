// CUDA graphs for decode steps (vLLM's CUDA graph runner): one graph per padded batch size
// (1, 2, 4, 8, then multiples of 8), captured once over fixed metadata addresses. Replays
// stay valid across sleep/wake because the allocator keeps every address. Built only with
// SIESTA_WITH_CUDA; elsewhere capture() returns null and the runner stays eager.
#pragma once

#include <memory>
#include <vector>

namespace siesta::infer {

class ModelRunner;

class CudaGraphs {
 public:
  // Captures graphs for every padded size <= max_batch; null when graphs are unavailable
  // (CPU backend, or a build without CUDA).
  static std::unique_ptr<CudaGraphs> capture(ModelRunner& runner, int max_batch);
  ~CudaGraphs();
  // The captured size a batch of n decodes runs as; 0 when n is larger than any.
  int padded_batch(int n) const;
  void replay(int padded);
  int size() const { return int(sizes_.size()); }

  struct Graph;

 private:
  CudaGraphs() = default;
  std::vector<int> sizes_;
  std::vector<std::unique_ptr<Graph>> graphs_;
  void* stream_ = nullptr;
};

// The batch sizes vLLM captures: 1, 2, 4, then multiples of 8.
std::vector<int> graph_batch_sizes(int max_batch);

}  // namespace siesta::infer
