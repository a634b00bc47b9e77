// InferenceEngine: construction (memory plan), requests, the step loop and output handling.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sstream>

#include "engine_impl.hpp"
#include "siesta/allocator/error.hpp"
#include "siesta/kernels/device.hpp"
#include "siesta/model/folder.hpp"
#include "siesta/model/inference.hpp"
#include "siesta/model/presets.hpp"

namespace siesta::infer {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t mix_seed(uint64_t seed, uint64_t index) {
  uint64_t x = seed + 0x9E3779B97F4A7C15ull * (index + 1);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string gib(double bytes) {
  std::ostringstream os;
  os.precision(3);
  os << bytes / double(1ull << 30) << " GiB";
  return os.str();
}

const char* const kOptionPrefix = "engine option ";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------

void InferenceEngine::Impl::build(EngineOptions o) {
  opt = std::move(o);
  auto bad = [](const std::string& what) {
    throw InferError(ErrorKind::InvalidArgument, kOptionPrefix + what);
  };
  if (opt.model.empty()) bad("'model' is empty (allowed: an HF folder or a preset name)");
  if (opt.block_size < 1 || opt.block_size > 1024)
    bad("'block_size' = " + std::to_string(opt.block_size) + " (allowed: 1..1024)");
  if (opt.max_num_seqs < 1) bad("'max_num_seqs' = " + std::to_string(opt.max_num_seqs) + " (allowed: >= 1)");
  if (opt.kv_cache_bytes == 0 &&
      !(opt.kv_cache_memory_fraction > 0 && opt.kv_cache_memory_fraction <= 1))
    bad("'kv_cache_memory_fraction' = " + std::to_string(opt.kv_cache_memory_fraction) +
        " (allowed: 0 < f <= 1, or set kv_cache_bytes)");

  cfg = model::resolve_model_config(opt.model);
  max_model_len = opt.max_model_len > 0 ? opt.max_model_len : cfg.max_position_embeddings;
  if (max_model_len < 2 || max_model_len > cfg.max_position_embeddings)
    bad("'max_model_len' = " + std::to_string(max_model_len) + " (allowed: 2.." +
        std::to_string(cfg.max_position_embeddings) + ", the model's max_position_embeddings)");
  max_num_batched_tokens = opt.max_num_batched_tokens > 0
                               ? opt.max_num_batched_tokens
                               : std::max(std::min(max_model_len, 8192), 2048);
  if (max_num_batched_tokens < opt.max_num_seqs)
    bad("'max_num_batched_tokens' = " + std::to_string(max_num_batched_tokens) +
        " is below max_num_seqs = " + std::to_string(opt.max_num_seqs) +
        " (every running sequence needs one token per step)");

  ops = kernels::make_ops(opt.device);
  dtype = ops->act_dtype();
  tokenizer = opt.tokenizer ? opt.tokenizer : std::make_shared<ByteTokenizer>();
  eos = opt.eos_token_ids ? *opt.eos_token_ids : tokenizer->eos_token_ids();
  seed_rng.seed(opt.seed ^ 0x5EED5EEDull);
  if (opt.pool) {
    pool = opt.pool;
  } else {
    allocator::PoolOptions po;
    po.device = opt.device;
    pool = std::shared_ptr<allocator::Pool>(allocator::Pool::create(po));
  }

  // Weights: one allocation, then the folder's tensors or a deterministic random init.
  weights_alloc = pool->allocate(model::weights_bytes(cfg, dtype), kTagWeights, "infer.weights");
  weights = model::bind_weights(cfg, weights_alloc.ptr, dtype, opt.device);
  if (std::filesystem::exists(std::filesystem::path(opt.model) / "config.json")) {
    model::load_model_folder(opt.model).load_into(weights, *ops);
  } else {
    model::HostWeights host(cfg, dtype);
    model::init_random_weights(cfg, host.weights(), opt.seed);
    ops->copy_to_device(weights.base, host.data(), host.bytes());
  }

  // Buffers: the rope table (kept in host memory while asleep).
  std::vector<float> rope = model::rope_table(cfg);
  rope_alloc = pool->allocate(rope.size() * sizeof(float), kTagBuffers, "infer.rope_cos_sin");
  ops->copy_to_device(rope_alloc.ptr, rope.data(), rope.size() * sizeof(float));

  // Workspace: activations, logits and batch metadata for the largest step.
  RunnerLimits lim;
  lim.max_num_seqs = opt.max_num_seqs;
  lim.max_tokens = max_num_batched_tokens;
  lim.max_blocks_per_seq = (max_model_len + opt.block_size - 1) / opt.block_size;
  lim.max_model_len = max_model_len;
  size_t ws_bytes = ModelRunner::workspace_bytes(cfg, dtype, lim);
  ws_alloc = pool->allocate(ws_bytes, kTagWorkspace, "infer.workspace");

  // KV cache: the bytes asked for, or a fraction of what is free now.
  size_t per_block = model::kv_cache_bytes(cfg, dtype, 1, opt.block_size);
  uint64_t kv_budget = opt.kv_cache_bytes;
  if (kv_budget == 0) {
    uint64_t free_bytes = opt.device.is_cuda() ? pool->device_memory().free_bytes
                                               : kernels::host_memory().available_bytes;
    kv_budget = uint64_t(opt.kv_cache_memory_fraction * double(free_bytes));
  }
  num_blocks = int(std::min<uint64_t>(kv_budget / per_block, uint64_t(INT32_MAX)));
  while (num_blocks > 0 && model::kv_cache_bytes(cfg, dtype, num_blocks, opt.block_size) > kv_budget)
    --num_blocks;
  int watermark = num_blocks / 100;   // vLLM keeps 1% free when admitting prompts
  int need = lim.max_blocks_per_seq;
  if (num_blocks - watermark < need)
    throw InferError(ErrorKind::InvalidArgument,
                     kOptionPrefix + std::string("KV cache of ") + gib(double(kv_budget)) + " holds " +
                         std::to_string(num_blocks) + " blocks of " +
                         std::to_string(opt.block_size) + " tokens (" + gib(double(per_block)) +
                         " each); one sequence of max_model_len = " +
                         std::to_string(max_model_len) + " needs " + std::to_string(need) +
                         " (+" + std::to_string(watermark) +
                         " watermark): raise kv_cache_bytes / kv_cache_memory_fraction or lower "
                         "max_model_len");
  kv_alloc = pool->allocate(model::kv_cache_bytes(cfg, dtype, num_blocks, opt.block_size), kTagKv,
                            "infer.kv_cache");
  auto kv = model::bind_kv_caches(cfg, kv_alloc.ptr, dtype, num_blocks, opt.block_size);

  blocks = std::make_unique<BlockManager>(num_blocks, opt.block_size, watermark);
  scheduler = std::make_unique<Scheduler>(
      SchedulerConfig{opt.max_num_seqs, max_num_batched_tokens}, *blocks);
  runner = std::make_unique<ModelRunner>(cfg, *ops, weights,
                                         static_cast<const float*>(rope_alloc.ptr), kv,
                                         ws_alloc.ptr, ws_bytes, lim);
  if (opt.enable_cuda_graphs && opt.device.is_cuda()) runner->capture_graphs(opt.max_num_seqs);
  ops->synchronize();
}

InferenceEngine::InferenceEngine(EngineOptions options) : impl_(std::make_unique<Impl>()) {
  try {
    impl_->build(std::move(options));
  } catch (const allocator::AllocatorError& e) {
    throw InferError(ErrorKind::OutOfMemory, std::string("engine construction: ") + e.what());
  } catch (const model::ModelError& e) {
    throw InferError(ErrorKind::InvalidArgument, std::string("engine model: ") + e.what());
  }
}

InferenceEngine::~InferenceEngine() {
  if (!impl_ || !impl_->pool) return;
  // The pool may outlive the engine (shared with a trainer): give every allocation back.
  try {
    if (impl_->ops) impl_->ops->synchronize();
    impl_->runner.reset();
    for (auto* a : {&impl_->kv_alloc, &impl_->ws_alloc, &impl_->rope_alloc, &impl_->weights_alloc})
      if (a->ptr) impl_->pool->free(*a);
  } catch (...) {
    // Destructors must not throw; the pool reclaims everything when it dies anyway.
  }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

void InferenceEngine::Impl::check_can_generate() const {
  if (sleep.is_sleeping()) {
    std::string asleep = !sleep.weights_awake && !sleep.kv_cache_awake ? "weights and kv_cache"
                         : !sleep.weights_awake                         ? "weights"
                                                                        : "kv_cache";
    throw InferError(ErrorKind::Sleeping,
                     "the engine is sleeping (level " + std::to_string(sleep.level) + ", " +
                         asleep + " asleep); call wake_up() first");
  }
  if (!sleep.weights_valid) {
    size_t total = weights.named().size();
    std::string missing;
    int shown = 0;
    for (const auto& t : weights.named())
      if (!written_since_wake.count(t.name) && shown++ < 3)
        missing += (missing.empty() ? "" : ", ") + t.name;
    throw InferError(ErrorKind::WeightsNotLoaded,
                     "the weights were discarded by sleep(level=2) and have not been reloaded (" +
                         std::to_string(total - written_since_wake.size()) + " of " +
                         std::to_string(total) + " tensors not written since wake, e.g. " +
                         missing + "); call update_weights() or load_weights() first");
  }
}

void InferenceEngine::Impl::check_request(const std::vector<int32_t>& prompt,
                                          const SamplingParams& p) const {
  if (draining)
    throw InferError(ErrorKind::Sleeping,
                     "the engine is going to sleep (draining running requests); retry after "
                     "wake_up()");
  check_can_generate();
  p.validate(cfg.vocab_size);
  if (prompt.empty())
    throw InferError(ErrorKind::InvalidArgument, "the prompt is empty (allowed: >= 1 token)");
  for (size_t i = 0; i < prompt.size(); ++i)
    if (prompt[i] < 0 || prompt[i] >= cfg.vocab_size)
      throw InferError(ErrorKind::InvalidArgument,
                       "prompt token " + std::to_string(i) + " = " + std::to_string(prompt[i]) +
                           " is outside the vocabulary (allowed: 0 <= id < " +
                           std::to_string(cfg.vocab_size) + ")");
  int limit = std::min(max_model_len - 1, max_num_batched_tokens);
  if (int(prompt.size()) > limit)
    throw InferError(ErrorKind::InvalidArgument,
                     "the prompt has " + std::to_string(prompt.size()) +
                         " tokens (allowed: at most " + std::to_string(limit) +
                         ": max_model_len - 1 = " + std::to_string(max_model_len - 1) +
                         ", max_num_batched_tokens = " + std::to_string(max_num_batched_tokens) +
                         ")");
  if (p.n > opt.max_num_seqs)
    throw InferError(ErrorKind::InvalidArgument,
                     "sampling parameter 'n' = " + std::to_string(p.n) +
                         " exceeds the engine's max_num_seqs (" +
                         std::to_string(opt.max_num_seqs) + ")");
}

RequestId InferenceEngine::Impl::add_request(std::vector<int32_t> prompt, const SamplingParams& p,
                                             DeltaCallback cb) {
  check_request(prompt, p);
  auto r = std::make_unique<Request>();
  r->id = next_id++;
  r->arrival = next_arrival++;
  r->prompt = std::move(prompt);
  r->params = p;
  if (r->params.top_k < 0) r->params.top_k = 0;   // vLLM's -1 spelling of "off"
  r->on_delta = std::move(cb);
  r->forked = p.n == 1;
  r->t_added = Clock::now();
  uint64_t base = p.seed ? *p.seed : seed_rng();
  auto s = std::make_unique<Sequence>();
  s->id = next_seq_id++;
  s->request = r.get();
  s->index = 0;
  s->tokens = r->prompt;
  s->prompt_len = int(r->prompt.size());
  // Sample 0 uses the request's seed as is, so a seeded n=1 request reproduces sample 0 of
  // the same request with n > 1; the other samples get decorrelated seeds.
  s->seed = base;
  r->seqs.push_back(std::move(s));
  // Remember the base seed for the fork (children derive theirs from it).
  r->params.seed = base;
  scheduler->add_waiting(r->seqs.front().get());
  RequestId id = r->id;
  requests.emplace(id, std::move(r));
  return id;
}

bool InferenceEngine::Impl::abort(RequestId id, const std::string& reason) {
  auto it = requests.find(id);
  if (it == requests.end()) return false;
  Request& r = *it->second;
  for (auto& s : r.seqs)
    if (s->status != SeqStatus::Finished) finish(*s, FinishReason::Abort, reason);
  retire_if_done(id);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

void InferenceEngine::Impl::step() {
  if (inflight.empty()) {
    if (requests.empty()) return;
    check_can_generate();
    auto t0 = Clock::now();
    SchedulerOutput out = scheduler->schedule();
    if (out.empty()) {
      if (scheduler->num_running() == 0 && scheduler->num_waiting() > 0)
        throw InferError(ErrorKind::Internal,
                         "no waiting request fits the KV cache (" +
                             std::to_string(blocks->num_free_blocks()) + " of " +
                             std::to_string(blocks->num_blocks()) + " blocks free)");
      return;
    }
    launch(std::move(out), t0, nullptr);
  }
  if (opt.async_scheduling) try_lookahead();
  complete_oldest();
}

void InferenceEngine::Impl::launch(SchedulerOutput out, Clock::time_point t0,
                                   const InFlight* inputs_from) {
  runner->copy_blocks(out.copies);
  InFlight st;
  st.id = next_step_id++;
  st.t0 = t0;
  for (Sequence* s : out.seqs) {
    const SamplingParams& p = s->request->params;
    int f = s->fanout();
    st.fanout.push_back(f);
    st.prefill.push_back(s->output_len() == 0 && s->num_preemptions == 0);
    for (int j = 0; j < f; ++j) {
      kernels::SamplingRow row;
      row.temperature = p.temperature;
      row.top_k = p.top_k;
      row.top_p = p.top_p;
      row.seed = j == 0 ? s->seed : mix_seed(*p.seed, uint64_t(j));
      row.step = uint64_t(s->output_len());
      st.host_drawn = st.host_drawn || row.truncates(cfg.vocab_size);
      st.rows.push_back(row);
    }
  }
  st.launch = runner->launch(out.seqs, st.fanout, *blocks, st.rows,
                             inputs_from ? &inputs_from->launch : nullptr);
  st.launch_ms = std::chrono::duration<double, std::milli>(runner->forward_launched_at() - t0).count();
  // From here on the device computes these tokens' K/V.
  for (Sequence* s : out.seqs) s->num_computed = int(s->tokens.size());
  st.seqs = std::move(out.seqs);
  inflight.push_back(std::move(st));
}

// Queues the step after the one in flight, its input tokens taken from that step's draw on the
// device. Only where the next step is known before the draw: the same running sequences, each
// decoding one more token that its length limits allow, a KV slot for it without preempting
// anyone, no request waiting to be admitted, and no row drawn on the host.
bool InferenceEngine::Impl::try_lookahead() {
  if (inflight.size() != 1) return false;
  const InFlight& a = inflight.back();
  if (!a.launch.decode_only || a.host_drawn || scheduler->num_waiting() > 0 ||
      scheduler->running() != a.seqs)
    return false;
  int need = 0;
  for (Sequence* s : a.seqs) {
    const SamplingParams& p = s->request->params;
    // After a's token the sequence has output_len() + 1 tokens; the next step draws one more.
    if (s->output_len() + 1 >= p.max_tokens || int(s->tokens.size()) + 1 >= max_model_len)
      return false;
    need += blocks->blocks_needed_to_write(s->id, int(s->tokens.size()),
                                           int(s->tokens.size()) + 1);
  }
  if (need > blocks->num_free_blocks()) return false;
  auto t0 = Clock::now();
  InFlight& front = inflight.back();
  for (Sequence* s : front.seqs) s->tokens.push_back(0);  // a's token, filled in when read
  front.placeholders = true;
  try {
    SchedulerOutput out = scheduler->schedule();
    if (out.seqs != front.seqs || !out.preempted.empty())
      throw InferError(ErrorKind::Internal,
                       "async scheduling: the lookahead step does not match the step in flight (" +
                           std::to_string(out.seqs.size()) + " vs " +
                           std::to_string(front.seqs.size()) + " sequences, " +
                           std::to_string(out.preempted.size()) + " preempted)");
    launch(std::move(out), t0, &front);
  } catch (...) {
    // Nothing queued: the step in flight completes as if no lookahead had been tried.
    for (Sequence* s : front.seqs) s->tokens.pop_back();
    front.placeholders = false;
    throw;
  }
  ++n_lookahead;
  return true;
}

void InferenceEngine::Impl::complete_oldest() {
  InFlight st = std::move(inflight.front());
  inflight.pop_front();
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  runner->collect(st.launch, tokens, logprobs);

  std::vector<Sequence*> touched;
  size_t r = 0;
  for (size_t i = 0; i < st.seqs.size(); ++i) {
    Sequence* s = st.seqs[i];
    if (s->status == SeqStatus::Finished) {
      // Aborted, or stopped by the step before while this one was already queued: its draw
      // is not part of the output.
      r += size_t(st.fanout[i]);
      continue;
    }
    Request& req = *s->request;
    if (st.prefill[i]) prompt_tokens += uint64_t(s->prompt_len);
    std::vector<Sequence*> group = {s};
    if (st.fanout[i] > 1) {
      // The prompt is computed: fork the other samples, sharing its blocks.
      for (int j = 1; j < st.fanout[i]; ++j) {
        auto c = std::make_unique<Sequence>();
        c->id = next_seq_id++;
        c->request = &req;
        c->index = j;
        c->tokens = s->tokens;
        c->prompt_len = s->prompt_len;
        c->num_computed = s->num_computed;
        c->seed = st.rows[r + size_t(j)].seed;
        blocks->fork(s->id, c->id);
        scheduler->add_running(c.get());
        group.push_back(c.get());
        req.seqs.push_back(std::move(c));
      }
      req.forked = true;
    }
    for (Sequence* g : group) {
      append_token(*g, tokens[r], logprobs[r], st.placeholders);
      ++r;
      touched.push_back(g);
    }
  }
  std::set<RequestId> ids;
  for (Sequence* s : touched) {
    if (s->status != SeqStatus::Finished) deliver(*s);
    ids.insert(s->request->id);
  }
  for (RequestId id : ids) retire_if_done(id);
  // Requests retired while this step was in flight are no longer pointed at.
  std::erase_if(retired, [&](const auto& e) { return e.first <= st.id; });
  ++n_steps;
  last_step_ms = std::chrono::duration<double, std::milli>(Clock::now() - st.t0).count();
  last_step_launch_ms = st.launch_ms;
}

void InferenceEngine::Impl::settle() {
  while (!inflight.empty()) complete_oldest();
}

void InferenceEngine::Impl::append_token(Sequence& s, int32_t token, float logprob,
                                         bool into_placeholder) {
  Request& req = *s.request;
  const SamplingParams& p = req.params;
  if (into_placeholder) s.tokens.back() = token;
  else s.tokens.push_back(token);
  if (p.logprobs) s.logprobs.push_back(logprob);
  ++gen_tokens;
  if (req.ttft_s < 0)
    req.ttft_s = std::chrono::duration<double>(Clock::now() - req.t_added).count();

  // vLLM's order: eos, stop tokens, stop strings, then length limits.
  if (!p.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
    finish(s, FinishReason::Stop, "");
    return;
  }
  if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) !=
      p.stop_token_ids.end()) {
    finish(s, FinishReason::Stop, std::to_string(token));
    return;
  }
  if (!p.stop.empty() || req.on_delta) {
    size_t checked = s.text.size();
    decode_text(s, false);
    if (!p.stop.empty()) {
      StopMatch m = find_stop_string(s.text, checked, p.stop);
      if (m.pos != std::string::npos) {
        s.text.resize(m.pos + (p.include_stop_str_in_output ? m.len : 0));
        finish(s, FinishReason::Stop, p.stop[size_t(m.which)], /*text_final=*/true);
        return;
      }
    }
  }
  if (s.output_len() >= p.max_tokens || int(s.tokens.size()) >= max_model_len)
    finish(s, FinishReason::Length, "");
}

void InferenceEngine::Impl::decode_text(Sequence& s, bool drop_last_token) {
  auto begin = s.tokens.begin() + s.prompt_len;
  auto end = s.tokens.end() - (drop_last_token && s.output_len() > 0 ? 1 : 0);
  std::vector<int32_t> ids(begin, end);
  s.text = tokenizer->decode(ids);
}

void InferenceEngine::Impl::finish(Sequence& s, FinishReason reason, std::string stop_reason,
                                   bool text_final) {
  const SamplingParams& p = s.request->params;
  if (!text_final) {
    // A stop token's (or eos's) text is not part of the output unless asked for (vLLM).
    bool drop_last = reason == FinishReason::Stop && !p.include_stop_str_in_output;
    decode_text(s, drop_last);
  }
  s.finish_reason = reason;
  s.stop_reason = std::move(stop_reason);
  s.status = SeqStatus::Finished;
  scheduler->remove(&s);
  ++s.request->num_finished;
  deliver(s);
}

void InferenceEngine::Impl::deliver(Sequence& s) {
  Request& req = *s.request;
  if (!req.on_delta) return;
  const SamplingParams& p = req.params;
  bool done = s.status == SeqStatus::Finished;
  TokenDelta d;
  d.request_id = req.id;
  d.index = s.index;
  size_t n_out = size_t(std::max(0, s.output_len()));
  for (size_t i = s.tokens_streamed; i < n_out; ++i) {
    d.token_ids.push_back(s.tokens[size_t(s.prompt_len) + i]);
    if (p.logprobs && i < s.logprobs.size()) d.logprobs.push_back(s.logprobs[i]);
  }
  s.tokens_streamed = n_out;
  size_t end = s.text.size();
  if (!done) {
    // Hold back what could still become a stop string, and a split UTF-8 character.
    size_t hold = 0;
    for (const auto& st : p.stop) hold = std::max(hold, st.size() - 1);
    end = end > hold ? end - hold : 0;
    end = utf8_complete_prefix(std::string_view(s.text).substr(0, end));
  }
  if (end > s.text_streamed) {
    d.text = s.text.substr(s.text_streamed, end - s.text_streamed);
    s.text_streamed = end;
  }
  d.finished = done;
  d.finish_reason = s.finish_reason;
  d.stop_reason = s.stop_reason;
  d.num_prompt_tokens = s.prompt_len;
  d.num_generated_tokens = int(n_out);
  if (d.token_ids.empty() && d.text.empty() && !done) return;
  try {
    req.on_delta(d);
  } catch (const std::exception& e) {
    // A failing consumer must not take the engine down: its request is aborted instead.
    if (!done) {
      req.on_delta = nullptr;
      for (auto& o : req.seqs)
        if (o->status != SeqStatus::Finished)
          finish(*o, FinishReason::Abort, std::string("output callback failed: ") + e.what());
    }
  }
}

RequestOutput InferenceEngine::Impl::make_output(const Request& r) const {
  RequestOutput o;
  o.id = r.id;
  o.prompt_token_ids = r.prompt;
  o.finished = true;
  o.time_to_first_token_s = std::max(0.0, r.ttft_s);
  o.total_time_s = std::chrono::duration<double>(Clock::now() - r.t_added).count();
  for (const auto& s : r.seqs) {
    CompletionOutput c;
    c.index = s->index;
    c.token_ids.assign(s->tokens.begin() + s->prompt_len, s->tokens.end());
    c.text = s->text;
    c.logprobs = s->logprobs;
    c.finish_reason = s->finish_reason;
    c.stop_reason = s->stop_reason;
    o.outputs.push_back(std::move(c));
  }
  // Aborted before its prompt was computed: the samples that never forked end the same way.
  for (int j = int(r.seqs.size()); j < r.params.n; ++j) {
    CompletionOutput c;
    c.index = j;
    c.finish_reason = r.seqs.front()->finish_reason;
    c.stop_reason = r.seqs.front()->stop_reason;
    o.outputs.push_back(std::move(c));
  }
  std::sort(o.outputs.begin(), o.outputs.end(),
            [](const CompletionOutput& a, const CompletionOutput& b) { return a.index < b.index; });
  return o;
}

void InferenceEngine::Impl::retire_if_done(RequestId id) {
  auto it = requests.find(id);
  if (it == requests.end()) return;
  const Request& r = *it->second;
  bool done = std::all_of(r.seqs.begin(), r.seqs.end(),
                          [](const auto& s) { return s->status == SeqStatus::Finished; });
  if (!done) return;
  finished.push_back(make_output(r));
  ++n_finished;
  // A step in flight may still point at its sequences: kept until that step completed.
  if (!inflight.empty()) retired.emplace_back(inflight.back().id, std::move(it->second));
  requests.erase(it);
}

std::vector<RequestOutput> InferenceEngine::Impl::take_finished() {
  std::vector<RequestOutput> out;
  out.swap(finished);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Public surface
// ---------------------------------------------------------------------------------------------

RequestId InferenceEngine::add_request(std::vector<int32_t> prompt, const SamplingParams& params,
                                       DeltaCallback on_delta) {
  return impl_->add_request(std::move(prompt), params, std::move(on_delta));
}

void InferenceEngine::check_request(const std::vector<int32_t>& prompt,
                                    const SamplingParams& params) const {
  impl_->check_request(prompt, params);
}

std::vector<RequestOutput> InferenceEngine::step() {
  impl_->step();
  return impl_->take_finished();
}

bool InferenceEngine::abort(RequestId id, const std::string& reason) {
  return impl_->abort(id, reason);
}

bool InferenceEngine::has_unfinished() const { return !impl_->requests.empty(); }

std::vector<RequestOutput> InferenceEngine::generate(
    const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& params) {
  for (const auto& p : prompts) impl_->check_request(p, params);
  std::map<RequestId, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i)
    index[impl_->add_request(prompts[i], params, {})] = i;
  std::vector<RequestOutput> results(prompts.size());
  size_t done = 0;
  auto collect = [&] {
    // Outputs of other requests stay queued for the next step() call.
    std::vector<RequestOutput> others;
    for (auto& o : impl_->finished) {
      auto it = index.find(o.id);
      if (it == index.end()) {
        others.push_back(std::move(o));
      } else {
        results[it->second] = std::move(o);
        ++done;
      }
    }
    impl_->finished = std::move(others);
  };
  try {
    while (done < prompts.size()) {
      impl_->step();
      collect();
    }
  } catch (...) {
    for (auto& [id, i] : index) impl_->abort(id, "generate() failed");
    collect();
    throw;
  }
  return results;
}

std::vector<RequestOutput> InferenceEngine::generate_text(const std::vector<std::string>& prompts,
                                                          const SamplingParams& params) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& p : prompts) ids.push_back(impl_->tokenizer->encode(p));
  return generate(ids, params);
}

EngineStats InferenceEngine::stats() const {
  const Impl& m = *impl_;
  EngineStats s;
  s.num_running = int(m.scheduler->num_running());
  s.num_waiting = int(m.scheduler->num_waiting());
  s.num_unfinished_requests = int(m.requests.size());
  s.num_requests_finished = m.n_finished;
  s.num_preemptions = m.scheduler->num_preemptions();
  s.num_steps = m.n_steps;
  s.prompt_tokens_total = m.prompt_tokens;
  s.generation_tokens_total = m.gen_tokens;
  s.kv_num_blocks = m.blocks->num_blocks();
  s.kv_free_blocks = m.blocks->num_free_blocks();
  s.block_size = m.blocks->block_size();
  s.kv_usage = 1.0 - double(s.kv_free_blocks) / double(std::max(1, s.kv_num_blocks));
  s.weights_bytes = m.weights_alloc.bytes;
  s.kv_cache_bytes = m.kv_alloc.bytes;
  s.buffers_bytes = m.rope_alloc.bytes;
  s.workspace_bytes = m.ws_alloc.bytes;
  s.num_cuda_graphs = m.runner->num_graphs();
  s.num_graph_replays = m.runner->num_graph_replays();
  s.num_lookahead_steps = m.n_lookahead;
  s.last_step_ms = m.last_step_ms;
  s.last_step_launch_ms = m.last_step_launch_ms;
  s.sleep = m.sleep;
  return s;
}

bool InferenceEngine::is_sleeping() const { return impl_->sleep.is_sleeping(); }
SleepState InferenceEngine::sleep_state() const { return impl_->sleep; }
const model::ModelConfig& InferenceEngine::model_config() const { return impl_->cfg; }
const EngineOptions& InferenceEngine::options() const { return impl_->opt; }
const Tokenizer& InferenceEngine::tokenizer() const { return *impl_->tokenizer; }
allocator::Pool& InferenceEngine::pool() { return *impl_->pool; }
int InferenceEngine::max_model_len() const { return impl_->max_model_len; }
DType InferenceEngine::weight_dtype() const { return impl_->dtype; }

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Abort: return "abort";
  }
  return "";
}

}  // namespace siesta::infer
