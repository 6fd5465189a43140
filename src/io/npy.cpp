#include "io/npy.h"

#include <cstdio>
#include <memory>

#include "util/error.h"

namespace dsv3 {

void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string shape_text = "(";
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    shape_text += std::to_string(shape[i]);
    shape_text += (shape.size() == 1 || i + 1 < shape.size()) ? "," : "";
    if (i + 1 < shape.size()) shape_text += " ";
    count *= shape[i];
  }
  shape_text += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_text + ", }";
  // magic (6) + version (2) + header length (2) + header, padded to 64 bytes, ending in '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';

  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), std::fclose);
  if (!file) throw Error(path + ": cannot open for writing");
  const unsigned char preamble[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const uint16_t header_length = uint16_t(header.size());
  const unsigned char length_bytes[2] = {uint8_t(header_length & 0xff), uint8_t(header_length >> 8)};
  bool ok = std::fwrite(preamble, 1, 8, file.get()) == 8 &&
            std::fwrite(length_bytes, 1, 2, file.get()) == 2 &&
            std::fwrite(header.data(), 1, header.size(), file.get()) == header.size() &&
            std::fwrite(data, sizeof(float), size_t(count), file.get()) == size_t(count);
  if (!ok || std::fflush(file.get()) != 0) throw Error(path + ": write failed");
}

}  // namespace dsv3
