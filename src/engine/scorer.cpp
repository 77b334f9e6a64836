#include "imram/engine/scorer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "imram/model/attention.h"

namespace imram {

namespace {

// Raw scores of every (query item a, context item b) pair: (A, B, n_q, n_c).
torch::Tensor pair_scores_per_item_query(const torch::Tensor& query, const torch::Tensor& context) {
  const auto A = query.size(0), nq = query.size(1), d = query.size(2);
  const auto B = context.size(0), nc = context.size(1);
  return torch::mm(query.reshape({A * nq, d}), context.reshape({B * nc, d}).t())
      .view({A, nq, B, nc})
      .permute({0, 2, 1, 3});
}

// The same when the query already differs per pair: (A, B, n_q, d) against (B, n_c, d).
torch::Tensor pair_scores_per_pair_query(const torch::Tensor& query, const torch::Tensor& context) {
  const auto A = query.size(0), B = query.size(1), nq = query.size(2), d = query.size(3);
  return torch::bmm(query.permute({1, 0, 2, 3}).reshape({B, A * nq, d}), context.transpose(1, 2))
      .view({B, A, nq, context.size(1)})
      .permute({1, 0, 2, 3});
}

// sum_c alpha_abqc C_bc: (A, B, n_q, n_c) x (B, n_c, d) -> (A, B, n_q, d).
torch::Tensor attend(const torch::Tensor& alpha, const torch::Tensor& context) {
  const auto A = alpha.size(0), B = alpha.size(1), nq = alpha.size(2), nc = alpha.size(3);
  return torch::bmm(alpha.permute({1, 0, 2, 3}).reshape({B, A * nq, nc}), context)
      .view({B, A, nq, context.size(2)})
      .permute({1, 0, 2, 3});
}

}  // namespace

torch::Tensor iterative_matching(const torch::Tensor& query, const torch::Tensor& query_mask,
                                 const torch::Tensor& context, const torch::Tensor& context_padding,
                                 const MemoryDistillation& memory, const ModelConfig& config) {
  const auto A = query.size(0), nq = query.size(1);
  const auto B = context.size(0), nc = context.size(1);
  const auto mask = query_mask.view({A, 1, nq, 1});
  const auto padding = context_padding.defined() ? context_padding.view({1, B, 1, nc}) : torch::Tensor();
  const auto valid_queries = query_mask.sum(1).view({A, 1});
  const auto original = query.unsqueeze(1);  // q^0, (A, 1, n_q, d)
  torch::Tensor current = original;          // q^{k-1}: per item at k = 1, per pair afterwards
  std::vector<torch::Tensor> steps;
  for (int k = 1; k <= config.iteration_steps; ++k) {
    const auto raw = k == 1 ? pair_scores_per_item_query(query, context)
                            : pair_scores_per_pair_query(current, context);
    const auto alpha = attention_weights(normalize_raw_scores(raw, config.raw_feature_norm, mask),
                                         config.lambda_softmax, padding);
    const auto attended = attend(alpha, context);
    // F_k compares the attended context with the ORIGINAL query, averaged over real fragments.
    const auto cosines = imram::cosine_similarity(original, attended) * query_mask.unsqueeze(1);
    steps.push_back(cosines.sum(-1) / valid_queries);
    if (k < config.iteration_steps) {
      current = memory.forward(current, attended);
      if (config.imram_norm) current = l2norm(current, -1);
    }
  }
  return torch::stack(steps);
}

std::size_t bytes_per_pair(const ModelConfig& config, std::int64_t regions, std::int64_t words) {
  // Per direction: a handful of (n_q x n_c) score tensors and of (n_q x d) attended/query/gate
  // tensors are alive at once.
  const auto d = config.embed_size;
  std::size_t floats = 0;
  if (config.uses_text_direction()) floats = std::max<std::size_t>(floats, 4 * words * regions + 6 * words * d);
  if (config.uses_image_direction()) floats = std::max<std::size_t>(floats, 4 * words * regions + 6 * regions * d);
  return floats * sizeof(float);
}

PairScores score_pairs(const ImramModelImpl& model, const EncodedImages& images,
                       const EncodedCaptions& captions, const ScoreOptions& options) {
  const auto& config = model.config;
  const auto N = images.regions.size(0), R = images.regions.size(1);
  const auto M = captions.words.size(0);
  const auto device = images.regions.device();
  const auto lengths = captions.lengths.to(torch::kCPU, torch::kInt64);
  const auto max_len = M ? lengths.max().item<std::int64_t>() : 0;

  std::int64_t image_block = options.image_block, caption_block = options.caption_block;
  if (image_block <= 0 || caption_block <= 0) {
    const auto pairs = std::max<std::int64_t>(
        1, std::int64_t(options.memory_budget / std::max<std::size_t>(1, bytes_per_pair(config, R, max_len))));
    if (image_block <= 0 && caption_block <= 0) {
      image_block = std::max<std::int64_t>(1, std::int64_t(std::sqrt(double(pairs))));
      caption_block = std::max<std::int64_t>(1, pairs / image_block);
    } else if (image_block <= 0) {
      image_block = std::max<std::int64_t>(1, pairs / caption_block);
    } else {
      caption_block = std::max<std::int64_t>(1, pairs / image_block);
    }
  }
  image_block = std::min(image_block, std::max<std::int64_t>(N, 1));
  caption_block = std::min(caption_block, std::max<std::int64_t>(M, 1));

  const auto float_options = images.regions.options();
  const auto word_positions = torch::arange(captions.words.size(1), torch::kInt64).unsqueeze(0);
  const auto word_mask_all = (word_positions < lengths.unsqueeze(1)).to(device);
  const bool keep_steps = options.keep_steps;

  std::vector<torch::Tensor> row_blocks, t2i_rows, i2t_rows;
  std::int64_t done = 0;
  for (std::int64_t i0 = 0; i0 < N; i0 += image_block) {
    const auto ni = std::min(image_block, N - i0);
    const auto regions = images.regions.narrow(0, i0, ni);
    const auto region_mask = images.region_mask.defined() ? images.region_mask.narrow(0, i0, ni)
                                                          : torch::ones({ni, R}, float_options.dtype(torch::kBool));
    std::vector<torch::Tensor> cols, t2i_cols, i2t_cols;
    for (std::int64_t j0 = 0; j0 < M; j0 += caption_block) {
      const auto nc = std::min(caption_block, M - j0);
      // Only as many word positions as the longest caption of the block.
      const auto block_len = lengths.narrow(0, j0, nc).max().item<std::int64_t>();
      const auto words = captions.words.narrow(0, j0, nc).narrow(1, 0, block_len);
      const auto word_mask = word_mask_all.narrow(0, j0, nc).narrow(1, 0, block_len);
      torch::Tensor total = torch::zeros({ni, nc}, float_options);
      if (config.uses_text_direction()) {
        const auto steps = iterative_matching(words, word_mask.to(float_options.dtype()), regions,
                                              images.region_mask.defined() ? region_mask.logical_not() : torch::Tensor(),
                                              model.text_memory(), config)
                               .transpose(1, 2);
        total = total + steps.sum(0);
        if (keep_steps) t2i_cols.push_back(steps);
      }
      if (config.uses_image_direction()) {
        const auto steps = iterative_matching(regions, region_mask.to(float_options.dtype()), words,
                                              word_mask.logical_not(), model.image_memory(), config);
        total = total + steps.sum(0);
        if (keep_steps) i2t_cols.push_back(steps);
      }
      cols.push_back(total);
      done += ni * nc;
      if (options.progress) options.progress(done, N * M);
    }
    row_blocks.push_back(torch::cat(cols, 1));
    if (!t2i_cols.empty()) t2i_rows.push_back(torch::cat(t2i_cols, 2));
    if (!i2t_cols.empty()) i2t_rows.push_back(torch::cat(i2t_cols, 2));
  }
  PairScores result;
  result.total = N && M ? torch::cat(row_blocks, 0) : torch::zeros({N, M}, float_options);
  if (!t2i_rows.empty()) result.steps_t2i = torch::cat(t2i_rows, 1);
  if (!i2t_rows.empty()) result.steps_i2t = torch::cat(i2t_rows, 1);
  return result;
}

}  // namespace imram
