#pragma once
// The connections of `imram serve`, kept off the workers until they have a request to serve.
//
// httplib 0.11.4 gives each connection a worker from accept to close, and its timeouts are per
// read: 32 clients sending one header byte every 2 s held all 32 workers for as long as they
// liked (`/healthz` went unanswered), and shutdown waited for them. Here a connection first waits
// in a waiting room, one thread polling all of them, until its request head is complete; only
// then does a worker run httplib's parsing, routing and answer on it (Server::process_request),
// with a deadline on the body. Between keep-alive requests the connection waits again, costing
// no worker. On shutdown the waiting connections, which have nothing in flight, are closed at
// once, and the requests on workers finish.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>

namespace imram {

struct ConnectionLimits {
  std::size_t workers = 32;  // requests read, run and answered at once
  // Connections waiting for a request head; when one more arrives, the one that has waited
  // longest is closed (a slow client, more likely than the newcomer).
  std::size_t max_waiting = 512;
  // From accept, or from the previous answer on a keep-alive connection, to a complete head.
  std::chrono::milliseconds head_timeout{10000};
  // From a complete head to the last byte of its body.
  std::chrono::milliseconds body_timeout{10000};
  std::size_t max_head_bytes = 32 << 10;  // a longer head is refused with 431
  std::size_t max_requests = 100;         // per connection
};

struct ConnectionCounts {
  std::size_t waiting = 0;  // connections waiting for a complete request head
  std::size_t busy = 0;     // requests queued for a worker or being read, run or answered
};

// An httplib::Server whose connections go through the waiting room. Its post-routing handler is
// taken (it closes a connection whose answer says "Connection: close"); everything else of
// httplib's Server is used as usual.
class GuardedServer : public httplib::Server {
 public:
  explicit GuardedServer(const ConnectionLimits& limits);
  ConnectionCounts counts() const { return {waiting_.load(), busy_.load()}; }

 private:
  class Connections;
  // httplib's accept loop calls this for each connection; it only hands it to the waiting room.
  bool process_and_close_socket(socket_t sock) override;

  ConnectionLimits limits_;
  Connections* connections_ = nullptr;  // while listening: the task queue httplib owns
  std::atomic<std::size_t> waiting_{0}, busy_{0};
};

}  // namespace imram
