#include "imram/search/item_store.h"

#include "imram/error.h"

namespace imram {

void check_item_ids(const std::vector<std::int64_t>& ids, std::int64_t count, const char* what) {
  for (const auto id : ids)
    if (id < 0 || id >= count)
      throw Error(std::string(what) + " " + std::to_string(id) + ": out of range, the gallery holds " +
                  std::to_string(count));
}

}  // namespace imram
