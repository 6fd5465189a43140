// The array type of the library API: float32 values in row-major order with their shape, e.g.
// logits [batch][sequence][vocab_size]. Plain data; at() views a row.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "util/error.h"

namespace dsv3::api {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  Tensor() = default;
  // Zeros of `shape`, or `values` (which must hold exactly the shape's element count).
  explicit Tensor(std::vector<int64_t> shape_, std::vector<float> values = {})
      : shape(std::move(shape_)), data(std::move(values)) {
    if (data.empty()) data.assign(size_t(numel()), 0.0f);
    if (int64_t(data.size()) != numel())
      throw Error("tensor: " + std::to_string(data.size()) + " values for " +
                  std::to_string(numel()) + " elements");
  }

  bool empty() const { return data.empty(); }
  int64_t numel() const {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    return count;
  }
  int64_t size(size_t dim) const {
    if (dim >= shape.size())
      throw Error("tensor: dimension " + std::to_string(dim) + " of a " +
                  std::to_string(shape.size()) + "-dimensional tensor");
    return shape[dim];
  }

  // The sub-array at the leading `index` (e.g. at({b, t}) is the row of logits of token t of
  // sequence b); throws on an index outside the shape.
  const float* at(std::initializer_list<int64_t> index) const {
    return data.data() + offset(index);
  }
  float* at(std::initializer_list<int64_t> index) { return data.data() + offset(index); }

 private:
  int64_t offset(std::initializer_list<int64_t> index) const {
    if (index.size() > shape.size()) throw Error("tensor: too many indices");
    int64_t offset = 0, dim = 0;
    for (int64_t i : index) {
      if (i < 0 || i >= shape[dim])
        throw Error("tensor: index " + std::to_string(i) + " outside dimension " +
                    std::to_string(dim) + " of size " + std::to_string(shape[dim]));
      offset = offset * shape[dim++] + i;
    }
    for (; dim < int64_t(shape.size()); ++dim) offset *= shape[dim];
    return offset;
  }
};

}  // namespace dsv3::api
