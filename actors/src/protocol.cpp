#include "siesta/actors/protocol.hpp"

namespace siesta::actors {

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::siesta>();
}

}  // namespace siesta::actors
