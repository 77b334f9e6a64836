# libFuzzer targets for the checkpoint readers: the restricted unpickler and both torch.save
# containers (docs/checkpoints.md). Needs clang; `./run fuzz [SECONDS]` configures a separate
# build directory with it, builds these targets only and runs each, seeded with the checkpoint
# fixtures. The code under test is compiled with the fuzzer's coverage and with ASan + UBSan.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "IMRAM_FUZZ_CHECKPOINTS needs clang: -DCMAKE_CXX_COMPILER=clang++")
endif()
set(IMRAM_CHECKPOINT_FUZZ_FLAGS -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)

# The unpickler alone needs no LibTorch.
add_executable(fuzz_pickle ${CMAKE_SOURCE_DIR}/fuzz/fuzz_pickle.cpp ${CMAKE_SOURCE_DIR}/src/data/pickle.cpp)
target_include_directories(fuzz_pickle PRIVATE ${CMAKE_SOURCE_DIR}/include)
target_compile_options(fuzz_pickle PRIVATE ${IMRAM_CHECKPOINT_FUZZ_FLAGS})
target_link_options(fuzz_pickle PRIVATE -fsanitize=fuzzer,address,undefined)

add_library(imram_checkpoint_fuzz_readers OBJECT
  ${CMAKE_SOURCE_DIR}/src/data/pickle.cpp ${CMAKE_SOURCE_DIR}/src/model/checkpoint_reader.cpp)
target_include_directories(imram_checkpoint_fuzz_readers PRIVATE ${CMAKE_SOURCE_DIR}/include)
target_link_libraries(imram_checkpoint_fuzz_readers PRIVATE nlohmann_json::nlohmann_json ${TORCH_LIBRARIES})
target_compile_options(imram_checkpoint_fuzz_readers PRIVATE ${IMRAM_CHECKPOINT_FUZZ_FLAGS})

foreach(target fuzz_checkpoint_legacy fuzz_checkpoint_zip)
  add_executable(${target} ${CMAKE_SOURCE_DIR}/fuzz/${target}.cpp $<TARGET_OBJECTS:imram_checkpoint_fuzz_readers>)
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/include)
  target_compile_options(${target} PRIVATE ${IMRAM_CHECKPOINT_FUZZ_FLAGS})
  target_link_options(${target} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${target} PRIVATE nlohmann_json::nlohmann_json ${TORCH_LIBRARIES})
endforeach()
