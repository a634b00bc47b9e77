// Placeholder translation unit until the train library lands (see the engine issues).
#include "siesta/model/config.hpp"
