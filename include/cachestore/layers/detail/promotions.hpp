// cachestore/layers/detail/promotions.hpp - the bookkeeping behind a tiered
// store's promotions (docs/tiered.md): at most one promotion per chunk at a
// time, a byte budget, the threads they run on, and removals that no
// promotion can undo.
//
// A promotion is planned on the reader's thread before its far read (so the
// read knows whether to keep a copy), then runs on a promotion thread. Its
// chunk stays "pending" from plan to end; a second far hit of a pending chunk
// is not promoted. A removal marks the chunk "removing" first: from then on
// no promotion of it starts its near put, one planned before it never does
// (cancelled), and the removal waits for one already putting to end before it
// removes the near copy, so a removed chunk is never left behind in the near
// tier by a promotion that raced it.
//
// Each ticket carries the buffer its bytes are copied into. Buffers come back
// when their ticket ends and are kept for the next promotions (at most
// threads + 1 of them, within the byte budget): a copy into pages already
// touched costs a third of one into fresh pages (250 us against 850 us for
// 8 MiB here), and that copy is on the reader's path.
//
// Everything here belongs to one process (fork_generation.hpp): a child
// forked from a process using the store gets its own threads and tables.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <mutex>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cachestore/detail/fork_generation.hpp"
#include "cachestore/detail/thread_pool.hpp"

namespace cachestore::detail {

class promotions {
public:
    enum class phase : std::uint8_t { planned, putting, cancelled };

    promotions(std::size_t budget_bytes, std::size_t threads) : budget_(budget_bytes), threads_(threads == 0 ? 1 : threads) {}

    /// A planned promotion: holds its chunk's pending entry, its bytes of the
    /// budget and its buffer until it is run or dropped.
    class ticket {
    public:
        ticket() = default;
        ticket(ticket&& o) noexcept
            : owner_(std::exchange(o.owner_, nullptr)), path_(std::move(o.path_)), bytes_(o.bytes_), buf_(std::move(o.buf_)) {}
        ticket& operator=(ticket&& o) noexcept {
            if (this != &o) {
                release();
                owner_ = std::exchange(o.owner_, nullptr);
                path_ = std::move(o.path_);
                bytes_ = o.bytes_;
                buf_ = std::move(o.buf_);
            }
            return *this;
        }
        ticket(const ticket&) = delete;
        ticket& operator=(const ticket&) = delete;
        ~ticket() { release(); }
        [[nodiscard]] explicit operator bool() const noexcept { return owner_ != nullptr; }
        [[nodiscard]] const std::string& path() const noexcept { return path_; }
        /// The chunk's bytes as far as they are known: empty when planned, its
        /// capacity the planned size (no allocation while it is filled).
        [[nodiscard]] std::vector<std::byte>& buffer() noexcept { return buf_; }

    private:
        friend class promotions;
        ticket(promotions* o, std::string path, std::size_t bytes, std::vector<std::byte> buf)
            : owner_(o), path_(std::move(path)), bytes_(bytes), buf_(std::move(buf)) {}
        void release() noexcept {
            if (owner_ != nullptr) std::exchange(owner_, nullptr)->end(path_, bytes_, std::move(buf_));
        }
        promotions* owner_ = nullptr;
        std::string path_;
        std::size_t bytes_ = 0;
        std::vector<std::byte> buf_;
    };

    /// A promotion of `path` reserving `bytes` of the budget, or an empty
    /// ticket when one is pending for it, it is being removed, or the budget
    /// has no room.
    ticket plan(const std::string& path, std::size_t bytes) {
        if (budget_ == 0) return {};
        state& s = here();
        std::vector<std::byte> buf;
        {
            const std::lock_guard lk(s.mu);
            if (s.pending.contains(path) || s.removing.contains(path)) return {};
            if (bytes > budget_ - std::min(budget_, s.reserved)) return {};
            s.reserved += bytes;
            s.pending.emplace(path, phase::planned);
            auto best = s.spare.end(); // the smallest that fits: 4 KiB chunks leave the 8 MiB buffers alone
            for (auto it = s.spare.begin(); it != s.spare.end(); ++it)
                if (it->capacity() >= bytes && (best == s.spare.end() || it->capacity() < best->capacity())) best = it;
            if (best != s.spare.end()) {
                s.spare_bytes -= best->capacity();
                buf = std::move(*best);
                s.spare.erase(best);
            }
        }
        if (buf.capacity() < bytes) {
            try {
                buf.reserve(bytes);
            } catch (const std::bad_alloc&) { // no promotion; the read goes on
                end(path, bytes, {});
                return {};
            }
        }
        return ticket(this, path, bytes, std::move(buf));
    }

    /// Runs `job` on a promotion thread; it gets the ticket back and a stop
    /// token that stops when the store is destroyed. A job still queued then
    /// is dropped (the ticket released unrun).
    void submit(ticket t, std::function<void(ticket&, std::stop_token)> job) {
        auto shared = std::make_shared<std::pair<ticket, std::function<void(ticket&, std::stop_token)>>>(std::move(t), std::move(job));
        thread_pool::job j;
        j.run = [shared](std::stop_token stop) {
            shared->second(shared->first, std::move(stop));
            shared->first = ticket(); // released on this thread, before the next job
        };
        j.expired = [shared](bool) { shared->first = ticket(); };
        state& s = here();
        thread_pool* pool = nullptr;
        {
            const std::lock_guard lk(s.mu);
            if (!s.pool) s.pool = std::make_unique<thread_pool>(threads_, thread_pool::no_timeout);
            pool = s.pool.get();
        }
        pool->submit(std::move(j));
    }

    /// Called by a job before its near put: false when the chunk is being
    /// removed, or was removed after the promotion was planned (the job must
    /// not put). While it returns true and until the ticket is released,
    /// removals of the chunk wait.
    bool begin_put(const ticket& t) {
        state& s = here();
        const std::lock_guard lk(s.mu);
        if (s.removing.contains(t.path())) return false;
        auto it = s.pending.find(t.path());
        if (it == s.pending.end() || it->second == phase::cancelled) return false;
        it->second = phase::putting;
        return true;
    }

    /// Marks `path` removing for the guard's life, after waiting for a
    /// promotion of it that is putting now, and cancels one planned (its
    /// bytes were read before the removal: it must not put them after).
    class removal {
    public:
        removal(promotions& p, std::string path) : p_(p), path_(std::move(path)) {
            state& s = p_.here();
            std::unique_lock lk(s.mu);
            ++s.removing[path_];
            s.cv.wait(lk, [&] {
                auto it = s.pending.find(path_);
                return it == s.pending.end() || it->second != phase::putting;
            });
            if (auto it = s.pending.find(path_); it != s.pending.end()) it->second = phase::cancelled;
        }
        removal(const removal&) = delete;
        removal& operator=(const removal&) = delete;
        ~removal() {
            state& s = p_.here();
            const std::lock_guard lk(s.mu);
            if (auto it = s.removing.find(path_); it != s.removing.end() && --it->second == 0) s.removing.erase(it);
        }

    private:
        promotions& p_;
        std::string path_;
    };

    /// Bytes reserved by planned and running promotions of this process.
    [[nodiscard]] std::size_t queued_bytes() {
        state& s = here();
        const std::lock_guard lk(s.mu);
        return s.reserved;
    }

    /// Bytes held by buffers kept for the next promotions of this process.
    [[nodiscard]] std::size_t spare_bytes() {
        state& s = here();
        const std::lock_guard lk(s.mu);
        return s.spare_bytes;
    }

private:
    struct state {
        std::mutex mu;
        std::condition_variable cv; ///< a putting promotion ended
        std::unordered_map<std::string, phase> pending;
        std::unordered_map<std::string, int> removing;
        std::size_t reserved = 0;
        std::vector<std::vector<std::byte>> spare; ///< buffers of ended promotions, for the next ones
        std::size_t spare_bytes = 0;
        std::unique_ptr<thread_pool> pool; ///< started on first use; last: its threads end before the tables go
    };

    /// This process's tables; a forked child's start empty, with no threads.
    state& here() { return proc_.get(); }

    void end(const std::string& path, std::size_t bytes, std::vector<std::byte> buf) noexcept {
        state& s = here();
        {
            const std::lock_guard lk(s.mu);
            s.pending.erase(path);
            s.reserved -= std::min(s.reserved, bytes);
            const std::size_t cap = buf.capacity();
            if (cap > 0 && s.spare.size() <= threads_ && cap <= budget_ - std::min(budget_, s.spare_bytes)) {
                buf.clear();
                try {
                    s.spare.push_back(std::move(buf));
                    s.spare_bytes += cap;
                } catch (const std::bad_alloc&) { // not kept
                }
            }
        }
        s.cv.notify_all();
    }

    const std::size_t budget_;
    const std::size_t threads_;
    per_process<state> proc_; // last: destroyed first, so its threads end before the rest
};

} // namespace cachestore::detail
