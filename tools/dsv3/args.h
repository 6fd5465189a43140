// A small flag parser shared by the dsv3 commands: `--name value`, `--name=value`, `--flag`,
// `-m value`, and positional arguments. Unknown or malformed flags are errors.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace dsv3::cli {

class Args {
 public:
  // `value_flags` take a value, `switch_flags` do not; both spelled with leading dashes,
  // e.g. {"-m", "--model"} (aliases are mapped through `aliases`: {"-m", "--model"}).
  Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
       const std::set<std::string>& switch_flags,
       const std::map<std::string, std::string>& aliases = {});

  bool has(const std::string& flag) const;
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  std::string require(const std::string& flag) const;  // throws when absent
  // Every value given to a repeatable flag, in order (get() returns the last).
  std::vector<std::string> get_all(const std::string& flag) const;
  long long get_int(const std::string& flag, long long fallback) const;
  double get_double(const std::string& flag, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> all_values_;
  std::set<std::string> switches_;
  std::vector<std::string> positional_;
};

}  // namespace dsv3::cli
