#include "tiny_test.h"
static const tt_test_t TESTS[] = {{0,0}};
int main(int argc, char **argv) { return tt_main(argc, argv, TESTS, 0); }
