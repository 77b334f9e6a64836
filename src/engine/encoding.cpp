#include "imram/engine/encoding.h"

#include <torch/torch.h>

#include "imram/data/tokenizer.h"
#include "imram/error.h"
#include "imram/model/tensor_io.h"
#include "imram/util/interruption.h"

namespace imram {

TokenIds encode_caption_texts(const Vocabulary& vocabulary, const std::vector<std::string>& captions,
                              const std::string& source, std::int64_t first_line) {
  TokenIds ids;
  ids.reserve(captions.size());
  for (std::size_t i = 0; i < captions.size(); ++i) {
    const auto tokens = tokenize(captions[i]);
    if (tokens.empty())
      throw Error(source + ":" + std::to_string(first_line + std::int64_t(i)) + ": caption has no tokens");
    if (tokens.size() > kMaxCaptionTokens)
      throw Error(source + ":" + std::to_string(first_line + std::int64_t(i)) + ": caption has " +
                  std::to_string(tokens.size()) + " tokens, more than the limit of " +
                  std::to_string(kMaxCaptionTokens));
    ids.push_back(vocabulary.encode_tokens(tokens));
  }
  return ids;
}

TokenIds read_caption_ids(const std::string& ids_path, const std::string& lengths_path, std::int64_t vocab_size) {
  const auto ids_array = NpyArray::open(ids_path);
  ids_array.require_ndim(2);
  const auto lengths_array = NpyArray::open(lengths_path);
  lengths_array.require_ndim(1);
  return caption_ids_from_arrays(to_int64(ids_array).data(), ids_array.dim(0), ids_array.dim(1),
                                 to_int64(lengths_array).data(), lengths_array.dim(0), vocab_size, ids_path,
                                 lengths_path);
}

TokenIds caption_ids_from_arrays(const std::int64_t* ids, std::int64_t M, std::int64_t L, const std::int64_t* lengths,
                                 std::int64_t num_lengths, std::int64_t vocab_size, const std::string& ids_source,
                                 const std::string& lengths_source) {
  if (num_lengths != M)
    throw Error(lengths_source + ": " + std::to_string(num_lengths) + " lengths for " + std::to_string(M) +
                " captions in " + ids_source);
  TokenIds captions(static_cast<std::size_t>(M));
  for (std::int64_t j = 0; j < M; ++j) {
    const auto length = lengths[j];
    if (length < 1 || length > L)
      throw Error(lengths_source + ": caption " + std::to_string(j) + " has length " + std::to_string(length) +
                  ", outside 1.." + std::to_string(L));
    for (std::int64_t t = 0; t < length; ++t) {
      const auto id = ids[j * L + t];
      if (id < 0 || id >= vocab_size)
        throw Error(ids_source + ": caption " + std::to_string(j) + " holds id " + std::to_string(id) +
                    ", outside the vocabulary of " + std::to_string(vocab_size));
      captions[std::size_t(j)].push_back(id);
    }
  }
  return captions;
}

CaptionTensors pad_captions(const TokenIds& captions, std::int64_t begin, std::int64_t count) {
  std::int64_t longest = 1;
  for (std::int64_t j = begin; j < begin + count; ++j)
    longest = std::max<std::int64_t>(longest, std::int64_t(captions[std::size_t(j)].size()));
  auto ids = torch::zeros({count, longest}, torch::kInt64);
  auto lengths = torch::empty({count}, torch::kInt64);
  auto ids_data = ids.accessor<std::int64_t, 2>();
  for (std::int64_t j = 0; j < count; ++j) {
    const auto& caption = captions[std::size_t(begin + j)];
    for (std::size_t t = 0; t < caption.size(); ++t) ids_data[j][std::int64_t(t)] = caption[t];
    lengths[j] = std::int64_t(caption.size());
  }
  return {ids, lengths};
}

void check_finite_features(const torch::Tensor& features, std::int64_t first_image, const std::string& source) {
  const auto finite = torch::isfinite(features).flatten(1).all(1);
  if (finite.all().item<bool>()) return;
  const auto bad = (~finite).nonzero()[0][0].item<std::int64_t>();
  throw Error(source + ": image " + std::to_string(first_image + bad) + " holds NaN or infinite features");
}

EncodedImages encode_image_file(ImramModelImpl& model, const NpyArray& features, std::int64_t count, std::int64_t batch,
                                const Progress& progress) {
  features.require_ndim(3);
  features.require_dtype(DType::Float32);
  const auto all = tensor_view(features);
  const auto N = count < 0 ? features.dim(0) : std::min(count, features.dim(0));
  return encode_image_tensor(model, all.narrow(0, 0, N), features.path(), batch, progress);
}

EncodedImages encode_image_tensor(ImramModelImpl& model, const torch::Tensor& features, const std::string& source,
                                  std::int64_t batch, const Progress& progress) {
  if (features.dim() != 3)
    throw Error(source + ": expected (images, regions, features), got " + std::to_string(features.dim()) +
                " dimensions");
  if (features.scalar_type() != torch::kFloat32) throw Error(source + ": expected float32 features");
  if (features.size(2) != model.config.img_dim)
    throw Error(source + ": regions have " + std::to_string(features.size(2)) +
                " features but the model expects img_dim " + std::to_string(model.config.img_dim));
  torch::NoGradGuard no_grad;
  const auto N = features.size(0);
  std::vector<torch::Tensor> blocks;
  for (std::int64_t i = 0; i < N; i += batch) {
    const auto n = std::min(batch, N - i);
    const auto block = features.narrow(0, i, n);
    check_finite_features(block, i, source);
    blocks.push_back(model.encode_images(block).regions);
    if (progress) progress(i + n, N);
    throw_if_interrupted();
  }
  EncodedImages encoded;
  encoded.regions = N ? torch::cat(blocks) : torch::empty({0, features.size(1), model.config.embed_size});
  return encoded;
}

EncodedCaptions encode_caption_ids(ImramModelImpl& model, const TokenIds& captions, std::int64_t batch,
                                   const Progress& progress) {
  torch::NoGradGuard no_grad;
  const auto M = std::int64_t(captions.size());
  std::int64_t longest = 1;
  for (const auto& caption : captions) longest = std::max<std::int64_t>(longest, caption.size());
  std::vector<torch::Tensor> blocks, lengths;
  for (std::int64_t j = 0; j < M; j += batch) {
    const auto n = std::min(batch, M - j);
    const auto padded = pad_captions(captions, j, n);
    auto words = model.encode_captions(padded.ids, padded.lengths).words;
    // Every block padded to the split's longest caption so that the blocks concatenate.
    words = torch::constant_pad_nd(words, {0, 0, 0, longest - words.size(1)});
    blocks.push_back(words);
    lengths.push_back(padded.lengths);
    if (progress) progress(j + n, M);
    throw_if_interrupted();
  }
  if (blocks.empty()) return {torch::empty({0, 1, model.config.embed_size}), torch::empty({0}, torch::kInt64)};
  return {torch::cat(blocks), torch::cat(lengths)};
}

}  // namespace imram
