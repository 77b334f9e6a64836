#pragma once
// The HTTP service behind `imram serve`: a JSON API over a SearchBackend, the pictures of the
// split, and the web page (compiled into the binary). httplib's threads only parse requests
// and write responses; all model work runs on one compute thread, in arrival order, so that
// concurrent requests never run two OpenMP teams on the same cores. Searches waiting together
// are run as one batch.
#include <cstddef>
#include <memory>
#include <string>

#include "imram/serve/backend.h"
#include "imram/serve/search_request.h"

namespace imram {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;          // 0: any free port (see Server::bind)
  std::string images_list;  // a file naming picture I on line I+1 (other datasets)
  int http_threads = 32;    // requests read and answered at once (they wait on the compute thread)
  // Slow clients (docs/serve.md): a connection waits, costing no worker, until its request head
  // is complete; it has head_timeout_s seconds for it from its accept or its previous answer.
  // A body must arrive within body_timeout_s of its head. Beyond max_waiting waiting
  // connections, the one that has waited longest is closed.
  double head_timeout_s = 10;
  double body_timeout_s = 10;
  std::size_t max_waiting = 512;
  // Searches that wait together are answered by one backend call of at most this many (1: one
  // at a time). Exhaustive searches gain several times their throughput (docs/serve.md).
  std::size_t max_batch = 16;
};

class Server {
 public:
  // Throws imram::Error when the images list is unreadable or names fewer pictures than the
  // gallery has images. Without one, pictures come from the gallery's image info (data/image_info.h).
  Server(SearchBackend& backend, const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the address; returns the port. Throws imram::Error when it cannot.
  int bind();
  // Serves until stop(); requests in flight when stop() is called are answered first.
  void serve();
  // Safe from any thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The web page's files, compiled in: the content of /<path>, or nullptr. `type` gets its
// Content-Type.
const std::string* page_asset(const std::string& path, std::string& type);

}  // namespace imram
