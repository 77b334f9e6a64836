// The body of POST /api/search through the server's own parsing and checks (any bytes: the
// server reads at most kMaxRequestBody of them).
#include <cstdint>
#include <string>

#include "imram/error.h"
#include "imram/serve/search_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  try {
    const auto request = imram::parse_search_request(body, 100, 512);
    // What the server then relies on.
    if (request.top < 1 || request.top > imram::kMaxTop) __builtin_trap();
    if (!request.by_text && (request.image < 0 || request.image >= 100)) __builtin_trap();
    const auto& params = request.params;
    if (params.nprobe < 0 || params.nprobe > imram::kMaxNprobe || params.ef_search < 0 ||
        params.ef_search > imram::kMaxEfSearch)
      __builtin_trap();
  } catch (const imram::HttpError& e) {
    if (e.status != 400 && e.status != 404) __builtin_trap();
  } catch (const imram::Error&) {  // the query's text, refused by the library (answered 400)
  }
  return 0;
}
