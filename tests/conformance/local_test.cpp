// The conformance suite against the drivers that need no server.
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

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
    layered::stack<cachestore::memory_store> s{std::in_place, cachestore::metered_options{}, std::in_place,
                                               cachestore::breaker_options{}, std::in_place, cachestore::hedge_options{}};
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

using conformance_fixtures = std::tuple<memory_fixture, posix_fixture, layered_memory_fixture, layered_posix_fixture>;

#include "conformance.hpp"
