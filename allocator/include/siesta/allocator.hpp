// Public header of siesta::allocator: tagged sleep-capable memory pools.
#pragma once

#include "siesta/allocator/error.hpp"
#include "siesta/allocator/pool.hpp"
#include "siesta/allocator/tag.hpp"
