#include "args.h"

#include <charconv>

#include "util/error.h"

namespace dsv3::cli {

Args::Args(const std::vector<std::string>& argv, const std::set<std::string>& value_flags,
           const std::set<std::string>& switch_flags,
           const std::map<std::string, std::string>& aliases) {
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-' || arg == "--") {
      positional_.push_back(arg);
      continue;
    }
    std::string inline_value;
    bool has_inline_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline_value = true;
    }
    if (auto alias = aliases.find(arg); alias != aliases.end()) arg = alias->second;
    if (value_flags.count(arg)) {
      if (has_inline_value) {
        values_[arg] = inline_value;
      } else {
        if (i + 1 >= argv.size()) throw Error("flag " + arg + " needs a value");
        values_[arg] = argv[++i];
      }
      all_values_[arg].push_back(values_[arg]);
    } else if (switch_flags.count(arg)) {
      if (has_inline_value) throw Error("flag " + arg + " takes no value");
      switches_.insert(arg);
    } else {
      throw Error("unknown flag " + argv[i]);
    }
  }
}

bool Args::has(const std::string& flag) const {
  return values_.count(flag) || switches_.count(flag);
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

std::string Args::require(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) throw Error("missing required flag " + flag);
  return it->second;
}

std::vector<std::string> Args::get_all(const std::string& flag) const {
  auto it = all_values_.find(flag);
  return it == all_values_.end() ? std::vector<std::string>{} : it->second;
}

long long Args::get_int(const std::string& flag, long long fallback) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return fallback;
  long long value = 0;
  const std::string& text = it->second;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    throw Error("flag " + flag + ": \"" + text + "\" is not an integer");
  return value;
}

double Args::get_double(const std::string& flag, double fallback) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return fallback;
  try {
    size_t used = 0;
    double value = std::stod(it->second, &used);
    if (used != it->second.size()) throw Error("");
    return value;
  } catch (...) {
    throw Error("flag " + flag + ": \"" + it->second + "\" is not a number");
  }
}

}  // namespace dsv3::cli
