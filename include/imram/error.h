#pragma once
// The one exception type of the library. Its message is a complete, one-line sentence that
// names the file, field or line at fault; the command line prints it as is and exits non-zero.
#include <stdexcept>
#include <string>

namespace imram {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace imram
