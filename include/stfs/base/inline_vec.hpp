// InlineVec: a vector whose first N elements live inside it. The read path
// builds a few small lists per READ (its parts, its pieces); kept inline,
// a READ of one tensor file allocates nothing.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

namespace stfs {

template <typename T, std::size_t N>
class InlineVec {
 public:
  void push_back(const T& v) {
    if (size_ < N) {
      inline_[size_++] = v;
      return;
    }
    if (size_ == N) spill_.assign(inline_.begin(), inline_.end());
    spill_.push_back(v);
    ++size_;
  }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* data() { return size_ <= N ? inline_.data() : spill_.data(); }
  const T* data() const { return size_ <= N ? inline_.data() : spill_.data(); }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }
  T& operator[](std::size_t i) { return data()[i]; }
  const T& operator[](std::size_t i) const { return data()[i]; }
  std::span<const T> span() const { return {data(), size_}; }

 private:
  std::array<T, N> inline_{};
  std::vector<T> spill_;
  std::size_t size_ = 0;
};

}  // namespace stfs
