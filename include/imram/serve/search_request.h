#pragma once
// The body of POST /api/search, parsed and checked as the server does (and as fuzz/ drives it):
// LibTorch-free, so that the fuzz targets can link it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "imram/search/search_params.h"

namespace imram {

inline constexpr std::size_t kMaxRequestBody = 64 << 10;  // bytes; larger bodies get 413
inline constexpr std::int64_t kMaxTop = 1000;             // most results one search returns
// A client's nprobe and ef_search are bounded tighter than the command line's (2^20): each
// costs the compute thread that every client shares, linearly.
inline constexpr int kMaxNprobe = 65536;
inline constexpr int kMaxEfSearch = 4096;

// A request the server refuses, with its status.
struct HttpError {
  int status;
  std::string message;
};

struct SearchRequest {
  bool by_text = true;
  std::string text;         // by text
  std::int64_t image = -1;  // by image
  std::int64_t top = 10;
  SearchParams params;  // "nprobe", "ef_search": 0 when not given (the index's default)
};

// {"text": "...", "top"?: N} or {"image": I, "top"?: N}, either with "nprobe"?: P and
// "ef_search"?: E (1..kMaxNprobe, 1..kMaxEfSearch); throws HttpError (400, or 404 for an
// image out of the gallery's `images`), or imram::Error for a text the library refuses as a
// query (data/tokenizer.h: query_tokens, answered 400). `max_tokens`: the longest query the
// model reads.
SearchRequest parse_search_request(const std::string& body, std::int64_t images, std::size_t max_tokens);

}  // namespace imram
