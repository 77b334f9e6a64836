#include "connections.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace imram {

namespace {

using Clock = std::chrono::steady_clock;

// One recv's worth, as httplib's own SocketStream buffers: its line reader asks for one byte at
// a time.
constexpr std::size_t kReadChunk = 4096;
// Each wait for a client to take more of an answer, as httplib's default write timeout.
constexpr auto kWriteTimeout = std::chrono::seconds(5);

std::string seconds_text(std::chrono::milliseconds duration) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", double(duration.count()) / 1000);
  return text;
}

bool interrupted_or_would_block() { return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK; }

// Polls `fd` for `events` until `deadline`: false when the deadline passed first. A hang-up or
// an error counts as ready: the read or write that follows says which.
bool wait_until(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd watched{fd, events, 0};
    const int ready = ::poll(&watched, 1, int(std::min<long long>(left, INT_MAX)));
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return false;
  }
}

// A client connection and the bytes read from it that httplib has not taken yet.
struct Connection {
  explicit Connection(int socket) : fd(socket) {}
  ~Connection() {
    if (drain_before_close) {
      // A lingering close: closing a socket with input unread makes the kernel reset the
      // connection, and a reset can destroy answers still in flight to the client (100 pipelined
      // answers arrived as 17). So: the answers first, then our end of the stream, then whatever
      // the client still sends, discarded, until it closes too (bounded in time and bytes).
      ::shutdown(fd, SHUT_WR);
      const auto deadline = Clock::now() + kLingerTime;
      std::size_t drained = 0;
      char discard[16384];
      while (drained < kLingerBytes && wait_until(fd, POLLIN, deadline)) {
        const auto got = ::recv(fd, discard, sizeof discard, MSG_DONTWAIT);
        if (got < 0 && interrupted_or_would_block()) continue;
        if (got <= 0) break;
        drained += std::size_t(got);
      }
    }
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  std::size_t unread() const { return buffer.size() - offset; }
  // httplib's header reader ends at an empty CRLF line that follows a line end.
  bool head_complete() const { return buffer.find("\n\r\n", offset) != std::string::npos; }

  // One non-blocking recv of at most `limit` bytes; its result.
  ssize_t fill(std::size_t limit) {
    buffer.erase(0, offset);
    offset = 0;
    const auto before = buffer.size();
    buffer.resize(before + limit);
    const auto got = ::recv(fd, buffer.data() + before, limit, MSG_DONTWAIT);
    buffer.resize(before + std::size_t(std::max<ssize_t>(got, 0)));
    return got;
  }

  static constexpr auto kLingerTime = std::chrono::seconds(1);
  static constexpr std::size_t kLingerBytes = 1 << 20;

  int fd;
  std::string buffer;
  std::size_t offset = 0;  // buffer[offset, size) is unread
  std::size_t requests = 0;
  bool drain_before_close = false;  // closed after an answer that said so: linger (above)
  Clock::time_point parked, deadline;
};

using ConnectionPtr = std::unique_ptr<Connection>;

// A last word to a client that is about to be closed: sent only if the socket takes it at once,
// so that a client that does not read costs nothing.
void refuse(const Connection& connection, int status, const char* reason, const std::string& message) {
  const auto body = nlohmann::json{{"error", message}}.dump();
  const auto text = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n" + body;
  (void)::send(connection.fd, text.data(), text.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

void address_of(const sockaddr_storage& address, socklen_t length, std::string& ip, int& port) {
  char host[NI_MAXHOST], service[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof host, service, sizeof service,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    ip = host;
    port = std::atoi(service);
  }
}

// httplib's view of one request on a connection: reads come from the connection's buffer, then
// from the socket until the request's deadline.
class RequestStream final : public httplib::Stream {
 public:
  RequestStream(Connection& connection, Clock::time_point deadline) : connection_(connection), deadline_(deadline) {}

  bool is_readable() const override {
    return connection_.unread() > 0 || wait_until(connection_.fd, POLLIN, deadline_);
  }
  bool is_writable() const override { return wait_until(connection_.fd, POLLOUT, Clock::now() + kWriteTimeout); }

  ssize_t read(char* ptr, size_t size) override {
    while (connection_.unread() == 0) {
      if (!wait_until(connection_.fd, POLLIN, deadline_)) return fail();
      const auto got = connection_.fill(kReadChunk);
      if (got == 0 || (got < 0 && !interrupted_or_would_block())) return fail();
    }
    const auto n = std::min(size, connection_.unread());
    std::memcpy(ptr, connection_.buffer.data() + connection_.offset, n);
    connection_.offset += n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    for (;;) {
      const auto sent = ::send(connection_.fd, ptr, size, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent >= 0) return sent;
      if (!interrupted_or_would_block() || !wait_until(connection_.fd, POLLOUT, Clock::now() + kWriteTimeout))
        return fail();
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getpeername(connection_.fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
      address_of(address, length, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    if (::getsockname(connection_.fd, reinterpret_cast<sockaddr*>(&address), &length) == 0)
      address_of(address, length, ip, port);
  }
  socket_t socket() const override { return connection_.fd; }

  // A read or write failed or ran out of time: what is left on the connection cannot be trusted.
  bool failed() const { return failed_; }

 private:
  ssize_t fail() {
    failed_ = true;
    return -1;
  }

  Connection& connection_;
  Clock::time_point deadline_;
  bool failed_ = false;
};

// Set by the post-routing handler, for the worker serving the request: its answer says
// "Connection: close", which httplib itself only honours when the request said it.
thread_local bool answer_closes = false;

}  // namespace

// httplib's task queue for one listen(): its enqueue runs on the accept thread, where the new
// connection only joins the waiting room. It owns the waiting room's thread and the workers.
class GuardedServer::Connections final : public httplib::TaskQueue {
 public:
  explicit Connections(GuardedServer& server) : server_(server), wake_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (wake_ < 0) throw std::system_error(errno, std::generic_category(), "serve: eventfd");
    room_thread_ = std::thread([this] { room(); });
    for (std::size_t i = 0; i < std::max<std::size_t>(1, server_.limits_.workers); ++i)
      workers_.emplace_back([this] { work(); });
  }
  ~Connections() override {
    shutdown();
    ::close(wake_);
  }

  void enqueue(std::function<void()> accepted) override { accepted(); }

  // httplib calls this once its accept loop has ended.
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(room_mutex_);
      if (stopping_) return;
      stopping_ = true;
    }
    wake();
    room_thread_.join();
    {
      std::lock_guard<std::mutex> lock(ready_mutex_);
      workers_stopping_ = true;
    }
    ready_cv_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  void admit(int fd) {
    // httplib writes an answer's head and body in two sends: with Nagle's algorithm the body
    // waits for the client's delayed acknowledgement of the head, 40 ms on Linux.
    const int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    park(std::make_unique<Connection>(fd));
  }

 private:
  void wake() {
    const std::uint64_t one = 1;
    (void)::write(wake_, &one, sizeof one);
  }

  void park(ConnectionPtr connection) {
    connection->parked = Clock::now();
    connection->deadline = connection->parked + server_.limits_.head_timeout;
    {
      std::lock_guard<std::mutex> lock(room_mutex_);
      // Nothing in flight on it: shutdown closes it (its destructor, out of the lock).
      if (stopping_) return;
      parked_.push_back(std::move(connection));
      server_.waiting_ = parked_.size();
    }
    wake();
  }

  // Under room_mutex_.
  void hand_to_worker(ConnectionPtr connection) {
    ++server_.busy_;
    {
      std::lock_guard<std::mutex> lock(ready_mutex_);
      ready_.push_back(std::move(connection));
    }
    ready_cv_.notify_one();
  }

  // Reads what a waiting connection has sent. It moves on to a worker with its head complete, or
  // is closed (reset) when the client left or its head is too long.
  void take_input(ConnectionPtr& connection) {
    const auto cap = server_.limits_.max_head_bytes + 1;
    const auto room = cap > connection->unread() ? cap - connection->unread() : 1;
    const auto got = connection->fill(std::min(kReadChunk, room));
    if (got == 0 || (got < 0 && !interrupted_or_would_block())) {
      connection.reset();
    } else if (connection->head_complete()) {
      hand_to_worker(std::move(connection));
    } else if (connection->unread() > server_.limits_.max_head_bytes) {
      refuse(*connection, 431, "Request Header Fields Too Large",
             "the request head is longer than " + std::to_string(server_.limits_.max_head_bytes) + " bytes");
      connection.reset();
    }
  }

  // The waiting room's thread: one poll over the wake-up descriptor and every waiting connection.
  void room() {
    std::vector<pollfd> watched;
    for (;;) {
      Clock::time_point next = Clock::time_point::max();
      {
        std::lock_guard<std::mutex> lock(room_mutex_);
        if (stopping_) {
          // Last look: a head that has arrived is a request in flight; the rest are closed.
          for (auto& connection : parked_) take_input(connection);
          parked_.clear();
          server_.waiting_ = 0;
          return;
        }
        if (parked_.size() > server_.limits_.max_waiting) {
          std::stable_sort(parked_.begin(), parked_.end(),
                           [](const ConnectionPtr& a, const ConnectionPtr& b) { return a->parked < b->parked; });
          parked_.erase(parked_.begin(), parked_.end() - std::ptrdiff_t(server_.limits_.max_waiting));
          server_.waiting_ = parked_.size();
        }
        watched.assign(1, pollfd{wake_, POLLIN, 0});
        for (const auto& connection : parked_) {
          watched.push_back({connection->fd, POLLIN, 0});
          next = std::min(next, connection->deadline);
        }
      }
      const auto left =
          next == Clock::time_point::max()
              ? -1
              : std::max<long long>(0, std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count());
      if (::poll(watched.data(), watched.size(), int(std::min<long long>(left, INT_MAX))) < 0 && errno != EINTR)
        throw std::system_error(errno, std::generic_category(), "serve: poll");
      if (watched[0].revents) {
        std::uint64_t count;
        (void)::read(wake_, &count, sizeof count);
      }
      std::lock_guard<std::mutex> lock(room_mutex_);
      const auto now = Clock::now();
      // Connections parked during the poll come after the watched ones: indices still match.
      for (std::size_t i = 1; i < watched.size(); ++i)
        if (watched[i].revents) take_input(parked_[i - 1]);
      for (auto& connection : parked_)
        if (connection && now >= connection->deadline) {
          // A client that sent nothing since its last answer is simply closed: a 408 could be
          // taken for the answer to a request it is sending at this very moment.
          if (connection->unread() > 0)
            refuse(*connection, 408, "Request Timeout",
                   "the request head did not arrive within " + seconds_text(server_.limits_.head_timeout));
          connection.reset();
        }
      parked_.erase(std::remove(parked_.begin(), parked_.end(), nullptr), parked_.end());
      server_.waiting_ = parked_.size();
    }
  }

  void work() {
    for (;;) {
      ConnectionPtr connection;
      {
        std::unique_lock<std::mutex> lock(ready_mutex_);
        ready_cv_.wait(lock, [this] { return workers_stopping_ || !ready_.empty(); });
        if (ready_.empty()) return;
        connection = std::move(ready_.front());
        ready_.pop_front();
      }
      serve(std::move(connection));
      --server_.busy_;
    }
  }

  // Answers the requests whose heads the connection holds, then parks it or closes it.
  void serve(ConnectionPtr connection) {
    do {
      const bool last = stopping_.load() || connection->requests + 1 >= server_.limits_.max_requests;
      RequestStream stream(*connection, Clock::now() + server_.limits_.body_timeout);
      answer_closes = false;
      bool closed = false;
      const bool answered = server_.process_request(stream, last, closed, nullptr);
      ++connection->requests;
      if (!answered || closed || last || answer_closes || stream.failed()) {
        // Answered, and told the client so: the answers must reach it whatever it sent after.
        connection->drain_before_close = answered && !stream.failed() && !stopping_.load();
        return;
      }
    } while (connection->head_complete());
    park(std::move(connection));
  }

  GuardedServer& server_;
  int wake_;
  std::mutex room_mutex_;
  std::vector<ConnectionPtr> parked_;
  std::atomic<bool> stopping_{false};
  std::thread room_thread_;
  std::mutex ready_mutex_;
  std::condition_variable ready_cv_;
  std::deque<ConnectionPtr> ready_;
  bool workers_stopping_ = false;
  std::vector<std::thread> workers_;
};

GuardedServer::GuardedServer(const ConnectionLimits& limits) : limits_(limits) {
  // What the Keep-Alive header of each answer tells clients.
  set_keep_alive_timeout(std::max<time_t>(1, time_t(limits_.head_timeout.count() / 1000)));
  set_keep_alive_max_count(limits_.max_requests);
  set_post_routing_handler([](const httplib::Request&, httplib::Response& response) {
    const auto connection = response.headers.equal_range("Connection");
    if (std::none_of(connection.first, connection.second, [](const auto& header) { return header.second == "close"; }))
      return;
    answer_closes = true;
    // httplib has added its own Connection: close (when the request said so) or a Keep-Alive
    // (when it did not) beside the answer's: the answer says it once.
    response.headers.erase("Connection");
    response.headers.erase("Keep-Alive");
    response.set_header("Connection", "close");
  });
  new_task_queue = [this] {
    connections_ = new Connections(*this);
    return connections_;
  };
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  connections_->admit(sock);
  return true;
}

}  // namespace imram
