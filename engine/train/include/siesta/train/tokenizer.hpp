// The byte tokenizer of the toy tasks: ids 0..255 are bytes, then bos, eos and pad. The
// presets use vocab 264 (259 ids used, rounded up to a multiple of 8).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace siesta::train {

class ByteTokenizer {
 public:
  static constexpr int32_t kBos = 256;
  static constexpr int32_t kEos = 257;
  static constexpr int32_t kPad = 258;
  static constexpr int32_t kVocabSize = 264;

  // Bytes of text as ids, optionally preceded by bos / followed by eos.
  std::vector<int32_t> encode(std::string_view text, bool add_bos = false,
                              bool add_eos = false) const;
  // Bytes for ids 0..255; stops at the first eos when stop_at_eos, skips other specials.
  // Throws TrainError for an id outside [0, kVocabSize).
  std::string decode(const std::vector<int32_t>& ids, bool stop_at_eos = true) const;
  int32_t bos() const { return kBos; }
  int32_t eos() const { return kEos; }
  int32_t pad() const { return kPad; }
  int32_t vocab_size() const { return kVocabSize; }
};

}  // namespace siesta::train
