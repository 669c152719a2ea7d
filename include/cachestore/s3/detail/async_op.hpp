// cachestore/s3/detail/async_op.hpp - one operation of the S3 async engine
// (docs/async.md, "One operation"): what a blocking call keeps on its stack,
// kept on the heap while the operation waits for a slot, a transfer, a timer
// or a helper. One allocation per operation.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <utility>

#include <curl/curl.h>

#include "cachestore/async.hpp"
#include "cachestore/context.hpp"
#include "cachestore/error.hpp"
#include "cachestore/info.hpp"
#include "cachestore/s3/credentials_provider.hpp"
#include "cachestore/s3/detail/operations.hpp"
#include "cachestore/s3/detail/request.hpp"
#include "cachestore/s3/detail/request_buffers.hpp"
#include "cachestore/s3/detail/transport.hpp"

namespace cachestore::s3::detail {

class async_machine;
struct async_op;

/// A transfer slot: an easy handle configured once, its request buffers,
/// and the operation using it (null when free).
struct slot {
    CURL* easy = nullptr;
    request_buffers bufs;
    bool configured = false;
    bool custom_method = false;
    long buffer = receive_buffer; ///< its CURLOPT_BUFFERSIZE (configure sets receive_buffer)
    async_op* op = nullptr;
};

/// Where resume handles and stop callbacks post: the engine while it lives.
/// A resume() after the engine is gone finds null and does nothing.
struct mailbox {
    std::mutex mu;
    async_machine* engine = nullptr;
    void post_resume(std::uint64_t seq, std::uint64_t pause) noexcept;
};

/// A pausing sink's resume_handle target: one per operation with such a
/// sink. A resume posts the operation and the sink call it names.
struct resume_gate : cachestore::detail::resume_target {
    std::shared_ptr<mailbox> box;
    std::uint64_t seq;
    resume_gate(std::shared_ptr<mailbox> b, std::uint64_t s) noexcept : box(std::move(b)), seq(s) {
        fn = [](cachestore::detail::resume_target& t, std::uint64_t pause) noexcept {
            auto& g = static_cast<resume_gate&>(t);
            g.box->post_resume(g.seq, pause);
        };
    }
};

enum class op_state : std::uint8_t {
    queued,    ///< waiting for a slot
    preparing, ///< credentials on the helper
    active,    ///< a transfer in the multi handle (paused ones too)
    backoff,   ///< waiting to retry
    done,
};

/// The engine's side of an operation. The derived op knows its callables
/// and how the last attempt's result becomes the caller's.
struct async_op {
    struct canceller {
        std::shared_ptr<mailbox> box;
        std::uint64_t seq;
        void operator()() const noexcept;
    };

    async_op() = default;
    async_op(const async_op&) = delete;
    async_op& operator=(const async_op&) = delete;
    async_op(async_op&&) = delete;
    async_op& operator=(async_op&&) = delete;
    virtual ~async_op() = default;

    /// Hands the caller the operation's result built from `r` (the final
    /// attempt's), then returns. Runs on the loop thread, once.
    virtual void complete(result<> r) = 0;

    std::uint64_t seq = 0;
    op_state state = op_state::queued;
    context ctx;                 ///< the call's: the caller's stop token, call_context's deadline
    request_spec spec;
    response res;
    const error* refusal = nullptr; ///< a GET plan's accept() verdict
    http_request req;
    std::optional<exchange> x;   ///< while active
    slot* at = nullptr;          ///< while active
    int attempt = 0;
    std::uint64_t sink_calls = 0; ///< a pausing sink's, on the loop thread: the pause a resume must name
    long recv_buffer = receive_buffer; ///< pausing_receive_buffer for a pausing sink (docs/async.md, flow control)
    bool refreshed = false;
    credentials_provider::snapshot snap;
    std::chrono::steady_clock::time_point t_queued{}, t_slot{};
    error last_error;            ///< the refused attempt's, while the helper asks for newer credentials
    // The bodiless probe (a HEAD's 4xx without an error document): a one-byte
    // GET sent as a sub-attempt; the HEAD's error and response wait here.
    bool probing = false;
    std::optional<request_spec> probe_spec;
    std::optional<error> head_error;
    response head_res;
    std::optional<std::stop_callback<canceller>> on_stop; ///< made and destroyed on the loop thread
    /// The engine's timers for this operation (its deadline, a back-off),
    /// removed when it ends: the timer set holds live operations only.
    using timer_set = std::multimap<std::chrono::steady_clock::time_point, async_op*>;
    std::optional<timer_set::iterator> deadline_timer, backoff_timer;

    [[nodiscard]] request_spec& sending() noexcept { return probing ? *probe_spec : spec; }
};

/// The sink the GET plan calls: the caller's sink, either form; a pausing
/// one gets the handle of this call (the operation's sink call number).
template <class K>
struct async_sink_call {
    K* sink;
    const std::shared_ptr<resume_gate>* gate;
    std::uint64_t* calls;
    sink_verdict operator()(std::span<const std::byte> b) const {
        if constexpr (pausing_sink<K>) {
            return (*sink)(b, resume_handle(*gate, ++*calls));
        } else {
            return (*sink)(b) ? sink_verdict::proceed : sink_verdict::stop;
        }
    }
};

template <class K, class D>
struct get_op final : async_op {
    K sink;
    D done;
    std::shared_ptr<resume_gate> gate; ///< a pausing sink's
    get_plan<async_sink_call<K>> plan;

    get_op(K k, D d, std::int64_t off, std::int64_t n)
        : sink(std::move(k)), done(std::move(d)), plan(async_sink_call<K>{nullptr, nullptr, nullptr}, off, n) {
        plan.sink = async_sink_call<K>{&sink, &gate, &sink_calls};
        refusal = &plan.refusal;
    }
    void complete(result<> r) override { std::move(done)(plan.finish(std::move(r), spec, res)); }
};

template <class D>
struct stat_op final : async_op {
    D done;
    explicit stat_op(D d) : done(std::move(d)) {}
    void complete(result<> r) override { std::move(done)(stat_from(std::move(r), spec, res)); }
};

template <class D>
struct remove_op final : async_op {
    D done;
    explicit remove_op(D d) : done(std::move(d)) {}
    void complete(result<> r) override { std::move(done)(remove_from(std::move(r))); }
};

} // namespace cachestore::s3::detail
