#include "imram/model/text_encoder.h"

#include <torch/torch.h>

#include "imram/error.h"
#include "imram/model/image_encoder.h"

namespace imram {

namespace rnn_utils = torch::nn::utils::rnn;

TextEncoderImpl::TextEncoderImpl(const ModelConfig& config)
    : embed_size(config.embed_size), bidirectional(config.bi_gru), l2normalize(config.text_l2norm) {
  embed = register_module("embed", torch::nn::Embedding(config.vocab_size, config.word_dim));
  rnn = register_module("rnn", torch::nn::GRU(torch::nn::GRUOptions(config.word_dim, config.embed_size)
                                                  .num_layers(config.num_layers)
                                                  .batch_first(true)
                                                  .bidirectional(config.bi_gru)));
  torch::NoGradGuard no_grad;
  embed->weight.uniform_(-0.1, 0.1);
}

torch::Tensor TextEncoderImpl::forward(const torch::Tensor& ids, const torch::Tensor& lengths) {
  const auto total_length = ids.size(1);
  auto packed = rnn_utils::pack_padded_sequence(embed->forward(ids), lengths.to(torch::kCPU),
                                                /*batch_first=*/true, /*enforce_sorted=*/false);
  auto output = std::get<0>(rnn->forward_with_packed_input(packed));
  auto padded = std::get<0>(rnn_utils::pad_packed_sequence(output, /*batch_first=*/true,
                                                           /*padding_value=*/0.0, total_length));
  if (bidirectional)
    padded = (padded.narrow(2, 0, embed_size) + padded.narrow(2, embed_size, embed_size)) / 2;
  return l2normalize ? l2norm(padded, -1) : padded;
}

void check_caption_batch(const torch::Tensor& ids, const torch::Tensor& lengths,
                         std::int64_t vocab_size, const std::string& source) {
  if (ids.dim() != 2) throw Error(source + ": caption ids must be 2-dimensional (captions, length)");
  if (lengths.dim() != 1 || lengths.size(0) != ids.size(0))
    throw Error(source + ": " + std::to_string(lengths.numel()) + " lengths for " +
                std::to_string(ids.size(0)) + " captions");
  if (ids.numel() == 0) return;
  const auto min_id = ids.min().item<std::int64_t>(), max_id = ids.max().item<std::int64_t>();
  if (min_id < 0 || max_id >= vocab_size)
    throw Error(source + ": caption id " + std::to_string(min_id < 0 ? min_id : max_id) +
                " out of range for a vocabulary of " + std::to_string(vocab_size) + " words");
  const auto min_len = lengths.min().item<std::int64_t>(), max_len = lengths.max().item<std::int64_t>();
  if (min_len < 1 || max_len > ids.size(1))
    throw Error(source + ": caption length " + std::to_string(min_len < 1 ? min_len : max_len) +
                " outside 1.." + std::to_string(ids.size(1)));
}

}  // namespace imram
