// vp/vp.h is the whole public core API: it compiles on its own, and it includes
// every header that native/include/vp/ holds (read from the source tree, so a
// header added later without an entry here fails this test).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "vp/vp.h"

#ifndef VP_SOURCE_DIR
#error "VP_SOURCE_DIR must name the source tree"
#endif

TEST_CASE("vp/vp.h includes every public header of the core") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(VP_SOURCE_DIR) / "native" / "include" / "vp";
  std::ifstream in(dir / "vp.h");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::set<std::string> missing;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == "vp.h" || e.path().extension() != ".h") continue;
    if (text.find("#include \"vp/" + name + "\"") == std::string::npos) missing.insert(name);
  }
  CHECK_MESSAGE(missing.empty(), "vp.h misses: " << [&] { std::string s; for (auto& m : missing) s += m + " "; return s; }());
  // One symbol of each family is reachable through the umbrella alone.
  CHECK(vp::isa_name(vp::active_isa()) != nullptr);
}
