// cachestore/s3/credentials_provider.hpp - credentials that change while a
// store runs: temporary (STS) credentials refreshed ahead of their expiry, a
// shared credentials file re-read when it changes, or any callable.
//
// The store asks its provider before signing each request. The fast path is
// a copy of a shared snapshot under a short lock; a refresh happens on one
// thread while the others keep signing with the snapshot they have. When the server
// refuses a snapshot (ExpiredToken, InvalidAccessKeyId, SignatureDoesNotMatch,
// InvalidToken), the store asks for fresh credentials once and retries with
// them if they differ (docs/s3.md, "Credentials").
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "cachestore/error.hpp"
#include "cachestore/s3/credentials.hpp"

namespace cachestore::s3 {

/// When a credentials_provider looks for new credentials.
struct credentials_refresh {
    /// Credentials with an `expiration` are fetched again this long before it.
    std::chrono::seconds refresh_ahead{300};
    /// How often `probe` (a file's stat) runs at most.
    std::chrono::milliseconds recheck{1000};
};

/// Supplies the credentials a store signs with. Thread-safe. Build one with
/// fixed(), from_function() or (config_env.hpp) a shared-file provider.
class credentials_provider {
public:
    using fetch_fn = std::function<result<credentials>()>;
    /// Returns a token that changes whenever the source may have new
    /// credentials (e.g. a file's mtime, size and inode), cheaply.
    using probe_fn = std::function<std::uint64_t()>;
    using snapshot = std::shared_ptr<const credentials>;

    using options = credentials_refresh;

    /// Credentials that never change.
    [[nodiscard]] static std::shared_ptr<credentials_provider> fixed(credentials c) {
        auto p = std::make_shared<credentials_provider>(private_tag{}, fetch_fn{}, probe_fn{}, options{});
        p->publish(std::make_shared<const credentials>(std::move(c)));
        p->fetched_ = true;
        return p;
    }

    /// Calls `fetch` for the first credentials, again ahead of their
    /// `expiration`, and when the server refused the ones it gave. A failing
    /// fetch keeps the previous credentials while they have not expired.
    [[nodiscard]] static std::shared_ptr<credentials_provider> from_function(fetch_fn fetch, options o = {}) {
        return std::make_shared<credentials_provider>(private_tag{}, std::move(fetch), probe_fn{}, o);
    }

    /// As from_function, and also fetches again when `probe` (run at most
    /// every `o.recheck`) returns a new value.
    [[nodiscard]] static std::shared_ptr<credentials_provider> from_probed_function(fetch_fn fetch, probe_fn probe,
                                                                                    options o = {}) {
        return std::make_shared<credentials_provider>(private_tag{}, std::move(fetch), std::move(probe), o);
    }

    /// The credentials to sign with now.
    [[nodiscard]] result<snapshot> current() {
        if (fetched_.load(std::memory_order_acquire) &&
            clock::now().time_since_epoch().count() < next_check_.load(std::memory_order_relaxed)) {
            if (auto s = load(); s && !expired(*s, std::chrono::seconds(0))) return s;
        }
        return refresh(nullptr);
    }

    /// The server refused `used`: fetch again now (once, whichever thread
    /// asks first) and return what the source has. The caller retries only
    /// when the result differs from `used`.
    [[nodiscard]] result<snapshot> refresh_after_refusal(const snapshot& used) { return refresh(&used); }

    // Public for make_shared; use the factories.
    struct private_tag {};
    credentials_provider(private_tag, fetch_fn fetch, probe_fn probe, options o)
        : fetch_(std::move(fetch)), probe_(std::move(probe)), opts_(o) {}

private:
    using clock = std::chrono::steady_clock;

    [[nodiscard]] bool expired(const credentials& c, std::chrono::seconds ahead) const {
        return c.expiration && std::chrono::system_clock::now() + ahead >= *c.expiration;
    }

    result<snapshot> refresh(const snapshot* refused) {
        std::lock_guard lock(mu_);
        snapshot have = load();
        // Another thread refreshed since `refused` was handed out: use that.
        if (refused != nullptr && have && have != *refused) return have;
        const bool due = !fetched_ || refused != nullptr || (have && expired(*have, opts_.refresh_ahead));
        bool changed = false;
        if (probe_ && (due || clock::now().time_since_epoch().count() >= next_check_.load())) {
            const std::uint64_t token = probe_();
            changed = !probe_seen_ || token != probe_token_;
            probe_token_ = token;
            probe_seen_ = true;
        }
        next_check_.store((clock::now() + opts_.recheck).time_since_epoch().count());
        if ((due || changed) && fetch_) {
            auto fresh = fetch_();
            if (fresh) {
                if (auto p = detail::credentials_problem(*fresh); !p.empty())
                    fresh = fail(errc::misconfigured, "credentials", {}, "the credentials provider returned bad credentials: " + p);
            }
            if (fresh) {
                auto s = std::make_shared<const credentials>(std::move(*fresh));
                publish(s);
                fetched_.store(true, std::memory_order_release);
                return s;
            }
            // Keep signing with what we have while it is valid: the next
            // check tries again.
            if (!have || expired(*have, std::chrono::seconds(0))) return std::unexpected(std::move(fresh.error()));
        }
        if (!have) return fail(errc::misconfigured, "credentials", {}, "the credentials provider has no credentials");
        if (expired(*have, std::chrono::seconds(0)))
            return fail(errc::auth, "credentials", {}, "the credentials expired and the provider has no newer ones");
        return have;
    }

    /// The current snapshot. A mutex, not std::atomic<shared_ptr>: libstdc++
    /// 12 implements that with a lock bit ThreadSanitizer cannot see, and a
    /// copy under an uncontended lock costs ~20 ns beside a ~30 us request.
    [[nodiscard]] snapshot load() const {
        std::lock_guard lock(cur_mu_);
        return cur_;
    }
    void publish(snapshot s) {
        std::lock_guard lock(cur_mu_);
        cur_ = std::move(s);
    }

    fetch_fn fetch_;
    probe_fn probe_;
    options opts_;
    std::mutex mu_; ///< one refresh at a time
    mutable std::mutex cur_mu_;
    snapshot cur_;
    std::atomic<bool> fetched_{false};
    std::atomic<clock::rep> next_check_{0};
    std::uint64_t probe_token_ = 0; ///< under mu_
    bool probe_seen_ = false;       ///< under mu_
};

namespace detail {

/// A cheap change token for a file: mtime, size, inode and device (0 when it
/// cannot be stat'ed, which a later successful stat then changes).
[[nodiscard]] inline std::uint64_t file_change_token(const std::filesystem::path& p) noexcept {
    struct ::stat st {};
    if (::stat(p.c_str(), &st) != 0) return 0;
    std::uint64_t h = 1469598103934665603ULL; // FNV-1a over the fields
    auto mix = [&h](std::uint64_t v) {
        for (int i = 0; i < 8; ++i, v >>= 8) h = (h ^ (v & 0xff)) * 1099511628211ULL;
    };
    mix(static_cast<std::uint64_t>(st.st_mtim.tv_sec));
    mix(static_cast<std::uint64_t>(st.st_mtim.tv_nsec));
    mix(static_cast<std::uint64_t>(st.st_size));
    mix(static_cast<std::uint64_t>(st.st_ino));
    mix(static_cast<std::uint64_t>(st.st_dev));
    return h | 1;
}

} // namespace detail
} // namespace cachestore::s3
