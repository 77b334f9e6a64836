// The reusing CPU allocator of runtime/tensor_memory.h. CTest runs each test in its own process,
// so installing it here changes no other test's allocator.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "imram/runtime/tensor_memory.h"

namespace {

constexpr std::int64_t kFloatsIn4Mb = std::int64_t(1) << 20;

TEST(TensorMemory, AFreedLargeBlockServesTheNextRequestOfItsSize) {
  imram::keep_freed_tensor_memory(std::size_t(1) << 30);
  void* first = nullptr;
  {
    const auto tensor = torch::empty({kFloatsIn4Mb});
    first = tensor.data_ptr();
    EXPECT_EQ(imram::kept_tensor_memory(), 0u);
  }
  EXPECT_EQ(imram::kept_tensor_memory(), std::size_t(4) << 20);
  const auto again = torch::empty({kFloatsIn4Mb - 100});  // a little smaller fits the kept block
  EXPECT_EQ(again.data_ptr(), first);
  EXPECT_EQ(imram::kept_tensor_memory(), 0u);
}

TEST(TensorMemory, SmallTensorsAndMuchSmallerRequestsAreNotServedFromKeptBlocks) {
  imram::keep_freed_tensor_memory(std::size_t(1) << 30);
  { torch::empty({100}); }
  EXPECT_EQ(imram::kept_tensor_memory(), 0u);
  void* large = nullptr;
  {
    const auto tensor = torch::empty({2 * kFloatsIn4Mb});
    large = tensor.data_ptr();
  }
  const auto half = torch::empty({kFloatsIn4Mb});
  EXPECT_NE(half.data_ptr(), large);
  EXPECT_EQ(imram::kept_tensor_memory(), std::size_t(8) << 20);
}

TEST(TensorMemory, KeepsNoMoreThanItsLimitAndReleasesOnRequest) {
  imram::keep_freed_tensor_memory(std::size_t(5) << 20);
  {
    const auto a = torch::empty({kFloatsIn4Mb});
    const auto b = torch::empty({kFloatsIn4Mb});
  }
  EXPECT_EQ(imram::kept_tensor_memory(), std::size_t(4) << 20);
  EXPECT_EQ(imram::release_kept_tensor_memory(), std::size_t(4) << 20);
  EXPECT_EQ(imram::kept_tensor_memory(), 0u);
  EXPECT_EQ(imram::release_kept_tensor_memory(), 0u);
}

TEST(TensorMemory, TensorsComputeAsBefore) {
  const auto a = torch::rand({300, 2000}), b = torch::rand({2000, 700});
  const auto before = torch::mm(a, b);
  imram::keep_freed_tensor_memory(std::size_t(1) << 30);
  for (int round = 0; round < 3; ++round) EXPECT_TRUE(torch::equal(torch::mm(a, b), before)) << round;
}

}  // namespace
