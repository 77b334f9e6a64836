#include "imram/train/batch_loader.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "imram/error.h"
#include "imram/train/distributed.h"

namespace imram {

BatchLoader::BatchLoader(const PrecompSplit& split, const TokenIds& captions, std::vector<std::int64_t> order,
                         std::int64_t batch_size, std::int64_t first_batch, std::size_t prefetch, int rank,
                         int world_size)
    : split_(split),
      captions_(captions),
      order_(std::move(order)),
      batch_size_(batch_size),
      next_batch_(first_batch),
      prefetch_(prefetch),
      rank_(rank),
      world_size_(world_size) {
  worker_ = std::thread([this] { produce(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

std::int64_t BatchLoader::batches() const { return (std::int64_t(order_.size()) + batch_size_ - 1) / batch_size_; }

Batch BatchLoader::assemble(std::int64_t batch) const {
  const auto share = rank_slice(std::min<std::int64_t>(batch_size_, std::int64_t(order_.size()) - batch * batch_size_),
                                rank_, world_size_);
  const auto begin = batch * batch_size_ + share.begin, count = share.count;
  const auto R = split_.num_regions(), D = split_.feature_dim();
  auto features = torch::empty({count, R, D}, torch::kFloat32);
  TokenIds ids;
  ids.reserve(std::size_t(count));
  float* out = features.data_ptr<float>();
  for (std::int64_t i = 0; i < count; ++i) {
    const auto caption = order_[std::size_t(begin + i)];
    const auto image = split_.image_of_caption(caption);
    const float* source = split_.image_features(image);
    std::memcpy(out + i * R * D, source, std::size_t(R * D) * sizeof(float));
    if (!std::all_of(source, source + R * D, [](float x) { return std::isfinite(x); }))
      throw Error(split_.features_path() + ": image " + std::to_string(image) + " holds NaN or infinite features");
    ids.push_back(captions_[std::size_t(caption)]);
  }
  auto padded = pad_captions(ids, 0, count);
  return {features, padded.ids, padded.lengths};
}

void BatchLoader::produce() {
  try {
    while (true) {
      std::int64_t batch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return stopping_ || ready_.size() < prefetch_; });
        if (stopping_ || next_batch_ >= batches()) break;
        batch = next_batch_++;
      }
      auto assembled = assemble(batch);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.push_back(std::move(assembled));
      }
      changed_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
  }
  changed_.notify_all();
}

std::optional<Batch> BatchLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !ready_.empty() || finished_; });
  if (!ready_.empty()) {
    auto batch = std::move(ready_.front());
    ready_.pop_front();
    changed_.notify_all();
    return batch;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

}  // namespace imram
