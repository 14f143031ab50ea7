// What shim.cpp and nccl.cpp share: the handle types and the exception guard.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <cstdlib>
#include <cstring>
#include <string>

#include "shim.h"

struct cpl_store {
  c10::intrusive_ptr<c10d::Store> store;
};

struct cpl_group {
  c10::intrusive_ptr<c10d::Backend> backend;
};

struct cpl_work {
  c10::intrusive_ptr<c10d::Work> work;
};

// A malloc'd copy of `message`, for the Rust side to read and cpl_free.
inline char* cpl_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body`, turning every exception into an error message (NULL when it succeeded).
// c10's errors are reported without their C++ backtrace.
template <typename F>
char* cpl_guard(F&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return cpl_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return cpl_message(e.what());
  } catch (...) {
    return cpl_message("unknown C++ exception");
  }
}
