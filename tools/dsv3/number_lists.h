// Numbers on the command line: "0,5,17" is one row, "0,5,17;1,1,4" a batch of rows (token ids,
// attention masks, positions, labels).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv3::cli {

// Token ids (0 .. INT32_MAX), one row; `flag` names the flag in errors.
std::vector<int32_t> parse_id_row(const std::string& text, const std::string& flag);
std::vector<int32_t> parse_id_list(const std::string& text);  // flag --ids
// Rows of integers (negative allowed, e.g. -100 labels), separated by ';'.
std::vector<std::vector<int64_t>> parse_int_rows(const std::string& text, const std::string& flag);
// The same as int32 (attention masks, labels with -100).
std::vector<std::vector<int32_t>> parse_int32_rows(const std::string& text,
                                                   const std::string& flag);
std::vector<std::vector<int32_t>> parse_id_rows(const std::string& text, const std::string& flag);
std::vector<std::vector<double>> parse_float_rows(const std::string& text, const std::string& flag);

}  // namespace dsv3::cli
