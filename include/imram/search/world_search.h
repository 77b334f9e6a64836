#pragma once
// A sharded index searched by a world of ranks (docs/distributed.md#sharded-search-across-processes):
// rank r holds shard r, and rank 0 also takes the queries. A search is one message from rank 0 to
// every rank (the encoded queries and the search's knobs), each rank's own search of its shard
// with the lists one process gives that shard (its part of the whole gallery's, shard_list), and
// each rank's best k gathered back to rank 0, which merges them by score (merge_shard_hits). Only queries, ids and scores
// cross: no rank reads another's store.
//
// A rank that dies or stops breaks the world: the search in flight and every later one fail with
// Unavailable naming the rank, never wait longer than the world's collective timeout. An idle
// world exchanges a tick every quarter of that timeout, so that the ranks waiting for the next
// search neither time out nor go unnoticed.
#include <torch/types.h>

#include <memory>
#include <string>

#include "imram/runtime/world_share.h"
#include "imram/search/searcher.h"
#include "imram/search/shards.h"

namespace imram {

// Rank 0's side.
class SearchWorld {
 public:
  // `world`: rank 0 of a world whose size is the number of shards, with a finite collective
  // timeout; `images`/`captions`: which items each shard holds.
  SearchWorld(WorldShare world, ShardRanges images, ShardRanges captions);
  ~SearchWorld();
  SearchWorld(const SearchWorld&) = delete;
  SearchWorld& operator=(const SearchWorld&) = delete;

  // The whole gallery's searcher of `own`'s side; `own` searches shard 0, the other ranks theirs.
  std::shared_ptr<const Searcher> searcher(std::shared_ptr<const Searcher> own);
  // Why searches fail (the lost ranks, named); empty while every rank answers.
  std::string lost() const;
  int shards() const;
  // Ends answer_world_searches on every rank, once the searches in flight are done. A broken
  // world is left as it is: its ranks end on their own when they notice.
  void stop();

  struct State;  // shared with the searchers it gives

 private:
  std::shared_ptr<State> state_;
};

// Rank r > 0: answers rank 0's searches with its shard's searchers until rank 0 stops the world.
// Throws Error naming the lost rank when the world breaks.
// `device`: where its searchers take their queries.
void answer_world_searches(const WorldShare& world, const Searcher& images, const Searcher& captions,
                           torch::Device device);

}  // namespace imram
