// Declarations only: see ../README.md.
#pragma once

#include <chrono>

namespace gloo {
// c10d's header calls `setTimeout` in an inline virtual member whose code is emitted by
// libtorch (the shim never calls it), so a declaration is all the parser needs.
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};
} // namespace gloo
