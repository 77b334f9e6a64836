# Included by ctest after the discovered GoogleTest tests (CMakeLists.txt, TEST_INCLUDE_FILES):
# labels `slow` the suites that take minutes between them: statistical training, kill rounds,
# worlds of processes, full disks and read-only mounts, the configuration sweep.
foreach(test IN LISTS IMRAM_GTESTS)
  if(test MATCHES "^(Learning|KillDuringSave|DistributedTraining|DistributedEval|DistributedIndex|DistributedServe|Launcher|DiskFull|ReadOnly)\\.|ConfigurationSweep\\.")
    set_tests_properties("${test}" PROPERTIES LABELS slow)
  endif()
endforeach()
