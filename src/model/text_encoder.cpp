#include "imram/model/text_encoder.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "imram/error.h"
#include "imram/model/image_encoder.h"
#include "imram/util/blas.h"

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

// LibTorch's GRU equations for one float32 sequence (T, input) -> (T, d x directions), every
// layer, step by step: one BLAS matrix-vector product and one loop over the gates per step.
// LibTorch's own loop makes each step of a single sequence a one-row GEMM that repacked the
// recurrent weights every time (3.5 times longer at d = 1024), and a step written with LibTorch
// ops (a dozen ops on d-long vectors) spent most of its time dispatching them: one 14-word
// query at d = 256 took 2.4 ms to encode, 1.5 ms now (docs/search.md#latency-of-the-default-store).
torch::Tensor one_sequence_gru(const torch::nn::GRUImpl& rnn, torch::Tensor input) {
  const auto& options = rnn.options;
  const auto d = options.hidden_size();
  const auto T = input.size(0);
  const auto parameters = rnn.named_parameters(/*recurse=*/false);
  const auto parameter = [&](const std::string& name) {
    const auto* found = parameters.find(name);
    return found ? found->contiguous() : torch::Tensor();
  };
  const int rows = int(3 * d), columns = int(d), one_step = 1;
  const float one = 1.0f;
  std::vector<float> hidden(static_cast<std::size_t>(d)), recurrent(static_cast<std::size_t>(3 * d));
  for (std::int64_t layer = 0; layer < options.num_layers(); ++layer) {
    std::vector<torch::Tensor> directions;
    for (int direction = 0; direction < (options.bidirectional() ? 2 : 1); ++direction) {
      const auto suffix = "_l" + std::to_string(layer) + (direction ? "_reverse" : "");
      const auto w_ih = parameter("weight_ih" + suffix), w_hh = parameter("weight_hh" + suffix);
      auto b_ih = parameter("bias_ih" + suffix), b_hh = parameter("bias_hh" + suffix);
      if (!b_ih.defined()) b_ih = torch::zeros({3 * d}, input.options());
      if (!b_hh.defined()) b_hh = torch::zeros({3 * d}, input.options());
      const auto input_gates = torch::addmm(b_ih, input, w_ih.t()).contiguous();  // (T, 3d): r, z, n
      auto output = torch::empty({T, d}, input.options());
      const float* weights = w_hh.data_ptr<float>();
      const float* bias = b_hh.data_ptr<float>();
      std::fill(hidden.begin(), hidden.end(), 0.0f);
      for (std::int64_t step = 0; step < T; ++step) {
        const auto t = direction ? T - 1 - step : step;
        // recurrent = W_hh hidden + b_hh; W_hh (3d x d) row-major is BLAS's column-major (d x 3d).
        std::copy(bias, bias + 3 * d, recurrent.begin());
        sgemv_("T", &columns, &rows, &one, weights, &columns, hidden.data(), &one_step, &one, recurrent.data(),
               &one_step);
        const float* x = input_gates.data_ptr<float>() + t * 3 * d;
        const float* h = recurrent.data();
        float* out = output.data_ptr<float>() + t * d;
        for (std::int64_t i = 0; i < d; ++i) {
          const float r = 1.0f / (1.0f + std::exp(-(x[i] + h[i])));
          const float z = 1.0f / (1.0f + std::exp(-(x[d + i] + h[d + i])));
          const float n = std::tanh(x[2 * d + i] + r * h[2 * d + i]);
          hidden[std::size_t(i)] = (1.0f - z) * n + z * hidden[std::size_t(i)];
          out[i] = hidden[std::size_t(i)];
        }
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
  if (ids.size(0) == 1 && !torch::GradMode::is_enabled() && embedded.device().is_cpu() &&
      embedded.scalar_type() == torch::kFloat32) {
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
  if (bidirectional) padded = (padded.narrow(2, 0, embed_size) + padded.narrow(2, embed_size, embed_size)) / 2;
  return l2normalize ? l2norm(padded, -1) : padded;
}

void check_caption_batch(const torch::Tensor& ids, const torch::Tensor& lengths, std::int64_t vocab_size,
                         const std::string& source) {
  if (ids.dim() != 2) throw Error(source + ": caption ids must be 2-dimensional (captions, length)");
  if (lengths.dim() != 1 || lengths.size(0) != ids.size(0))
    throw Error(source + ": " + std::to_string(lengths.numel()) + " lengths for " + std::to_string(ids.size(0)) +
                " captions");
  if (ids.numel() == 0) return;
  const auto min_id = ids.min().item<std::int64_t>(), max_id = ids.max().item<std::int64_t>();
  if (min_id < 0 || max_id >= vocab_size)
    throw Error(source + ": caption id " + std::to_string(min_id < 0 ? min_id : max_id) +
                " out of range for a vocabulary of " + std::to_string(vocab_size) + " words");
  const auto min_len = lengths.min().item<std::int64_t>(), max_len = lengths.max().item<std::int64_t>();
  if (min_len < 1 || max_len > ids.size(1))
    throw Error(source + ": caption length " + std::to_string(min_len < 1 ? min_len : max_len) + " outside 1.." +
                std::to_string(ids.size(1)));
}

}  // namespace imram
