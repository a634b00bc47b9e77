#include "siesta/actors/selftest.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

#include <caf/all.hpp>

namespace siesta::actors {

namespace {
using echo_actor = caf::typed_actor<caf::replies_to<int32_t>::with<int32_t>>;

echo_actor::behavior_type echo_fn() {
  return {[](int32_t x) { return x + 1; }};
}
}  // namespace

std::string caf_version() {
  return std::to_string(CAF_VERSION / 10000) + "." + std::to_string((CAF_VERSION / 100) % 100) +
         "." + std::to_string(CAF_VERSION % 100);
}

SelftestResult actor_selftest(int threads, int round_trips) {
  SelftestResult r;
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", size_t(std::max(1, threads)));
  caf::actor_system sys{cfg};
  auto echo = sys.spawn<caf::detached>(echo_fn);
  std::vector<double> us;
  us.reserve(size_t(round_trips));
  {
    caf::scoped_actor self{sys};
    for (int i = 0; i < round_trips; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      bool good = false;
      self->request(echo, std::chrono::seconds(5), int32_t{i})
          .receive([&](int32_t y) { good = (y == i + 1); },
                   [&](caf::error& e) { r.detail = sys.render(e); });
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      if (!good) {
        if (r.detail.empty()) r.detail = "echo actor answered a wrong value";
        break;
      }
    }
  }
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  sys.await_all_actors_done();
  if (us.size() == size_t(round_trips) && r.detail.empty()) {
    std::nth_element(us.begin(), us.begin() + long(us.size() / 2), us.end());
    r.round_trip_us = us[us.size() / 2];
    r.ok = true;
    r.detail = "typed request/response to a detached actor works";
  }
  return r;
}

}  // namespace siesta::actors
