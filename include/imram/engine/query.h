#pragma once
// A query as the search sees it once the model has encoded it: a caption's words (searching
// images) or an image's regions (searching captions), its global embedding, and what the text
// taught about itself (replaced bytes, unknown words).
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "imram/model/imram.h"
#include "imram/model/model_dir.h"

namespace imram {

// Which modality the gallery holds: text queries search images, image queries search captions.
enum class GallerySide { Images, Captions };

// A query once encoded: a caption (searching images) or an image (searching captions).
struct EncodedQuery {
  EncodedCaptions caption;  // (1, L, d) words and (1) length, for a text query
  EncodedImages image;      // (1, R, d) regions, for an image query
  torch::Tensor global;     // (g) l2-normalised global embedding; undefined without a head
  std::string text;         // the text as typed (text queries), invalid UTF-8 bytes replaced
  bool replaced_invalid_utf8 = false;
  std::vector<std::string> unknown_words;  // tokens of the text that the vocabulary lacks
  std::int64_t token_count = 0;

  bool is_text() const { return caption.words.defined(); }
  GallerySide searches() const { return is_text() ? GallerySide::Images : GallerySide::Captions; }
};

// A text query encoded by `model` (tokenized, unknown words noted, global embedding when the
// model has a head). Throws for an empty or over-long query.
EncodedQuery encode_text_query(const Model& model, const std::string& text);

}  // namespace imram
