// Byte tokenizer: one id per byte, three specials above 255.
#include "siesta/train/tokenizer.hpp"

#include "siesta/train/error.hpp"

namespace siesta::train {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text, bool add_bos,
                                           bool add_eos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 2);
  if (add_bos) ids.push_back(kBos);
  for (unsigned char c : text) ids.push_back(int32_t(c));
  if (add_eos) ids.push_back(kEos);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids, bool stop_at_eos) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= kVocabSize)
      throw TrainError("ByteTokenizer::decode: token id " + std::to_string(id) +
                       " is outside the vocabulary [0, " + std::to_string(kVocabSize) + ")");
    if (id == kEos && stop_at_eos) break;
    if (id < 256) out.push_back(char(id));
  }
  return out;
}

}  // namespace siesta::train
