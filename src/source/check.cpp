#include "stfs/source/check.hpp"

#include "stfs/source/model.hpp"

namespace stfs {

int run_check(const std::vector<std::string>& files, std::FILE* out, const Limits& limits) {
  int status = 0;
  HeaderParser parser;  // one for every file: its buffers are reused
  for (const std::string& f : files) {
    auto m = Model::open(f, limits, &parser);
    if (m) {
      const Header& h = m->header();
      std::fprintf(out, "OK %s: %zu tensors (%s)\n", f.c_str(), h.tensors.size(),
                   dtype_summary(h).c_str());
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
