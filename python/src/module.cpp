// The Python module `imram._imram` (docs/python.md): the library's own functions, as the command
// line calls them, with numpy arrays in and out. Every computation runs with the GIL released
// and polls for Ctrl-C between its blocks (util/interruption.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "arrays.h"
#include "imram/data/precomp_dataset.h"
#include "imram/data/tokenizer.h"
#include "imram/engine/encoding.h"
#include "imram/engine/explain.h"
#include "imram/engine/scorer.h"
#include "imram/error.h"
#include "imram/eval/evaluator.h"
#include "imram/metrics/recall.h"
#include "imram/model/checkpoint.h"
#include "imram/model/config.h"
#include "imram/model/model_dir.h"
#include "imram/runtime/runtime.h"
#include "imram/runtime/tensor_memory.h"
#include "imram/search/index_dir.h"
#include "imram/search/results.h"
#include "imram/search/search_params.h"
#include "imram/util/interruption.h"
#include "imram/util/log.h"

namespace py = pybind11;
using imram::python::float_input;
using imram::python::int_input;
using imram::python::to_numpy;

namespace {

// Raised for imram::Error (the input is wrong) and imram::IoError (the system failed); both
// derive from imram.Error, so `except imram.Error` catches everything the library refuses.
PyObject* error_type = nullptr;
PyObject* input_error_type = nullptr;
PyObject* io_error_type = nullptr;

PyObject* new_exception(py::module_& module, const char* name, py::tuple bases, const char* doc) {
  const std::string qualified = std::string("imram.") + name;
  auto* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
  if (!type) throw py::error_already_set();
  module.attr(name) = py::handle(type);
  return type;
}

// Library work on this thread with the GIL released; Ctrl-C raises KeyboardInterrupt at the next
// block boundary. The interpreter is asked at most every 50 ms (it needs the GIL).
class LibraryCall {
 public:
  LibraryCall()
      : check_([last = std::chrono::steady_clock::now()]() mutable {
          const auto now = std::chrono::steady_clock::now();
          if (now - last < std::chrono::milliseconds(50)) return false;
          last = now;
          py::gil_scoped_acquire gil;
          if (PyErr_CheckSignals() == 0) return false;
          PyErr_Clear();  // raised again as KeyboardInterrupt once the call has unwound
          return true;
        }) {}

 private:
  imram::ScopedInterruptCheck check_;
  py::gil_scoped_release release_;
};

// As the command line keeps freed memory for reuse (cli/allocator.cpp, with jemalloc), so does
// LibTorch in a process that imported the module (runtime/tensor_memory.h): with the interpreter's
// malloc a score was 7 % slower than `imram score` (docs/python.md#speed). Up to a quarter of the
// machine's memory is kept; IMRAM_KEEP_FREED_MEMORY=0 leaves LibTorch's allocator alone.
void keep_freed_memory() {
  const char* setting = std::getenv("IMRAM_KEEP_FREED_MEMORY");
  if (setting && std::string(setting) == "0") return;
  const auto pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  const std::size_t physical = pages > 0 && page_size > 0 ? std::size_t(pages) * std::size_t(page_size) : 0;
  imram::keep_freed_tensor_memory(physical ? physical / 4 : std::size_t(1) << 30);
}

py::object json_to_python(const std::string& text) { return py::module_::import("json").attr("loads")(text); }

void require_path(const std::string& path, const std::string& what) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    PyErr_SetString(PyExc_FileNotFoundError, (path + ": no such " + what).c_str());
    throw py::error_already_set();
  }
}

// A model and the directory it came from (empty for one imported and not saved).
struct PyModel {
  imram::Model model;
  std::string path;
};

PyModel load(const std::string& path, const std::string& device, int threads) {
  require_path(path, "model directory");
  imram::set_thread_count(threads);
  PyModel loaded;
  loaded.path = path;
  LibraryCall call;
  loaded.model = imram::load_model(path, imram::parse_device(device));
  return loaded;
}

PyModel import_checkpoint(const std::string& source, const std::optional<std::string>& vocab,
                          const std::optional<std::string>& out) {
  require_path(source, "checkpoint or reference weight directory");
  if (vocab) require_path(*vocab, "vocabulary file");
  PyModel imported;
  LibraryCall call;
  imported.model = std::filesystem::is_directory(source) ? imram::import_reference_model(source, vocab.value_or(""))
                                                         : imram::import_checkpoint(source, vocab.value_or("")).model;
  if (out) {
    imram::save_model(*out, imported.model);
    imported.path = *out;
  }
  return imported;
}

// Captions as the library takes them: a list of strings (tokenized with the model's vocabulary),
// one string, or a pair of arrays (ids (M, L), lengths (M)).
imram::TokenIds caption_ids(const PyModel& self, const py::object& captions) {
  if (py::isinstance<py::tuple>(captions) && py::len(captions) == 2 &&
      !py::isinstance<py::str>(captions[py::int_(0)])) {
    const auto ids = int_input(captions[py::int_(0)], "caption ids", 2);
    const auto lengths = int_input(captions[py::int_(1)], "caption lengths", 1);
    return imram::caption_ids_from_arrays(ids.data, ids.shape[0], ids.shape[1], lengths.data, lengths.shape[0],
                                          self.model.config().vocab_size, "caption ids", "caption lengths");
  }
  std::vector<std::string> texts;
  if (py::isinstance<py::str>(captions)) {
    texts.push_back(captions.cast<std::string>());
  } else {
    try {
      texts = captions.cast<std::vector<std::string>>();
    } catch (const py::cast_error&) {
      throw py::value_error("captions: expected a list of strings or a pair (ids, lengths) of arrays");
    }
  }
  if (texts.empty()) throw py::value_error("captions: the list is empty");
  if (!self.model.vocabulary)
    throw py::value_error((self.path.empty() ? std::string("the model") : self.path) +
                          " has no vocabulary: give captions as (ids, lengths)");
  return imram::encode_caption_texts(*self.model.vocabulary, texts, "captions");
}

py::tuple encode_captions(PyModel& self, const py::object& captions) {
  const auto ids = caption_ids(self, captions);
  imram::EncodedCaptions encoded;
  {
    LibraryCall call;
    encoded = imram::encode_caption_ids(*self.model.net, ids);
  }
  return py::make_tuple(to_numpy(encoded.words), to_numpy(encoded.lengths));
}

py::array encode_images(PyModel& self, const py::object& images) {
  const auto features = float_input(images, "images", 3);
  torch::Tensor regions;
  {
    LibraryCall call;
    regions = imram::encode_image_tensor(*self.model.net, features.tensor, "images").regions;
  }
  return to_numpy(regions);
}

py::array score(PyModel& self, const py::object& images, const py::object& captions, std::size_t memory_budget_mb) {
  const auto features = float_input(images, "images", 3);
  const auto ids = caption_ids(self, captions);
  torch::Tensor scores;
  {
    LibraryCall call;
    const auto encoded_images = imram::encode_image_tensor(*self.model.net, features.tensor, "images");
    const auto encoded_captions = imram::encode_caption_ids(*self.model.net, ids);
    imram::ScoreOptions options;
    options.memory_budget = memory_budget_mb << 20;
    scores = imram::score_pairs(*self.model.net, encoded_images, encoded_captions, options).total;
  }
  return to_numpy(scores);
}

py::dict explain(PyModel& self, const py::object& image, const std::string& caption) {
  const auto features = float_input(image, "image", 2);
  if (features.tensor.size(1) != self.model.config().img_dim)
    throw py::value_error("image: regions have " + std::to_string(features.tensor.size(1)) +
                          " features but the model expects img_dim " + std::to_string(self.model.config().img_dim));
  imram::Explanation explanation;
  {
    LibraryCall call;
    imram::check_finite_features(features.tensor.unsqueeze(0), 0, "image");
    explanation = imram::explain_pair(self.model, features.tensor.data_ptr<float>(), features.tensor.size(0), caption);
  }
  py::list tokens, directions;
  for (const auto& token : explanation.tokens)
    tokens.append(
        py::dict(py::arg("text") = token.text, py::arg("known") = token.known, py::arg("special") = token.special));
  for (const auto& direction : explanation.directions) {
    py::list steps;
    for (const auto& step : direction.steps) {
      const auto rows = std::int64_t(step.attention.size());
      const auto columns = rows ? std::int64_t(step.attention.front().size()) : 0;
      auto attention = torch::empty({rows, columns});
      for (std::int64_t q = 0; q < rows; ++q)
        std::copy(step.attention[q].begin(), step.attention[q].end(), attention[q].data_ptr<float>());
      py::dict entry(py::arg("similarity") = step.similarity, py::arg("attention") = to_numpy(attention));
      entry["gate_mean"] =
          step.gate_mean.empty() ? py::object(py::none()) : py::object(to_numpy(torch::tensor(step.gate_mean)));
      steps.append(entry);
    }
    directions.append(py::dict(py::arg("name") = direction.name, py::arg("query") = direction.query,
                               py::arg("context") = direction.context, py::arg("score") = direction.score,
                               py::arg("steps") = steps));
  }
  return py::dict(py::arg("mode") = explanation.mode, py::arg("iteration_steps") = explanation.iteration_steps,
                  py::arg("regions") = explanation.regions, py::arg("tokens") = tokens,
                  py::arg("directions") = directions, py::arg("score") = explanation.score);
}

py::object metrics(const py::object& sims, bool fold5) {
  const auto scores = float_input(sims, "sims", 2);
  std::string json;
  {
    LibraryCall call;
    const auto values = scores.tensor.to(torch::kFloat64).contiguous();
    json = imram::metrics_json(imram::metrics_of_matrix(values.data_ptr<double>(), values.size(0), values.size(1),
                                                        fold5, "sims", imram::thread_count()));
  }
  return json_to_python(json);
}

py::object evaluate(PyModel& model, const std::string& data, const std::string& split, bool fold5,
                    std::int64_t max_images, bool progress, bool return_sims) {
  require_path(data, "dataset directory");
  if (!model.model.vocabulary)
    throw py::value_error((model.path.empty() ? std::string("the model") : model.path) + " has no vocabulary");
  imram::EvalResult result;
  {
    LibraryCall call;
    const auto opened = imram::PrecompSplit::open(data, split);
    imram::EvalOptions options;
    options.fold5 = fold5;
    options.show_progress = progress;
    options.dataset_dir = data;
    options.max_images = max_images;
    result = imram::evaluate(*model.model.net, *model.model.vocabulary, opened, options);
  }
  py::dict out = json_to_python(imram::eval_json(result));
  out["seconds"] = result.seconds;
  if (return_sims) out["sims"] = to_numpy(result.sims);
  return out;
}

// What one search call returns: arrays for programs, the command line's JSON for people.
struct SearchResults {
  py::array ids;     // (queries, k) int64: image (text queries) or caption (image queries) indices
  py::array scores;  // (queries, k) float32: IMRAM's scores
  py::array stage1;  // (queries, k) float32: the shortlist's scores, NaN where none proposed the item
  py::list answers;  // per query, the object `imram search --json` prints
};

// The search's lists as `imram search` takes them: each automatic unless given.
imram::SearchLists lists_of(std::optional<std::int64_t> shortlist, std::optional<std::int64_t> prefilter,
                            std::optional<std::int64_t> step1) {
  return {shortlist.value_or(imram::kDefaultShortlist), prefilter.value_or(imram::kDefaultPrefilter),
          step1.value_or(imram::kDefaultStep1)};
}

class PyIndex {
 public:
  PyIndex(const std::string& path, const std::string& device, const std::optional<std::string>& model) {
    require_path(path, "index directory");
    if (model) require_path(*model, "model directory");
    LibraryCall call;
    index_ = imram::GalleryIndex::open(path, imram::parse_device(device), model.value_or(""));
    device_ = device;
  }

  std::shared_ptr<const imram::GalleryIndex> opened() const {
    std::lock_guard lock(mutex_);
    if (!index_) throw py::value_error("the index is closed");
    return index_;
  }

  void close() {
    std::lock_guard lock(mutex_);
    index_.reset();
  }

  void reopen() {
    const auto path = opened()->dir();
    LibraryCall call;
    auto fresh = imram::GalleryIndex::open(path, imram::parse_device(device_));
    std::lock_guard lock(mutex_);
    index_ = std::move(fresh);
  }

  SearchResults search(const std::vector<std::string>& texts, const std::vector<std::int64_t>& images, std::int64_t k,
                       const imram::SearchLists& lists, int nprobe, int ef_search) const {
    const auto index = opened();
    const bool by_text = !texts.empty();
    if (k < 1) throw py::value_error("k: must be at least 1, got " + std::to_string(k));
    std::vector<imram::EncodedQuery> queries;
    std::vector<std::vector<imram::Hit>> hits;
    imram::SearchStats stats;
    double encode_ms = 0;
    std::int64_t scored_shortlist = 0;
    {
      LibraryCall call;
      const auto side = by_text ? imram::GallerySide::Images : imram::GallerySide::Captions;
      const auto resolved = index->resolved_lists(side, lists);
      scored_shortlist = resolved.shortlist;
      const auto searcher = index->searcher(side, resolved);
      const auto started = std::chrono::steady_clock::now();
      if (by_text)
        for (const auto& text : texts) queries.push_back(index->text_query(text));
      else
        for (const auto image : images) queries.push_back(index->image_query(image));
      encode_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      imram::SearchParams params;
      params.nprobe = nprobe;
      params.ef_search = ef_search;
      hits = searcher->search_many(queries, k, &stats, params);
    }
    const auto rows = std::int64_t(hits.size());
    const auto columns = rows ? std::int64_t(hits.front().size()) : 0;
    auto ids = torch::empty({rows, columns}, torch::kInt64);
    auto scores = torch::empty({rows, columns});
    auto stage1 = torch::full({rows, columns}, std::numeric_limits<float>::quiet_NaN());
    auto ids_of = ids.accessor<std::int64_t, 2>();
    auto scores_of = scores.accessor<float, 2>(), stage1_of = stage1.accessor<float, 2>();
    SearchResults results;
    for (std::int64_t q = 0; q < rows; ++q) {
      for (std::int64_t r = 0; r < columns; ++r) {
        const auto& hit = hits[q][r];
        ids_of[q][r] = hit.index;
        scores_of[q][r] = float(hit.score);
        if (hit.stage1) stage1_of[q][r] = float(*hit.stage1);
      }
      imram::SearchAnswer answer;
      answer.hits = hits[q];
      answer.stats = stats;
      answer.encode_ms = encode_ms;
      answer.shortlist = scored_shortlist;
      results.answers.append(
          json_to_python(imram::search_answer_json(*index, queries[q], by_text ? -1 : images[q], answer)
                             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    }
    results.ids = to_numpy(ids);
    results.scores = to_numpy(scores);
    results.stage1 = to_numpy(stage1);
    return results;
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const imram::GalleryIndex> index_;
  std::string device_;
};

std::vector<std::string> query_texts(const py::object& queries) {
  if (py::isinstance<py::str>(queries)) return {queries.cast<std::string>()};
  std::vector<std::string> texts;
  try {
    texts = queries.cast<std::vector<std::string>>();
  } catch (const py::cast_error&) {
    throw py::value_error("queries: expected a string or a list of strings");
  }
  if (texts.empty()) throw py::value_error("queries: the list is empty");
  return texts;
}

std::vector<std::int64_t> query_images(const py::object& images) {
  if (py::isinstance<py::int_>(images)) return {images.cast<std::int64_t>()};
  const auto ids = int_input(images, "images", 1);
  return std::vector<std::int64_t>(ids.data, ids.data + ids.shape[0]);
}

std::string model_dir_of(const py::object& model) {
  if (py::isinstance<py::str>(model) || py::isinstance(model, py::module_::import("os").attr("PathLike")))
    return py::str(model).cast<std::string>();
  const auto& loaded = model.cast<const PyModel&>();
  if (loaded.path.empty())
    throw py::value_error("model: an imported model that was not saved; give import_checkpoint an out= directory");
  return loaded.path;
}

}  // namespace

PYBIND11_MODULE(_imram, module) {
  module.doc() = "IMRAM cross-modal retrieval: the imram library's scoring, evaluation and search.";
  module.attr("__version__") = IMRAM_VERSION;
  // LibTorch starts with one thread here; the command line's default is every core.
  imram::set_thread_count(0);
  keep_freed_memory();

  error_type = new_exception(module, "Error", py::make_tuple(py::handle(PyExc_Exception)),
                             "Base of every error the imram library raises.");
  input_error_type =
      new_exception(module, "InputError", py::make_tuple(py::handle(error_type), py::handle(PyExc_ValueError)),
                    "The input is wrong (a file, array, query or option): the message names it.");
  io_error_type = new_exception(module, "IoError", py::make_tuple(py::handle(error_type), py::handle(PyExc_OSError)),
                                "The system failed an operation that should have worked (a read, write or mapping).");
  // The library's messages as Python's own: warnings through `warnings`, notes and errors to the
  // "imram" logger. A message Python refuses (a warnings filter set to "error") or one that comes
  // while the interpreter ends goes to standard error as the command line writes it.
  imram::set_log_sink([](imram::LogLevel level, const std::string& line) {
    if (Py_IsInitialized() != 0) {
      py::gil_scoped_acquire gil;
      try {
        if (level == imram::LogLevel::Warning)
          py::module_::import("warnings").attr("warn")(line, py::handle(PyExc_UserWarning), 2);
        else
          py::module_::import("logging").attr("getLogger")("imram").attr(
              level == imram::LogLevel::Note ? "info" : "error")(line);
        return;
      } catch (py::error_already_set&) {
      }
    }
    const auto text = imram::default_log_line(level, line) + "\n";
    std::fputs(text.c_str(), stderr);
  });
  py::module_::import("atexit").attr("register")(py::cpp_function([] { imram::set_log_sink({}); }));
  py::register_exception_translator([](std::exception_ptr pointer) {
    try {
      if (pointer) std::rethrow_exception(pointer);
    } catch (const imram::Interrupted&) {
      PyErr_SetNone(PyExc_KeyboardInterrupt);
    } catch (const imram::IoError& error) {
      PyErr_SetString(io_error_type, error.what());
    } catch (const imram::Error& error) {
      PyErr_SetString(input_error_type, error.what());
    } catch (const c10::Error& error) {
      PyErr_SetString(error_type, error.what_without_backtrace());
    }
  });

  module.def("tokenize", &imram::tokenize, py::arg("text"),
             "The caption's tokens as the authors' vocabularies were built (NLTK's word_tokenize of the "
             "lower-cased text).");
  module.def("set_threads", &imram::set_thread_count, py::arg("threads"),
             "Threads for every computation of this process (0: all cores).");
  module.def("threads", &imram::thread_count, "Threads computations use.");
  module.def("release_memory", &imram::release_kept_tensor_memory,
             "Returns the memory kept from freed tensors for reuse to the system; the bytes released.");
  module.def("metrics", &metrics, py::arg("sims"), py::arg("fold5") = false,
             "R@1/5/10, median and mean rank of both directions and rsum of an (images x captions) score "
             "matrix whose caption j belongs to image j // (captions / images): the dict of `imram metrics "
             "--json`. fold5: the COCO 1K protocol (five folds, averaged).");

  py::class_<PyModel>(module, "Model", "An IMRAM model directory, loaded for scoring.")
      .def(py::init(&load), py::arg("path"), py::arg("device") = "cpu", py::arg("threads") = 0,
           "Loads the model directory `path` onto `device` (cpu, cuda, cuda:N); threads: for the whole "
           "process (0: all cores).")
      .def_static("import_checkpoint", &import_checkpoint, py::arg("source"), py::arg("vocab") = py::none(),
                  py::arg("out") = py::none(),
                  "A model from the authors' checkpoint (model_best.pth.tar, read without running pickled "
                  "code) or from a reference weight directory; vocab: the vocabulary JSON it was trained with "
                  "(without it, captions only as ids); out: also write it as a model directory.")
      .def_property_readonly(
          "path", [](const PyModel& self) { return self.path; },
          "The model directory (empty for an imported model not saved).")
      .def_property_readonly(
          "config", [](const PyModel& self) { return json_to_python(imram::to_json(self.model.config()).dump()); },
          "Every option of the model (config.json), as a dict.")
      .def_property_readonly("has_vocabulary", [](const PyModel& self) { return bool(self.model.vocabulary); })
      .def("encode_images", &encode_images, py::arg("images"),
           "Encoded regions (n, regions, d) float32 of region features (n, regions, img_dim).")
      .def("encode_captions", &encode_captions, py::arg("captions"),
           "Encoded words (m, longest, d) float32 and lengths (m) int64 of captions: a list of strings, or "
           "(ids (m, L), lengths (m)) with <start> and <end> included.")
      .def("score", &score, py::arg("images"), py::arg("captions"), py::arg("memory_budget_mb") = 1024,
           "S(image, caption) for every pair: (images x captions) float32, the numbers of `imram score`. "
           "images: region features (n, regions, img_dim), float32 or float16 (numpy or a CPU tensor); "
           "captions: a list of strings, or (ids, lengths) arrays.")
      .def("explain", &explain, py::arg("image"), py::arg("caption"),
           "The attention, step similarities and gates behind one pair's score (`imram explain --json`): "
           "image: its region features (regions, img_dim); caption: text.");

  module.def("evaluate", &evaluate, py::arg("model"), py::arg("data"), py::arg("split") = "test",
             py::arg("fold5") = false, py::arg("max_images") = 0, py::arg("progress") = false,
             py::arg("return_sims") = false,
             "`imram eval`: every pair of a dataset split scored and the standard protocol applied; the dict "
             "of `imram eval --json` (with twin_accuracy on synthetic splits), plus seconds and, with "
             "return_sims, the score matrix.");

  py::class_<SearchResults>(module, "SearchResults", "The answers to a batch of queries, best first.")
      .def_readonly("ids", &SearchResults::ids,
                    "(queries, k) int64: images for text queries, captions for image queries")
      .def_readonly("scores", &SearchResults::scores, "(queries, k) float32: IMRAM's scores")
      .def_readonly("stage1", &SearchResults::stage1, "(queries, k) float32: the shortlist's scores (NaN: none)")
      .def_readonly("answers", &SearchResults::answers, "per query, the dict `imram search --json` prints")
      .def("__len__", [](const SearchResults& self) { return py::len(self.answers); });

  py::class_<PyIndex>(module, "Index", "A search index directory (imram index build), opened for search.")
      .def(py::init<const std::string&, const std::string&, const std::optional<std::string>&>(), py::arg("path"),
           py::arg("device") = "cpu", py::arg("model") = py::none(),
           "Opens the index at `path`; model: refuse unless it was built with this model directory.")
      .def_static(
          "build",
          [](const py::object& model, const std::string& data, const std::string& split, const std::string& out,
             const std::string& store, const std::optional<std::string>& faiss, bool memory_halves,
             std::optional<int> residual_bits, bool exact_store, bool progress, const std::string& device) {
            const auto model_dir = model_dir_of(model);
            require_path(data, "dataset directory");
            {
              LibraryCall call;
              imram::IndexOptions options;
              options.faiss_factory = faiss.value_or("");
              options.store = imram::parse_store_dtype(store);
              options.memory_halves = memory_halves;
              options.exact_store = exact_store;
              options.residual_bits = residual_bits.value_or(imram::kAutoResidualBits);
              options.show_progress = progress;
              options.device = device;
              auto writer = imram::IndexWriter::create(out, model_dir, options);
              writer.add_split(imram::PrecompSplit::open(data, split));
              writer.commit();
            }
            return std::make_unique<PyIndex>(out, device, std::nullopt);
          },
          py::arg("model"), py::arg("data"), py::arg("split") = "test", py::kw_only(), py::arg("out"),
          py::arg("store") = "float16", py::arg("faiss") = py::none(), py::arg("memory_halves") = false,
          py::arg("residual_bits") = py::none(), py::arg("exact_store") = true, py::arg("progress") = false,
          py::arg("device") = "cpu",
          "`imram index build`: encodes a dataset split into a new index at `out` (replaced only if it is an "
          "index) and opens it. model: a model directory or a Model loaded from one. residual_bits and "
          "exact_store=False: --residual-bits and --no-exact-store (compressed fragments, approximate scores).")
      .def(
          "add",
          [](PyIndex& self, const std::string& data, const std::string& split, bool progress) {
            require_path(data, "dataset directory");
            const auto dir = self.opened()->dir();
            {
              LibraryCall call;
              auto writer = imram::IndexWriter::append(dir, progress);
              writer.add_split(imram::PrecompSplit::open(data, split));
              writer.commit();
            }
            self.reopen();
          },
          py::arg("data"), py::arg("split"), py::arg("progress") = false,
          "`imram index add`: appends a dataset split's images and captions, then searches them too.")
      .def(
          "search",
          [](const PyIndex& self, const py::object& queries, std::int64_t k, std::optional<std::int64_t> shortlist,
             std::optional<std::int64_t> prefilter, std::optional<std::int64_t> step1, std::optional<int> nprobe,
             std::optional<int> ef_search) {
            return self.search(query_texts(queries), {}, k, lists_of(shortlist, prefilter, step1), nprobe.value_or(0),
                               ef_search.value_or(0));
          },
          py::arg("queries"), py::arg("k") = 10, py::arg("shortlist") = py::none(), py::arg("prefilter") = py::none(),
          py::arg("step1") = py::none(), py::arg("nprobe") = py::none(), py::arg("ef_search") = py::none(),
          "Ranks the images for each text query (a string or a list), as `imram search --query`: shortlist "
          "(N for all K steps, 0: exhaustive), prefilter (the cascade's first list, 0: none) and step1 (what "
          "the coded first step keeps for exact step 1, 0: no coded step) default to the automatic lists; "
          "nprobe and ef_search to FAISS's defaults.")
      .def(
          "search_images",
          [](const PyIndex& self, const py::object& images, std::int64_t k, std::optional<std::int64_t> shortlist,
             std::optional<std::int64_t> prefilter, std::optional<std::int64_t> step1, std::optional<int> nprobe,
             std::optional<int> ef_search) {
            return self.search({}, query_images(images), k, lists_of(shortlist, prefilter, step1), nprobe.value_or(0),
                               ef_search.value_or(0));
          },
          py::arg("images"), py::arg("k") = 10, py::arg("shortlist") = py::none(), py::arg("prefilter") = py::none(),
          py::arg("step1") = py::none(), py::arg("nprobe") = py::none(), py::arg("ef_search") = py::none(),
          "Ranks the captions for each query image (an index or an array of indices of the index's images), "
          "as `imram search --image`.")
      .def_property_readonly("path", [](const PyIndex& self) { return self.opened()->dir(); })
      .def_property_readonly("num_images", [](const PyIndex& self) { return self.opened()->num_images(); })
      .def_property_readonly("num_captions", [](const PyIndex& self) { return self.opened()->num_captions(); })
      .def_property_readonly(
          "captions", [](const PyIndex& self) { return self.opened()->caption_texts(); }, "The captions' texts.")
      .def_property_readonly("has_shortlist", [](const PyIndex& self) { return self.opened()->has_shortlist(); })
      .def_property_readonly(
          "exact_store", [](const PyIndex& self) { return self.opened()->store()->exact(); },
          "False for an index built without its exact store: its scores come from decoded residuals.")
      .def(
          "__len__", [](const PyIndex& self) { return self.opened()->num_images(); }, "The images it holds.")
      .def(
          "verify",
          [](const PyIndex& self) {
            const auto index = self.opened();
            LibraryCall call;
            index->verify();
          },
          "`imram index verify`: every stored file against the manifest's checksums.")
      .def("close", &PyIndex::close, "Releases the index; searches already running finish.")
      .def(
          "__enter__", [](PyIndex& self) -> PyIndex& { return self; }, py::return_value_policy::reference)
      .def("__exit__", [](PyIndex& self, const py::args&) { self.close(); });
}
