#include <pthread.h>
#include <signal.h>

#include <iostream>
#include <thread>

#include "command.h"
#include "imram/error.h"
#include "imram/runtime/runtime.h"
#include "imram/search/gallery.h"
#include "imram/search/search_params.h"
#include "imram/serve/server.h"
#include "imram/train/distributed.h"
#include "imram/train/launch.h"
#include "imram/util/log.h"
#include "nproc_option.h"

namespace {

// SIGTERM and SIGINT, blocked before any other thread exists so that no worker takes them; a
// thread waits for them with sigwait.
sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// A rank r > 0 of a sharded search: it holds shard r and answers rank 0's searches until rank 0
// ends the world. A stop signal reaches every rank (the launcher and torchrun pass it to all):
// this one waits for rank 0 to end the world, and only if it does not within the collectives'
// timeout, leaves on its own.
int answer_as_shard(const imram::ShardedServing& serving, imram::JoinedWorld& joined, const imram::SearchLists& lists,
                    sigset_t signals) {
  const auto share = imram::share_of_world(*joined.communicator);
  const int rank = joined.communicator->rank();
  std::thread([signals, rank, patience = share.collective_timeout_s + 5] {
    int received = 0;
    sigwait(&signals, &received);
    imram::log_note("imram serve: rank " + std::to_string(rank) + ": " + (received == SIGTERM ? "SIGTERM" : "SIGINT") +
                    ", waiting for rank 0 to end the world");
    std::this_thread::sleep_for(std::chrono::duration<double>(patience));
    std::fprintf(stderr, "imram: error: serve: rank %d: rank 0 did not end the world; leaving it\n", rank);
    std::fflush(stderr);
    std::_Exit(imram::kInterruptedExitStatus);
  }).detach();
  imram::answer_for_shard(serving, lists, share);
  joined.communicator->close();
  return 0;
}

}  // namespace

void imram::cli::add_serve_command(CLI::App& root, [[maybe_unused]] Invocation& invocation) {
  struct Options {
    std::string index, model, data, split = "test", host = "127.0.0.1", images_list, cache = imram::default_cache_dir();
    int port = 8080;
    imram::SearchLists lists;
    std::size_t max_batch = imram::ServerOptions().max_batch;
    double memory_decay_s = 30;
    double head_timeout_s = imram::ServerOptions().head_timeout_s,
           body_timeout_s = imram::ServerOptions().body_timeout_s;
    std::size_t max_waiting = imram::ServerOptions().max_waiting;
    std::uint64_t cache_limit_mb = imram::kDefaultGalleryCacheBytes >> 20;
    imram::cli::NprocOptions world;
  };
  auto o = std::make_shared<Options>();
  auto* sub = root.add_subcommand("serve", "HTTP search service and web page over a split's gallery");
  auto* index = sub->add_option("--index", o->index, "index directory (imram index build): two-stage search");
  imram::cli::add_shortlist_option(sub, o->lists.shortlist,
                                   "with --index: FAISS candidates re-ranked by IMRAM (0: all)");
  imram::cli::add_prefilter_option(
      sub, o->lists.prefilter, "with --index: FAISS proposes this many, IMRAM's first step keeps --shortlist of them");
  imram::cli::add_step1_option(sub, o->lists.step1);
  auto* model = sub->add_option("--model", o->model, "model directory");
  auto* data = sub->add_option("--data", o->data, "dataset directory");
  sub->add_option("--split", o->split, "split to search")->check(imram::cli::kSplitName)->capture_default_str();
  index->excludes(model)->excludes(data);
  sub->add_option("--host", o->host, "address to listen on")->capture_default_str();
  sub->add_option("--port", o->port, "port (0: any free one, printed)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  sub->add_option("--max-batch", o->max_batch,
                  "searches that wait together are run as one batch of at most this many (1: none)")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(1024)));
  sub->add_option("--memory-decay", o->memory_decay_s,
                  "seconds after which unused freed memory goes back to the system (-1: never, as training does: RSS "
                  "stays at its peak)")
      ->capture_default_str()
      ->check(CLI::Range(-1.0, 86400.0));
  sub->add_option("--head-timeout", o->head_timeout_s,
                  "seconds a connection has to send a complete request head (from its accept or its previous answer)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  sub->add_option("--body-timeout", o->body_timeout_s, "seconds a request has to send its body, once its head is in")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  sub->add_option("--max-waiting", o->max_waiting,
                  "connections waiting for a request head; beyond, the one that has waited longest is closed")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t(1), std::size_t(100000)));
  sub->add_option("--images-list", o->images_list, "file naming the picture of image I on line I+1");
  sub->add_option("--cache", o->cache, "directory of encoded galleries (empty: no cache)")->capture_default_str();
  sub->add_option("--cache-limit", o->cache_limit_mb, "MB the cache may hold; least recently used galleries go first")
      ->capture_default_str()
      ->check(imram::cli::kCacheLimitRange);
  imram::cli::add_nproc_options(sub, o->world,
                                "one per shard of a sharded --index, rank r searching shard r; rank 0 answers HTTP");
  sub->callback([&invocation, o, sub] {
    imram::cli::check_nproc(o->world);
    invocation.run = [o, sub, device = invocation.globals.device, threads = invocation.globals.threads] {
      if (o->index.empty() && (o->model.empty() || o->data.empty()))
        throw imram::Error("serve: give --index INDEX, or --model M --data DIR");
      const auto spec = imram::world_from_environment();
      if ((o->world.nproc > 1 || spec) && o->index.empty())
        throw imram::Error("serve: a world of ranks serves a sharded --index (index build --shards), one shard each");
      if (o->world.nproc > 1) {
        // Checked here, before any rank starts, so that a wrong count is one message.
        imram::shards_for_world(o->index, o->world.nproc);
        return imram::run_local_world(o->world.nproc, imram::command_line_without_nproc(),
                                      imram::WorldEnding::kRankZeroEnds);
      }
      const auto signals = block_stop_signals();
      // A rank opens its part before it joins: the world's collectives wait only seconds.
      std::optional<imram::ShardedServing> serving;
      if (spec)
        serving = imram::open_for_world(o->index, imram::device_of_rank(imram::parse_device(device), *spec).str(),
                                        spec->rank, spec->size);
      imram::JoinedWorld joined;
      if (spec)
        joined = imram::join_world(imram::parse_device(device), /*threads_given=*/threads > 0,
                                   imram::CollectiveTimeout::kHeartbeat);
      if (spec && spec->rank > 0) return answer_as_shard(*serving, joined, o->lists, signals);

      imram::cli::return_freed_memory_after(o->memory_decay_s);
      std::unique_ptr<imram::SearchBackend> backend;
      if (serving) {
        backend = imram::world_backend(*serving, o->lists, imram::share_of_world(*joined.communicator));
      } else if (!o->index.empty()) {
        backend = imram::open_index_backend(o->index, device, o->lists);
      } else {
        std::cout << "imram serve: encoding the " << o->split << " split of " << o->data << "..." << std::endl;
        backend = imram::open_gallery_backend(o->model, o->data, o->split, o->cache, device, o->cache_limit_mb << 20);
      }
      imram::ServerOptions options;
      options.host = o->host;
      options.port = o->port;
      options.images_list = o->images_list;
      options.max_batch = o->max_batch;
      options.head_timeout_s = o->head_timeout_s;
      options.body_timeout_s = o->body_timeout_s;
      options.max_waiting = o->max_waiting;
      imram::Server server(*backend, options);
      const int port = server.bind();
      std::thread([&server, signals] {
        int received = 0;
        sigwait(&signals, &received);
        std::cout << "imram serve: " << (received == SIGTERM ? "SIGTERM" : "SIGINT")
                  << ", finishing the requests in flight" << std::endl;
        server.stop();
      }).detach();
      std::cout << "imram serve: listening on http://" << o->host << ":" << port << "/ (" << backend->num_images()
                << " images, " << backend->captions().size() << " captions)" << std::endl;
      server.serve();
      backend->finish();
      if (const auto lost = backend->unavailable(); !lost.empty()) {
        imram::log_error("serve: stopped; the sharded search had lost a rank: " + lost);
        return 1;
      }
      if (joined.communicator) joined.communicator->close();
      std::cout << "imram serve: stopped" << std::endl;
      return 0;
    };
  });
}
