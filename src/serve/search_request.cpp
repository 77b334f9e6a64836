#include "imram/serve/search_request.h"

#include <nlohmann/json.hpp>

#include "imram/data/tokenizer.h"

namespace imram {

namespace {

// An integer field within [low, high], low >= 0. JSON integers beyond int64 either way must be
// reported as sent, not as their int64 wrap-around.
std::int64_t integer_field(const nlohmann::json& value, const char* name, std::int64_t low, std::int64_t high) {
  if (!value.is_number_integer()) throw HttpError{400, std::string("\"") + name + "\" must be an integer"};
  const bool in_range =
      value.is_number_unsigned()
          ? value.get<std::uint64_t>() >= std::uint64_t(low) && value.get<std::uint64_t>() <= std::uint64_t(high)
          : value.get<std::int64_t>() >= low && value.get<std::int64_t>() <= high;
  if (!in_range)
    throw HttpError{400, std::string("\"") + name + "\" must be between " + std::to_string(low) + " and " +
                             std::to_string(high) + ", got " + value.dump()};
  return value.get<std::int64_t>();
}

}  // namespace

SearchRequest parse_search_request(const std::string& body, std::int64_t images, std::size_t max_tokens) {
  // nlohmann's parser stops at a NUL byte as at the end of its input: what follows would pass
  // unread, where any other trailing junk is refused.
  if (body.find('\0') != std::string::npos) throw HttpError{400, "the body is not valid JSON (it holds a NUL byte)"};
  const auto request = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) throw HttpError{400, "the body is not valid JSON"};
  if (!request.is_object()) throw HttpError{400, "the body must be a JSON object"};
  // A field the server does not know is refused, not ignored: {"k": 50} or {"shortlist": 0}
  // would otherwise be answered with the defaults as if they had been taken.
  for (const auto& field : request.items())
    if (field.key() != "text" && field.key() != "image" && field.key() != "top" && field.key() != "nprobe" &&
        field.key() != "ef_search")
      throw HttpError{400, "unknown field " + nlohmann::json(field.key()).dump() +
                               " (a search takes text or image, and top, nprobe, ef_search)"};
  SearchRequest out;
  const bool by_text = request.contains("text"), by_image = request.contains("image");
  if (by_text == by_image) throw HttpError{400, "give either \"text\" (a query) or \"image\" (an index)"};
  if (request.contains("top")) out.top = integer_field(request["top"], "top", 1, kMaxTop);
  if (request.contains("nprobe")) out.params.nprobe = int(integer_field(request["nprobe"], "nprobe", 1, kMaxNprobe));
  if (request.contains("ef_search"))
    out.params.ef_search = int(integer_field(request["ef_search"], "ef_search", 1, kMaxEfSearch));
  out.by_text = by_text;
  if (by_text) {
    if (!request["text"].is_string()) throw HttpError{400, "\"text\" must be a string"};
    out.text = request["text"].get<std::string>();
    query_tokens(out.text, max_tokens);  // refused here, before it can join a batch
    return out;
  }
  const auto& image = request["image"];
  if (!image.is_number_integer() || (!image.is_number_unsigned() && image.get<std::int64_t>() < 0))
    throw HttpError{400, "\"image\" must be an image index"};
  if (images == 0 || (image.is_number_unsigned() && image.get<std::uint64_t>() >= std::uint64_t(images)))
    throw HttpError{
        404, "image " + image.dump() + " is out of range: the gallery has " + std::to_string(images) + " images"};
  out.image = image.get<std::int64_t>();
  return out;
}

}  // namespace imram
