// cachestore::metered: the counts match what was done, per operation and
// outcome; durations, first bytes, bytes and the in-flight gauge; the
// optional members are forwarded; the Prometheus text parses back.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "cachestore/cachestore.hpp"
#include "prom_check.hpp"
#include "scripted_store.hpp"

using namespace cachestore;
using namespace std::chrono_literals;
using layertest::script;

namespace {

const chunk_key key8{"dc1", "bucket", "obj", "\"e\"", 8, 0};

chunk_key key_n(int i) { return chunk_key{"dc1", "bucket", "obj-" + std::to_string(i), "\"e\"", 4096, 0}; }

std::uint64_t ops(const metrics_snapshot& m, store_op op, std::size_t outcome) {
    return m[op].outcomes[outcome];
}

} // namespace

TEST_CASE("metered counts every call per operation and outcome", "[layers][metered]") {
    memory_store mem;
    metered<memory_store&> s(mem, {"primary"});
    const context ctx;
    std::byte out[8];

    CHECK(get_chunk(s, ctx, key8, 0, out).error().code == errc::not_found);
    CHECK(s.stat(ctx, key8).error().code == errc::not_found);
    REQUIRE(s.put_chunk(ctx, key8, 8, as_bytes("12345678")));
    CHECK(s.put_chunk(ctx, key8, 8, as_bytes("12345678")).error().code == errc::commit_lost);
    REQUIRE(get_chunk(s, ctx, key8, 0, out));
    REQUIRE(get_chunk(s, ctx, key8, 2, std::span<std::byte>(out, 4)));
    CHECK(get_chunk(s, ctx, key8, 6, std::span<std::byte>(out, 4)).error().code == errc::out_of_range);
    CHECK(s.get_chunk(ctx, key8, 0, 0, [](std::span<const std::byte>) { return true; }).error().code ==
          errc::invalid_argument);
    CHECK(s.get_chunk(ctx, key8, 0, 8, [](std::span<const std::byte>) { return false; }).error().code == errc::cancelled);
    REQUIRE(s.stat(ctx, key8));
    REQUIRE(s.remove(ctx, key8));
    REQUIRE(s.self_test(ctx));

    const auto m = s.snapshot();
    CHECK(m.store == "primary");
    CHECK(ops(m, store_op::get_chunk, 0) == 2);
    CHECK(m[store_op::get_chunk].failed(errc::not_found) == 1);
    CHECK(m[store_op::get_chunk].failed(errc::out_of_range) == 1);
    CHECK(m[store_op::get_chunk].failed(errc::invalid_argument) == 1);
    CHECK(m[store_op::get_chunk].failed(errc::cancelled) == 1);
    CHECK(m[store_op::get_chunk].calls() == 6);
    CHECK(m[store_op::put_chunk].succeeded() == 1);
    CHECK(m[store_op::put_chunk].failed(errc::commit_lost) == 1);
    CHECK(m[store_op::stat].succeeded() == 1);
    CHECK(m[store_op::stat].failed(errc::not_found) == 1);
    CHECK(m[store_op::remove].calls() == 1);
    CHECK(m[store_op::self_test].calls() == 1);
    // Durations: one observation per call.
    for (std::size_t o = 0; o < store_op_count; ++o) {
        INFO("op " << to_string(static_cast<store_op>(o)));
        CHECK(m.ops[o].duration.count() == m.ops[o].calls());
        CHECK(m.ops[o].in_flight == 0);
        CHECK(m.ops[o].duration.sum_seconds >= 0);
    }
    // Bytes: 8 + 4 delivered by the successful reads, the sink that refused
    // got its first 8 (then said stop); one commit of 8.
    CHECK(m.bytes_read == 8 + 4 + 8);
    CHECK(m.bytes_written == 8);
    // First byte: every read that delivered one (the refusing sink's too).
    CHECK(m.get_first_byte.count() == 3);
    CHECK(m.get_first_byte.sum_seconds <= m[store_op::get_chunk].duration.sum_seconds);
}

TEST_CASE("metered times calls and the first byte, and shows calls in flight", "[layers][metered]") {
    layertest::scripted_store inner;
    metered<layertest::scripted_store&> s(inner);
    REQUIRE(s.put_chunk({}, key8, 8, as_bytes("abcdefgh")));
    inner.plan = [](int, store_op) { return script{.stall = 30ms, .pieces = 2, .gap = 20ms}; };
    std::atomic<bool> in_call{false}, ok{false};
    std::thread t([&] {
        std::byte out[8];
        in_call = true;
        ok = get_chunk(s, {}, key8, 0, out).has_value();
    });
    while (!in_call) std::this_thread::yield();
    // The call is in flight while the scripted store stalls.
    std::int64_t seen = 0;
    for (int i = 0; i < 200 && seen == 0; ++i) {
        seen = s.snapshot()[store_op::get_chunk].in_flight;
        if (seen == 0) std::this_thread::sleep_for(1ms);
    }
    CHECK(seen == 1);
    t.join();
    CHECK(ok);
    const auto m = s.snapshot();
    CHECK(m[store_op::get_chunk].in_flight == 0);
    CHECK(m[store_op::get_chunk].succeeded() == 1);
    // First byte after the 30 ms stall, the whole call after the 20 ms gap too.
    CHECK(m.get_first_byte.sum_seconds >= 0.030);
    CHECK(m[store_op::get_chunk].duration.sum_seconds >= 0.050);
    CHECK(m[store_op::get_chunk].duration.sum_seconds > m.get_first_byte.sum_seconds);
    CHECK(m.get_first_byte.quantile_bound(1.0) >= 30ms);
    CHECK(m.get_first_byte.quantile_bound(1.0) <= 10s);
}

TEST_CASE("metered forwards get_chunk_into and put_chunk_prehashed when the inner store has them",
          "[layers][metered]") {
    SECTION("get_chunk_into of the POSIX store") {
        std::string tmpl = (std::filesystem::temp_directory_path() / "cachestore-metered-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        {
            auto opened = posix_store::open(tmpl);
            REQUIRE(opened);
            metered<posix_store> s(std::move(*opened));
            static_assert(detail::has_get_chunk_into<metered<posix_store>>);
            REQUIRE(s.put_chunk({}, key8, 8, as_bytes("01234567")));
            std::byte out[5];
            REQUIRE(get_chunk(s, {}, key8, 3, out)); // calls metered::get_chunk_into
            CHECK(std::string_view(reinterpret_cast<const char*>(out), 5) == "34567");
            const auto m = s.snapshot();
            CHECK(m[store_op::get_chunk].succeeded() == 1);
            CHECK(m.bytes_read == 5);
            CHECK(m.get_first_byte.count() == 0); // not observable through get_chunk_into
        }
        std::filesystem::remove_all(tmpl);
    }
    SECTION("put_chunk_prehashed") {
        layertest::scripted_store inner;
        metered<layertest::scripted_store&> s(inner);
        static_assert(detail::has_put_chunk_prehashed<metered<layertest::scripted_store&>>);
        static_assert(!detail::has_put_chunk_prehashed<metered<memory_store>>);
        const std::string digest = "b3f0a5b8c0aa5b6a3e9d5c8c1e0f7d2a4b6c8e0f2a4b6c8d0e2f4a6b8c0d2e4f"; // not checked here
        REQUIRE(put_chunk_prehashed(s, {}, key8, as_bytes("01234567"), digest));
        CHECK(inner.prehashed == 1);
        const auto m = s.snapshot();
        CHECK(m[store_op::put_chunk].succeeded() == 1);
        CHECK(m.bytes_written == 8);
    }
}

TEST_CASE("metered counts exactly under many threads", "[layers][metered][concurrency]") {
    memory_store mem;
    metered<memory_store&> s(mem);
    constexpr int threads = 8, per = 200;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int i = 0; i < per; ++i) {
                const auto k = key_n(t * per + i);
                (void)s.put_chunk({}, k, 100, std::vector<std::byte>(100));
                std::byte out[100];
                (void)get_chunk(s, {}, k, 0, out);
                (void)s.stat({}, key_n(-1 - i)); // not_found
            }
        });
    for (auto& t : pool) t.join();
    const auto m = s.snapshot();
    constexpr std::uint64_t calls = std::uint64_t{threads} * per;
    CHECK(m[store_op::put_chunk].succeeded() == calls);
    CHECK(m[store_op::get_chunk].succeeded() == calls);
    CHECK(m[store_op::stat].failed(errc::not_found) == calls);
    CHECK(m.bytes_read == calls * 100);
    CHECK(m.bytes_written == calls * 100);
    CHECK(m.get_first_byte.count() == calls);
    for (std::size_t o = 0; o < store_op_count; ++o) CHECK(m.ops[o].in_flight == 0);
}

TEST_CASE("metered's Prometheus text parses back and agrees with the snapshot", "[layers][metered][prometheus]") {
    memory_store a_mem, b_mem;
    metered<memory_store&> a(a_mem, {"a \"quoted\"\\store\nname"});
    metered<memory_store&> b(b_mem, {"b"});
    REQUIRE(a.put_chunk({}, key8, 8, as_bytes("12345678")));
    std::byte out[8];
    REQUIRE(get_chunk(a, {}, key8, 0, out));
    CHECK_FALSE(a.stat({}, key_n(1)));
    CHECK_FALSE(b.remove({}, chunk_key{}));
    const metrics_snapshot snaps[] = {a.snapshot(), b.snapshot()};
    std::string text;
    write_prometheus(text, std::span<const metrics_snapshot>(snaps));
    const auto p = layertest::parse_prometheus(text);
    for (const auto& problem : p.problems) FAIL_CHECK(problem);
    INFO(text.substr(0, 2000));

    std::map<std::string, std::string> want_types{{"cachestore_operations_total", "counter"},
                                                  {"cachestore_operation_duration_seconds", "histogram"},
                                                  {"cachestore_get_first_byte_seconds", "histogram"},
                                                  {"cachestore_read_bytes_total", "counter"},
                                                  {"cachestore_written_bytes_total", "counter"},
                                                  {"cachestore_operations_in_flight", "gauge"}};
    std::map<std::string, std::string> types;
    for (const auto& f : p.families) types[f.name] = f.type;
    CHECK(types == want_types);

    const std::string an = "a \"quoted\"\\store\nname"; // the label value, unescaped by the parser
    CHECK(p.value("cachestore_operations_total", {{"store", an}, {"op", "get_chunk"}, {"outcome", "ok"}}) == 1.0);
    CHECK(p.value("cachestore_operations_total", {{"store", an}, {"op", "stat"}, {"outcome", "not_found"}}) == 1.0);
    CHECK(p.value("cachestore_operations_total", {{"store", "b"}, {"op", "remove"}, {"outcome", "invalid_argument"}}) == 1.0);
    CHECK(p.value("cachestore_operations_total", {{"store", "b"}, {"op", "remove"}, {"outcome", "unavailable"}}) == 0.0);
    CHECK(p.value("cachestore_read_bytes_total", {{"store", an}}) == 8.0);
    CHECK(p.value("cachestore_written_bytes_total", {{"store", an}}) == 8.0);
    CHECK(p.value("cachestore_operation_duration_seconds_count", {{"store", an}, {"op", "put_chunk"}}) == 1.0);
    CHECK(p.value("cachestore_operation_duration_seconds_bucket", {{"store", an}, {"op", "put_chunk"}, {"le", "+Inf"}}) ==
          1.0);
    CHECK(p.value("cachestore_get_first_byte_seconds_count", {{"store", an}}) == 1.0);
    CHECK(p.value("cachestore_operations_in_flight", {{"store", "b"}, {"op", "get_chunk"}}) == 0.0);
    // Every (store, op, outcome) is present: 2 stores x 5 ops x 13 outcomes.
    std::size_t n = 0;
    for (const auto& f : p.families)
        if (f.name == "cachestore_operations_total") n = f.samples.size();
    CHECK(n == 2 * store_op_count * outcome_count);
    // Without a name there is no store label at all.
    memory_store c_mem;
    metered<memory_store&> c(c_mem);
    std::string plain;
    write_prometheus(plain, c.snapshot());
    const auto q = layertest::parse_prometheus(plain);
    CHECK(q.problems.empty());
    CHECK(q.value("cachestore_read_bytes_total", {}) == 0.0);
}

TEST_CASE("the exposition checker catches what a scraper rejects", "[layers][prometheus]") {
    auto problems = [](const std::string& t) { return layertest::parse_prometheus(t).problems.size(); };
    CHECK(problems("# HELP x_total h\n# TYPE x_total counter\nx_total 1\n") == 0);
    CHECK(problems("# HELP x_total h\n# TYPE x_total counter\nx_total 1") == 1);               // no final newline
    CHECK(problems("x_total 1\n") == 1);                                                        // no TYPE
    CHECK(problems("# HELP x h\n# TYPE x counter\nx 1\n") == 1);                                // counter without _total
    CHECK(problems("# HELP x_total h\n# TYPE x_total counter\nx_total{a=\"b\\q\"} 1\n") == 1);  // bad escape
    CHECK(problems("# HELP x_total h\n# TYPE x_total counter\nx_total{a=\"b\"} 1\nx_total{a=\"b\"} 2\n") == 1);
    CHECK(problems("# HELP x_total h\n# TYPE x_total counter\nx_total one\n") == 1);
    CHECK(problems("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n") == 1);
    CHECK(problems("# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 3\n") == 1);
    CHECK(problems("# HELP g h\n# TYPE g gauge\ng 1\n# HELP g h\n# TYPE g gauge\n") == 1);
}

TEST_CASE("write_layer_metrics writes every layer of a stack, each family once", "[layers][prometheus]") {
    memory_store mem;
    // Two metered layers (outer and inner, told apart by name) around a breaker and a hedged layer.
    using inner_t = metered<memory_store&>;
    using stack_t = metered<breaker<hedged<inner_t>>>;
    breaker_options bo;
    bo.name = "s";
    hedge_options ho;
    ho.name = "s";
    stack_t s(breaker<hedged<inner_t>>(hedged<inner_t>(inner_t(mem, {"raw"}), ho), bo), {"proxy"});
    REQUIRE(s.put_chunk({}, key8, 8, as_bytes("12345678")));
    std::byte out[8];
    REQUIRE(get_chunk(s, {}, key8, 0, out));
    std::string text;
    write_layer_metrics(text, s);
    const auto p = layertest::parse_prometheus(text);
    for (const auto& problem : p.problems) FAIL_CHECK(problem);
    INFO(text.substr(0, 3000));
    CHECK(p.value("cachestore_operations_total", {{"store", "proxy"}, {"op", "get_chunk"}, {"outcome", "ok"}}) == 1.0);
    CHECK(p.value("cachestore_operations_total", {{"store", "raw"}, {"op", "get_chunk"}, {"outcome", "ok"}}) == 1.0);
    CHECK(p.value("cachestore_breaker_state", {{"store", "s"}, {"state", "closed"}}) == 1.0);
    CHECK(p.value("cachestore_hedge_calls_total", {{"store", "s"}, {"op", "get_chunk"}}) == 1.0);
    // A store without layers contributes nothing.
    std::string none;
    write_layer_metrics(none, mem);
    CHECK(none.empty());
}
