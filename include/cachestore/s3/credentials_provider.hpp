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

#include "cachestore/detail/fork_generation.hpp"
#include "cachestore/detail/fork_safe_mutex.hpp"
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
        if (auto s = current_nowait()) return std::move(*s);
        return refresh(nullptr);
    }

    /// The credentials to sign with now when that needs no call to the
    /// source (no fetch, no probe, no wait for another thread's refresh);
    /// nullopt when current() may have to ask (nothing fetched yet, the
    /// recheck interval passed, or the credentials expired). An event loop calls this and
    /// runs current() on a helper thread only when it says nullopt.
    [[nodiscard]] std::optional<snapshot> current_nowait() const {
        if (!fetched_.load(std::memory_order_acquire)) return std::nullopt;
        const bool fixed_source = !fetch_ && !probe_;
        if (!fixed_source && clock::now().time_since_epoch().count() >= next_check_.load(std::memory_order_relaxed))
            return std::nullopt;
        if (auto s = load(); s && !expired(*s, std::chrono::seconds(0))) return s;
        return std::nullopt;
    }

    /// The server refused `used`: fetch again now (once, whichever thread
    /// asks first, and at most once per `recheck`) and return what the
    /// source has: `used` itself when the source gave the same credentials.
    /// The caller retries only when the result differs from `used`.
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
        refresher& r = refresher_.get([](refresher& parent, refresher& child) {
            if (!parent.mu.try_lock()) return; // a fetch was under way at the fork: start afresh
            child.probe_token = parent.probe_token;
            child.probe_seen = parent.probe_seen;
            child.quiet_until = parent.quiet_until;
            child.failure = parent.failure;
            parent.mu.unlock();
        });
        std::lock_guard lock(r.mu);
        snapshot have = load();
        // Another thread refreshed since `refused` was handed out: use that.
        if (refused != nullptr && have && have != *refused) return have;
        const auto now = clock::now();
        // A refusal fetched again less than `recheck` ago and the source gave
        // the same credentials: it would again (AWS refuses every miss of a
        // key without s3:ListBucket with AccessDenied).
        if (refused != nullptr && have && now < r.quiet_until) return have;
        // The last fetch failed (or gave expired credentials) less than
        // `recheck` ago: its error, without asking the source again.
        if (refused == nullptr && r.failure && now < r.quiet_until && (!have || expired(*have, std::chrono::seconds(0))))
            return std::unexpected(*r.failure);
        const bool due = !fetched_ || refused != nullptr || (have && expired(*have, opts_.refresh_ahead));
        bool changed = false;
        if (probe_ && (due || now.time_since_epoch().count() >= next_check_.load())) {
            const std::uint64_t token = probe_();
            changed = !r.probe_seen || token != r.probe_token;
            r.probe_token = token;
            r.probe_seen = true;
        }
        next_check_.store((now + opts_.recheck).time_since_epoch().count());
        if ((due || changed) && fetch_) {
            auto fresh = checked(fetch_());
            if (fresh) {
                r.failure.reset();
                fetched_.store(true, std::memory_order_release);
                // The same credentials keep their snapshot: a store that was
                // refused them sees nothing new and does not retry.
                if (have && detail::same_keys(*have, *fresh) && have->expiration == fresh->expiration) {
                    if (refused != nullptr) r.quiet_until = now + opts_.recheck;
                    return have;
                }
                r.quiet_until = {};
                auto s = std::make_shared<const credentials>(std::move(*fresh));
                publish(s);
                return s;
            }
            r.failure = fresh.error();
            r.quiet_until = now + opts_.recheck;
            // Keep signing with what we have while it is valid: the next
            // check tries again.
            if (!have || expired(*have, std::chrono::seconds(0))) return std::unexpected(std::move(fresh.error()));
        }
        if (!have) return fail(errc::misconfigured, "credentials", {}, "the credentials provider has no credentials");
        if (expired(*have, std::chrono::seconds(0)))
            return fail(errc::auth, "credentials", {}, "the credentials expired and the provider has no newer ones");
        return have;
    }

    /// What the source returned, refused when unusable: malformed, or already
    /// expired (signing with them would only be refused by the server).
    [[nodiscard]] result<credentials> checked(result<credentials> fresh) const {
        if (!fresh) return fresh;
        if (auto p = detail::credentials_problem(*fresh); !p.empty())
            return fail(errc::misconfigured, "credentials", {}, "the credentials provider returned bad credentials: " + p);
        if (const auto until = fresh->expiration; until && std::chrono::system_clock::now() >= *until) {
            const auto ago = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - *until);
            return fail(errc::auth, "credentials", {},
                        "the credentials source has only expired credentials (expired " + std::to_string(ago.count()) +
                            " s ago); asked again at most every " + std::to_string(opts_.recheck.count()) + " ms");
        }
        return fresh;
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
    /// One refresh at a time, and what refreshing remembers. Per process: a
    /// fork while another thread fetched must not leave the child's lock held.
    struct refresher {
        std::mutex mu;
        std::uint64_t probe_token = 0;
        bool probe_seen = false;
        clock::time_point quiet_until{}; ///< no fetch before this after a failed or refused one
        std::optional<error> failure;    ///< the last fetch's error, replayed until quiet_until
    };
    cachestore::detail::per_process<refresher> refresher_;
    mutable cachestore::detail::fork_safe_mutex cur_mu_; ///< held for a copy: a child never inherits it locked
    snapshot cur_;
    std::atomic<bool> fetched_{false};
    std::atomic<clock::rep> next_check_{0};
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
