#include "imram/serve/pictures.h"

#include <sstream>

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

}  // namespace imram
