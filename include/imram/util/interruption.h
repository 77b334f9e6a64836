#pragma once
// Stopping long work from outside: the library polls `throw_if_interrupted()` between blocks of
// work (scoring blocks, encoding batches, every progress update), and a host that can be
// interrupted installs a check for the thread it calls the library on. The Python module's
// check asks the interpreter whether Ctrl-C was pressed. Without a check nothing is polled.
//
// The check is the calling thread's own: worker threads never see it, so an exception is never
// thrown inside a parallel region.
#include <functional>
#include <stdexcept>

namespace imram {

// Not an imram::Error: nothing in the request is at fault.
class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};

// Installs `check` for the current thread while in scope (the previous one is restored).
class ScopedInterruptCheck {
 public:
  explicit ScopedInterruptCheck(std::function<bool()> check);
  ~ScopedInterruptCheck();
  ScopedInterruptCheck(const ScopedInterruptCheck&) = delete;
  ScopedInterruptCheck& operator=(const ScopedInterruptCheck&) = delete;

 private:
  std::function<bool()> check_;
  const std::function<bool()>* previous_;
};

// Throws Interrupted when the current thread's check says so.
void throw_if_interrupted();

}  // namespace imram
