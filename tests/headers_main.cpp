// Links the per-header translation units; compiling them is the test.
int main() { return 0; }
