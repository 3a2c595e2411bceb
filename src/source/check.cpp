#include "stfs/source/check.hpp"

#include <cstdio>
#include <string>

#include "stfs/source/model.hpp"

namespace stfs {
namespace {

// "21 B", "1.50 KiB", "14.9 GiB": three significant figures, binary units.
std::string human_size(std::uint64_t n) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n) / 1024;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, kUnits[u]);
  return buf;
}

// What was validated: the format and its version.
std::string format_of(const Header& h) {
  if (h.format == Format::kGguf) return "GGUF v" + std::to_string(h.gguf_version);
  return "safetensors";
}

}  // namespace

int run_check(const std::vector<std::string>& files, std::FILE* out, const Limits& limits) {
  int status = 0;
  HeaderParser parser;  // one for every file: its buffers are reused
  for (const std::string& f : files) {
    auto m = Model::open(f, limits, &parser);
    if (m) {
      const Header& h = m->header();
      std::uint64_t data = 0;
      for (const TensorInfo& t : h.tensors) data += t.size();
      std::fprintf(out, "OK %s: %s, %zu tensors, %s (%s)\n", f.c_str(), format_of(h).c_str(),
                   h.tensors.size(), human_size(data).c_str(), dtype_summary(h).c_str());
    } else {
      const ModelError& e = m.error();
      std::string reason = e.message;
      if (e.rule) reason += " [" + std::string(rule_name(*e.rule)) + "]";
      std::fprintf(out, "INVALID %s: %s\n", f.c_str(), reason.c_str());
      status = 2;
    }
  }
  std::fflush(out);
  return status;
}

}  // namespace stfs
