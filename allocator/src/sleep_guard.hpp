// Turns a touch of a sleeping host allocation into a diagnostic instead of silent corruption:
// a SIGSEGV handler looks the faulting address up in a fixed, lock-free table of sleeping
// ranges, prints which allocation and tag it hit, and aborts. Faults elsewhere go to the
// handler that was installed before ours.
#pragma once

#include <cstdint>
#include <string_view>

namespace siesta::allocator::sleep_guard {

void install();  // idempotent
// Records [ptr, ptr+bytes) as asleep; names longer than the table's slots are truncated.
// When the table is full the range is not recorded (the fault then reports as a plain SIGSEGV).
void add(void* ptr, uint64_t bytes, std::string_view name, std::string_view tag);
void remove(void* ptr);

}  // namespace siesta::allocator::sleep_guard
