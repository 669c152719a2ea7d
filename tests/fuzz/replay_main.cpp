// tests/fuzz/replay_main.cpp - a main() for the fuzz harnesses when they are
// built without libFuzzer (GCC, the normal and sanitizer builds): it feeds the
// empty input and then every file named on the command line, or found under a
// directory named there, to LLVMFuzzerTestOneInput. A violated invariant
// aborts, so a corpus file that regresses fails the meson test. Also the way
// to reproduce a crash found by scripts/fuzz.sh without clang:
//   build/tests/fuzz/fuzz_replay_<target> path/to/crash-file
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

int run_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
        return 1;
    }
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A heap copy of exactly the input's size, so that ASan sees reads past its end.
    std::vector<std::uint8_t> buf(bytes.begin(), bytes.end());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), buf.size());
    (void)LLVMFuzzerTestOneInput(buf.empty() ? nullptr : buf.data(), buf.size());
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    (void)LLVMFuzzerTestOneInput(nullptr, 0);
    std::size_t inputs = 1;
    int rc = 0;
    for (int i = 1; i < argc; ++i) {
        const std::filesystem::path arg(argv[i]);
        std::error_code ec;
        if (std::filesystem::is_directory(arg, ec)) {
            std::vector<std::filesystem::path> files;
            for (const auto& e : std::filesystem::recursive_directory_iterator(arg, ec))
                if (e.is_regular_file()) files.push_back(e.path());
            if (ec) {
                std::fprintf(stderr, "replay: cannot list %s: %s\n", argv[i], ec.message().c_str());
                rc = 1;
            }
            if (files.empty()) {
                std::fprintf(stderr, "replay: %s holds no input files\n", argv[i]);
                rc = 1;
            }
            std::sort(files.begin(), files.end());
            for (const auto& f : files) {
                rc |= run_file(f);
                ++inputs;
            }
        } else {
            rc |= run_file(arg);
            ++inputs;
        }
    }
    std::printf("replayed %zu inputs (the empty one included)%s\n", inputs, rc != 0 ? ", some unreadable" : "");
    return rc;
}
