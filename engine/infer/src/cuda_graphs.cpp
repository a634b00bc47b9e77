// CudaGraphs: capture and replay of decode forwards (see cuda_graphs.hpp).
#include "cuda_graphs.hpp"

#include <algorithm>

#include "model_runner.hpp"

#ifdef SIESTA_WITH_CUDA
#include <cuda_runtime.h>

#include "siesta/kernels/error.hpp"
#endif

namespace siesta::infer {

std::vector<int> graph_batch_sizes(int max_batch) {
  std::vector<int> sizes;
  for (int b : {1, 2, 4})
    if (b <= max_batch) sizes.push_back(b);
  for (int b = 8; b <= max_batch; b += 8) sizes.push_back(b);
  if (!sizes.empty() && sizes.back() < max_batch) sizes.push_back(max_batch);
  return sizes;
}

int CudaGraphs::padded_batch(int n) const {
  auto it = std::lower_bound(sizes_.begin(), sizes_.end(), n);
  return it == sizes_.end() ? 0 : *it;
}

#ifdef SIESTA_WITH_CUDA

struct CudaGraphs::Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

CudaGraphs::~CudaGraphs() = default;

std::unique_ptr<CudaGraphs> CudaGraphs::capture(ModelRunner& r, int max_batch) {
  void* stream = r.ops_.native_stream();
  if (!stream || max_batch < 1) return nullptr;
  auto st = static_cast<cudaStream_t>(stream);
  std::unique_ptr<CudaGraphs> g(new CudaGraphs());
  g->stream_ = stream;
  g->sizes_ = graph_batch_sizes(max_batch);
  g->graphs_.resize(g->sizes_.size());
  // Largest first, as vLLM does; every graph reads the metadata region at its own layout.
  for (size_t i = g->sizes_.size(); i-- > 0;) {
    const int B = g->sizes_[i];
    BatchLayout L = BatchLayout::compact(B, B, B, r.limits_.max_blocks_per_seq);
    r.stage({}, nullptr, L, B);   // padding rows: valid metadata, nothing stored
    kernels::PagedBatch b = r.batch_view(L, B, B, 1, r.limits_.max_model_len);
    const int32_t* tokens = r.meta_dev_ + L.tokens;
    // A graph serves decode-only batches, whose logits rows are the tokens in order: no row
    // gather (one kernel less per step).
    const int32_t* rows = nullptr;
    // One eager run first: cuBLAS picks its algorithms and any lazy setup happens outside
    // the capture.
    r.model_->forward(tokens, b, rows, B, r.logits_);
    r.ops_.synchronize();
    auto graph = std::make_unique<Graph>();
    SIESTA_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
    try {
      r.model_->forward(tokens, b, rows, B, r.logits_);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(st, &broken);
      if (broken) cudaGraphDestroy(broken);
      throw;
    }
    SIESTA_CUDA_CHECK(cudaStreamEndCapture(st, &graph->graph));
    SIESTA_CUDA_CHECK(cudaGraphInstantiate(&graph->exec, graph->graph, 0));
    g->graphs_[i] = std::move(graph);
  }
  r.ops_.synchronize();
  return g;
}

void CudaGraphs::replay(int padded) {
  auto it = std::lower_bound(sizes_.begin(), sizes_.end(), padded);
  size_t i = size_t(it - sizes_.begin());
  SIESTA_CUDA_CHECK(cudaGraphLaunch(graphs_[i]->exec, static_cast<cudaStream_t>(stream_)));
}

#else  // no CUDA in this build: the runner stays eager.

struct CudaGraphs::Graph {};
CudaGraphs::~CudaGraphs() = default;
std::unique_ptr<CudaGraphs> CudaGraphs::capture(ModelRunner&, int) { return nullptr; }
void CudaGraphs::replay(int) {}

#endif

}  // namespace siesta::infer
