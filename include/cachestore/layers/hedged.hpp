// cachestore/layers/hedged.hpp - cachestore::hedged<S>: hedged reads. When a
// get_chunk (or stat) has not produced its first byte (its answer) after a
// delay, a second attempt starts on one helper thread; the first to deliver
// wins, the other is stopped. docs/layers.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "cachestore/bytes.hpp"
#include "cachestore/chunk_key.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/layers/detail/archetype_store.hpp"
#include "cachestore/layers/detail/hedge_call.hpp"
#include "cachestore/layers/detail/hedge_scheduler.hpp"
#include "cachestore/layers/detail/prometheus.hpp"
#include "cachestore/layers/operation.hpp"
#include "cachestore/store.hpp"

namespace cachestore {

/// Hedged reads over a CacheStore `S`. get_chunk and stat run on the caller's
/// thread as usual; if the call has not delivered its first byte (stat: its
/// answer) after the delay of `hedge_options`, a second, identical attempt
/// starts on a helper thread, within the budget. The first attempt to deliver
/// a byte claims the call: only its bytes reach the sink (every byte exactly
/// once, in order), and the other attempt is stopped through its stop token.
/// An attempt failing with `transient` while the other still runs leaves the
/// call to it; any other answer, error or not, claims the call. The call
/// returns when both attempts have ended, so nothing outlives it. The sink is
/// called on the helper thread when the second attempt wins (never
/// concurrently). put_chunk, remove and self_test pass through.
///
/// There is no get_chunk_into: two attempts cannot both write into the
/// caller's span, so cachestore::get_chunk(hedged, ...) copies once, through
/// get_chunk. Owns the inner store (`hedged<S>`) or refers to one
/// (`hedged<S&>`); one scheduler thread per hedged store, started by the first
/// call. Thread-safe when `S` is; movable while no call is in progress.
template <CacheStore S>
class hedged {
public:
    using inner_type = std::remove_reference_t<S>;

    explicit hedged(S inner, hedge_options opts = {})
        : inner_(static_cast<S&&>(inner)), sched_(std::make_unique<detail::hedge_scheduler>(std::move(opts))) {}

    /// Constructs the inner store in place from `args` (for stores that
    /// cannot move, e.g. memory_store).
    template <class... Args>
    explicit hedged(std::in_place_t, hedge_options opts, Args&&... args)
        : inner_(std::forward<Args>(args)...), sched_(std::make_unique<detail::hedge_scheduler>(std::move(opts))) {}

    [[nodiscard]] inner_type& inner() noexcept { return inner_; }
    [[nodiscard]] const inner_type& inner() const noexcept { return inner_; }

    [[nodiscard]] hedge_snapshot snapshot() const { return sched_->snapshot(); }

    // ---- CacheStore ------------------------------------------------------

    template <chunk_sink Sink>
    result<> get_chunk(const context& ctx, const chunk_key& key, std::int64_t off, std::int64_t n, Sink&& sink) {
        get_call<std::remove_reference_t<Sink>> c(*this, ctx, key, off, n, sink);
        return race(c, store_op::get_chunk, [&] {
            return inner_.get_chunk(c.context_a(), key, off, n,
                                    [&c](std::span<const std::byte> b) { return c.deliver(call_base::first, b); });
        });
    }

    template <chunk_source Src>
    result<> put_chunk(const context& ctx, const chunk_key& key, std::int64_t size, Src&& src) {
        return inner_.put_chunk(ctx, key, size, std::forward<Src>(src));
    }

    /// Only when the inner store has it.
    result<> put_chunk_prehashed(const context& ctx, const chunk_key& key, std::span<const std::byte> bytes,
                                 std::string_view sha256_hex)
        requires detail::has_put_chunk_prehashed<inner_type>
    {
        return inner_.put_chunk_prehashed(ctx, key, bytes, sha256_hex);
    }

    result<info> stat(const context& ctx, const chunk_key& key) {
        if (!sched_->options().hedge_stat) return inner_.stat(ctx, key);
        stat_call c(*this, ctx, key);
        return race(c, store_op::stat, [&] { return inner_.stat(c.context_a(), key); });
    }

    result<> remove(const context& ctx, const chunk_key& key) { return inner_.remove(ctx, key); }

    result<> self_test(const context& ctx) { return inner_.self_test(ctx); }

private:
    using call_base = detail::hedge_call;

    /// Whether an attempt's result claims the call, and whether it is an
    /// answer whose time feeds the adaptive delay.
    template <class T>
    static void settle(call_base& c, unsigned me, const result<T>& r, bool answer_on_miss) {
        if (r || (answer_on_miss && r.error().code == errc::not_found)) c.claim(me, true);
        else if (!detail::defers(r.error().code)) c.claim(me, false);
    }

    template <class Sink>
    struct get_call final : call_base {
        get_call(hedged& h, const context& ctx, const chunk_key& k, std::int64_t o, std::int64_t len, Sink& s)
            : call_base(ctx), self(h), key(k), off(o), n(len), sink(s) {
            run_b = &body;
        }
        hedged& self;
        const chunk_key& key;
        std::int64_t off, n;
        Sink& sink;
        result<> r_b;

        bool deliver(unsigned me, std::span<const std::byte> b) { return may_deliver(me) && static_cast<bool>(sink(b)); }

        static void body(call_base* base) {
            auto& c = *static_cast<get_call*>(base);
            try {
                c.r_b = c.self.inner_.get_chunk(c.context_b(), c.key, c.off, c.n,
                                                [&c](std::span<const std::byte> b) { return c.deliver(second, b); });
                if (!c.r_b) settle(c, second, c.r_b, false);
            } catch (...) {
                c.b_threw = std::current_exception();
                c.claim(second, false);
            }
        }
        result<> take_b() { return std::move(r_b); }
    };

    struct stat_call final : call_base {
        stat_call(hedged& h, const context& ctx, const chunk_key& k) : call_base(ctx), self(h), key(k) { run_b = &body; }
        hedged& self;
        const chunk_key& key;
        result<info> r_b;

        static void body(call_base* base) {
            auto& c = *static_cast<stat_call*>(base);
            try {
                c.r_b = c.self.inner_.stat(c.context_b(), c.key);
                settle(c, second, c.r_b, true);
            } catch (...) {
                c.b_threw = std::current_exception();
                c.claim(second, false);
            }
        }
        result<info> take_b() { return std::move(r_b); }
    };

    /// Ends a call on every path: unregisters it, stops and joins attempt B.
    class cleanup {
    public:
        cleanup(detail::hedge_scheduler& s, call_base& c) noexcept : sched_(s), c_(c) {}
        cleanup(const cleanup&) = delete;
        cleanup& operator=(const cleanup&) = delete;
        ~cleanup() {
            if (!left_) (void)sched_.leave(c_);
            if (c_.helper.joinable()) { // only when attempt A threw
                c_.stop_both();
                c_.helper.join();
            }
        }
        bool leave() {
            left_ = true;
            return sched_.leave(c_);
        }

    private:
        detail::hedge_scheduler& sched_;
        call_base& c_;
        bool left_ = false;
    };

    struct stopper {
        call_base* c;
        void operator()() const noexcept { c->stop_both(); }
    };

    template <class Call, class RunA>
    auto race(Call& c, store_op op, RunA&& run_a) -> decltype(run_a()) {
        sched_->enter(c, op);
        cleanup done(*sched_, c);
        std::optional<std::stop_callback<stopper>> link;
        if (const auto& tok = c.caller_stop(); tok.stop_possible()) link.emplace(tok, stopper{&c});
        auto r = run_a();
        settle(c, call_base::first, r, op == store_op::stat);
        if (!done.leave()) return r; // no second attempt
        c.helper.join();
        if (c.winner() != call_base::second) return r;
        if (c.b_threw) std::rethrow_exception(c.b_threw);
        sched_->second_won(op);
        return c.take_b();
    }

    S inner_;
    std::unique_ptr<detail::hedge_scheduler> sched_;
};

/// Appends `snaps` (one per hedged store; give each a distinct name) in the
/// Prometheus text format, per operation (get_chunk, stat):
///
///   cachestore_hedge_calls_total{op}            calls that could be hedged
///   cachestore_hedge_requests_total{op}         second attempts started
///   cachestore_hedge_wins_total{op}             calls the second attempt answered
///   cachestore_hedge_budget_exhausted_total{op} hedges the budget refused
///   cachestore_hedge_delay_seconds{op}          gauge: the delay new calls get
inline void write_prometheus(std::string& out, std::span<const hedge_snapshot> snaps) {
    namespace prom = detail::prom;
    struct family {
        const char* name;
        const char* type;
        const char* help;
    };
    constexpr family families[] = {
        {"cachestore_hedge_calls_total", "counter", "Calls the hedged layer could hedge, by operation."},
        {"cachestore_hedge_requests_total", "counter", "Second attempts started, by operation."},
        {"cachestore_hedge_wins_total", "counter", "Calls answered by their second attempt, by operation."},
        {"cachestore_hedge_budget_exhausted_total", "counter", "Second attempts the budget refused, by operation."},
        {"cachestore_hedge_delay_seconds", "gauge", "Delay before a second attempt, for calls starting now."},
    };
    for (std::size_t f = 0; f < sizeof families / sizeof families[0]; ++f) {
        prom::family(out, families[f].name, families[f].type, families[f].help);
        for (const auto& h : snaps) {
            const std::string base = prom::store_labels(h.store);
            for (const auto& [op, st] : {std::pair<const char*, const hedge_op_stats*>{"get_chunk", &h.get_chunk},
                                         std::pair<const char*, const hedge_op_stats*>{"stat", &h.stat}}) {
                const std::string labels = prom::with_label(base, "op", op);
                switch (f) {
                case 0: prom::sample(out, families[f].name, labels, st->calls); break;
                case 1: prom::sample(out, families[f].name, labels, st->hedges); break;
                case 2: prom::sample(out, families[f].name, labels, st->hedge_wins); break;
                case 3: prom::sample(out, families[f].name, labels, st->budget_denied); break;
                default: prom::sample(out, families[f].name, labels, static_cast<double>(st->delay.count()) * 1e-9); break;
                }
            }
        }
    }
}

inline void write_prometheus(std::string& out, const hedge_snapshot& h) {
    write_prometheus(out, std::span<const hedge_snapshot>(&h, 1));
}

static_assert(CacheStore<hedged<detail::archetype_store>>);
static_assert(CacheStore<hedged<detail::archetype_store&>>);
static_assert(!detail::has_get_chunk_into<hedged<detail::archetype_store_into>>);

} // namespace cachestore
