/* static_hello.c - a statically linked program: "kfm run" must refuse it. */
int main(void) {
  return 0;
}
