// Scratch buffers of the forward pass that keep their largest size. std::vector::resize
// value-initialises what it adds, so a buffer resized down by a short pass (a decode step, the
// last layer's kept rows) and up again by the next prompt was zeroed again in full: 31 MB per
// MoE layer of a 512-token prefill of the bench model, about 1 ms a prefill.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv3 {

// Grows `buffer` to at least `size` elements (never shrinks it); the first `size` are the
// caller's to overwrite.
template <class T>
T* grow_scratch(std::vector<T>& buffer, int64_t size) {
  if (int64_t(buffer.size()) < size) buffer.resize(size_t(size));
  return buffer.data();
}

}  // namespace dsv3
