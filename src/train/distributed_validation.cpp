#include "imram/train/distributed_validation.h"

#include <torch/torch.h>

#include <chrono>

#include "imram/engine/encoding.h"
#include "imram/util/progress.h"

namespace imram {

EvalResult evaluate_in_world(ImramModelImpl& model, const Vocabulary& vocabulary, const PrecompSplit& split,
                             const EvalOptions& options, Communicator& world) {
  const auto start = std::chrono::steady_clock::now();
  torch::Tensor sims;
  {
    torch::NoGradGuard no_grad;
    model.eval();
    const auto N = evaluated_images(split, options);
    const auto share = rank_slice(N * split.captions_per_image(), world.rank(), world.size());
    const std::vector<std::string> texts(split.captions().begin() + share.begin,
                                         split.captions().begin() + share.begin + share.count);
    // Encoding every image again is cheaper than sending the encoded regions: (N, R, d) floats.
    const auto images = encode_image_file(model, split.features(), N);
    const auto captions = encode_caption_ids(model, encode_caption_texts(vocabulary, texts, split.captions_path()));
    ProgressBar bar("scoring " + split.name() + " (rank 0's share)", N * share.count, "pairs", options.show_progress);
    ScoreOptions score_options;
    score_options.memory_budget = options.memory_budget;
    score_options.progress = [&](std::int64_t done, std::int64_t) { bar.update(done); };
    const auto columns = score_pairs(model, images, captions, score_options).total;
    bar.finish();
    const auto counts = world.all_gather_count(share.count);
    sims = world.all_gather_rows(columns.t().contiguous().to(world.device()), counts).t().to(torch::kCPU).contiguous();
  }
  auto result = evaluate_scores(sims, split, options);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace imram
