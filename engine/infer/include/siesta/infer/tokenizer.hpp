// What the engine needs from a tokenizer: decode generated ids to text (stop strings,
// outputs), encode prompts given as text, and the end-of-sequence ids. ByteTokenizer is the
// byte-level one of the toy tasks and the presets (ids 0..255 are bytes, 256 bos, 257 eos,
// 258 pad), so the engine runs end to end without any downloaded vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace siesta::infer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Special ids decode to nothing (vLLM's skip_special_tokens).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  virtual std::vector<int32_t> eos_token_ids() const = 0;
};

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kBos = 256;
  static constexpr int32_t kEos = 257;
  static constexpr int32_t kPad = 258;
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::vector<int32_t> eos_token_ids() const override { return {kEos}; }
};

// Length of the longest prefix of text that does not end inside a UTF-8 character.
size_t utf8_complete_prefix(std::string_view text);

// The earliest stop string that ends after the first new_from bytes of text (only text
// appended since the last check can complete a match). pos = npos when none matches.
struct StopMatch {
  size_t pos = std::string::npos;
  size_t len = 0;
  int which = -1;
};
StopMatch find_stop_string(std::string_view text, size_t new_from,
                           const std::vector<std::string>& stops);

}  // namespace siesta::infer
