// config.json <-> ModelConfig with Boost.JSON; Llama and Qwen2 field names.
#include "siesta/model/config.hpp"

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

namespace siesta::model {
namespace json = boost::json;

namespace {

int get_int(const json::object& o, const char* key, int fallback, bool required,
            const std::string& origin) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) {
    if (required) throw ModelError(origin + ": missing required field '" + key + "'");
    return fallback;
  }
  if (!v->is_int64() && !v->is_uint64())
    throw ModelError(origin + ": field '" + key + "' must be an integer");
  return int(v->to_number<int64_t>());
}

double get_num(const json::object& o, const char* key, double fallback, const std::string& origin) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_number()) throw ModelError(origin + ": field '" + key + "' must be a number");
  return v->to_number<double>();
}

bool get_bool(const json::object& o, const char* key, bool fallback, const std::string& origin) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return fallback;
  if (!v->is_bool()) throw ModelError(origin + ": field '" + key + "' must be true or false");
  return v->as_bool();
}

}  // namespace

int64_t ModelConfig::num_parameters() const {
  int64_t h = hidden_size, i = intermediate_size, hd = head_dim;
  int64_t q = int64_t(num_attention_heads) * hd, kv = int64_t(num_key_value_heads) * hd;
  int64_t per_layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
  if (attention_bias) per_layer += q + 2 * kv;
  int64_t emb = int64_t(vocab_size) * h;
  return emb * (tie_word_embeddings ? 1 : 2) + per_layer * num_hidden_layers + h;
}

void ModelConfig::validate() const {
  auto positive = [](const char* name, int v) {
    if (v <= 0) throw ModelError(std::string("config field '") + name + "' must be > 0 (got " +
                                 std::to_string(v) + ")");
  };
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  positive("vocab_size", vocab_size);
  positive("max_position_embeddings", max_position_embeddings);
  if (num_attention_heads % num_key_value_heads != 0)
    throw ModelError("num_attention_heads (" + std::to_string(num_attention_heads) +
                     ") must be a multiple of num_key_value_heads (" +
                     std::to_string(num_key_value_heads) + ")");
  if (head_dim % 2 != 0)
    throw ModelError("head_dim must be even for rotary embeddings (got " +
                     std::to_string(head_dim) + ")");
  if (rope_theta <= 0) throw ModelError("rope_theta must be > 0");
  if (rms_norm_eps <= 0) throw ModelError("rms_norm_eps must be > 0");
  if (architecture != "LlamaForCausalLM" && architecture != "Qwen2ForCausalLM")
    throw ModelError("unsupported architecture '" + architecture +
                     "' (allowed: LlamaForCausalLM, Qwen2ForCausalLM)");
}

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& origin) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) throw ModelError(origin + ": not valid JSON (" + ec.message() + ")");
  if (!v.is_object()) throw ModelError(origin + ": expected a JSON object");
  const auto& o = v.as_object();
  ModelConfig c;
  if (auto* a = o.if_contains("architectures"); a && a->is_array() && !a->as_array().empty() &&
                                                  a->as_array()[0].is_string())
    c.architecture = std::string(a->as_array()[0].as_string());
  c.hidden_size = get_int(o, "hidden_size", 0, true, origin);
  c.intermediate_size = get_int(o, "intermediate_size", 0, true, origin);
  c.num_hidden_layers = get_int(o, "num_hidden_layers", 0, true, origin);
  c.num_attention_heads = get_int(o, "num_attention_heads", 0, true, origin);
  c.num_key_value_heads = get_int(o, "num_key_value_heads", c.num_attention_heads, false, origin);
  c.head_dim = get_int(o, "head_dim",
                       c.num_attention_heads ? c.hidden_size / c.num_attention_heads : 0, false,
                       origin);
  c.vocab_size = get_int(o, "vocab_size", 0, true, origin);
  c.max_position_embeddings = get_int(o, "max_position_embeddings", 2048, false, origin);
  c.rope_theta = get_num(o, "rope_theta", 10000.0, origin);
  c.rms_norm_eps = get_num(o, "rms_norm_eps", 1e-6, origin);
  c.tie_word_embeddings = get_bool(o, "tie_word_embeddings", false, origin);
  c.attention_bias =
      get_bool(o, "attention_bias", c.architecture == "Qwen2ForCausalLM", origin);
  if (auto* rs = o.if_contains("rope_scaling"); rs && rs->is_object()) {
    const auto& r = rs->as_object();
    std::string type = r.contains("type") && r.at("type").is_string()
                           ? std::string(r.at("type").as_string())
                       : r.contains("rope_type") && r.at("rope_type").is_string()
                           ? std::string(r.at("rope_type").as_string())
                           : "";
    if (type != "linear")
      throw ModelError(origin + ": rope_scaling type '" + type + "' is not supported (allowed: linear)");
    c.rope_scaling_factor = get_num(r, "factor", 1.0, origin);
  }
  if (auto* d = o.if_contains("torch_dtype"); d && d->is_string())
    c.torch_dtype = std::string(d->as_string());
  try {
    c.validate();
  } catch (const ModelError& e) {
    throw ModelError(origin + ": " + e.what());
  }
  return c;
}

ModelConfig ModelConfig::from_file(const std::filesystem::path& p) {
  std::ifstream f(p);
  if (!f) throw ModelError("cannot open model config '" + p.string() + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_text(ss.str(), p.string());
}

std::string ModelConfig::to_json_text() const {
  json::object o;
  o["architectures"] = json::array{architecture};
  o["model_type"] = architecture == "Qwen2ForCausalLM" ? "qwen2" : "llama";
  o["hidden_size"] = hidden_size;
  o["intermediate_size"] = intermediate_size;
  o["num_hidden_layers"] = num_hidden_layers;
  o["num_attention_heads"] = num_attention_heads;
  o["num_key_value_heads"] = num_key_value_heads;
  o["head_dim"] = head_dim;
  o["vocab_size"] = vocab_size;
  o["max_position_embeddings"] = max_position_embeddings;
  o["rope_theta"] = rope_theta;
  if (rope_scaling_factor != 1.0)
    o["rope_scaling"] = json::object{{"type", "linear"}, {"factor", rope_scaling_factor}};
  o["rms_norm_eps"] = rms_norm_eps;
  o["tie_word_embeddings"] = tie_word_embeddings;
  o["attention_bias"] = attention_bias;
  o["torch_dtype"] = torch_dtype;
  o["hidden_act"] = "silu";
  return json::serialize(o);
}

}  // namespace siesta::model
