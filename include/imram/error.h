#pragma once
// The exception types of the library. A message is a complete, one-line sentence that names the
// file, field or line at fault; the command line prints it as is and exits non-zero.
//  - Error: the input is wrong (a bad option, file, query or request): the caller can fix it.
//  - IoError: the system failed an operation that should have worked (a read, write, mapping or
//    rename; a full disk): nothing in the request is at fault. The server answers it with 500.
//  - Unavailable: a part of the service is gone (a rank of a sharded search died or hangs):
//    nothing in the request is at fault and it cannot be answered now. The server answers 503.
// Anything else that escapes is a defect (the server answers 500 "internal error").
#include <stdexcept>
#include <string>

namespace imram {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class IoError : public Error {
 public:
  using Error::Error;
};

class Unavailable : public Error {
 public:
  using Error::Error;
};

}  // namespace imram
