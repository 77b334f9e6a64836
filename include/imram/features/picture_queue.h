#pragma once
// Pictures decoded and preprocessed on background threads, handed out in their listed order, at
// most `capacity` ahead of the consumer: the backbone never waits for a decoder it could have
// overlapped with, and memory is bounded by the capacity, not by the folder.
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "imram/features/preprocessing.h"
#include "imram/image/picture.h"

namespace imram {

struct PreparedPicture {
  std::size_t position = 0;   // in the list given to the queue
  std::vector<float> pixels;  // 3 x height x width (features/preprocessing.h); empty on a problem
  std::string problem;        // non-empty: the picture could not be used, and why (names the file)
};

class PictureQueue {
 public:
  PictureQueue(std::vector<std::string> sources, Preprocessing preprocessing, PictureLimits limits, int threads,
               std::size_t capacity);
  ~PictureQueue();  // stops the threads; pictures not taken are dropped
  PictureQueue(const PictureQueue&) = delete;
  PictureQueue& operator=(const PictureQueue&) = delete;

  // The next picture in list order; nullopt after the last.
  std::optional<PreparedPicture> next();
  const std::vector<std::string>& sources() const { return sources_; }

 private:
  void work();
  PreparedPicture prepare(std::size_t position) const;

  const std::vector<std::string> sources_;
  const Preprocessing preprocessing_;
  const PictureLimits limits_;
  const std::size_t capacity_;
  std::mutex mutex_;
  std::condition_variable ready_;  // a picture was prepared
  std::condition_variable room_;   // the consumer took one, or the queue stops
  std::size_t claimed_ = 0;        // pictures handed to workers so far
  std::size_t taken_ = 0;          // pictures handed to the consumer so far
  std::map<std::size_t, PreparedPicture> done_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace imram
