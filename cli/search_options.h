#pragma once
// The FAISS shortlist's per-call knobs as options, for the commands that search an index.
#include <CLI/CLI.hpp>

#include <string>

#include "imram/search/faiss_shortlist.h"
#include "imram/search/search_params.h"

namespace imram::cli {

inline void add_search_params_options(CLI::App* sub, ::imram::SearchParams& params) {
  sub->add_option("--nprobe", params.nprobe,
                  "inverted-file lists the shortlist visits (IVF indexes; default " +
                      std::to_string(::imram::FaissShortlist::kDefaultNprobe) +
                      ", or the lists that hold about twice the items asked for)")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--ef-search", params.ef_search,
                  "candidate list of the shortlist's graph search (HNSW indexes; default " +
                      std::to_string(::imram::FaissShortlist::kDefaultEfSearch) + ")")
      ->check(CLI::Range(1, 1 << 20));
}

}  // namespace imram::cli
