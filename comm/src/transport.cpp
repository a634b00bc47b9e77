// Defaults of the stream-ordered half of Transport: transports without device streams refuse.
#include "siesta/comm/transport.hpp"

#include "siesta/comm/error.hpp"

namespace siesta::comm {

void Transport::broadcast_on_stream(void*, size_t, int, void*) {
  throw CommError("comm: broadcast_on_stream on a transport that is not stream-ordered "
                  "(only the NCCL transport is)");
}

void Transport::wait_event(void*, const std::string& what) {
  throw CommError("comm: wait_event(" + what + ") on a transport that is not stream-ordered "
                  "(only the NCCL transport is)");
}

}  // namespace siesta::comm
