// The conformance suite against the drivers that need no server.
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

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

using conformance_fixtures = std::tuple<memory_fixture, posix_fixture>;

#include "conformance.hpp"
#include "read_range_cases.hpp"
