#include "imram/util/interruption.h"

#include <utility>

namespace imram {

namespace {
thread_local const std::function<bool()>* current_check = nullptr;
}  // namespace

ScopedInterruptCheck::ScopedInterruptCheck(std::function<bool()> check)
    : check_(std::move(check)), previous_(current_check) {
  current_check = &check_;
}

ScopedInterruptCheck::~ScopedInterruptCheck() { current_check = previous_; }

void throw_if_interrupted() {
  if (current_check && (*current_check)()) throw Interrupted();
}

}  // namespace imram
