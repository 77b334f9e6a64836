#include "imram/features/extraction.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "imram/data/image_info.h"
#include "imram/data/npy.h"
#include "imram/data/precomp_dataset.h"
#include "imram/error.h"
#include "imram/features/picture_queue.h"
#include "imram/util/atomic_file.h"
#include "imram/util/counted_file.h"
#include "imram/util/json_file.h"
#include "imram/util/progress.h"
#include "imram/util/stopwatch.h"
#include "imram/util/writer_lock.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

bool has_picture_extension(const fs::path& path) {
  auto extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
  return extension == ".jpg" || extension == ".jpeg" || extension == ".png" || extension == ".webp" ||
         extension == ".bmp";
}

std::vector<std::string> pictures_below(const fs::path& folder, const FeatureLog& warn) {
  std::vector<std::string> found;
  std::set<fs::path> visited{fs::canonical(folder)};
  std::error_code error;
  fs::recursive_directory_iterator it(folder, fs::directory_options::follow_directory_symlink, error), end;
  if (error) throw Error(folder.string() + ": cannot list (" + error.message() + ")");
  for (; it != end; it.increment(error)) {
    if (error) {
      warn(folder.string() + ": stopped listing part of the folder (" + error.message() + ")");
      break;
    }
    const auto& path = it->path();
    const auto status = fs::status(path, error);
    if (!fs::is_directory(status)) it.disable_recursion_pending();  // the iterator would ask again
    if (error) {
      warn(path.string() + ": skipped (" + error.message() + ")");
      error.clear();
      continue;
    }
    if (fs::is_directory(status)) {
      const auto real = fs::canonical(path, error);
      if (error || !visited.insert(real).second) {
        warn(path.string() + ": skipped (" + (error ? error.message() : "a link to a folder already listed") + ")");
        error.clear();
        it.disable_recursion_pending();
      }
      continue;
    }
    if (fs::is_regular_file(status) && has_picture_extension(path)) found.push_back(path.string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

std::vector<std::string> pictures_listed(const fs::path& list) {
  std::ifstream in(list);
  if (!in) throw Error(list.string() + ": cannot open the list of pictures");
  std::vector<std::string> found;
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (std::any_of(line.begin(), line.end(), [](unsigned char c) { return c < 0x20 && c != '\t'; }))
      throw Error(list.string() + ":" + std::to_string(number) +
                  ": not a list of picture paths (binary data; a picture's name must end in .jpg, .png, ...)");
    fs::path path(line);
    found.push_back((path.is_relative() ? list.parent_path() / path : path).string());
  }
  return found;
}

// What the features depend on: a rerun with other settings must not mix its rows with these.
nlohmann::json settings_json(const FeatureOptions& options) {
  const auto bytes = fs::file_size(options.backbone);
  nlohmann::json settings = {{"backbone", fs::absolute(options.backbone).string()},
                             {"backbone_bytes", bytes},
                             {"backbone_fnv1a64", hash_file(options.backbone, bytes)},
                             {"contract", backbone_contract_name(options.contract)},
                             {"preprocessing", options.preprocessing.to_json()}};
  if (options.contract == BackboneContract::Detector) settings["regions"] = options.regions;
  return settings;
}

nlohmann::json boxes_json(const std::vector<Box>& boxes) {
  auto json = nlohmann::json::array();
  for (const auto& box : boxes) json.push_back(box);
  return json;
}

// The unfinished run in {split}_features.partial/: rows of features in features.f32 and one
// line of log.jsonl per row ({"source", "regions"}), written features first, so that a line
// always has its row; run.json holds the settings and, after the first row, the row shape.
struct Partial {
  fs::path dir;
  nlohmann::json run;
  std::int64_t regions = 0, feature_dim = 0;
  std::vector<std::string> sources;
  std::vector<std::vector<Box>> boxes;
  std::uint64_t log_bytes = 0;

  std::uint64_t row_bytes() const { return std::uint64_t(regions * feature_dim) * sizeof(float); }
  fs::path features() const { return dir / "features.f32"; }
  fs::path log() const { return dir / "log.jsonl"; }
  fs::path run_file() const { return dir / "run.json"; }

  void save_run() const {
    write_file_atomically(run_file().string(), [&](std::ostream& out) { out << run.dump(2) << "\n"; });
  }
  void set_shape(std::int64_t r, std::int64_t d) {
    regions = r;
    feature_dim = d;
    run["regions_per_picture"] = r;
    run["feature_dim"] = d;
    save_run();
  }
};

// Reads the partial run back: the longest prefix of log lines whose rows are all in features.f32.
void load_partial(Partial& partial) {
  partial.regions = partial.run.value("regions_per_picture", std::int64_t(0));
  partial.feature_dim = partial.run.value("feature_dim", std::int64_t(0));
  std::error_code error;
  const auto feature_bytes = fs::exists(partial.features()) ? fs::file_size(partial.features(), error) : 0;
  std::ifstream in(partial.log(), std::ios::binary);
  std::string line;
  std::uint64_t offset = 0;
  while (std::getline(in, line) && !in.eof()) {  // a last line without its newline was cut short
    if (partial.row_bytes() == 0 || (partial.sources.size() + 1) * partial.row_bytes() > feature_bytes) break;
    nlohmann::json entry;
    try {
      entry = nlohmann::json::parse(line);
      std::vector<Box> boxes;
      for (const auto& box : entry.at("regions")) boxes.push_back(box.get<Box>());
      if (std::int64_t(boxes.size()) != partial.regions) break;
      partial.sources.push_back(entry.at("source").get<std::string>());
      partial.boxes.push_back(std::move(boxes));
    } catch (const nlohmann::json::exception&) {
      break;
    }
    offset += line.size() + 1;
  }
  partial.log_bytes = offset;
}

// A finished earlier run with the same settings seeds the partial one with the rows of pictures
// still listed, so that a rerun over a grown folder computes only the new pictures.
void seed_from_finished(Partial& partial, const fs::path& out, const std::string& split,
                        const std::unordered_set<std::string>& listed) {
  const auto summary_path = out / (split + "_features.json");
  const auto npy_path = out / (split + "_ims.npy");
  if (!fs::exists(summary_path) || !fs::exists(npy_path)) return;
  try {
    const auto summary = read_json_file(summary_path.string(), "features summary");
    if (summary.value("settings", nlohmann::json()) != partial.run["settings"]) return;
    const auto features = NpyArray::open(npy_path.string());
    features.require_ndim(3);
    const auto infos = dataset_image_info(out.string(), split, features.dim(0));
    if (infos.empty()) return;
    partial.set_shape(features.dim(1), features.dim(2));
    AppendFile rows(partial.features().string(), 0, 0), log(partial.log().string(), 0, 0);
    const auto* data = features.as<float>();
    for (std::int64_t row = 0; row < features.dim(0); ++row) {
      const auto& info = infos[std::size_t(row)];
      if (!listed.count(info.picture) || std::int64_t(info.regions.size()) != partial.regions) continue;
      std::vector<Box> boxes;
      for (const auto& box : info.regions) boxes.push_back(box.value_or(Box{0, 0, 1, 1}));
      rows.write(data + row * partial.regions * partial.feature_dim, partial.row_bytes());
      const auto line = nlohmann::json{{"source", info.picture}, {"regions", boxes_json(boxes)}}.dump() + "\n";
      log.write(line.data(), line.size());
      partial.sources.push_back(info.picture);
      partial.boxes.push_back(std::move(boxes));
    }
    partial.log_bytes = log.bytes();
  } catch (const Error&) {
    // An earlier output that does not read back cleanly is recomputed, not trusted.
    partial.sources.clear();
    partial.boxes.clear();
    partial.log_bytes = 0;
    fs::remove(partial.features());
    fs::remove(partial.log());
  }
}

void write_lines(const fs::path& path, const std::vector<std::string>& lines) {
  write_file_atomically(path.string(), [&](std::ostream& out) {
    for (const auto& line : lines) out << line << "\n";
  });
}

std::string without_line_breaks(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\t', ' ');
  return text;
}

}  // namespace

std::vector<std::string> list_pictures(const std::string& folder_or_list, const FeatureLog& warn) {
  std::error_code error;
  const auto status = fs::status(folder_or_list, error);
  std::vector<std::string> listed;
  if (fs::is_directory(status)) {
    listed = pictures_below(folder_or_list, warn);
  } else if (fs::is_regular_file(status) && has_picture_extension(folder_or_list)) {
    listed = {folder_or_list};
  } else if (fs::is_regular_file(status)) {
    listed = pictures_listed(folder_or_list);
  } else {
    throw Error(folder_or_list + ": no such folder or list of pictures" + (error ? " (" + error.message() + ")" : ""));
  }
  std::vector<std::string> pictures;
  std::unordered_set<std::string> seen;
  for (const auto& path : listed) {
    const auto absolute = fs::absolute(path).lexically_normal().string();
    if (absolute.find('\n') != std::string::npos) {
      warn(without_line_breaks(path) + ": skipped (a file name with a line break cannot be listed in {split}_images.txt)");
    } else if (!seen.insert(absolute).second) {
      warn(path + ": listed twice; kept once");
    } else {
      pictures.push_back(absolute);
    }
  }
  if (pictures.empty()) throw Error(folder_or_list + ": no pictures (.jpg, .jpeg, .png, .webp, .bmp) found");
  return pictures;
}

FeatureSummary extract_features(const std::vector<std::string>& pictures, const std::string& out_dir,
                                const std::string& split, const FeatureOptions& options, const FeatureLog& warn) {
  require_split_name(split);
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1");
  if (!fs::is_regular_file(options.backbone)) throw Error(options.backbone + ": no such backbone file");
  Backbone backbone(options.backbone, options.contract, options.device, options.regions, options.feature_dim);
  require_writable_directory(out_dir);
  // One run per split and directory: a second would redo all of the first's work and then fail.
  const WriterLock lock((fs::path(out_dir) / (split + "_features.lock")).string(),
                        "split " + split + " of " + out_dir);
  const Stopwatch clock;
  const fs::path out(out_dir);
  Partial partial;
  partial.dir = out / (split + "_features.partial");
  const auto settings = settings_json(options);
  bool resumed = false;
  if (fs::exists(partial.run_file())) {
    partial.run = read_json_file(partial.run_file().string(), "unfinished run");
    load_partial(partial);
    resumed = partial.run.value("settings", nlohmann::json()) == settings;
    // An unfinished run that wrote no row (its backbone failed at once, say) holds nothing to lose.
    if (!resumed && !partial.sources.empty())
      throw Error(partial.dir.string() + ": an unfinished run with another backbone or preprocessing; rerun with "
                  "the same options, or remove that folder to start over");
  }
  if (!resumed) {
    const auto dir = partial.dir;
    partial = Partial();
    partial.dir = dir;
    remove_tree(partial.dir.string());
    fs::create_directories(partial.dir);
    partial.run = {{"settings", settings}};
    partial.save_run();
    seed_from_finished(partial, out, split, std::unordered_set<std::string>(pictures.begin(), pictures.end()));
  }

  const std::unordered_set<std::string> done(partial.sources.begin(), partial.sources.end());
  std::vector<std::string> todo;
  for (const auto& picture : pictures)
    if (!done.count(picture)) todo.push_back(picture);
  const std::int64_t reused = std::int64_t(partial.sources.size());

  AppendFile rows(partial.features().string(), partial.sources.size() * partial.row_bytes(), 0);
  AppendFile log(partial.log().string(), partial.log_bytes, 0);
  std::vector<std::string> skipped;
  const auto skip = [&](const std::string& source, const std::string& why) {
    warn("skipped " + why);
    skipped.push_back(source + "\t" + without_line_breaks(why));
  };

  const auto& pre = options.preprocessing;
  const std::size_t picture_floats = 3 * std::size_t(pre.width) * std::size_t(pre.height);
  PictureQueue queue(todo, pre, options.limits, options.decode_threads, 2 * std::size_t(options.batch_size));
  ProgressBar progress("features", std::int64_t(todo.size()), "pictures", options.show_progress);
  std::int64_t handled = 0, computed = 0;
  for (bool more = true; more;) {
    std::vector<PreparedPicture> batch;
    while (std::int64_t(batch.size()) < options.batch_size) {
      auto picture = queue.next();
      if (!picture) {
        more = false;
        break;
      }
      if (!picture->problem.empty()) {
        skip(todo[picture->position], picture->problem);
        progress.update(++handled);
        continue;
      }
      batch.push_back(std::move(*picture));
    }
    if (batch.empty()) continue;
    auto images = torch::empty({std::int64_t(batch.size()), 3, pre.height, pre.width});
    for (std::size_t i = 0; i < batch.size(); ++i)
      std::copy(batch[i].pixels.begin(), batch[i].pixels.end(), images.data_ptr<float>() + i * picture_floats);
    const auto results = backbone.run(images);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto& source = todo[batch[i].position];
      const auto& result = results[i];
      progress.update(++handled);
      if (!result.problem.empty()) {
        skip(source, source + ": " + result.problem);
        continue;
      }
      if (partial.regions == 0) partial.set_shape(result.features.size(0), result.features.size(1));
      if (result.features.size(0) != partial.regions || result.features.size(1) != partial.feature_dim)
        throw Error(options.backbone + ": gave " + source + " " + std::to_string(result.features.size(0)) + "x" +
                    std::to_string(result.features.size(1)) + " region features where earlier pictures had " +
                    std::to_string(partial.regions) + "x" + std::to_string(partial.feature_dim));
      rows.write(result.features.data_ptr<float>(), partial.row_bytes());
      const auto line = nlohmann::json{{"source", source}, {"regions", boxes_json(result.boxes)}}.dump() + "\n";
      log.write(line.data(), line.size());
      partial.sources.push_back(source);
      partial.boxes.push_back(result.boxes);
      ++computed;
    }
  }
  progress.finish();

  const auto skipped_path = out / (split + "_skipped.txt");
  write_lines(skipped_path, skipped);
  const std::int64_t total = std::int64_t(partial.sources.size());
  if (total == 0)
    throw Error("no picture could be used (" + std::to_string(skipped.size()) + " skipped, listed in " +
                skipped_path.string() + ")");

  // The outputs, each written atomically; the partial run goes only after all of them are in place.
  FeatureSummary summary;
  summary.features_path = (out / (split + "_ims.npy")).string();
  {
    NpyWriter npy(summary.features_path, DType::Float32, {total, partial.regions, partial.feature_dim});
    std::ifstream in(partial.features(), std::ios::binary);
    std::vector<float> chunk(std::size_t(partial.regions * partial.feature_dim) * 256);
    for (std::int64_t row = 0; row < total;) {
      const auto count = std::min<std::int64_t>(256, total - row);
      const auto floats = std::size_t(count * partial.regions * partial.feature_dim);
      if (!in.read(reinterpret_cast<char*>(chunk.data()), std::streamsize(floats * sizeof(float))))
        throw IoError(partial.features().string() + ": cannot read back the computed features");
      npy.write(chunk.data(), floats);
      row += count;
    }
    npy.finish();
  }
  std::vector<std::string> info_lines;
  for (std::size_t row = 0; row < partial.sources.size(); ++row) {
    ImageInfo info;
    info.description = fs::path(partial.sources[row]).filename().string();
    info.picture = partial.sources[row];
    for (const auto& box : partial.boxes[row]) info.regions.push_back(box);
    info_lines.push_back(image_info_json(info));
  }
  write_lines(out / (split + "_images.txt"), partial.sources);
  write_lines(out / (split + "_images.jsonl"), info_lines);
  summary.rows = total;
  summary.computed = computed;
  summary.skipped = std::int64_t(skipped.size());
  summary.regions = partial.regions;
  summary.feature_dim = partial.feature_dim;
  summary.seconds = clock.milliseconds() / 1000;
  const nlohmann::json record = {{"settings", settings},
                                 {"pictures", total},
                                 {"regions_per_picture", partial.regions},
                                 {"feature_dim", partial.feature_dim},
                                 {"skipped", summary.skipped},
                                 {"computed_by_last_run", computed},
                                 {"reused_by_last_run", reused}};
  write_file_atomically((out / (split + "_features.json")).string(),
                        [&](std::ostream& stream) { stream << record.dump(2) << "\n"; });
  remove_tree(partial.dir.string());
  return summary;
}

}  // namespace imram
