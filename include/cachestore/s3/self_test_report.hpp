// cachestore/s3/self_test_report.hpp - what the S3 self-test learned.
#pragma once

#include <chrono>

namespace cachestore::s3 {

/// What the last successful self_test() learned about the server.
struct self_test_report {
    bool ran = false;
    bool conditional_put_enforced = false; ///< If-None-Match: * answered 412 on an existing key
    bool aws_chunked_accepted = false;     ///< a signed aws-chunked PUT was stored decoded (probed only when needed)
    std::chrono::milliseconds clock_offset{0}; ///< server Date minus local clock (1 s resolution)
};

} // namespace cachestore::s3
