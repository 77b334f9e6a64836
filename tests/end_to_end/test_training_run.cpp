// A tiny real training run on generated data: the loss goes down, `best` reloads and scores what
// the run measured, and an interrupted + resumed run ends where an uninterrupted one does.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "imram/error.h"
#include "imram/eval/evaluator.h"
#include "imram/model/model_dir.h"
#include "imram/train/trainer.h"
#include "test_util.h"

namespace {

imram::TrainOptions tiny_options(const std::string& data, const std::string& out) {
  imram::TrainOptions o;
  o.data_dir = data;
  o.out_dir = out;
  o.model.embed_size = 16;
  o.model.word_dim = 8;
  o.model.iteration_steps = 2;
  o.batch_size = 10;
  o.lr = 2e-3;
  o.epochs = 3;
  o.log_every = 1;
  o.show_progress = false;
  o.val_images = 20;
  return o;
}

struct TinyData {
  imram::test::TempDir dir;
  TinyData() { imram::test::write_small_world(dir.file("data"), 40, 20, 20, 6, 16); }
  std::string data() const { return dir.file("data"); }
};

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(TrainingRun, LossGoesDownAndBestReloadsWithTheValidatedScores) {
  TinyData data;
  const auto summary = imram::train(tiny_options(data.data(), data.dir.file("run")));
  EXPECT_EQ(summary.steps, 60);  // 3 epochs x 200 captions / 10
  EXPECT_EQ(summary.epochs_completed, 3);
  const auto lines = read_jsonl(data.dir.file("run/metrics.jsonl"));
  std::vector<double> losses;
  double best_rsum = -1;
  for (const auto& line : lines) {
    if (line["type"] == "train") losses.push_back(line["loss"]);
    if (line["type"] == "val") best_rsum = std::max(best_rsum, line["rsum"].get<double>());
  }
  ASSERT_EQ(losses.size(), 60u);
  const double first = (losses[0] + losses[1] + losses[2] + losses[3] + losses[4]) / 5;
  const double last = (losses[55] + losses[56] + losses[57] + losses[58] + losses[59]) / 5;
  EXPECT_LT(last, 0.8 * first) << "first " << first << " last " << last;

  auto best = imram::load_model(data.dir.file("run/best"));
  imram::EvalOptions eval_options;
  eval_options.show_progress = false;
  eval_options.max_images = 20;
  const auto split = imram::PrecompSplit::open(data.data(), "dev");
  const auto result = imram::evaluate(*best.net, *best.vocabulary, split, eval_options);
  EXPECT_DOUBLE_EQ(result.metrics.rsum, best_rsum);
  EXPECT_DOUBLE_EQ(summary.best_rsum, best_rsum);
}

TEST(TrainingRun, ResumedRunEndsWhereAnUninterruptedOneDoes) {
  TinyData data;
  auto options = tiny_options(data.data(), data.dir.file("straight"));
  options.max_steps = 27;  // mid-epoch of epoch 2
  options.val_split = "none";
  imram::train(options);

  options.out_dir = data.dir.file("interrupted");
  options.max_steps = 13;
  imram::train(options);
  EXPECT_THROW(imram::train(options), imram::Error);  // refuses to overwrite a run
  const auto resumed = imram::resume_training(data.dir.file("interrupted"), 27, 0, false);
  EXPECT_EQ(resumed.steps, 27);

  auto a = imram::load_model(data.dir.file("straight/last"));
  auto b = imram::load_model(data.dir.file("interrupted/last"));
  const auto pa = a.net->named_parameters(), pb = b.net->named_parameters();
  for (const auto& item : pa) {
    const auto diff = (item.value() - pb[item.key()]).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5) << item.key();
  }
}

}  // namespace
