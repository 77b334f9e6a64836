#pragma once
// Turning whole sets of items (a split's images, a caption file) into encoded tensors once, in
// bounded batches, with the checks that name the offending file and item.
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "imram/data/npy.h"
#include "imram/data/vocabulary.h"
#include "imram/model/imram.h"

namespace imram {

// Captions longer than this many tokens are rejected: nothing real is that long, and a runaway
// line (a file without newlines) would otherwise blow up memory silently.
inline constexpr std::size_t kMaxCaptionTokens = 512;

using TokenIds = std::vector<std::vector<std::int64_t>>;

// Tokenize + encode every caption; `source` names the file for errors, whose line numbers count
// from `first_line` (captions that start further down their file: a shard's).
TokenIds encode_caption_texts(const Vocabulary& vocabulary, const std::vector<std::string>& captions,
                              const std::string& source, std::int64_t first_line = 1);
// Caption ids from .npy files: ids (M, L) int, lengths (M) int, checked against vocab_size.
TokenIds read_caption_ids(const std::string& ids_path, const std::string& lengths_path, std::int64_t vocab_size);

// The same checks on arrays in memory: ids (M, L) row-major, `num_lengths` lengths (must be M);
// the sources name the two arrays in errors.
TokenIds caption_ids_from_arrays(const std::int64_t* ids, std::int64_t M, std::int64_t L, const std::int64_t* lengths,
                                 std::int64_t num_lengths, std::int64_t vocab_size, const std::string& ids_source,
                                 const std::string& lengths_source);
struct CaptionTensors {
  torch::Tensor ids;      // (M, L) int64, zero-padded to the longest caption
  torch::Tensor lengths;  // (M) int64
};
CaptionTensors pad_captions(const TokenIds& captions, std::int64_t begin, std::int64_t count);

// Throws "<file>: image i holds NaN or infinite features" for the first bad image of a block.
void check_finite_features(const torch::Tensor& features, std::int64_t first_image, const std::string& source);

using Progress = std::function<void(std::int64_t done, std::int64_t total)>;

// Encodes the first `count` (< 0: all) images of a (N, R, D) float32 array (memory-mapped),
// `batch` images at a time.
EncodedImages encode_image_file(ImramModelImpl& model, const NpyArray& features, std::int64_t count = -1,
                                std::int64_t batch = 128, const Progress& progress = {});
// The same from a (N, R, D) float32 tensor already in memory; `source` names it in errors.
EncodedImages encode_image_tensor(ImramModelImpl& model, const torch::Tensor& features, const std::string& source,
                                  std::int64_t batch = 128, const Progress& progress = {});
EncodedCaptions encode_caption_ids(ImramModelImpl& model, const TokenIds& captions, std::int64_t batch = 512,
                                   const Progress& progress = {});

}  // namespace imram
