#pragma once
// A deliberately plain HTTP/1.1 client for the server tests: raw bytes over a loopback socket,
// so that tests can send what no well-behaved client would (oversized or malformed bodies,
// requests cut in two).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace imram::test {

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};

class HttpConnection {
 public:
  explicit HttpConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
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

  // Reads until the server closes the connection (requests say Connection: close).
  HttpResponse receive() {
    std::string raw;
    char buffer[65536];
    for (;;) {
      const auto n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      raw.append(buffer, std::size_t(n));
    }
    HttpResponse response;
    if (raw.rfind("HTTP/1.1 ", 0) != 0) return response;
    response.status = std::stoi(raw.substr(9, 3));
    const auto split = raw.find("\r\n\r\n");
    response.headers = raw.substr(0, split);
    if (split != std::string::npos) response.body = raw.substr(split + 4);
    return response;
  }

 private:
  int fd_ = -1;
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
