// The memory manager: owns a device's budget. Every sleep, wake and large allocation asks it
// first; a request that would not fit is refused with requested, free and held-by-whom bytes.
#include "siesta/actors/memory_actor.hpp"

#include "siesta/actors/memory_budget.hpp"

namespace siesta::actors {
namespace json = boost::json;

memory_actor::behavior_type memory_manager(memory_actor::pointer self, MemoryManagerConfig cfg) {
  auto budget = std::make_shared<MemoryBudget>(cfg.capacity_bytes);
  auto tracing = cfg.tracing;
  auto name = "memory/" + std::to_string(cfg.rank);
  auto device_used = cfg.device_used;
  auto t0 = std::chrono::steady_clock::now();
  auto now_ns = [t0] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  };
  return {
      [=](reserve_atom, const MemoryRequest& r) -> caf::result<uint64_t> {
        auto scope = tracing->begin(self, name, "reserve",
                                    json::object{{"owner", r.owner}, {"tag", r.tag}, {"bytes", r.bytes}});
        try {
          budget->reserve(r.owner, r.tag, r.bytes, now_ns(), device_used ? device_used() : 0);
        } catch (const BudgetError& e) {
          scope.fail(e.what());
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        scope.ok(json::object{{"free", budget->free()}});
        return budget->free();
      },
      [=](release_atom, const MemoryRequest& r) -> caf::result<uint64_t> {
        json::object args{{"owner", r.owner}, {"tag", r.tag}};
        if (r.bytes) args["bytes"] = r.bytes;
        auto scope = tracing->begin(self, name, "release", std::move(args));
        try {
          budget->release(r.owner, r.tag, r.bytes ? std::optional<uint64_t>(r.bytes) : std::nullopt,
                          now_ns(), device_used ? device_used() : 0);
        } catch (const BudgetError& e) {
          scope.fail(e.what());
          return caf::make_error(caf::sec::runtime_error, std::string(e.what()));
        }
        scope.ok(json::object{{"free", budget->free()}});
        return budget->free();
      },
      [=](sample_atom) -> MemorySnapshot {
        return MemorySnapshot{budget->capacity(), budget->held(), budget->peak_held(),
                              device_used ? device_used() : 0, budget->holders(),
                              budget->held_by("engine", "weights") +
                                  budget->held_by("engine", "kv_cache")};
      },
  };
}

}  // namespace siesta::actors
