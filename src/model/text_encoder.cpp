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

namespace {

// LibTorch's GRU equations for one sequence (T, input) -> (T, d x directions), every layer,
// step by step with matrix-vector products. LibTorch's own loop makes each step of a single
// sequence a one-row GEMM that repacks the recurrent weights every time: at d = 1024 one query's
// encoding took 3.5 times longer (bench search's encode_ms).
torch::Tensor one_sequence_gru(const torch::nn::GRUImpl& rnn, torch::Tensor input) {
  const auto& options = rnn.options;
  const auto d = options.hidden_size();
  const auto T = input.size(0);
  const auto parameters = rnn.named_parameters(/*recurse=*/false);
  const auto parameter = [&](const std::string& name) {
    const auto* found = parameters.find(name);
    return found ? *found : torch::Tensor();
  };
  for (std::int64_t layer = 0; layer < options.num_layers(); ++layer) {
    std::vector<torch::Tensor> directions;
    for (int direction = 0; direction < (options.bidirectional() ? 2 : 1); ++direction) {
      const auto suffix = "_l" + std::to_string(layer) + (direction ? "_reverse" : "");
      const auto w_ih = parameter("weight_ih" + suffix), w_hh = parameter("weight_hh" + suffix);
      auto b_ih = parameter("bias_ih" + suffix), b_hh = parameter("bias_hh" + suffix);
      if (!b_ih.defined()) b_ih = torch::zeros({3 * d}, input.options());
      if (!b_hh.defined()) b_hh = torch::zeros({3 * d}, input.options());
      const auto input_gates = torch::addmm(b_ih, input, w_ih.t());  // (T, 3d): r, z, n
      auto hidden = torch::zeros({d}, input.options());
      auto output = torch::empty({T, d}, input.options());
      for (std::int64_t step = 0; step < T; ++step) {
        const auto t = direction ? T - 1 - step : step;
        const auto x = input_gates[t], h = torch::addmv(b_hh, w_hh, hidden);
        const auto r = torch::sigmoid(x.narrow(0, 0, d) + h.narrow(0, 0, d));
        const auto z = torch::sigmoid(x.narrow(0, d, d) + h.narrow(0, d, d));
        const auto n = torch::tanh(x.narrow(0, 2 * d, d) + r * h.narrow(0, 2 * d, d));
        hidden = (1 - z) * n + z * hidden;
        output[t].copy_(hidden);
      }
      directions.push_back(output);
    }
    input = torch::cat(directions, 1);
  }
  return input;
}

}  // namespace

torch::Tensor TextEncoderImpl::forward(const torch::Tensor& ids, const torch::Tensor& lengths) {
  const auto total_length = ids.size(1);
  const auto embedded = embed->forward(ids);
  torch::Tensor padded;
  if (ids.size(0) == 1 && !torch::GradMode::is_enabled() && embedded.device().is_cpu()) {
    // One caption (a search query): the recurrence as matrix-vector products.
    const auto length = lengths.to(torch::kCPU)[0].item<std::int64_t>();
    const auto output = one_sequence_gru(*rnn, embedded[0].narrow(0, 0, length));
    padded = torch::zeros({1, total_length, output.size(1)}, output.options());
    padded[0].narrow(0, 0, length).copy_(output);
  } else {
    auto packed = rnn_utils::pack_padded_sequence(embedded, lengths.to(torch::kCPU),
                                                  /*batch_first=*/true, /*enforce_sorted=*/false);
    auto output = std::get<0>(rnn->forward_with_packed_input(packed));
    padded = std::get<0>(rnn_utils::pad_packed_sequence(output, /*batch_first=*/true,
                                                        /*padding_value=*/0.0, total_length));
  }
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
