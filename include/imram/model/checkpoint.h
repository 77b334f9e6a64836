#pragma once
// The authors' training checkpoints (`model_best.pth.tar`, written by torch.save), read without
// Python and without running any pickled code (docs/checkpoints.md). Both of torch.save's
// containers are read:
//   legacy (PyTorch < 1.6): a magic number, protocol and system-info pickles, the object pickle,
//            the list of storage keys, then each storage's element count and raw bytes;
//   zip (PyTorch >= 1.6): <archive>/data.pkl and <archive>/data/<key> records, read with
//            LibTorch's caffe2::serialize::PyTorchStreamReader.
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "imram/model/model_dir.h"

namespace imram {

struct Checkpoint {
  std::string format;  // "legacy" or "zip"
  // The dict torch.save wrote, as far as it is plain data: every top-level key except the
  // state dict (`model`) and `opt`, with the values that are numbers, strings, booleans or None.
  nlohmann::ordered_json metadata = nlohmann::ordered_json::object();
  std::vector<std::string> top_level_keys;
  // `model`: the state dict, in file order, names as saved (with `module.` when the model was
  // wrapped in nn.DataParallel).
  std::vector<std::pair<std::string, torch::Tensor>> state_dict;
  // `opt`: the training options (argparse.Namespace), plain values only; absent if not saved.
  std::optional<nlohmann::json> options;
};

// Throws imram::Error naming `source` for anything that is not a well-formed checkpoint, for a
// pickle that references a global outside the allow-list, and for tensors that do not fit their
// storages. Nothing is allocated in proportion to a length the file states before the bytes
// are known to be there.
Checkpoint read_checkpoint(const std::string& path);
Checkpoint read_checkpoint(const std::uint8_t* data, std::size_t size, const std::string& source);

// What import_checkpoint did, for the user to read.
struct CheckpointImport {
  Model model;
  std::string format;
  std::vector<std::string> ignored;  // top-level entries and state-dict weights not used
  bool stripped_module_prefix = false;
};

// A checkpoint of the authors' code -> a model: `opt` translated (model/config.h), `module.`
// stripped, every weight of the model present with its shape, `epoch` and `best_rsum` kept in the
// model's metadata. `vocab_path` empty: a model that scores caption ids only.
CheckpointImport import_checkpoint(const std::string& path, const std::string& vocab_path = "");

}  // namespace imram
