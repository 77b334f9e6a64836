#pragma once
// A deliberately plain HTTP/1.1 client for the server tests: raw bytes over a loopback socket,
// so that tests can send what no well-behaved client would (oversized or malformed bodies,
// requests cut in two, heads sent a byte at a time). A server that never answers fails a test
// by this client's timeout (generous: it only decides when a hang is declared), not by a hang.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <utility>

namespace imram::test {

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};

class HttpConnection {
 public:
  explicit HttpConnection(int port, int timeout_s = 120) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const timeval timeout{timeout_s, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(std::uint16_t(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
      throw std::runtime_error("cannot connect to port " + std::to_string(port));
  }
  ~HttpConnection() { ::close(fd_); }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  void send(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
      const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;  // the server may close early (413): what it answered still counts
      sent += std::size_t(n);
    }
  }

  // Reads until the server closes the connection (requests say Connection: close); status 0
  // when nothing came.
  HttpResponse receive() {
    while (read_some()) {
    }
    return parse(std::exchange(raw_, std::string()));
  }

  // One answer of a kept-alive connection: its head and Content-Length bytes of body.
  HttpResponse receive_one() {
    for (;;) {
      const auto split = raw_.find("\r\n\r\n");
      if (split != std::string::npos) {
        std::size_t length = 0;
        const auto at = raw_.find("Content-Length: ");
        if (at != std::string::npos && at < split) length = std::stoul(raw_.substr(at + 16));
        if (raw_.size() >= split + 4 + length) {
          auto response = parse(raw_.substr(0, split + 4 + length));
          raw_.erase(0, split + 4 + length);
          return response;
        }
      }
      if (!read_some()) return parse(std::exchange(raw_, std::string()));
    }
  }

  // Whether the server has ended the connection (an orderly close or a reset) within the
  // receive timeout; what it said before is kept for receive().
  bool ended_by_server() {
    while (read_some()) {
    }
    return errno_ != EAGAIN && errno_ != EWOULDBLOCK;
  }

 private:
  bool read_some() {
    char buffer[65536];
    const auto n = ::recv(fd_, buffer, sizeof buffer, 0);
    errno_ = n < 0 ? errno : 0;
    if (n <= 0) return false;
    raw_.append(buffer, std::size_t(n));
    return true;
  }

  static HttpResponse parse(const std::string& raw) {
    HttpResponse response;
    if (raw.rfind("HTTP/1.1 ", 0) != 0) return response;
    response.status = std::stoi(raw.substr(9, 3));
    const auto split = raw.find("\r\n\r\n");
    response.headers = raw.substr(0, split);
    if (split != std::string::npos) response.body = raw.substr(split + 4);
    return response;
  }

  int fd_ = -1;
  std::string raw_;  // received, not yet returned
  int errno_ = 0;    // of the last recv
};

inline std::string http_request(const std::string& method, const std::string& target, const std::string& body = "",
                                const std::string& content_type = "application/json") {
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (method == "POST")
    request += "Content-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return request + "\r\n" + body;
}

inline HttpResponse http(int port, const std::string& method, const std::string& target, const std::string& body = "") {
  HttpConnection connection(port);
  connection.send(http_request(method, target, body));
  return connection.receive();
}

}  // namespace imram::test
