#pragma once
// One step of the Recurrent Attention Memory (RAM): every query fragment attends over the
// context fragments. Tensors are laid out (..., n_q, n_c): query fragments in rows, context
// fragments in columns; the leading dimensions index (query item, context item) pairs.
#include <torch/types.h>

#include "imram/model/config.h"

namespace imram {

// Step 2 of the attention step (docs/model.md): normalise the raw scores A = Q C^T across the QUERIES (dim -2) for each
// context fragment. query_mask (..., n_q, 1), 1 for real fragments, 0 for padding: padded
// queries take no part in the normalisation (and come out as 0).
torch::Tensor normalize_raw_scores(const torch::Tensor& scores, RawFeatureNorm norm, const torch::Tensor& query_mask);

// Step 3: alpha = softmax over the context (dim -1) of lambda * A; context_padding (..., 1, n_c)
// is true where the context fragment is padding and gets no weight.
torch::Tensor attention_weights(const torch::Tensor& normalized, double lambda_softmax,
                                const torch::Tensor& context_padding);

}  // namespace imram
