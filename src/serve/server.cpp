#include "imram/serve/server.h"

#include <ATen/Parallel.h>
#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "connections.h"
#include "embedded.h"
#include "imram/data/tokenizer.h"
#include "imram/engine/encoding.h"
#include "imram/error.h"
#include "imram/image/image_header.h"
#include "imram/serve/pictures.h"
#include "imram/serve/search_request.h"
#include "imram/util/stopwatch.h"

namespace imram {

namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

// A search waiting for the compute thread. Searches of one side that wait together are made
// into one backend call (up to ServerOptions::max_batch), each answered as if alone.
struct PendingSearch {
  SearchRequest request;
  struct Outcome {
    BackendAnswer answer;  // its hits cut to this search's `top`
    Clock::time_point started, finished;
    std::size_t batch = 1;
  };
  std::promise<Outcome> outcome;
};

// One thread runs every model call, in arrival order (a batch runs where its first search was).
class ComputeThread {
 public:
  ComputeThread(SearchBackend& backend, std::size_t max_batch)
      : backend_(backend),
        max_batch_(std::max<std::size_t>(1, max_batch)),
        threads_(at::get_num_threads()),
        thread_([this] { loop(); }) {}
  ~ComputeThread() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    ready_.notify_all();
    thread_.join();
  }

  // Runs `work` on the compute thread and waits for it; its exceptions come back here.
  Json run(std::function<Json()> work) {
    auto task = std::make_shared<std::packaged_task<Json()>>(std::move(work));
    auto result = task->get_future();
    enqueue({[task] { (*task)(); }, nullptr});
    return result.get();
  }

  // Jobs waiting for the compute thread (not the one it runs).
  std::size_t queued() {
    std::lock_guard<std::mutex> lock(mutex_);
    return queue_.size();
  }

  PendingSearch::Outcome search(std::shared_ptr<PendingSearch> search) {
    auto outcome = search->outcome.get_future();
    enqueue({nullptr, std::move(search)});
    return outcome.get();
  }

 private:
  struct Job {
    std::function<void()> work;
    std::shared_ptr<PendingSearch> search;
  };

  void enqueue(Job job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(job));
    }
    ready_.notify_one();
  }

  void loop() {
    // OpenMP's thread count is per thread: the compute thread takes the one the process chose.
    at::set_num_threads(threads_);
    for (;;) {
      Job job;
      std::vector<std::shared_ptr<PendingSearch>> batch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        if (job.search) {
          batch.push_back(job.search);
          for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;)
            if (it->search && it->search->request.by_text == job.search->request.by_text &&
                it->search->request.params == job.search->request.params) {
              batch.push_back(std::move(it->search));
              it = queue_.erase(it);
            } else {
              ++it;
            }
        }
      }
      if (job.work)
        job.work();
      else
        run_batch(batch);
    }
  }

  void run_batch(const std::vector<std::shared_ptr<PendingSearch>>& batch) {
    std::int64_t top = 0;
    std::vector<std::string> texts;
    std::vector<std::int64_t> images;
    for (const auto& search : batch) {
      top = std::max(top, search->request.top);
      if (search->request.by_text)
        texts.push_back(search->request.text);
      else
        images.push_back(search->request.image);
    }
    const auto started = Clock::now();
    std::vector<BackendAnswer> answers;
    try {
      const auto& params = batch.front()->request.params;
      answers = batch.front()->request.by_text ? backend_.search_images(texts, top, params)
                                               : backend_.search_captions(images, top, params);
    } catch (...) {
      if (batch.size() > 1) {
        // One query's failure must not become the others': each again, alone.
        for (const auto& search : batch) run_batch({search});
        return;
      }
      batch.front()->outcome.set_exception(std::current_exception());
      return;
    }
    const auto finished = Clock::now();
    for (std::size_t q = 0; q < batch.size(); ++q) {
      auto& hits = answers[q].answer.hits;
      const auto keep = std::size_t(batch[q]->request.top);
      if (hits.size() > keep) hits.resize(keep);
      batch[q]->outcome.set_value({std::move(answers[q]), started, finished, batch.size()});
    }
  }

  SearchBackend& backend_;
  std::size_t max_batch_;
  int threads_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

// Strict: digits only, in range.
std::optional<std::int64_t> parse_index(const std::string& text) {
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value < 0) return std::nullopt;
  return value;
}

std::string content_type_of(const std::string& path) {
  const auto extension = std::filesystem::path(path).extension().string();
  if (extension == ".png") return "image/png";
  if (extension == ".jpg" || extension == ".jpeg") return "image/jpeg";
  if (extension == ".gif") return "image/gif";
  if (extension == ".webp") return "image/webp";
  if (extension == ".svg") return "image/svg+xml";
  if (extension == ".html") return "text/html; charset=utf-8";
  if (extension == ".js") return "text/javascript; charset=utf-8";
  if (extension == ".css") return "text/css; charset=utf-8";
  return "application/octet-stream";
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the images list");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

struct Server::Impl {
  SearchBackend& backend;
  ServerOptions options;
  std::vector<std::string> images_list;
  GuardedServer http{connection_limits(options)};
  ComputeThread compute{backend, options.max_batch};
  // stop() may come before serve() has started listening (a signal during start-up).
  std::atomic<bool> serving{false}, stop_requested{false}, finished{false};

  Impl(SearchBackend& backend_, const ServerOptions& options_) : backend(backend_), options(options_) {
    if (!options.images_list.empty()) {
      images_list = read_lines(options.images_list);
      if (std::int64_t(images_list.size()) < backend.num_images())
        throw Error(options.images_list + ": names " + std::to_string(images_list.size()) + " pictures, the " +
                    backend.split_name() + " split has " + std::to_string(backend.num_images()) + " images");
      // Only pictures are served: a line naming anything else is refused now, not when asked for.
      // A file that does not exist yet (or an empty line) is a missing picture, answered 404.
      for (std::size_t line = 0; line < std::size_t(backend.num_images()); ++line) {
        std::error_code error;
        if (images_list[line].empty() || !std::filesystem::exists(images_list[line], error)) continue;
        try {
          check_picture_file(images_list[line], kMaxPictureFileBytes);
        } catch (const Error& e) {
          throw Error(options.images_list + ":" + std::to_string(line + 1) + ": " + e.what());
        }
      }
    }
    routes();
  }

  static ConnectionLimits connection_limits(const ServerOptions& options) {
    ConnectionLimits limits;
    limits.workers = std::size_t(std::max(1, options.http_threads));
    limits.max_waiting = options.max_waiting;
    limits.head_timeout = std::chrono::milliseconds(std::int64_t(options.head_timeout_s * 1000));
    limits.body_timeout = std::chrono::milliseconds(std::int64_t(options.body_timeout_s * 1000));
    return limits;
  }

  // Where pictures come from: the --images-list, the gallery's image info, or nowhere.
  std::string picture_kind() const {
    return !images_list.empty() ? "file" : backend.described() ? "gallery" : "placeholder";
  }

  std::int64_t image_parameter(const std::string& text, const std::string& name) const {
    const auto image = parse_index(text);
    const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    if (!image && !digits) throw HttpError{400, name + " must be an image index, got \"" + text + "\""};
    if (!image || *image >= backend.num_images())
      throw HttpError{404, name + " " + text + " is out of range: the gallery has " +
                               std::to_string(backend.num_images()) + " images"};
    return *image;
  }

  // Runs `work` on the compute thread and adds the request's timings to its answer.
  Json timed(Clock::time_point received, const std::function<Json()>& work) {
    Clock::time_point started, finished;
    auto out = compute.run([&] {
      started = Clock::now();
      auto result = work();
      finished = Clock::now();
      return result;
    });
    out["timings"] = {{"queue_ms", milliseconds(started - received)},
                      {"compute_ms", milliseconds(finished - started)},
                      {"total_ms", milliseconds(Clock::now() - received)}};
    return out;
  }

  // Queues the search on the compute thread (perhaps batched with others); its answer is
  // `imram search --json`'s, with picture URLs and the request's timings added.
  Json searched(Clock::time_point received, const SearchRequest& request) {
    auto pending = std::make_shared<PendingSearch>();
    pending->request = request;
    const auto outcome = compute.search(pending);
    auto out = backend.answer_json(outcome.answer);
    for (auto& item : out["results"]) {
      if (!request.by_text) item["image"] = backend.image_of_caption(item["caption"].get<std::int64_t>());
      if (item.contains("image")) item["picture"] = "/api/images/" + std::to_string(item["image"].get<std::int64_t>());
    }
    if (!request.by_text) out["picture"] = "/api/images/" + std::to_string(request.image);
    out["timings"]["queue_ms"] = milliseconds(outcome.started - received);
    out["timings"]["compute_ms"] = milliseconds(outcome.finished - outcome.started);
    out["timings"]["total_ms"] = milliseconds(Clock::now() - received);
    out["timings"]["batch"] = outcome.batch;
    return out;
  }

  // The body is read here, not by httplib, which bounds only a body of a Content-Length: a
  // chunked one (or one ended by closing the connection) it would read whole into memory.
  Json search(const httplib::Request& request, const httplib::ContentReader& content_reader,
              Clock::time_point received) {
    std::string body;
    bool too_large = false;
    const bool read = content_reader([&](const char* data, std::size_t length) {
      too_large = body.size() + length > kMaxRequestBody;
      if (!too_large) body.append(data, length);
      return !too_large;
    });
    // A Content-Length over the limit: httplib skips the body without handing any of it over.
    const auto length = request.get_header_value("Content-Length");
    if (too_large || (!read && !length.empty() && std::strtoull(length.c_str(), nullptr, 10) > kMaxRequestBody))
      throw HttpError{413, too_large_message()};
    if (!read) throw HttpError{400, "the request body could not be read"};
    return searched(received, parse_search_request(body, backend.num_images(), kMaxCaptionTokens));
  }

  static std::string too_large_message() {
    return "the request body is too large (at most " + std::to_string(kMaxRequestBody) + " bytes of JSON)";
  }

  Json explain(const httplib::Request& request, Clock::time_point received) {
    if (!request.has_param("image")) throw HttpError{400, "give image=I and text=... or caption=J"};
    const auto image = image_parameter(request.get_param_value("image"), "image");
    const bool by_text = request.has_param("text"), by_caption = request.has_param("caption");
    if (by_text == by_caption) throw HttpError{400, "give either text=... or caption=J"};
    std::string text;
    Json caption_index;
    if (by_caption) {
      const auto value = request.get_param_value("caption");
      const auto caption = parse_index(value);
      if (!caption) throw HttpError{400, "caption must be a caption index, got \"" + value + "\""};
      if (*caption >= std::int64_t(backend.captions().size()))
        throw HttpError{404, "caption " + value + " is out of range: the gallery has " +
                                 std::to_string(backend.captions().size()) + " captions"};
      text = backend.captions()[std::size_t(*caption)];
      caption_index = *caption;
    } else {
      text = request.get_param_value("text");
    }
    query_tokens(text, kMaxCaptionTokens);
    auto out = timed(received, [&] { return explanation_json(backend.explain(image, text)); });
    out["image"] = image;
    out["caption"] = text;
    out["caption_index"] = caption_index;
    out["picture"] = "/api/images/" + std::to_string(image);
    out["picture_size"] = kPictureSize;
    // The page draws each region's weight over its box, in picture units.
    Json boxes;
    const auto regions = backend.image_info(image).regions;
    if (!regions.empty()) {
      boxes = Json::array();
      for (const auto& box : regions) {
        if (!box) {
          boxes.push_back(nullptr);
          continue;
        }
        Json scaled = Json::array();
        for (const double v : *box) scaled.push_back(v * kPictureSize);
        boxes.push_back(scaled);
      }
    }
    out["boxes"] = boxes;
    return out;
  }

  // An --images-list names the pictures; otherwise the index's own thumbnail comes first, so that
  // an index moved to another machine (or whose photos were moved) still shows them.
  void picture(std::int64_t image, httplib::Response& response) const {
    const auto info = images_list.empty() ? backend.image_info(image) : ImageInfo();
    const auto thumbnail = images_list.empty() ? backend.thumbnail(image) : std::string();
    const auto& file = !images_list.empty() ? images_list[std::size_t(image)] : info.picture;
    if (!thumbnail.empty()) {
      response.set_content(thumbnail, "image/jpeg");
    } else if (!file.empty()) {
      PictureFile picture;
      try {
        picture = read_picture_file(file, kMaxPictureFileBytes);
      } catch (const Error& e) {
        throw HttpError{404, "picture " + std::to_string(image) + ": " + e.what()};
      }
      response.set_content(picture.bytes, picture.media_type.c_str());
    } else if (!info.drawing.empty()) {
      response.set_content(info.drawing, "image/svg+xml");
    } else {
      response.set_content(placeholder_svg("image " + std::to_string(image) + ": no picture (see --images-list)"),
                           "image/svg+xml");
    }
    response.set_header("Cache-Control", "max-age=3600");
  }

  // Every API handler's work: errors become JSON bodies with their status, never a crash.
  static void answer(httplib::Response& response, const std::function<void()>& work) {
    auto fail = [&](int status, const std::string& message) {
      response.status = status;
      response.set_content(Json{{"error", message}}.dump(), "application/json");
    };
    try {
      work();
    } catch (const HttpError& e) {
      fail(e.status, e.message);
    } catch (const Unavailable& e) {
      fail(503, e.what());  // a part of the service is gone; no fault of the request
    } catch (const IoError& e) {
      fail(500, e.what());  // the server failed, not the request
    } catch (const Error& e) {
      fail(400, e.what());
    } catch (const std::exception& e) {
      fail(500, std::string("internal error: ") + e.what());
    }
  }

  static httplib::Server::Handler api(std::function<void(const httplib::Request&, httplib::Response&)> handler) {
    return [handler = std::move(handler)](const httplib::Request& request, httplib::Response& response) {
      answer(response, [&] { handler(request, response); });
    };
  }

  // Each route and its methods, as registered; for 405 with Allow and for refusing bodies early.
  struct Route {
    std::regex pattern;
    std::vector<std::string> methods;
  };
  std::vector<Route> known_routes;

  void get(const std::string& pattern, httplib::Server::Handler handler) {
    http.Get(pattern, std::move(handler));
    known_routes.push_back({std::regex(pattern), {"GET", "HEAD"}});
  }

  // Where a request's body ends, when its head says it two ways: a proxy in front may have taken
  // the other, and the rest of the body would be read here as a request of its own (request
  // smuggling). Such a request is refused and its connection closed. Empty: unambiguous.
  static std::string ambiguous_framing(const httplib::Request& request) {
    const auto lengths = request.get_header_value_count("Content-Length");
    for (std::size_t i = 1; i < lengths; ++i)
      if (request.get_header_value("Content-Length", i) != request.get_header_value("Content-Length", 0))
        return "the request has Content-Length headers that disagree";
    if (lengths > 0 && request.has_header("Transfer-Encoding"))
      return "the request has both Content-Length and Transfer-Encoding";
    return {};
  }

  // A body its head says is too large, or whose length is not a number, is refused from the head
  // at once: httplib would first skip as many bytes as it says, waiting out the body timeout for
  // bytes that never come. 0: the length is acceptable.
  static int refused_length(const httplib::Request& request, std::string& message) {
    if (!request.has_header("Content-Length")) return 0;
    const auto length = request.get_header_value("Content-Length");
    if (length.empty() || length.find_first_not_of("0123456789") != std::string::npos) {
      message = "Content-Length must be a whole number of bytes, got \"" + length.substr(0, 40) + "\"";
      return 400;
    }
    // More digits than any limit has (leading zeros aside) is over it, however many there are.
    const auto digits = length.substr(std::min(length.find_first_not_of('0'), length.size() - 1));
    if (digits.size() < 10 && std::stoull(digits) <= kMaxRequestBody) return 0;
    message = too_large_message();
    return 413;
  }

  // A client that asks before sending its body (Expect: 100-continue) is told no at once.
  int answer_expect_continue(const httplib::Request& request, httplib::Response& response) const {
    std::string message;
    const int status = refused_length(request, message);
    if (status == 0) return 100;
    response.status = status;
    response.set_header("Connection", "close");
    response.set_content(Json{{"error", message}}.dump(), "application/json");
    return status;
  }

  // Before httplib reads any body: a request no route takes is answered with its body unread,
  // and the connection closed, since the unread body would be read as the next request.
  httplib::Server::HandlerResponse refuse_early(const httplib::Request& request, httplib::Response& response) const {
    std::string length_problem;
    const int length_status = refused_length(request, length_problem);
    auto framing = ambiguous_framing(request);
    if (!framing.empty() || length_status != 0) {
      response.status = framing.empty() ? length_status : 400;
      response.set_header("Connection", "close");
      response.set_content(Json{{"error", framing.empty() ? length_problem : framing}}.dump(), "application/json");
      return httplib::Server::HandlerResponse::Handled;
    }
    const Route* route = nullptr;
    for (const auto& known : known_routes)
      if (std::regex_match(request.path, known.pattern)) route = &known;
    const auto& method = request.method;
    if (route && std::find(route->methods.begin(), route->methods.end(), method) != route->methods.end())
      return httplib::Server::HandlerResponse::Unhandled;
    const auto length = request.get_header_value("Content-Length");
    const bool has_body = request.has_header("Transfer-Encoding") || (!length.empty() && length != "0") ||
                          method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
    if (!route && !has_body) return httplib::Server::HandlerResponse::Unhandled;  // httplib's 404
    std::string allow;
    if (route)
      for (const auto& allowed : route->methods) allow += (allow.empty() ? "" : ", ") + allowed;
    response.status = route ? 405 : 404;
    if (route) response.set_header("Allow", allow);
    response.set_header("Connection", "close");
    const auto message =
        route ? method + " is not allowed on " + request.path + " (" + allow + ")" : std::string("no such route");
    response.set_content(Json{{"error", message}}.dump(), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }

  static void send_json(httplib::Response& response, const Json& json) {
    response.set_content(json.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
  }

  void routes() {
    http.set_payload_max_length(kMaxRequestBody);
    // httplib's default adds SO_REUSEPORT, with which a second server binds the same port and
    // takes half of the requests. SO_REUSEADDR alone still lets a restart bind at once.
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    http.set_pre_routing_handler([this](const httplib::Request& request, httplib::Response& response) {
      return refuse_early(request, response);
    });
    http.set_expect_100_continue_handler([this](const httplib::Request& request, httplib::Response& response) {
      return answer_expect_continue(request, response);
    });
    http.set_error_handler([](const httplib::Request&, httplib::Response& response) {
      if (!response.body.empty()) return;
      std::string message = "HTTP status " + std::to_string(response.status);
      // httplib also refuses form-encoded bodies over 8 KB; the API reads JSON only.
      if (response.status == 413) message = too_large_message();
      if (response.status == 404) message = "no such route";
      if (response.status == 400) {
        // httplib's own 400: the request could not be parsed, so where the next one would start
        // is unknown. Answered once; the rest of what the client sent is not read as requests.
        message = "malformed request";
        response.set_header("Connection", "close");
      }
      response.set_content(Json{{"error", message}}.dump(), "application/json");
    });
    get("/", [](const httplib::Request&, httplib::Response& response) {
      std::string type;
      // Not in the call that reads `type`: the order in which arguments are evaluated is unspecified.
      const auto* page = page_asset("index.html", type);
      response.set_content(*page, type.c_str());
    });
    // Browsers ask for it on their own; "nothing here" without a 404 in their consoles.
    get("/favicon.ico", [](const httplib::Request&, httplib::Response& response) {
      response.status = 204;
      response.set_header("Cache-Control", "max-age=86400");
    });
    get(R"(/static/([A-Za-z0-9_.-]+))", [](const httplib::Request& request, httplib::Response& response) {
      std::string type;
      const auto* asset = page_asset(request.matches[1].str(), type);
      if (!asset) {
        response.status = 404;
        return;
      }
      response.set_content(*asset, type.c_str());
    });
    // Answered while slow clients wait (they hold no worker), with what waits: a load balancer's
    // view, and the tests' way to see a request in flight.
    get("/healthz", [this](const httplib::Request&, httplib::Response& response) {
      const auto connections = http.counts();
      // A load balancer sends no searches to a server whose searches would fail.
      const auto unavailable = backend.unavailable();
      Json health = {{"status", unavailable.empty() ? "ok" : "degraded"}};
      if (!unavailable.empty()) health["reason"] = unavailable;
      health["connections"] = {{"waiting", connections.waiting}, {"busy", connections.busy}};
      health["compute_queue"] = compute.queued();
      send_json(response, health);
      if (!unavailable.empty()) response.status = 503;
    });
    get("/api/info", api([this](const httplib::Request&, httplib::Response& response) {
          auto info = backend.info();
          info["version"] = embedded::version();
          info["pictures"] = picture_kind();
          info["limits"] = {{"max_body_bytes", kMaxRequestBody},
                            {"max_query_tokens", kMaxCaptionTokens},
                            {"max_top", kMaxTop},
                            {"max_nprobe", kMaxNprobe},
                            {"max_ef_search", kMaxEfSearch},
                            {"head_timeout_s", options.head_timeout_s},
                            {"body_timeout_s", options.body_timeout_s}};
          send_json(response, info);
        }));
    http.Post(
        "/api/search",
        httplib::Server::HandlerWithContentReader([this](const httplib::Request& request, httplib::Response& response,
                                                         const httplib::ContentReader& content_reader) {
          const auto received = Clock::now();
          answer(response, [&] { send_json(response, search(request, content_reader, received)); });
          // What is left of a refused body must not be read as the next request.
          if (response.status == 413) response.set_header("Connection", "close");
        }));
    known_routes.push_back({std::regex("/api/search"), {"POST"}});
    get("/api/explain", api([this](const httplib::Request& request, httplib::Response& response) {
          send_json(response, explain(request, Clock::now()));
        }));
    get(R"(/api/images/(\d+))", api([this](const httplib::Request& request, httplib::Response& response) {
          picture(image_parameter(request.matches[1].str(), "image"), response);
        }));
  }
};

Server::Server(SearchBackend& backend, const ServerOptions& options)
    : impl_(std::make_unique<Impl>(backend, options)) {}

Server::~Server() = default;

int Server::bind() {
  const int port =
      impl_->options.port == 0
          ? impl_->http.bind_to_any_port(impl_->options.host)
          : (impl_->http.bind_to_port(impl_->options.host, impl_->options.port) ? impl_->options.port : -1);
  if (port < 0)
    throw Error("serve: cannot listen on " + impl_->options.host + ":" + std::to_string(impl_->options.port) +
                " (in use, or not an address of this machine)");
  return port;
}

void Server::serve() {
  impl_->serving = true;
  if (!impl_->stop_requested) impl_->http.listen_after_bind();
  impl_->finished = true;
}

void Server::stop() {
  impl_->stop_requested = true;
  if (impl_->serving)
    while (!impl_->finished && !impl_->http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->http.stop();
}

const std::string* page_asset(const std::string& path, std::string& type) {
  for (const auto& [name, contents] : embedded::page_files())
    if (name == path) {
      type = content_type_of(name);
      return &contents;
    }
  return nullptr;
}

}  // namespace imram
