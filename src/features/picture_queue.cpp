#include "imram/features/picture_queue.h"

#include <algorithm>
#include <exception>

#include "imram/error.h"

namespace imram {

PictureQueue::PictureQueue(std::vector<std::string> sources, Preprocessing preprocessing, PictureLimits limits,
                           int threads, std::size_t capacity)
    : sources_(std::move(sources)),
      preprocessing_(preprocessing),
      limits_(limits),
      capacity_(std::max<std::size_t>(1, capacity)) {
  for (int i = 0; i < std::max(1, threads); ++i) workers_.emplace_back([this] { work(); });
}

PictureQueue::~PictureQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  room_.notify_all();
  for (auto& worker : workers_) worker.join();
}

PreparedPicture PictureQueue::prepare(std::size_t position) const {
  PreparedPicture picture;
  picture.position = position;
  try {
    // Libjpeg's reduced decoding may stop at twice the larger target side: area averaging does the rest.
    const cv::Mat rgb =
        read_picture(sources_[position], limits_, std::max(preprocessing_.width, preprocessing_.height));
    picture.pixels.resize(3 * std::size_t(preprocessing_.width) * std::size_t(preprocessing_.height));
    preprocess_picture(rgb, preprocessing_, picture.pixels.data());
  } catch (const Error& e) {
    picture.problem = e.what();
  } catch (const std::exception& e) {  // OpenCV's own exceptions, or memory for a huge picture
    picture.problem = sources_[position] + ": cannot decode (" + e.what() + ")";
  }
  if (!picture.problem.empty()) picture.pixels.clear();
  return picture;
}

void PictureQueue::work() {
  for (;;) {
    std::size_t position;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      room_.wait(lock, [&] { return stopping_ || claimed_ >= sources_.size() || claimed_ < taken_ + capacity_; });
      if (stopping_ || claimed_ >= sources_.size()) return;
      position = claimed_++;
    }
    auto picture = prepare(position);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.emplace(position, std::move(picture));
    }
    ready_.notify_all();
  }
}

std::optional<PreparedPicture> PictureQueue::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (taken_ >= sources_.size()) return std::nullopt;
  ready_.wait(lock, [&] { return done_.count(taken_) > 0; });
  auto node = done_.extract(taken_);
  ++taken_;
  lock.unlock();
  room_.notify_all();
  return std::move(node.mapped());
}

}  // namespace imram
