// Placeholder translation unit until the infer library lands (see the engine issues).
#include "siesta/model/config.hpp"
