// cachestore/posix/detail/sweeper.hpp - one bounded pass over the tree (a
// sweep), run on demand, by puts that need room, or by a background thread.
//
// A pass: take the root's sweep lock (flock on .cachestore-sweep.lock, so two
// sweepers on one root - threads, processes, or hosts with NFS locking - run
// one after the other and the second sees what the first removed); walk the
// tree (scan.hpp), keeping the oldest chunks that cover the estimated excess
// plus a reserve; if the walk found more to evict than it kept candidates for,
// walk again with the exact figure; evict oldest first, sparing any chunk used
// since the walk; hand what is left to the reserve; reset the accounting.
// Within one store, passes never overlap: a caller that finds one running
// waits for it (puts) or for its turn (sweep()).
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/posix/detail/bounds.hpp"
#include "cachestore/posix/detail/commit.hpp"
#include "cachestore/posix/detail/layout.hpp"
#include "cachestore/posix/detail/scan.hpp"
#include "cachestore/posix/detail/sys.hpp"
#include "cachestore/posix/options.hpp"

namespace cachestore::detail::posix {

class sweeper {
public:
    sweeper(root_ref root, accounting& acct) : root_(root), acct_(acct), core_(new core(::getpid())) {}
    sweeper(const sweeper&) = delete;
    sweeper& operator=(const sweeper&) = delete;
    /// Stops and joins this process's background thread. In a child forked
    /// from the process that started one and never swept since, the parent's
    /// state (a thread that does not exist here, and waiters on its condition
    /// variable) is left alone: destroying it could block forever.
    ~sweeper() {
        core* c = core_.load();
        if (c->pid != ::getpid()) return; // the parent's: leaked on purpose
        c->thread.request_stop();
        if (c->thread.joinable()) c->thread.join();
        delete c;
    }

    /// Starts the background thread (sweep_interval > 0).
    void start() {
        core* c = core_.load();
        if (root_.opts.sweep_interval.count() > 0 && !c->thread.joinable()) start_thread(*c);
    }

    /// Runs one pass (after any pass in progress in this store).
    result<sweep_report> sweep(const context& ctx) {
        core& c = mine();
        std::unique_lock lk(c.mu);
        if (!wait(c, lk, ctx, [&] { return !c.running; })) return stopped(ctx);
        c.running = true;
        lk.unlock();
        auto r = pass(ctx, c);
        lk.lock();
        finish(c, r);
        return r;
    }

    /// For a put that found no room: waits for the pass in progress, or for
    /// the background thread's next one (woken now), or runs one here.
    result<> sweep_for_put(const context& ctx) {
        core& c = mine();
        std::unique_lock lk(c.mu);
        const std::uint64_t seen = c.done;
        if (c.running || c.thread.joinable()) {
            c.wake = true;
            c.cv.notify_all();
            if (!wait(c, lk, ctx, [&] { return c.done != seen; })) return std::unexpected(stopped(ctx).error());
            return {};
        }
        c.running = true;
        lk.unlock();
        auto r = pass(ctx, c);
        lk.lock();
        finish(c, r);
        if (!r) return std::unexpected(std::move(r.error()));
        return {};
    }

    /// The last pass's report in this process (empty before the first).
    [[nodiscard]] std::optional<sweep_report> last() const {
        core* c = core_.load();
        if (c->pid != ::getpid()) return std::nullopt;
        const std::lock_guard lk(c->mu);
        return c->last;
    }

private:
    /// The sweeper's state in one process: passes never overlap, puts wait on
    /// the condition variable, the thread (if any) sleeps on it.
    struct core {
        explicit core(pid_t p) noexcept : pid(p) {}
        const pid_t pid;
        std::mutex mu;
        std::condition_variable_any cv;
        bool running = false;
        bool wake = false;
        std::uint64_t done = 0;               ///< passes completed
        std::int64_t committed_at_last = 0;   ///< acct_.committed_total() when the last pass began
        std::optional<sweep_report> last;
        std::jthread thread;                  ///< last: joined before the rest is destroyed
    };

    void start_thread(core& c) {
        c.thread = std::jthread([this, &c](const std::stop_token& st) { loop(c, st); });
    }

    /// This process's core. After fork() the child's first call replaces the
    /// parent's copy (leaked: its mutex, condition variable and thread belong
    /// to another process) with a fresh one, and starts its own thread.
    core& mine() {
        core* c = core_.load();
        const pid_t me = ::getpid();
        if (c->pid == me) return *c;
        auto fresh = std::make_unique<core>(me);
        if (root_.opts.sweep_interval.count() > 0) start_thread(*fresh);
        if (core_.compare_exchange_strong(c, fresh.get())) return *fresh.release();
        fresh->thread.request_stop(); // another thread of this child won the race
        if (fresh->thread.joinable()) fresh->thread.join();
        return *c;
    }

    /// Waits on c.cv for `pred`, until ctx's stop request or deadline.
    template <class Pred>
    static bool wait(core& c, std::unique_lock<std::mutex>& lk, const context& ctx, Pred pred) {
        if (ctx.has_deadline()) return c.cv.wait_until(lk, ctx.stop_token(), ctx.deadline(), pred);
        return c.cv.wait(lk, ctx.stop_token(), pred);
    }

    static result<sweep_report> stopped(const context& ctx) {
        if (auto r = ctx.check("sweep"); !r) return std::unexpected(std::move(r.error()));
        return fail(errc::deadline_exceeded, "sweep", {}, "deadline exceeded waiting for a sweep");
    }

    static void finish(core& c, const result<sweep_report>& r) { // under c.mu
        c.running = false;
        ++c.done;
        if (r) c.last = *r;
        c.cv.notify_all();
    }

    void loop(core& c, const std::stop_token& st) {
        const context ctx(st);
        while (!st.stop_requested()) {
            {
                std::unique_lock lk(c.mu);
                c.cv.wait_for(lk, st, root_.opts.sweep_interval, [&] { return c.wake; });
                c.wake = false;
                if (st.stop_requested()) return;
            }
            (void)sweep(ctx); // failures are in the next pass's hands; puts see their own errors
        }
    }

    /// Takes the root's sweep lock, waiting (with ctx) while another holds it.
    result<unique_fd> lock_root(const context& ctx) const {
        unique_fd fd(open_retry(root_.fd, sweep_lock_name, O_RDWR | O_CREAT | O_NOFOLLOW, root_.opts.file_mode));
        if (!fd) {
            const int err = errno;
            if (err == ELOOP) return symlink_fail("sweep", {}, root_.full(sweep_lock_name));
            return sys_fail("sweep", {}, "cannot open the sweep lock " + root_.full(sweep_lock_name), err);
        }
        for (;;) {
            if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return fd;
            if (errno == EINTR) continue;
            if (errno != EWOULDBLOCK) return fd; // no locks here (ENOLCK): sweep unlocked, still safe
            if (auto c = ctx.check("sweep"); !c) return std::unexpected(std::move(c.error()));
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    result<sweep_report> pass(const context& ctx, core& c) {
        using clock = std::chrono::steady_clock;
        const auto t0 = clock::now();
        const posix_options& o = root_.opts;
        auto lock = lock_root(ctx);
        if (!lock) return std::unexpected(std::move(lock.error()));

        const std::int64_t before = acct_.committed_total();
        const std::int64_t known = acct_.usage();
        scan_plan plan;
        plan.remove_orphans = true;
        plan.orphan_age_ns = std::chrono::nanoseconds(o.orphan_age).count();
        plan.empty_dir_age_ns = std::chrono::nanoseconds(std::min<std::chrono::seconds>(o.orphan_age, std::chrono::seconds(60))).count();
        const std::int64_t guess = known < 0 ? 0 : bytes_to_evict(o, known, free_space(root_.fd));
        // The reserve covers the low-water slack, or twice what this process
        // committed since its last pass when it writes faster than that.
        const std::int64_t recent = 2 * (before - c.committed_at_last);
        c.committed_at_last = before;
        auto reserve_for = [&](std::int64_t usage) { return std::max(reserve_target(o, usage), recent); };
        plan.keep_bytes = guess + reserve_for(known < 0 ? o.max_bytes : known); // unknown: assume about full
        if (!acct_.bounded()) plan.keep_bytes = 0;                                 // orphans only: keep nothing

        auto t_scan = clock::now();
        auto walk = scan_tree(root_.fd, plan, ctx);
        if (!walk) return std::unexpected(std::move(walk.error()));
        sweep_report rep = walk->report;
        rep.passes = 1;
        std::int64_t need = bytes_to_evict(o, walk->report.bytes, free_space(root_.fd));
        if (walk->heap.dropped() && walk->heap.bytes() < need) { // the guess was short: walk again, exactly
            plan.keep_bytes = need + reserve_for(walk->report.bytes);
            plan.remove_orphans = false;
            auto again = scan_tree(root_.fd, plan, ctx);
            if (!again) return std::unexpected(std::move(again.error()));
            const sweep_report first = rep;
            rep = again->report;
            rep.orphans_removed = first.orphans_removed;
            rep.orphan_bytes = first.orphan_bytes;
            rep.dirs_removed = first.dirs_removed;
            rep.entries_scanned += first.entries_scanned;
            rep.passes = 2;
            need = bytes_to_evict(o, again->report.bytes, free_space(root_.fd));
            walk = std::move(again);
        }
        rep.scan_time = clock::now() - t_scan;
        if (walk->report.chunks > 0) {
            rep.oldest_use = std::chrono::system_clock::time_point(
                std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(walk->oldest_ns)));
            rep.newest_use = std::chrono::system_clock::time_point(
                std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(walk->newest_ns)));
        }

        // Evict oldest first; what is left (oldest first) is the new reserve.
        // A walk keeps at most candidate_heap::max_candidates: when the excess
        // is larger, evict those and walk again.
        std::int64_t usage = walk->report.bytes;
        std::int64_t chunks = walk->report.chunks;
        std::vector<candidate> oldest;
        for (int round = 0;; ++round) {
            oldest = walk->heap.take_oldest_first();
            std::size_t next = 0;
            std::int64_t freed = 0;
            bool stopped = false;
            for (; next < oldest.size() && freed < need; ++next) {
                if (!ctx.check("sweep")) { // stop evicting; the accounting below stays right
                    stopped = true;
                    break;
                }
                std::int64_t bytes = 0;
                switch (evict(root_.fd, oldest[next], bytes)) {
                case evicted::removed:
                    freed += bytes;
                    ++rep.chunks_evicted;
                    --chunks;
                    rep.bytes_evicted += bytes;
                    break;
                case evicted::gone: freed += bytes; break;
                case evicted::spared: ++rep.spared; break;
                case evicted::failed: break;
                }
            }
            usage -= freed;
            oldest.erase(oldest.begin(), oldest.begin() + static_cast<std::ptrdiff_t>(next));
            if (stopped || freed >= need || !oldest.empty() || !walk->heap.dropped() || round >= 15) break;
            need -= freed; // still to go, towards the same low-water mark
            plan.keep_bytes = need + reserve_for(usage);
            plan.remove_orphans = false;
            auto again = scan_tree(root_.fd, plan, ctx);
            if (!again) break; // cancelled: what was evicted stays evicted
            rep.entries_scanned += again->report.entries_scanned;
            ++rep.passes;
            usage = again->report.bytes;
            chunks = again->report.chunks;
            walk = std::move(again);
        }
        rep.bytes = usage;
        rep.chunks = chunks;
        acct_.reset(rep.bytes, before, std::move(oldest));
        rep.free_bytes = free_space(root_.fd);
        rep.over_bound = bytes_to_evict(o, rep.bytes, rep.free_bytes) > 0 &&
                         ((o.max_bytes > 0 && rep.bytes > o.max_bytes) ||
                          (o.min_free_bytes > 0 && rep.free_bytes >= 0 && rep.free_bytes < o.min_free_bytes));
        rep.total_time = clock::now() - t0;
        return rep;
    }

    root_ref root_;
    accounting& acct_;
    std::atomic<core*> core_; ///< this process's (owned), or a forked parent's (never touched again)
};

} // namespace cachestore::detail::posix
