#include "imram/runtime/tensor_memory.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <torch/version.h>

#include <map>
#include <mutex>

namespace imram {

namespace {

constexpr std::size_t kReusedFrom = std::size_t(1) << 20;

// A request is served by a kept block of up to 1/4 more bytes than it needs.
constexpr std::size_t largest_fit(std::size_t bytes) { return bytes + bytes / 4; }

struct KeptBlocks {
  std::mutex mutex;
  std::multimap<std::size_t, void*> free;  // size -> block
  std::size_t kept = 0;
  std::size_t limit = 0;

  void* take(std::size_t bytes, std::size_t& size) {
    std::lock_guard lock(mutex);
    const auto found = free.lower_bound(bytes);
    if (found == free.end() || found->first > largest_fit(bytes)) return nullptr;
    size = found->first;
    void* block = found->second;
    kept -= size;
    free.erase(found);
    return block;
  }

  void give_back(void* block, std::size_t size) {
    {
      std::lock_guard lock(mutex);
      if (kept + size <= limit) {
        free.emplace(size, block);
        kept += size;
        return;
      }
    }
    c10::free_cpu(block);
  }

  std::size_t release() {
    std::multimap<std::size_t, void*> blocks;
    std::size_t bytes = 0;
    {
      std::lock_guard lock(mutex);
      blocks.swap(free);
      bytes = kept;
      kept = 0;
    }
    for (const auto& [size, block] : blocks) c10::free_cpu(block);
    return bytes;
  }
};

// Never destroyed: tensors may be freed by static destructors after ours would have run.
KeptBlocks& kept_blocks() {
  static auto* blocks = new KeptBlocks;
  return *blocks;
}

struct BlockRecord {
  void* block;
  std::size_t size;
};

void return_block(void* context) {
  const auto* record = static_cast<BlockRecord*>(context);
  kept_blocks().give_back(record->block, record->size);
  delete record;
}

class ReusingCpuAllocator final : public c10::Allocator {
 public:
  explicit ReusingCpuAllocator(c10::Allocator* small) : small_(small) {}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  // LibTorch 2.3 made allocate() non-const and added copy_data().
  c10::DataPtr allocate(std::size_t bytes) override { return allocate_block(bytes); }
  void copy_data(void* destination, const void* source, std::size_t bytes) const override {
    default_copy_data(destination, source, bytes);
  }
#else
  c10::DataPtr allocate(std::size_t bytes) const override { return allocate_block(bytes); }
#endif

 private:
  c10::DataPtr allocate_block(std::size_t bytes) const {
    if (bytes < kReusedFrom) return small_->allocate(bytes);
    std::size_t size = bytes;
    void* block = kept_blocks().take(bytes, size);
    if (!block) block = c10::alloc_cpu(size);
    return {block, new BlockRecord{block, size}, &return_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::Allocator* small_;
};

std::once_flag installed;

}  // namespace

void keep_freed_tensor_memory(std::size_t limit_bytes) {
  {
    std::lock_guard lock(kept_blocks().mutex);
    kept_blocks().limit = limit_bytes;
  }
  std::call_once(installed, [] {
    // Priority above the default allocator's, so that LibTorch's own registration does not undo it.
    static auto* allocator = new ReusingCpuAllocator(c10::GetDefaultCPUAllocator());
    c10::SetCPUAllocator(allocator, /*priority=*/1);
  });
}

std::size_t release_kept_tensor_memory() { return kept_blocks().release(); }

std::size_t kept_tensor_memory() {
  std::lock_guard lock(kept_blocks().mutex);
  return kept_blocks().kept;
}

}  // namespace imram
