// sigv4_cli - signs requests read as JSON lines from stdin and prints one
// Authorization header value per line. Used by sigv4_crosscheck.py to compare
// cachestore's SigV4 signer with botocore's.
//
// Input, one object per line:
//   {"method": "PUT", "path": "/raw key/unencoded", "query": [["k", "v"], ...],
//    "headers": [["Host", "h"], ...], "payload_hash": "...",
//    "amz_date": "YYYYMMDDTHHMMSSZ", "region": "us-east-1",
//    "access_key": "...", "secret_key": "...", "session_token": "..." (optional)}
// The path is raw: this program encodes it with uri_encode(path, false), as
// the S3 driver does. A session token is added as an x-amz-security-token
// header when the request does not already carry one (botocore does the same).
// On malformed input it prints "error: <what>" to stderr and exits 2.
#include "cachestore/s3/sigv4.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sigv4 = cachestore::s3::sigv4;

namespace {

std::vector<std::pair<std::string, std::string>> read_pairs(const nlohmann::json& j, const char* key) {
    std::vector<std::pair<std::string, std::string>> out;
    if (!j.contains(key)) return out;
    for (const auto& p : j.at(key)) {
        if (!p.is_array() || p.size() != 2) throw std::runtime_error(std::string(key) + ": want [name, value] pairs");
        out.emplace_back(p.at(0).get<std::string>(), p.at(1).get<std::string>());
    }
    return out;
}

bool has_header(const std::vector<std::pair<std::string, std::string>>& headers, std::string_view lower_name) {
    for (const auto& [n, v] : headers) {
        if (n.size() != lower_name.size()) continue;
        bool eq = true;
        for (std::size_t i = 0; i < n.size() && eq; ++i) {
            char c = n[i];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            eq = c == lower_name[i];
        }
        if (eq) return true;
    }
    return false;
}

} // namespace

int main() {
    std::ios::sync_with_stdio(false);
    // One signer per region, kept for the whole run, so that the signing-key
    // cache is exercised across requests (including a changed secret under
    // the same access key id).
    std::map<std::string, sigv4::signer> signers;
    std::string line;
    std::size_t lineno = 0;
    try {
        while (std::getline(std::cin, line)) {
            ++lineno;
            if (line.empty()) continue;
            const auto j = nlohmann::json::parse(line);

            cachestore::s3::credentials creds{j.at("access_key").get<std::string>(),
                                              j.at("secret_key").get<std::string>(),
                                              j.value("session_token", std::string())};
            auto query = read_pairs(j, "query");
            auto headers = read_pairs(j, "headers");
            if (!creds.session_token.empty() && !has_header(headers, "x-amz-security-token"))
                headers.emplace_back("X-Amz-Security-Token", creds.session_token);

            const std::string method = j.at("method").get<std::string>();
            const std::string uri = sigv4::uri_encode(j.at("path").get<std::string>(), false);
            const std::string payload_hash = j.at("payload_hash").get<std::string>();
            const std::string amz_date = j.at("amz_date").get<std::string>();
            const std::string region = j.at("region").get<std::string>();

            auto it = signers.find(region);
            if (it == signers.end()) it = signers.emplace(region, sigv4::signer(region)).first;

            sigv4::request req{method, uri, query, headers, payload_hash};
            const auto result = it->second.sign(creds, req, amz_date);
            std::cout << result.authorization << '\n';
        }
    } catch (const nlohmann::json::exception& e) {
        // Its message may quote the input line, which holds a secret key.
        std::cout.flush();
        std::cerr << "error: line " << lineno << ": malformed request (json error " << e.id << ")\n";
        return 2;
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << "error: line " << lineno << ": " << e.what() << '\n';
        return 2;
    }
    std::cout.flush();
    return std::cout ? 0 : 1;
}
