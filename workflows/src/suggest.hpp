// "did you mean ...?" for misspelled keys and values (optimal string alignment distance).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace siesta::workflows::detail {

// Edit distance where swapping two neighbouring letters counts as one edit.
int edit_distance(std::string_view a, std::string_view b);

// The closest candidate when it is close enough to be a plausible typo.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace siesta::workflows::detail
