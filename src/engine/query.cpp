#include "imram/engine/query.h"

#include <torch/torch.h>

#include "imram/data/captions.h"
#include "imram/data/tokenizer.h"
#include "imram/engine/encoding.h"
#include "imram/error.h"

namespace imram {

EncodedQuery encode_text_query(const Model& model, const std::string& text) {
  if (!model.vocabulary) throw Error("the model has no vocabulary: it cannot read text queries");
  EncodedQuery query;
  // The captions' policy (data/captions.h): invalid bytes read as U+FFFD, and said.
  query.text = valid_utf8(text, &query.replaced_invalid_utf8);
  const auto tokens = query_tokens(query.text, kMaxCaptionTokens);
  query.token_count = std::int64_t(tokens.size());
  for (const auto& token : tokens)
    if (!model.vocabulary->contains(token)) query.unknown_words.push_back(token);
  torch::NoGradGuard no_grad;
  const auto padded = pad_captions({model.vocabulary->encode_tokens(tokens)}, 0, 1);
  auto net = model.net;  // encoding changes no state, but LibTorch's forward() is not const
  query.caption = net->encode_captions(padded.ids, padded.lengths);
  if (net->global_head) query.global = net->global_head->embed_captions(query.caption).squeeze(0);
  return query;
}

}  // namespace imram
