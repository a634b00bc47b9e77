#include "completion_response.hpp"

#include <boost/json.hpp>

#include "api_error.hpp"

namespace siesta::serve {

namespace json = boost::json;

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned char c = b[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= n && !(len == 2 && c < 0xC2);
    for (size_t k = 1; ok && k < len; ++k) ok = (b[i + k] & 0xC0) == 0x80;
    if (ok && len == 3) {
      unsigned cp = ((c & 0x0Fu) << 12) | ((b[i + 1] & 0x3Fu) << 6) | (b[i + 2] & 0x3Fu);
      ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
    }
    if (ok && len == 4) {
      unsigned cp = ((c & 0x07u) << 18) | ((b[i + 1] & 0x3Fu) << 12) |
                    ((b[i + 2] & 0x3Fu) << 6) | (b[i + 3] & 0x3Fu);
      ok = cp >= 0x10000 && cp <= 0x10FFFF;
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string error_body(const ApiError& e) {
  json::object err{{"message", to_valid_utf8(e.what())}, {"type", e.type}, {"code", e.status}};
  err["param"] = e.param.empty() ? json::value(nullptr) : json::value(e.param);
  return json::serialize(json::object{{"error", err}});
}

namespace {

json::value logprobs_json(const std::vector<int32_t>& ids, const std::vector<float>& lps,
                          int top, const infer::Tokenizer& tok) {
  json::array tokens, token_logprobs, top_logprobs, offsets;
  size_t offset = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string t = to_valid_utf8(tok.decode(std::span<const int32_t>(&ids[i], 1)));
    double lp = i < lps.size() ? lps[i] : 0.0;
    tokens.emplace_back(t);
    token_logprobs.emplace_back(lp);
    // Only the sampled token's log-prob is known (see completion_request.cpp).
    if (top > 0) top_logprobs.emplace_back(json::object{{t, lp}});
    offsets.emplace_back(offset);
    offset += t.size();
  }
  json::object o{{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"text_offset", offsets}};
  o["top_logprobs"] = top > 0 ? json::value(top_logprobs) : json::value(nullptr);
  return o;
}

json::value reason(infer::FinishReason r) {
  if (r == infer::FinishReason::None) return nullptr;
  return json::string(infer::finish_reason_name(r));
}

json::value stop_reason_json(infer::FinishReason r, const std::string& s) {
  if (r != infer::FinishReason::Stop || s.empty()) return nullptr;
  return json::string(to_valid_utf8(s));
}

}  // namespace

std::string completion_body(const CompletionMeta& m, const std::vector<Choice>& choices,
                            const infer::Tokenizer& tok, uint64_t prompt_tokens) {
  json::array arr;
  uint64_t completion_tokens = 0;
  for (const auto& c : choices) {
    completion_tokens += c.out.token_ids.size();
    json::object o{{"index", c.index}, {"text", to_valid_utf8(c.out.text)}};
    o["logprobs"] = m.logprobs >= 0 ? logprobs_json(c.out.token_ids, c.out.logprobs, m.logprobs, tok)
                                    : json::value(nullptr);
    o["finish_reason"] = reason(c.out.finish_reason);
    o["stop_reason"] = stop_reason_json(c.out.finish_reason, c.out.stop_reason);
    arr.push_back(std::move(o));
  }
  json::object body{{"id", m.id},          {"object", "text_completion"},
                    {"created", m.created}, {"model", m.model},
                    {"choices", arr},
                    {"usage", json::object{{"prompt_tokens", prompt_tokens},
                                           {"completion_tokens", completion_tokens},
                                           {"total_tokens", prompt_tokens + completion_tokens}}}};
  return json::serialize(body);
}

std::string completion_chunk(const CompletionMeta& m, int index, const std::string& text,
                             const std::vector<int32_t>& token_ids,
                             const std::vector<float>& logprobs, infer::FinishReason finish,
                             const std::string& stop_reason, const infer::Tokenizer& tok) {
  json::object c{{"index", index}, {"text", to_valid_utf8(text)}};
  c["logprobs"] = m.logprobs >= 0 ? logprobs_json(token_ids, logprobs, m.logprobs, tok)
                                  : json::value(nullptr);
  c["finish_reason"] = reason(finish);
  c["stop_reason"] = stop_reason_json(finish, stop_reason);
  json::object body{{"id", m.id},          {"object", "text_completion"},
                    {"created", m.created}, {"model", m.model},
                    {"choices", json::array{c}}};
  return "data: " + json::serialize(body) + "\n\n";
}

std::string usage_chunk(const CompletionMeta& m, uint64_t prompt_tokens, uint64_t completion_tokens) {
  json::object body{{"id", m.id},          {"object", "text_completion"},
                    {"created", m.created}, {"model", m.model},
                    {"choices", json::array{}},
                    {"usage", json::object{{"prompt_tokens", prompt_tokens},
                                           {"completion_tokens", completion_tokens},
                                           {"total_tokens", prompt_tokens + completion_tokens}}}};
  return "data: " + json::serialize(body) + "\n\n";
}

}  // namespace siesta::serve
