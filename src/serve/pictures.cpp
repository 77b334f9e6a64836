#include "imram/serve/pictures.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "imram/data/image_header.h"
#include "imram/error.h"
#include "imram/util/xml_escape.h"

namespace imram {

std::string placeholder_svg(const std::string& message) {
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kPictureSize << " " << kPictureSize
      << "\" width=\"" << kPictureSize << "\" height=\"" << kPictureSize << "\" role=\"img\">"
      << "<rect width=\"100%\" height=\"100%\" fill=\"#eeeeee\"/>"
      << "<text x=\"50%\" y=\"50%\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"14\" fill=\"#555\">"
      << xml_escape(message) << "</text></svg>";
  return out.str();
}

namespace {

// The file's bytes (the first 16 when `whole` is false), after every check.
PictureFile open_picture_file(const std::string& path, std::int64_t max_bytes, bool whole) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error(path + ": cannot read (" + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  if (st.st_size > max_bytes)
    throw Error(path + ": " + std::to_string(st.st_size) + " bytes is over the limit of " + std::to_string(max_bytes) +
                " for a picture file");
  std::string bytes(whole ? std::size_t(st.st_size) : std::min<std::size_t>(16, std::size_t(st.st_size)), '\0');
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(path + ": cannot read (" + std::strerror(errno) + ")");
    if (got == 0) break;  // shorter than it was a moment ago
    done += std::size_t(got);
  }
  bytes.resize(done);
  const auto format = image_format_of(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  if (!format) throw Error(path + ": not a JPEG, PNG, WebP or BMP file");
  return {std::move(bytes), image_media_type(*format)};
}

}  // namespace

void check_picture_file(const std::string& path, std::int64_t max_bytes) { open_picture_file(path, max_bytes, false); }

PictureFile read_picture_file(const std::string& path, std::int64_t max_bytes) {
  return open_picture_file(path, max_bytes, true);
}

}  // namespace imram
