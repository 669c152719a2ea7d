// The conformance suite against the drivers that need no server.
#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cachestore/async/pooled.hpp"
#include "cachestore/async/waiting.hpp"
#include "cachestore/layers.hpp"
#include "cachestore/memory_store.hpp"
#include "cachestore/posix_store.hpp"

struct memory_fixture {
    static constexpr const char* name = "memory";
    static constexpr bool plain_origin = false;
    cachestore::memory_store s;
    cachestore::result<> ready() const { return {}; }
    bool atomic_commit() const { return true; }
    cachestore::memory_store& store() { return s; }
};

struct posix_fixture {
    static constexpr const char* name = "posix";
    static constexpr bool plain_origin = false;
    std::string root;
    std::optional<cachestore::posix_store> s;
    posix_fixture() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "cachestore-conf-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) != nullptr) root = tmpl;
        if (auto opened = cachestore::posix_store::open(root)) s.emplace(std::move(*opened));
    }
    ~posix_fixture() {
        std::error_code ec;
        if (!root.empty()) std::filesystem::remove_all(root, ec);
    }
    cachestore::result<> ready() const {
        if (!s) return cachestore::fail(cachestore::errc::misconfigured, "open", root, "could not open a temp root");
        return {};
    }
    bool atomic_commit() const { return true; }
    cachestore::posix_store& store() {
        if (!s) throw std::logic_error("posix_fixture: store() without a successful ready()");
        return *s;
    }
};

/// A bounded POSIX store whose root starts nearly full of older chunks, with a
/// background sweeper: every put of the suite makes room by evicting them, and
/// no chunk a test just wrote or read is the least recently used.
struct posix_bounded_fixture {
    static constexpr const char* name = "posix-bounded";
    static constexpr bool plain_origin = false;
    static constexpr std::int64_t max_bytes = std::int64_t{3} << 20;
    std::string root;
    std::optional<cachestore::posix_store> s;
    posix_bounded_fixture() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "cachestore-conf-bounded-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) return;
        root = tmpl;
        if (!fill(std::int64_t{5} << 19)) return; // 2.5 MiB of filler, an hour old
        auto opened = cachestore::posix_store::open(root, {.fsync = false,
                                                           .max_bytes = max_bytes,
                                                           .recency_granularity = std::chrono::milliseconds(0),
                                                           .sweep_interval = std::chrono::milliseconds(10)});
        if (opened) s.emplace(std::move(*opened));
    }
    ~posix_bounded_fixture() {
        s.reset(); // the sweeper stops before its root goes
        std::error_code ec;
        if (!root.empty()) std::filesystem::remove_all(root, ec);
    }
    posix_bounded_fixture(const posix_bounded_fixture&) = delete;
    posix_bounded_fixture& operator=(const posix_bounded_fixture&) = delete;
    bool fill(std::int64_t bytes) const {
        auto plain = cachestore::posix_store::open(root, {.fsync = false});
        if (!plain) return false;
        const std::vector<std::byte> chunk(std::size_t{64} << 10, std::byte{0x5a});
        for (std::int64_t i = 0; i * std::int64_t{64 << 10} < bytes; ++i) {
            const cachestore::chunk_key k{"filler", "b", "old/" + std::to_string(i), "\"f\"", 64 << 10, 0};
            if (!plain->put_chunk({}, k, 64 << 10, std::span<const std::byte>(chunk))) return false;
            const std::string f = root + "/" + cachestore::posix_store::file_path(k);
            const struct timespec t[2] = {{::time(nullptr) - 3600, 0}, {0, UTIME_OMIT}};
            if (::utimensat(AT_FDCWD, f.c_str(), t, 0) != 0) return false;
        }
        return true;
    }
    cachestore::result<> ready() const {
        if (!s)
            return cachestore::fail(cachestore::errc::misconfigured, "open", root,
                                    "could not open a bounded temp root");
        return {};
    }
    bool atomic_commit() const { return true; }
    cachestore::posix_store& store() {
        if (!s) throw std::logic_error("posix_bounded_fixture: store() without a successful ready()");
        return *s;
    }
};

// The same suite through a stack of all three layers (docs/layers.md): every
// layer must be a CacheStore that changes nothing a caller can rely on.
namespace layered {
template <class S>
using stack = cachestore::metered<cachestore::breaker<cachestore::hedged<S>>>;

template <class S>
stack<S> wrap(S inner) {
    return stack<S>(cachestore::breaker<cachestore::hedged<S>>(cachestore::hedged<S>(std::move(inner))));
}
} // namespace layered

struct layered_memory_fixture {
    static constexpr const char* name = "metered<breaker<hedged<memory>>>";
    static constexpr bool plain_origin = false;
    // memory_store cannot move: built in place, layer by layer.
    layered::stack<cachestore::memory_store> s{std::in_place, cachestore::metered_options{},
                                               std::in_place, cachestore::breaker_options{},
                                               std::in_place, cachestore::hedge_options{}};
    cachestore::result<> ready() const { return {}; }
    bool atomic_commit() const { return true; }
    layered::stack<cachestore::memory_store>& store() { return s; }
};

struct layered_posix_fixture {
    static constexpr const char* name = "metered<breaker<hedged<posix>>>";
    static constexpr bool plain_origin = false;
    posix_fixture plain;
    std::optional<layered::stack<cachestore::posix_store>> s;
    layered_posix_fixture() {
        if (plain.s) s.emplace(layered::wrap(std::move(*plain.s)));
    }
    cachestore::result<> ready() const { return plain.ready(); }
    bool atomic_commit() const { return true; }
    layered::stack<cachestore::posix_store>& store() {
        if (!s) throw std::logic_error("layered_posix_fixture: store() without a successful ready()");
        return *s;
    }
};

// The same suite through a tiered store (docs/tiered.md): every answer the
// caller relies on is the far tier's or the same, whichever tier serves it.
struct tiered_memory_fixture {
    static constexpr const char* name = "tiered<memory, memory>";
    static constexpr bool plain_origin = false;
    cachestore::tiered<cachestore::memory_store, cachestore::memory_store> s{std::piecewise_construct, std::tuple<>{},
                                                                             std::tuple<>{}};
    cachestore::result<> ready() const { return {}; }
    bool atomic_commit() const { return true; }
    auto& store() { return s; }
};

/// The near tier a bounded POSIX store evicting as the suite writes (as
/// posix_bounded_fixture), the far tier a memory store.
struct tiered_posix_fixture {
    static constexpr const char* name = "tiered<posix bounded, memory>";
    static constexpr bool plain_origin = false;
    posix_bounded_fixture near;
    cachestore::memory_store far;
    std::optional<cachestore::tiered<cachestore::posix_store&, cachestore::memory_store&>> s;
    tiered_posix_fixture() {
        if (near.s) s.emplace(*near.s, far);
    }
    ~tiered_posix_fixture() { s.reset(); } // promotions end before the tiers go
    tiered_posix_fixture(const tiered_posix_fixture&) = delete;
    tiered_posix_fixture& operator=(const tiered_posix_fixture&) = delete;
    cachestore::result<> ready() const { return near.ready(); }
    bool atomic_commit() const { return true; }
    auto& store() {
        if (!s) throw std::logic_error("tiered_posix_fixture: store() without a successful ready()");
        return *s;
    }
};

// The same suite through the async API (docs/async.md): each call initiates
// on pooled_async and waits for its completion.
template <class F>
struct pooled_fixture {
    static constexpr bool plain_origin = false;
    using inner_store = std::remove_reference_t<decltype(std::declval<F&>().store())>;
    F base;
    std::optional<cachestore::waiting<cachestore::pooled_async<inner_store&>>> s; // after base: goes first
    cachestore::result<> ready() const { return base.ready(); }
    bool atomic_commit() const { return base.atomic_commit(); }
    auto& store() {
        if (!s) s.emplace(std::in_place, base.store(), cachestore::pooled_options{.threads = 4});
        return *s;
    }
};
struct pooled_memory_fixture : pooled_fixture<memory_fixture> {
    static constexpr const char* name = "waiting<pooled_async<memory>>";
};
struct pooled_posix_fixture : pooled_fixture<posix_fixture> {
    static constexpr const char* name = "waiting<pooled_async<posix>>";
};
/// The layers over the async store: metered and breaker change nothing.
struct layered_pooled_posix_fixture {
    static constexpr const char* name = "waiting<metered<breaker<pooled_async<posix>>>>";
    static constexpr bool plain_origin = false;
    using async_stack = cachestore::metered<cachestore::breaker<cachestore::pooled_async<cachestore::posix_store&>>>;
    posix_fixture base;
    std::optional<cachestore::waiting<async_stack>> s;
    cachestore::result<> ready() const { return base.ready(); }
    bool atomic_commit() const { return base.atomic_commit(); }
    auto& store() {
        if (!s)
            s.emplace(std::in_place, std::in_place, cachestore::metered_options{}, std::in_place,
                      cachestore::breaker_options{}, base.store(), cachestore::pooled_options{.threads = 4});
        return *s;
    }
};

using conformance_fixtures = std::tuple<memory_fixture, posix_fixture, posix_bounded_fixture, layered_memory_fixture,
                                        layered_posix_fixture, tiered_memory_fixture, tiered_posix_fixture,
                                        pooled_memory_fixture, pooled_posix_fixture, layered_pooled_posix_fixture>;

#include "conformance.hpp"
#include "read_range_cases.hpp"
