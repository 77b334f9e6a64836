#pragma once
// The synthetic "shapes world": a stand-in for Flickr30K/COCO that ships as a generator instead
// of tens of GB of detector features. Each image is a scene of 2-5 coloured shapes on a 3x3 grid;
// its regions imitate bottom-up-attention features (several regions per object, partial and
// background regions, noise) and its five captions name 1-3 objects with their attributes and
// spatial relations. Images come in twin pairs (2k, 2k+1) with the same shapes and colours but
// different bindings (colours or positions swapped between two objects), and no caption of an
// image is consistent with its twin: a bag-of-words matcher cannot tell twins apart, while a model
// that binds contextualised words to regions can.
//
// Everything derives from the seed through an own PRNG with integer-only noise (no libm, no
// std:: distributions), so a seed gives byte-identical files across standard libraries, and an
// image depends only on (seed, split, its index, the options), not on the split sizes or the
// thread count.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "imram/data/scene.h"

namespace imram {

inline constexpr int kSyntheticCaptionsPerImage = 5;
inline constexpr int kSyntheticMinObjects = 2;
inline constexpr int kSyntheticMaxObjects = 5;
// Bounds on SyntheticOptions (checked before any work): 20x COCO's images per split.
inline constexpr std::int64_t kSyntheticMaxImages = 2'000'000;
inline constexpr std::int64_t kSyntheticMaxRegions = 1024;
inline constexpr std::int64_t kSyntheticMaxFeatureDim = 65536;

struct SyntheticOptions {
  std::uint64_t seed = 1;           // source of every concept vector, scene, caption and feature
  std::int64_t train = 4000;        // images in the train split (even: images come in twin pairs)
  std::int64_t dev = 500;           // images in the dev split (even)
  std::int64_t test = 1000;         // images in the test split (even)
  std::int64_t regions = 36;        // regions per image (R), at least kSyntheticMaxObjects
  std::int64_t feature_dim = 2048;  // features per region (D)
  int shapes = 8;                   // shapes in use, the first ones of synthetic_shapes()
  int colours = 8;                  // colours in use, the first ones of synthetic_colours()
  double position_twins = 0.2;      // fraction of twin pairs that swap positions, not colours
  int threads = 0;                  // feature rendering threads, 0: all cores; output is the same
};

// Throws imram::Error naming the first option out of its range ("synthetic data: ...").
void validate_synthetic_options(const SyntheticOptions& options);

struct SyntheticSplit {
  std::vector<Scene> scenes;
  std::vector<std::string> captions;  // kSyntheticCaptionsPerImage per scene, in scene order
};

// Holds the seed's concept vectors; generating is const and thread-safe.
class SyntheticWorld {
 public:
  explicit SyntheticWorld(const SyntheticOptions& options);  // throws imram::Error on bad options

  const SyntheticOptions& options() const { return options_; }
  // Scenes in twin pairs and their captions; `images` must be even and positive.
  SyntheticSplit generate_split(const std::string& split, std::int64_t images) const;
  // The regions x feature_dim features of image `image` of `split` (row-major) into `out`.
  void render_features(const std::string& split, std::int64_t image, const Scene& scene, float* out) const;
  // The object of each region render_features draws for this image (-1: background, clutter).
  std::vector<int> region_objects(const std::string& split, std::int64_t image, const Scene& scene) const;

 private:
  SyntheticOptions options_;
  std::vector<float> concepts_;  // one feature_dim vector per concept, see synthetic.cpp
};

// Writes train/dev/test ({split}_ims.npy, {split}_caps.txt, {split}_scenes.jsonl) and vocab.json
// as the directory `dir`, whole: into a temporary sibling, then swapped in place of `dir`, so that
// nothing of an earlier dataset there survives. `also(new_dir)` may add files before the swap
// (the rendered pictures). Refuses a `dir` that is neither absent, empty nor such a dataset
// (synthetic_dataset_signature()). `report` receives one line per split.
void write_synthetic_dataset(const std::string& dir, const SyntheticOptions& options,
                             const std::function<void(const std::string&)>& report = {},
                             const std::function<void(const std::string&)>& also = {});
// The files that mark a directory as a dataset of write_synthetic_dataset.
const std::vector<std::string>& synthetic_dataset_signature();

// What a caption of the shapes-world language asserts. -1 marks what it leaves unsaid.
struct CaptionMention {
  int shape = -1;
  int colour = -1;
  int size = -1;
  int row = -1;
  int col = -1;
};

enum class Relation { LeftOf, RightOf, Above, Below };

struct CaptionRelation {
  int subject = 0;    // index into CaptionMeaning::mentions
  int reference = 0;  // subject <relation> reference, e.g. subject left of reference
  Relation relation = Relation::LeftOf;
};

struct CaptionMeaning {
  std::vector<CaptionMention> mentions;
  std::vector<CaptionRelation> relations;
};

// Reads the generator's language (any word order it produces, synonyms, fronted phrases);
// words it does not know, typos included, carry no meaning.
CaptionMeaning parse_caption(const std::string& caption);
// True when distinct objects of the scene can stand for the mentions with every attribute,
// absolute position and relation holding.
bool caption_consistent(const CaptionMeaning& meaning, const Scene& scene);
bool caption_consistent(const std::string& caption, const Scene& scene);

}  // namespace imram
