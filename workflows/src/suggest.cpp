// Typo suggestions for unknown keys and values.
#include "suggest.hpp"

#include <algorithm>
#include <cctype>

namespace siesta::workflows::detail {

static char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

int edit_distance(std::string_view a, std::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      int cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::optional<std::string> closest(std::string_view word,
                                   const std::vector<std::string>& candidates) {
  // A third of the word's length (at least 1, at most 3) keeps "lrr" -> "lr" and
  // "sleep_levle" -> "sleep_level" while not turning "foo" into "top_p".
  const int limit = std::clamp(static_cast<int>(word.size()) / 3, 1, 3);
  std::optional<std::string> best;
  int best_d = limit + 1;
  for (const auto& c : candidates) {
    int dist = edit_distance(word, c);
    // A key that is a prefix or extension of a real one ("max_new_token") is also a typo.
    if (dist > limit && word.size() >= 4 && (c.starts_with(word) || std::string_view(word).starts_with(c)))
      dist = limit;
    if (dist < best_d) {
      best_d = dist;
      best = c;
    }
  }
  return best;
}

}  // namespace siesta::workflows::detail
