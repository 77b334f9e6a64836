#pragma once
// The global embedding of an item, for the first stage of two-stage search (docs/index.md): one
// l2-normalised vector per image or caption, made from the item's encoded fragments (regions or
// words). Its cosine is cheap enough for an approximate nearest-neighbour index; the exact IMRAM
// score re-ranks what it finds. Two poolings (ModelConfig::global_pooling):
//  - mean: the masked mean of the fragments through one linear layer per modality (the first
//    head; models without a "global_pooling" key have it);
//  - gpo: each fragment through a linear layer plus a residual two-layer MLP, then per output
//    dimension a weighted sum of the fragments' values sorted in decreasing order, the weights
//    generated from the positions by a small bidirectional GRU (VSE-infinity's Generalized
//    Pooling Operator, docs/search.md). It learns anything between max and mean pooling, and
//    keeps what one fragment alone says (a red circle) that a mean dilutes.
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>

#include "imram/model/config.h"

namespace imram {

struct EncodedImages;
struct EncodedCaptions;

// Masked means of encoded fragments: (N, R, d) regions (region_mask (N, R) bool or undefined =
// all real) -> (N, d); (M, L, d) words with lengths (M) -> (M, d).
torch::Tensor pool_regions(const EncodedImages& images);
torch::Tensor pool_words(const EncodedCaptions& captions);

// One modality of the gpo pooling: fragments (N, n, d) with mask (N, n) bool (true = real) ->
// (N, dim), not normalised.
struct GeneralizedPoolingImpl : torch::nn::Module {
  GeneralizedPoolingImpl(std::int64_t embed_size, std::int64_t dim);
  torch::Tensor forward(const torch::Tensor& fragments, const torch::Tensor& mask);
  // The pooling weights of an item with `count` fragments: (count), summing to 1, for the
  // fragments' values in decreasing order.
  torch::Tensor position_weights(std::int64_t count);
  // Those of every count up to `longest`: (longest, longest), row c - 1 for c fragments, zero
  // beyond c.
  torch::Tensor weight_table(std::int64_t longest);

  torch::nn::Linear project{nullptr}, mlp_in{nullptr}, mlp_out{nullptr}, score{nullptr};
  torch::nn::GRU positions{nullptr};
};
TORCH_MODULE(GeneralizedPooling);

struct GlobalHeadImpl : torch::nn::Module {
  GlobalHeadImpl(std::int64_t embed_size, std::int64_t dim, GlobalPooling pooling = GlobalPooling::Mean);

  // l2-normalised (N, dim) per item.
  torch::Tensor embed_images(const EncodedImages& images);
  torch::Tensor embed_captions(const EncodedCaptions& captions);

  GlobalPooling pooling;
  torch::nn::Linear image{nullptr}, text{nullptr};                   // mean
  GeneralizedPooling image_pooling{nullptr}, text_pooling{nullptr};  // gpo
};
TORCH_MODULE(GlobalHead);

}  // namespace imram
