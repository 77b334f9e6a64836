#include "imram/features/extraction.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
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

std::string lowercase_extension(const fs::path& path) {
  auto extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return extension;
}

bool has_picture_extension(const fs::path& path) {
  const auto extension = lowercase_extension(path);
  return extension == ".jpg" || extension == ".jpeg" || extension == ".png" || extension == ".webp" ||
         extension == ".bmp";
}

// Pictures of a format imram does not read: said, not passed over in silence.
bool has_unread_picture_extension(const fs::path& path) {
  const auto extension = lowercase_extension(path);
  return extension == ".tif" || extension == ".tiff" || extension == ".gif" || extension == ".heic" ||
         extension == ".heif" || extension == ".avif" || extension == ".jxl";
}

const char* const kUnreadFormat = "a format imram does not read (it reads JPEG, PNG, WebP and BMP: convert it)";

PictureListing pictures_below(const fs::path& folder, const FeatureLog& warn) {
  PictureListing found;
  const auto skip = [&](const fs::path& path, const std::string& reason) {
    warn("skipped " + path.string() + ": " + reason);
    found.skipped.push_back({path.string(), reason});
  };
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
      // A dangling link or an unreadable entry named as a picture is a picture the user lost.
      if (has_picture_extension(path) || has_unread_picture_extension(path))
        skip(path, "cannot read (" + error.message() + ")");
      else
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
    if (!fs::is_regular_file(status)) continue;
    if (has_picture_extension(path))
      found.pictures.push_back(path.string());
    else if (has_unread_picture_extension(path))
      skip(path, kUnreadFormat);
  }
  std::sort(found.pictures.begin(), found.pictures.end());
  std::sort(found.skipped.begin(), found.skipped.end(),
            [](const SkippedPicture& a, const SkippedPicture& b) { return a.path < b.path; });
  return found;
}

// One path a line; blank lines and lines starting with `#` are not paths.
PictureListing pictures_listed(const fs::path& list, const FeatureLog& warn) {
  std::ifstream in(list);
  if (!in) throw Error(list.string() + ": cannot open the list of pictures");
  PictureListing found;
  std::string line;
  for (std::int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    if (std::any_of(line.begin(), line.end(), [](unsigned char c) { return c < 0x20 && c != '\t'; }))
      throw Error(list.string() + ":" + std::to_string(number) +
                  ": not a list of picture paths (binary data; a picture's name must end in .jpg, .png, ...)");
    fs::path path(line);
    if (path.is_relative()) path = list.parent_path() / path;
    std::error_code error;
    if (fs::is_directory(path, error)) {
      const auto where = list.string() + ":" + std::to_string(number);
      warn("skipped " + path.string() + ": a folder, not a picture (" + where + ")");
      found.skipped.push_back({path.string(), "a folder, not a picture (" + where + ")"});
      continue;
    }
    found.pictures.push_back(path.string());
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

// The unfinished run in {split}_features.partial/: rows of features in features.f32 and one
// line of log.jsonl per row (the row's image info: picture, its stamp, the region boxes, as in
// {split}_images.jsonl), written features first, so that a line always has its row; run.json holds the settings and, after the first row, the row shape.
// A row whose picture has changed since (its stamp) or is no longer listed stays in the files
// and is left out of the outputs; a changed picture gets a new row.
struct Partial {
  fs::path dir;
  nlohmann::json run;
  std::int64_t regions = 0, feature_dim = 0;
  std::vector<std::string> sources;
  std::vector<std::optional<PictureStamp>> stamps;
  std::vector<std::vector<Box>> boxes;
  std::uint64_t log_bytes = 0;

  void add_row(const std::string& source, const std::optional<PictureStamp>& stamp, std::vector<Box> row_boxes,
               const float* features, AppendFile& rows, AppendFile& log) {
    rows.write(features, row_bytes());
    ImageInfo info;
    info.picture = source;
    info.picture_stamp = stamp;
    info.regions.assign(row_boxes.begin(), row_boxes.end());
    const auto line = image_info_json(info) + "\n";
    log.write(line.data(), line.size());
    sources.push_back(source);
    stamps.push_back(stamp);
    boxes.push_back(std::move(row_boxes));
  }

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
    ImageInfo info;
    try {
      info = parse_image_info(line, partial.log().string(), 0);
    } catch (const Error&) {
      break;
    }
    if (info.picture.empty() || std::int64_t(info.regions.size()) != partial.regions ||
        std::any_of(info.regions.begin(), info.regions.end(), [](const auto& box) { return !box; }))
      break;
    partial.sources.push_back(info.picture);
    partial.stamps.push_back(info.picture_stamp);
    partial.boxes.emplace_back();
    for (const auto& box : info.regions) partial.boxes.back().push_back(*box);
    offset += line.size() + 1;
  }
  partial.log_bytes = offset;
}

// A finished earlier run with the same settings seeds the partial one with the rows of pictures
// still listed and unchanged, so that a rerun over a grown folder computes only the new pictures.
void seed_from_finished(Partial& partial, const fs::path& out, const std::string& split,
                        const std::unordered_map<std::string, std::optional<PictureStamp>>& listed) {
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
      const auto now = listed.find(info.picture);
      if (now == listed.end() || !now->second || info.picture_stamp != now->second ||
          std::int64_t(info.regions.size()) != partial.regions)
        continue;
      std::vector<Box> boxes;
      for (const auto& box : info.regions) boxes.push_back(box.value_or(Box{0, 0, 1, 1}));
      partial.add_row(info.picture, info.picture_stamp, std::move(boxes),
                      data + row * partial.regions * partial.feature_dim, rows, log);
    }
    partial.log_bytes = log.bytes();
  } catch (const Error&) {
    // An earlier output that does not read back cleanly is recomputed, not trusted.
    partial.sources.clear();
    partial.stamps.clear();
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

// `{split}_skipped.txt` is name, tab, reason: a name keeps its tabs and line breaks as \t, \n, \r
// (and a backslash as \\), so that every skipped picture is one line.
std::string escaped_name(const std::string& name) {
  std::string out;
  for (const char c : name) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out;
}

// A decoder's or backbone's message starts with the picture's path, which the line already has.
std::string reason_for(const std::string& source, const std::string& message) {
  const auto prefix = source + ": ";
  return message.compare(0, prefix.size(), prefix) == 0 ? message.substr(prefix.size()) : message;
}

std::string without_line_breaks(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\t', ' ');
  return text;
}

using Stamps = std::unordered_map<std::string, std::optional<PictureStamp>>;

// The work so far: an unfinished run with these settings, resumed; else a fresh one, seeded with
// the rows of a finished run's unchanged pictures.
Partial open_partial(const fs::path& out, const std::string& split, const nlohmann::json& settings,
                     const Stamps& listed) {
  Partial partial;
  partial.dir = out / (split + "_features.partial");
  if (fs::exists(partial.run_file())) {
    partial.run = read_json_file(partial.run_file().string(), "unfinished run");
    load_partial(partial);
    if (partial.run.value("settings", nlohmann::json()) == settings) return partial;
    // An unfinished run that wrote no row (its backbone failed at once, say) holds nothing to lose.
    if (!partial.sources.empty())
      throw Error(partial.dir.string() +
                  ": an unfinished run with another backbone or preprocessing; rerun with "
                  "the same options, or remove that folder to start over");
  }
  Partial fresh;
  fresh.dir = partial.dir;
  remove_tree(fresh.dir.string());
  fs::create_directories(fresh.dir);
  fresh.run = {{"settings", settings}};
  fresh.save_run();
  seed_from_finished(fresh, out, split, listed);
  return fresh;
}

// The rows that still hold a listed picture's features (its stamp unchanged), one per picture:
// two current rows of one picture hold the same features, and the first is kept.
std::vector<bool> current_rows(const Partial& partial, const Stamps& listed) {
  std::vector<bool> current(partial.sources.size(), false);
  std::unordered_set<std::string> seen;
  for (std::size_t row = 0; row < partial.sources.size(); ++row) {
    const auto now = listed.find(partial.sources[row]);
    current[row] = now != listed.end() && now->second && partial.stamps[row] == now->second &&
                   seen.insert(partial.sources[row]).second;
  }
  return current;
}

// Runs the backbone over `todo` (decoding ahead on the queue's threads) and appends each row to
// `partial`; a picture that cannot be used goes to `skip`. Returns the rows computed.
std::int64_t compute_rows(const std::vector<std::string>& todo, const FeatureOptions& options, Backbone& backbone,
                          const Stamps& listed, Partial& partial,
                          const std::function<void(const std::string&, const std::string&)>& skip) {
  AppendFile rows(partial.features().string(), partial.sources.size() * partial.row_bytes(), 0);
  AppendFile log(partial.log().string(), partial.log_bytes, 0);
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
        skip(source, result.problem);
        continue;
      }
      if (partial.regions == 0) partial.set_shape(result.features.size(0), result.features.size(1));
      if (result.features.size(0) != partial.regions || result.features.size(1) != partial.feature_dim)
        throw Error(options.backbone + ": gave " + source + " " + std::to_string(result.features.size(0)) + "x" +
                    std::to_string(result.features.size(1)) + " region features where earlier pictures had " +
                    std::to_string(partial.regions) + "x" + std::to_string(partial.feature_dim));
      partial.add_row(source, listed.at(source), result.boxes, result.features.data_ptr<float>(), rows, log);
      ++computed;
    }
  }
  progress.finish();
  return computed;
}

// {split}_ims.npy, _images.txt and _images.jsonl from the kept rows, in the listing's order (as a
// run from scratch writes them, whatever the history), each written atomically. Returns the rows
// written; none when no listed picture has a row (nothing is written then).
std::int64_t write_outputs(const Partial& partial, const std::vector<bool>& row_kept,
                           const std::vector<std::string>& pictures, const fs::path& out, const std::string& split) {
  std::unordered_map<std::string, std::size_t> row_of;
  for (std::size_t row = 0; row < row_kept.size(); ++row)
    if (row_kept[row]) row_of.emplace(partial.sources[row], row);
  std::vector<std::size_t> output_rows;
  for (const auto& picture : pictures) {
    const auto found = row_of.find(picture);
    if (found != row_of.end()) output_rows.push_back(found->second);
  }
  const auto total = std::int64_t(output_rows.size());
  if (total == 0) return 0;
  {
    const MappedFile computed_rows(partial.features().string(), row_kept.size() * partial.row_bytes());
    const auto row_floats = std::size_t(partial.regions * partial.feature_dim);
    NpyWriter npy((out / (split + "_ims.npy")).string(), DType::Float32, {total, partial.regions, partial.feature_dim});
    for (const auto row : output_rows)
      npy.write(reinterpret_cast<const float*>(computed_rows.data() + row * partial.row_bytes()), row_floats);
    npy.finish();
  }
  std::vector<std::string> sources, info_lines;
  for (const auto row : output_rows) {
    ImageInfo info;
    info.description = fs::path(partial.sources[row]).filename().string();
    info.picture = partial.sources[row];
    info.picture_stamp = partial.stamps[row];
    for (const auto& box : partial.boxes[row]) info.regions.push_back(box);
    info_lines.push_back(image_info_json(info));
    sources.push_back(partial.sources[row]);
  }
  write_lines(out / (split + "_images.txt"), sources);
  write_lines(out / (split + "_images.jsonl"), info_lines);
  return total;
}

}  // namespace

PictureListing list_pictures(const std::string& folder_or_list, const FeatureLog& warn) {
  std::error_code error;
  const auto status = fs::status(folder_or_list, error);
  PictureListing listed;
  if (fs::is_directory(status)) {
    listed = pictures_below(folder_or_list, warn);
  } else if (fs::is_regular_file(status) && has_picture_extension(folder_or_list)) {
    listed.pictures = {folder_or_list};
  } else if (fs::is_regular_file(status)) {
    listed = pictures_listed(folder_or_list, warn);
  } else {
    throw Error(folder_or_list + ": no such folder or list of pictures" + (error ? " (" + error.message() + ")" : ""));
  }
  PictureListing out;
  out.skipped = std::move(listed.skipped);
  std::unordered_set<std::string> seen;
  for (const auto& path : listed.pictures) {
    const auto absolute = fs::absolute(path).lexically_normal().string();
    if (absolute.find('\n') != std::string::npos) {
      const std::string reason = "a file name with a line break cannot be a line of {split}_images.txt";
      warn("skipped " + without_line_breaks(path) + ": " + reason);
      out.skipped.push_back({absolute, reason});
    } else if (!seen.insert(absolute).second) {
      warn(path + ": listed twice; kept once");
    } else {
      out.pictures.push_back(absolute);
    }
  }
  if (out.pictures.empty())
    throw Error(
        folder_or_list + ": no pictures (.jpg, .jpeg, .png, .webp, .bmp) found" +
        (out.skipped.empty() ? "" : " (" + std::to_string(out.skipped.size()) + " skipped, the warnings say why)"));
  return out;
}

FeatureSummary extract_features(const PictureListing& listing, const std::string& out_dir, const std::string& split,
                                const FeatureOptions& options, const FeatureLog& warn) {
  require_split_name(split);
  if (options.batch_size < 1) throw Error("--batch-size must be at least 1");
  if (fs::is_directory(options.backbone)) throw Error(options.backbone + ": a folder, not a backbone file");
  if (!fs::is_regular_file(options.backbone)) throw Error(options.backbone + ": no such backbone file");
  Backbone backbone(options.backbone, options.contract, options.device, options.regions, options.feature_dim);
  require_writable_directory(out_dir);
  // One run per split and directory: a second would redo all of the first's work and then fail.
  const WriterLock lock((fs::path(out_dir) / (split + "_features.lock")).string(), "split " + split + " of " + out_dir);
  const Stopwatch clock;
  const fs::path out(out_dir);
  const auto settings = settings_json(options);
  // Stamped before any picture is read: a picture that changes during the run then differs from
  // its row's stamp on the next run, which computes it again.
  Stamps listed;
  for (const auto& picture : listing.pictures) listed.emplace(picture, picture_stamp(picture));
  auto partial = open_partial(out, split, settings, listed);
  auto row_kept = current_rows(partial, listed);
  const auto reused = std::int64_t(std::count(row_kept.begin(), row_kept.end(), true));
  std::unordered_set<std::string> done;
  for (std::size_t row = 0; row < row_kept.size(); ++row)
    if (row_kept[row]) done.insert(partial.sources[row]);
  std::vector<std::string> todo;
  for (const auto& picture : listing.pictures)
    if (!done.count(picture)) todo.push_back(picture);

  std::vector<std::string> skipped;
  for (const auto& picture : listing.skipped)
    skipped.push_back(escaped_name(picture.path) + "\t" + without_line_breaks(picture.reason));
  const auto skip = [&](const std::string& source, const std::string& message) {
    const auto reason = reason_for(source, message);
    warn("skipped " + source + ": " + reason);
    skipped.push_back(escaped_name(source) + "\t" + without_line_breaks(reason));
  };
  const auto computed = compute_rows(todo, options, backbone, listed, partial, skip);
  row_kept.resize(partial.sources.size(), true);  // every row computed now is current

  const auto skipped_path = out / (split + "_skipped.txt");
  write_lines(skipped_path, skipped);
  FeatureSummary summary;
  summary.rows = write_outputs(partial, row_kept, listing.pictures, out, split);
  if (summary.rows == 0)
    throw NoUsablePicture("no picture could be used (" + std::to_string(skipped.size()) + " skipped, listed in " +
                          skipped_path.string() + ")");
  summary.features_path = (out / (split + "_ims.npy")).string();
  summary.computed = computed;
  summary.skipped = std::int64_t(skipped.size());
  summary.regions = partial.regions;
  summary.feature_dim = partial.feature_dim;
  summary.seconds = clock.milliseconds() / 1000;
  const nlohmann::json record = {{"settings", settings},
                                 {"pictures", summary.rows},
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
