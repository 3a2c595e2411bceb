// Result<T, E>: the return type of every fallible call in the core.
//
// Shaped like C++23 std::expected (which GCC 12 lacks in C++20 mode) so a
// later switch is mechanical. Exceptions never cross a module boundary; errors
// travel as values and become errno or exit codes only at the edges.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace stfs {

// An errno value plus a message that says what failed and why.
struct Error {
  int errnum = 0;
  std::string message;
};

template <typename E>
struct Unexpected {
  E error;
};

template <typename E>
Unexpected<std::decay_t<E>> unexpected(E&& e) {
  return {std::forward<E>(e)};
}

template <typename T, typename E = Error>
class Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  template <typename G>
  Result(Unexpected<G> u)  // NOLINT
      : v_(std::in_place_index<1>, E(std::move(u.error))) {}

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const E& error() const& {
    assert(!has_value());
    return std::get<1>(v_);
  }
  E&& error() && {
    assert(!has_value());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, E> v_;
};

// Result<void>: success carries nothing.
template <typename E>
class Result<void, E> {
 public:
  Result() = default;
  template <typename G>
  Result(Unexpected<G> u)  // NOLINT
      : err_(E(std::move(u.error))), ok_(false) {}

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const E& error() const& {
    assert(!ok_);
    return err_;
  }

 private:
  E err_{};
  bool ok_ = true;
};

}  // namespace stfs
