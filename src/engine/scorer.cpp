#include "imram/engine/scorer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "imram/util/interruption.h"

namespace imram {

std::size_t bytes_per_pair(const ModelConfig& config, std::int64_t regions, std::int64_t words) {
  // Per direction: a handful of (n_q x n_c) score tensors and of (n_q x d) attended/query/gate
  // tensors are alive at once.
  const auto d = config.embed_size;
  std::size_t floats = 0;
  if (config.uses_text_direction()) floats = std::max<std::size_t>(floats, 4 * words * regions + 6 * words * d);
  if (config.uses_image_direction()) floats = std::max<std::size_t>(floats, 4 * words * regions + 6 * regions * d);
  return floats * sizeof(float);
}

namespace {

struct Blocks {
  std::int64_t images, captions;
};

// The tensor-op path holds every per-pair intermediate of a block at once: blocks are as many
// pairs as the budget holds, square-ish.
Blocks blocks_for_tensor_path(const ModelConfig& config, std::int64_t regions, std::int64_t max_len,
                              const ScoreOptions& options) {
  std::int64_t image_block = options.image_block, caption_block = options.caption_block;
  const auto pairs = std::max<std::int64_t>(
      1, std::int64_t(options.memory_budget / std::max<std::size_t>(1, bytes_per_pair(config, regions, max_len))));
  if (image_block <= 0 && caption_block <= 0) {
    image_block = std::max<std::int64_t>(1, std::int64_t(std::sqrt(double(pairs))));
    caption_block = std::max<std::int64_t>(1, pairs / image_block);
  } else if (image_block <= 0) {
    image_block = std::max<std::int64_t>(1, pairs / caption_block);
  } else if (caption_block <= 0) {
    caption_block = std::max<std::int64_t>(1, pairs / image_block);
  }
  return {image_block, caption_block};
}

// The CPU path works through one context item per thread at a time: the context items of a
// block are the parallel work (many, for balance), and the query items make the rows of its
// matrix products. Rows measured best on a 2-core AVX-512 machine (d = 1024): ~512 words
// (caption queries), ~1024 regions (image queries); fewer starve BLAS, more spill the gate
// pre-activations out of cache.
Blocks blocks_for_cpu_path(const ModelConfig& config, std::int64_t regions, double mean_len, std::int64_t max_len,
                           const ScoreOptions& options) {
  constexpr double kWordRows = 512, kRegionRows = 1024;
  constexpr std::int64_t kParallelItems = 256;
  const std::int64_t threads = torch::get_num_threads();
  const auto caption_rows = std::max<std::int64_t>(1, std::int64_t(kWordRows / std::max(1.0, mean_len)));
  const auto image_rows =
      std::max<std::int64_t>(1, std::int64_t(kRegionRows / double(std::max<std::int64_t>(regions, 1))));
  Blocks blocks{kParallelItems, caption_rows};                               // text: images in parallel
  if (!config.uses_text_direction()) blocks = {image_rows, kParallelItems};  // image: captions in parallel
  if (config.uses_text_direction() && config.uses_image_direction())         // full: both, in turn
    blocks = {std::max(image_rows, 4 * threads), std::max(caption_rows, 4 * threads)};
  if (options.image_block > 0) blocks.images = options.image_block;
  if (options.caption_block > 0) blocks.captions = options.caption_block;
  // Memory: cached halves of both sides, per-thread buffers of the query rows, the block's scores.
  const auto d = double(config.embed_size);
  auto bytes = [&](const Blocks& b) {
    const double image_side = double(b.images) * double(regions), caption_side = double(b.captions) * double(max_len);
    const double query_rows =
        std::max(config.uses_text_direction() ? caption_side : 0.0, config.uses_image_direction() ? image_side : 0.0);
    return 4.0 * (2 * d * (image_side + caption_side) + double(threads) * 3 * d * query_rows +
                  4.0 * double(config.iteration_steps) * double(b.images) * double(b.captions));
  };
  while (bytes(blocks) > double(options.memory_budget) && (blocks.images > 1 || blocks.captions > 1)) {
    if (blocks.images >= blocks.captions && options.image_block <= 0) {
      blocks.images = std::max<std::int64_t>(1, blocks.images / 2);
    } else if (options.caption_block <= 0) {
      blocks.captions = std::max<std::int64_t>(1, blocks.captions / 2);
    } else {
      break;
    }
  }
  return blocks;
}

// Caption blocks are sorted by length; visiting them in bit-reversed order (0, n/2, n/4, 3n/4,
// ...) makes every stretch of the run a fair sample of short and long blocks, so that a rate
// measured early (the progress bar's ETA) holds for the rest.
std::vector<std::int64_t> stratified_order(std::int64_t count) {
  int bits = 0;
  while ((std::int64_t(1) << bits) < count) ++bits;
  std::vector<std::int64_t> order;
  for (std::int64_t i = 0; i < (std::int64_t(1) << bits); ++i) {
    std::int64_t reversed = 0;
    for (int b = 0; b < bits; ++b) reversed |= ((i >> b) & 1) << (bits - 1 - b);
    if (reversed < count) order.push_back(reversed);
  }
  return order;
}

PairScores score_in_order(const ImramModelImpl& model, const EncodedImages& images, const EncodedCaptions& captions,
                          const ScoreOptions& options) {
  // The first `steps` steps of IMRAM's sum are an exact, cheaper part of its score.
  auto config = model.config;
  if (options.steps > 0) config.iteration_steps = std::min(config.iteration_steps, options.steps);
  const auto N = images.regions.size(0), R = images.regions.size(1);
  const auto M = captions.words.size(0);
  const auto device = images.regions.device();
  const auto lengths = captions.lengths.to(torch::kCPU, torch::kInt64);
  const auto max_len = M ? lengths.max().item<std::int64_t>() : 0;
  const double mean_len = M ? lengths.to(torch::kFloat64).mean().item<double>() : 0;
  // The gallery side may come as a store keeps it (float16): the engine decides on float32.
  const auto float_options = images.regions.options().dtype(
      images.regions.scalar_type() == torch::kHalf ? torch::kFloat32 : images.regions.scalar_type());
  const auto path = resolve_engine_path(options.path, torch::empty({0}, float_options));
  const bool cpu_path = path == EnginePath::FusedCpu;

  auto blocks = cpu_path ? blocks_for_cpu_path(config, R, mean_len, max_len, options)
                         : blocks_for_tensor_path(config, R, max_len, options);
  const auto image_block = std::min(blocks.images, std::max<std::int64_t>(N, 1));
  const auto caption_block = std::min(blocks.captions, std::max<std::int64_t>(M, 1));

  const auto word_positions = torch::arange(captions.words.size(1), torch::kInt64).unsqueeze(0);
  const auto word_mask_all = (word_positions < lengths.unsqueeze(1)).to(device);
  const bool keep_steps = options.keep_steps;
  const auto caption_blocks = (M + caption_block - 1) / caption_block;
  const auto caption_order = stratified_order(caption_blocks);

  auto total = torch::zeros({N, M}, float_options);
  torch::Tensor steps_t2i, steps_i2t;
  if (keep_steps && config.uses_text_direction())
    steps_t2i = torch::zeros({config.iteration_steps, N, M}, float_options);
  if (keep_steps && config.uses_image_direction())
    steps_i2t = torch::zeros({config.iteration_steps, N, M}, float_options);
  std::int64_t done = 0;
  for (std::int64_t i0 = 0; i0 < N; i0 += image_block) {
    const auto ni = std::min(image_block, N - i0);
    const auto regions = images.regions.narrow(0, i0, ni);
    const auto region_mask = images.region_mask.defined() ? images.region_mask.narrow(0, i0, ni)
                                                          : torch::ones({ni, R}, float_options.dtype(torch::kBool));
    // Memory halves of the images: attached ones always; otherwise, on the fused path, computed
    // here at most once for every caption block of this image block that does not project its
    // attended context instead, so that a block's computation depends on its own shape only (the
    // tensor path computes absent ones per block).
    const bool memory_steps = config.iteration_steps > 1;
    const auto images_own = [&](const torch::Tensor& halves) {
      return memory_steps && halves.defined() ? halves.narrow(0, i0, ni) : torch::Tensor();
    };
    const auto attached_region_halves = images_own(images.text_halves);
    torch::Tensor computed_region_halves;
    const auto region_halves_for = [&](std::int64_t query_rows) {
      if (attached_region_halves.defined() || !cpu_path || !memory_steps) return attached_region_halves;
      if (choose_route(path, query_rows, R, config.iteration_steps, false, options.route).context ==
          ContextTerm::ProjectedAttended)
        return torch::Tensor();
      if (!computed_region_halves.defined())
        computed_region_halves = model.text_memory().context_half(widened(regions)).contiguous();
      return computed_region_halves;
    };
    const auto region_query_halves = images_own(images.image_halves);
    const auto region_queries = config.uses_image_direction() ? widened(regions) : torch::Tensor();
    for (const auto block : caption_order) {
      const auto j0 = block * caption_block;
      const auto nc = std::min(caption_block, M - j0);
      // Only as many word positions as the longest caption of the block.
      const auto block_len = lengths.narrow(0, j0, nc).max().item<std::int64_t>();
      const auto words = captions.words.narrow(0, j0, nc).narrow(1, 0, block_len);
      const auto word_mask = word_mask_all.narrow(0, j0, nc).narrow(1, 0, block_len);
      auto block_total = total.narrow(0, i0, ni).narrow(1, j0, nc);
      const auto captions_own = [&](const torch::Tensor& halves) {
        return memory_steps && halves.defined() ? halves.narrow(0, j0, nc).narrow(1, 0, block_len) : torch::Tensor();
      };
      if (config.uses_text_direction()) {
        MatchingOptions matching;
        matching.path = path;
        matching.route = options.route;
        matching.context_halves = region_halves_for(nc * block_len);
        matching.query_halves = captions_own(captions.text_halves);
        const auto steps =
            iterative_matching(widened(words), word_mask.to(float_options.dtype()), regions,
                               images.region_mask.defined() ? region_mask.logical_not() : torch::Tensor(),
                               model.text_memory(), config, matching)
                .transpose(1, 2);
        block_total.add_(steps.sum(0));
        if (keep_steps) steps_t2i.narrow(1, i0, ni).narrow(2, j0, nc).copy_(steps);
      }
      if (config.uses_image_direction()) {
        MatchingOptions matching;
        matching.path = path;
        matching.route = options.route;
        matching.context_halves = captions_own(captions.image_halves);
        matching.query_halves = region_query_halves;
        const auto steps = iterative_matching(region_queries, region_mask.to(float_options.dtype()), words,
                                              word_mask.logical_not(), model.image_memory(), config, matching);
        block_total.add_(steps.sum(0));
        if (keep_steps) steps_i2t.narrow(1, i0, ni).narrow(2, j0, nc).copy_(steps);
      }
      done += ni * nc;
      if (options.progress) options.progress(done, N * M);
      throw_if_interrupted();
    }
  }
  PairScores result;
  result.total = total;
  result.steps_t2i = steps_t2i;
  result.steps_i2t = steps_i2t;
  result.path = path;
  return result;
}

}  // namespace

PairScores score_pairs(const ImramModelImpl& model, const EncodedImages& images, const EncodedCaptions& captions,
                       const ScoreOptions& options) {
  // Whatever the caller's mode: gradients are asked for, never inherited (engine/scorer.h).
  const torch::AutoGradMode grad_mode(options.gradients);
  // Captions of similar length share a block, so that blocks pad little (text queries are padded
  // to the longest caption of their block); the columns are put back in the caller's order.
  const auto lengths = captions.lengths.to(torch::kCPU, torch::kInt64);
  if (lengths.numel() < 2) return score_in_order(model, images, captions, options);
  const auto order = std::get<1>(lengths.sort(/*stable=*/true, 0, false));
  const auto device_order = order.to(captions.words.device());
  const auto reorder = [&](const torch::Tensor& t) { return t.defined() ? t.index_select(0, device_order) : t; };
  const EncodedCaptions sorted{reorder(captions.words), lengths.index_select(0, order), reorder(captions.text_halves),
                               reorder(captions.image_halves)};
  auto result = score_in_order(model, images, sorted, options);
  const auto inverse = torch::empty_like(order).scatter_(0, order, torch::arange(order.numel(), order.options()));
  const auto device_inverse = inverse.to(result.total.device());
  result.total = result.total.index_select(1, device_inverse);
  if (result.steps_t2i.defined()) result.steps_t2i = result.steps_t2i.index_select(2, device_inverse);
  if (result.steps_i2t.defined()) result.steps_i2t = result.steps_i2t.index_select(2, device_inverse);
  return result;
}

}  // namespace imram
