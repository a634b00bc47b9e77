#include "completion_request.hpp"

#include <cmath>
#include <set>

#include <boost/json.hpp>

#include "api_error.hpp"
#include "siesta/infer/error.hpp"

namespace siesta::serve {

namespace json = boost::json;

namespace {

const char* kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "?";
}

[[noreturn]] void wrong_type(const std::string& field, const char* expected, const json::value& v) {
  throw bad_request("'" + field + "' must be " + expected + ", got " + kind_name(v), field);
}

std::optional<int64_t> as_int(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX))
    return static_cast<int64_t>(v.get_uint64());
  if (v.is_double() && std::floor(v.get_double()) == v.get_double() &&
      std::fabs(v.get_double()) < 9e15)
    return static_cast<int64_t>(v.get_double());
  return std::nullopt;
}

int64_t get_int(const std::string& field, const json::value& v, int64_t lo, int64_t hi) {
  auto i = as_int(v);
  if (!i) wrong_type(field, "an integer", v);
  if (*i < lo || *i > hi)
    throw bad_request("'" + field + "' must be in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + std::to_string(*i), field);
  return *i;
}

double get_number(const std::string& field, const json::value& v) {
  if (v.is_double()) return v.get_double();
  if (auto i = as_int(v)) return static_cast<double>(*i);
  wrong_type(field, "a number", v);
}

bool get_bool(const std::string& field, const json::value& v) {
  if (!v.is_bool()) wrong_type(field, "a boolean", v);
  return v.get_bool();
}

std::vector<int32_t> token_list(const std::string& field, const json::array& a, int vocab_size) {
  std::vector<int32_t> ids;
  ids.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i)
    ids.push_back(static_cast<int32_t>(
        get_int(field + "[" + std::to_string(i) + "]", a[i], 0, vocab_size - 1)));
  return ids;
}

// prompt: a string, a list of strings, a list of token ids, or a list of such lists.
std::vector<std::vector<int32_t>> parse_prompt(const json::value& v, const infer::Tokenizer& tok,
                                               int vocab_size) {
  const std::string field = "prompt";
  const char* allowed = "a string, a list of strings, a list of token ids or a list of lists of "
                        "token ids";
  if (v.is_string()) return {tok.encode(std::string_view(v.get_string()))};
  if (!v.is_array()) wrong_type(field, allowed, v);
  const auto& a = v.get_array();
  if (a.empty()) throw bad_request("'prompt' must not be an empty list", field);
  if (as_int(a[0])) return {token_list(field, a, vocab_size)};
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < a.size(); ++i) {
    std::string f = field + "[" + std::to_string(i) + "]";
    if (a[i].is_string()) {
      out.push_back(tok.encode(std::string_view(a[i].get_string())));
    } else if (a[i].is_array()) {
      out.push_back(token_list(f, a[i].get_array(), vocab_size));
    } else {
      wrong_type(f, "a string or a list of token ids", a[i]);
    }
  }
  return out;
}

std::vector<std::string> parse_stop(const json::value& v) {
  if (v.is_string()) return {std::string(v.get_string())};
  if (!v.is_array()) wrong_type("stop", "a string or a list of strings", v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v.get_array().size(); ++i) {
    const auto& s = v.get_array()[i];
    if (!s.is_string()) wrong_type("stop[" + std::to_string(i) + "]", "a string", s);
    if (s.get_string().empty())
      throw bad_request("'stop[" + std::to_string(i) + "]' must not be empty", "stop");
    out.emplace_back(s.get_string());
  }
  return out;
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body, const infer::Tokenizer& tok,
                                           int vocab_size) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec) throw bad_request("request body is not valid JSON: " + ec.message());
  if (!root.is_object()) wrong_type("body", "a JSON object", root);
  const auto& obj = root.get_object();

  static const std::set<std::string> known = {
      "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "seed", "stop",
      "stop_token_ids", "logprobs", "stream", "stream_options", "ignore_eos",
      "include_stop_str_in_output", "echo", "best_of", "presence_penalty", "frequency_penalty",
      "logit_bias", "suffix", "user"};
  for (const auto& kv : obj)
    if (!known.count(std::string(kv.key())))
      throw bad_request("unknown field '" + std::string(kv.key()) +
                            "' (allowed: model, prompt, max_tokens, temperature, top_p, top_k, n, "
                            "seed, stop, stop_token_ids, logprobs, stream, stream_options, "
                            "ignore_eos, include_stop_str_in_output, echo, best_of, "
                            "presence_penalty, frequency_penalty, logit_bias, suffix, user)",
                        std::string(kv.key()));

  CompletionRequest r;
  auto field = [&](const char* name) -> const json::value* {
    auto it = obj.find(name);
    if (it == obj.end() || it->value().is_null()) return nullptr;
    return &it->value();
  };

  if (auto* v = field("model")) {
    if (!v->is_string()) wrong_type("model", "a string", *v);
    r.model = v->get_string();
  }
  auto* prompt = field("prompt");
  if (!prompt) throw bad_request("'prompt' is required", "prompt");
  r.prompts = parse_prompt(*prompt, tok, vocab_size);

  auto& p = r.params;
  if (auto* v = field("max_tokens")) p.max_tokens = static_cast<int>(get_int("max_tokens", *v, 1, INT32_MAX));
  if (auto* v = field("temperature")) p.temperature = static_cast<float>(get_number("temperature", *v));
  if (auto* v = field("top_p")) p.top_p = static_cast<float>(get_number("top_p", *v));
  if (auto* v = field("top_k")) p.top_k = static_cast<int>(get_int("top_k", *v, -1, INT32_MAX));
  if (auto* v = field("n")) p.n = static_cast<int>(get_int("n", *v, 1, 1024));
  if (auto* v = field("seed")) p.seed = static_cast<uint64_t>(get_int("seed", *v, INT64_MIN, INT64_MAX));
  if (auto* v = field("stop")) p.stop = parse_stop(*v);
  if (auto* v = field("stop_token_ids")) {
    if (!v->is_array()) wrong_type("stop_token_ids", "a list of token ids", *v);
    p.stop_token_ids = token_list("stop_token_ids", v->get_array(), vocab_size);
  }
  // Only the sampled token's log-prob is computed, so top alternatives are not offered:
  // 0..5 (OpenAI's range) are accepted and each reports the sampled token.
  if (auto* v = field("logprobs")) {
    r.logprobs = static_cast<int>(get_int("logprobs", *v, 0, 5));
    p.logprobs = true;
  }
  if (auto* v = field("stream")) r.stream = get_bool("stream", *v);
  if (auto* v = field("stream_options")) {
    if (!v->is_object()) wrong_type("stream_options", "an object", *v);
    for (const auto& kv : v->get_object()) {
      if (kv.key() != "include_usage")
        throw bad_request("unknown field 'stream_options." + std::string(kv.key()) +
                              "' (allowed: include_usage)", "stream_options");
      r.include_usage = get_bool("stream_options.include_usage", kv.value());
    }
    if (!r.stream) throw bad_request("'stream_options' is only allowed with stream=true", "stream_options");
  }
  if (auto* v = field("ignore_eos")) p.ignore_eos = get_bool("ignore_eos", *v);
  if (auto* v = field("include_stop_str_in_output"))
    p.include_stop_str_in_output = get_bool("include_stop_str_in_output", *v);
  if (auto* v = field("echo"); v && get_bool("echo", *v))
    throw bad_request("'echo' = true is not supported (allowed: false)", "echo");
  if (auto* v = field("best_of"); v && get_int("best_of", *v, 1, 1024) != p.n)
    throw bad_request("'best_of' must equal n (" + std::to_string(p.n) + ") when given", "best_of");
  for (const char* pen : {"presence_penalty", "frequency_penalty"})
    if (auto* v = field(pen); v && get_number(pen, *v) != 0.0)
      throw bad_request(std::string("'") + pen + "' is not supported (allowed: 0)", pen);
  if (auto* v = field("logit_bias"); v && !(v->is_object() && v->get_object().empty()))
    throw bad_request("'logit_bias' is not supported (allowed: null or {})", "logit_bias");
  if (auto* v = field("suffix"); v && !(v->is_string() && v->get_string().empty()))
    throw bad_request("'suffix' is not supported (allowed: null)", "suffix");
  if (auto* v = field("user"); v && !v->is_string()) wrong_type("user", "a string", *v);

  try {
    p.validate(vocab_size);
  } catch (const infer::InferError& e) {
    // "sampling parameter 'NAME' = ...": NAME is the request field at fault.
    std::string msg = e.what(), param;
    if (auto a = msg.find('\''), b = msg.find('\'', a + 1); a != std::string::npos && b != std::string::npos)
      param = msg.substr(a + 1, b - a - 1);
    throw bad_request(msg, param);
  }
  return r;
}

}  // namespace siesta::serve
