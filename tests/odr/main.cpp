#include <cstdio>
#include <string>

std::string odr_a();
std::string odr_b();

int main() {
    const std::string a = odr_a(), b = odr_b();
    std::printf("%s\n%s\n", a.c_str(), b.c_str());
    return a == b && a.find("failed") == std::string::npos ? 0 : 1;
}
