// POST /v1/completions: parse, queue one engine request per prompt, answer in one JSON body
// or as server-sent events.
#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "completion_request.hpp"
#include "completion_response.hpp"
#include "server_impl.hpp"

namespace siesta::serve {

namespace {

constexpr const char* kEndpoint = "/v1/completions";

// Streaming state of one response: which text of each choice has been sent.
struct StreamState {
  CompletionMeta meta;
  int n = 1;
  bool include_usage = false;
  std::vector<EngineLoop::Submitted> requests;
  size_t current = 0;                    // the request being streamed (one after another)
  std::vector<std::string> sent_text;    // per choice index
  uint64_t prompt_tokens = 0, completion_tokens = 0;
  bool finished = false;
};

}  // namespace

void Server::Impl::handle_completions(const std::string& body, httplib::Response& res) {
  CompletionRequest cr;
  try {
    cr = parse_completion_request(body, *tokenizer, vocab_size);
    if (!cr.model.empty() && cr.model != opt.served_model_name)
      throw ApiError(404, "NotFoundError", "The model `" + cr.model + "` does not exist.", "model");
  } catch (const std::exception& e) {
    return reply_error(res, api_error_from(e), kEndpoint);
  }

  CompletionMeta meta;
  meta.id = fmt::format("cmpl-{:x}{:08x}", started_unix, next_completion.fetch_add(1));
  meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch()).count();
  meta.model = opt.served_model_name;
  meta.logprobs = cr.logprobs;

  std::vector<EngineLoop::Submitted> submitted;
  try {
    for (auto& p : cr.prompts) submitted.push_back(loop->submit(std::move(p), cr.params));
  } catch (const std::exception& e) {
    for (auto& s : submitted) loop->abort(s.id, "another prompt of the request was refused");
    return reply_error(res, api_error_from(e), kEndpoint);
  }
  const int n = cr.params.n;

  if (!cr.stream) {
    std::vector<Choice> choices;
    uint64_t prompt_tokens = 0;
    for (size_t p = 0; p < submitted.size(); ++p) {
      auto& st = *submitted[p].stream;
      st.wait_done();
      if (auto err = st.error()) {
        for (auto& s : submitted) loop->abort(s.id, "request failed");
        return reply_error(res, ApiError(500, "InternalServerError", *err), kEndpoint);
      }
      prompt_tokens += static_cast<uint64_t>(st.num_prompt_tokens());
      for (auto& o : st.samples())
        choices.push_back(Choice{static_cast<int>(p) * n + o.index, std::move(o)});
    }
    res.set_content(completion_body(meta, choices, *tokenizer, prompt_tokens), "application/json");
    metrics.count_request(kEndpoint, 200);
    return;
  }

  auto state = std::make_shared<StreamState>();
  state->meta = meta;
  state->n = n;
  state->include_usage = cr.include_usage;
  state->requests = std::move(submitted);
  state->sent_text.resize(state->requests.size() * static_cast<size_t>(n));
  metrics.count_request(kEndpoint, 200);
  auto tok = tokenizer;

  ++open_streams;   // the releaser below runs exactly once, when the Response dies
  res.set_chunked_content_provider(
      "text/event-stream",
      [state, tok](size_t, httplib::DataSink& sink) {
        auto& s = *state;
        auto send = [&](const std::string& chunk) { return sink.write(chunk.data(), chunk.size()); };
        if (s.current >= s.requests.size()) {
          if (s.include_usage && !send(usage_chunk(s.meta, s.prompt_tokens, s.completion_tokens)))
            return false;
          if (!send("data: [DONE]\n\n")) return false;
          s.finished = true;
          sink.done();
          return true;
        }
        auto& r = s.requests[s.current];
        const int base = static_cast<int>(s.current) * s.n;
        std::vector<infer::TokenDelta> deltas;
        if (r.stream->wait_deltas(deltas)) {
          for (const auto& d : deltas) {
            if (d.text.empty() && d.token_ids.empty()) continue;
            s.sent_text[static_cast<size_t>(base + d.index)] += d.text;
            // finish_reason waits for the request's final output, which has the last word
            // on the text (see below).
            if (!send(completion_chunk(s.meta, base + d.index, d.text, d.token_ids, d.logprobs,
                                       infer::FinishReason::None, "", *tok)))
              return false;
          }
          return true;
        }
        if (auto err = r.stream->error()) {
          // The status line is gone already: report in the stream, as vLLM does.
          std::string msg = error_body(ApiError(500, "InternalServerError", *err));
          send("data: " + msg + "\n\n");
        }
        s.prompt_tokens += static_cast<uint64_t>(r.stream->num_prompt_tokens());
        for (const auto& o : r.stream->samples()) {
          auto& sent = s.sent_text[static_cast<size_t>(base + o.index)];
          std::string rest = o.text.size() > sent.size() && o.text.compare(0, sent.size(), sent) == 0
                                 ? o.text.substr(sent.size()) : std::string();
          s.completion_tokens += o.token_ids.size();
          if (!send(completion_chunk(s.meta, base + o.index, rest, {}, {}, o.finish_reason,
                                     o.stop_reason, *tok)))
            return false;
        }
        ++s.current;
        return true;
      },
      [state, this](bool success) {
        // A client that went away: free its engine slots.
        if (!(success && state->finished))
          for (auto& r : state->requests)
            if (!r.stream->done()) loop->abort(r.id, "client disconnected");
        --open_streams;
      });
}

}  // namespace siesta::serve
