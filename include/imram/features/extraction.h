#pragma once
// `imram features`: a folder of pictures to the precomputed layout the rest of imram reads
// (docs/features.md):
//   {split}_ims.npy        float32 (pictures, regions, features), one row per usable picture
//   {split}_images.txt     the source of each row
//   {split}_images.jsonl   each row's picture and region boxes (data/image_info.h)
//   {split}_skipped.txt    each picture that could not be used, a tab, and why (a tab, line break
//                          or backslash in its name written \t, \n, \r, \\)
//   {split}_features.json  the backbone, contract and preprocessing the features depend on
// Work in progress lives in {split}_features.partial/: a killed run resumes where it stopped,
// and a rerun over a grown folder computes only the new pictures. One bad picture is a warning,
// never the end of the run.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "imram/error.h"
#include "imram/features/backbone.h"
#include "imram/features/preprocessing.h"
#include "imram/image/picture.h"

namespace imram {

struct FeatureOptions {
  std::string backbone;  // a TorchScript file (features/backbone.h)
  BackboneContract contract = BackboneContract::Grid;
  int regions = 36;              // a detector's regions per picture
  std::int64_t feature_dim = 0;  // required features per region (a model's img_dim); 0: any
  Preprocessing preprocessing;
  PictureLimits limits;
  int batch_size = 16;
  int decode_threads = 1;
  torch::Device device = torch::kCPU;
  bool show_progress = true;
};

struct FeatureSummary {
  std::int64_t rows = 0;      // pictures in {split}_ims.npy
  std::int64_t computed = 0;  // of which this run ran the backbone on
  std::int64_t skipped = 0;   // pictures listed in {split}_skipped.txt
  std::int64_t regions = 0;
  std::int64_t feature_dim = 0;
  double seconds = 0;
  std::string features_path;
};

using FeatureLog = std::function<void(const std::string& line)>;

// A picture that was listed but cannot be used, and why (without its path).
struct SkippedPicture {
  std::string path;
  std::string reason;
};

struct PictureListing {
  std::vector<std::string> pictures;    // absolute paths, each once
  std::vector<SkippedPicture> skipped;  // found but not readable as a picture: kept for {split}_skipped.txt
};

// The pictures to read: every file with a picture's extension below a folder (sorted by path,
// symbolic links followed, each folder visited once), one picture file, or the lines of a list
// file in order (blank lines and `#` comments aside). A dangling link with a picture's name, a
// TIFF/GIF/HEIC/AVIF file, a folder in a list and a name with a line break are skipped pictures
// (a warning through `warn` and an entry in `skipped`); what cannot be listed (an unreadable
// folder, a link loop) is a warning. Finding no picture at all is an imram::Error.
PictureListing list_pictures(const std::string& folder_or_list, const FeatureLog& warn);

// Every listed picture was skipped: the message names {split}_skipped.txt, which a caller that
// deletes the folder replaces with its own words.
class NoUsablePicture : public Error {
 public:
  using Error::Error;
};

// Throws imram::Error when the backbone breaks its contract, NoUsablePicture when no picture was usable; a picture
// that cannot be used is reported through `warn` and listed in {split}_skipped.txt with the
// listing's own skipped pictures.
FeatureSummary extract_features(const PictureListing& listing, const std::string& out_dir, const std::string& split,
                                const FeatureOptions& options, const FeatureLog& warn);

}  // namespace imram
