// Placeholder translation unit until the serve library lands (see the engine issues).
#include "siesta/model/config.hpp"
