// ByteTokenizer, UTF-8 boundaries and stop-string search.
#include "siesta/infer/tokenizer.hpp"

#include <algorithm>

namespace siesta::infer {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char c : text) ids.push_back(int32_t(c));
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids)
    if (id >= 0 && id < 256) out.push_back(char(uint8_t(id)));
  return out;
}

size_t utf8_complete_prefix(std::string_view t) {
  // Walk back over at most 3 continuation bytes to the lead byte of the last character.
  size_t n = t.size();
  size_t i = n;
  int cont = 0;
  while (i > 0 && cont < 4 && (uint8_t(t[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++cont;
  }
  if (i == 0) return cont ? 0 : n;   // only continuation bytes: invalid, hold back nothing more
  uint8_t lead = uint8_t(t[i - 1]);
  int need = lead < 0x80 ? 0 : (lead & 0xE0) == 0xC0 ? 1 : (lead & 0xF0) == 0xE0 ? 2
                            : (lead & 0xF8) == 0xF0 ? 3 : 0;
  if (lead < 0x80) return n;                 // ASCII last (continuations, if any, are stray)
  return cont >= need ? n : i - 1;           // incomplete: stop before the lead byte
}

StopMatch find_stop_string(std::string_view text, size_t new_from,
                           const std::vector<std::string>& stops) {
  StopMatch best;
  for (size_t w = 0; w < stops.size(); ++w) {
    const std::string& s = stops[w];
    if (s.empty() || s.size() > text.size()) continue;
    // A match must end past new_from, so it starts at or after new_from - (len - 1).
    size_t start = new_from + 1 > s.size() ? new_from + 1 - s.size() : 0;
    size_t p = text.find(s, start);
    if (p != std::string_view::npos && (best.pos == std::string::npos || p < best.pos)) {
      best.pos = p;
      best.len = s.size();
      best.which = int(w);
    }
  }
  return best;
}

}  // namespace siesta::infer
