#include "imram/data/synthetic.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "imram/data/npy.h"
#include "imram/data/vocabulary.h"
#include "imram/error.h"
#include "imram/util/atomic_file.h"
#include "imram/util/fnv.h"
#include "imram/util/splitmix.h"

namespace fs = std::filesystem;

namespace imram {

namespace {

// The first word of each entry is the canonical name (scenes files, describe()); captions also
// use the others, so that a model has to learn synonyms.
const std::vector<std::vector<std::string>>& shape_words() {
  static const std::vector<std::vector<std::string>> words = {{"circle", "ring", "disc"},
                                                              {"square", "box", "block"},
                                                              {"triangle", "wedge"},
                                                              {"star"},
                                                              {"heart"},
                                                              {"cross"},
                                                              {"diamond", "rhombus"},
                                                              {"hexagon"},
                                                              {"crescent", "moon"},
                                                              {"arrow"},
                                                              {"pentagon"},
                                                              {"oval", "ellipse"}};
  return words;
}

const std::vector<std::vector<std::string>>& colour_words() {
  static const std::vector<std::vector<std::string>> words = {
      {"red"},   {"blue"},  {"green"},        {"yellow"}, {"purple", "violet"}, {"orange"}, {"pink"},
      {"white"}, {"black"}, {"grey", "gray"}, {"brown"},  {"cyan", "turquoise"}};
  return words;
}

const std::vector<std::vector<std::string>>& size_words() {
  static const std::vector<std::vector<std::string>> words = {
      {"small", "little", "tiny"}, {"medium", "medium-sized", "mid-sized"}, {"large", "big", "huge"}};
  return words;
}

std::vector<std::string> canonical(const std::vector<std::vector<std::string>>& words) {
  std::vector<std::string> names;
  for (const auto& synonyms : words) names.push_back(synonyms.front());
  return names;
}

// ---------------------------------------------------------------------------------------------
// Randomness: splitmix64 to derive independent streams, xoshiro256** within a stream. Every
// stream is keyed by (seed, purpose, split, index), so an image does not depend on how many
// images precede it or on which thread renders it.

std::uint64_t stream_key(std::uint64_t seed, std::uint64_t purpose, std::uint64_t split, std::uint64_t index) {
  std::uint64_t key = seed;
  for (const std::uint64_t part : {purpose, split, index}) {
    key ^= part;
    key = splitmix64(key);
  }
  return key;
}

std::uint64_t split_hash(const std::string& split) { return fnv1a64(split); }

enum Purpose : std::uint64_t { kConcepts = 1, kScenes = 2, kCaptions = 3, kFeatures = 4 };

class Rng {
 public:
  explicit Rng(std::uint64_t key) {
    for (auto& word : state_) word = splitmix64(key);
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  int below(int n) { return static_cast<int>(((next() >> 32) * std::uint64_t(n)) >> 32); }
  bool chance(double p) { return uniform() < p; }
  // Irwin-Hall: four 16-bit uniforms summed and scaled to unit variance. Close enough to a
  // Gaussian for noise, and integer arithmetic only, so bit-identical under every libm (Box-Muller's
  // log and cos are not).
  float normal() {
    const std::uint64_t r = next();
    const std::int64_t sum = std::int64_t((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
    return static_cast<float>(sum - 2 * 65535) * (1.0f / 37837.23f);
  }
  template <class T>
  void shuffle(std::vector<T>& values) {
    for (std::size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[std::size_t(below(int(i)))]);
  }
  template <class T>
  const T& pick(const std::vector<T>& values) {
    return values[std::size_t(below(int(values.size())))];
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
};

// ---------------------------------------------------------------------------------------------
// The caption language: a lexicon of phrases, longest match first.

enum class Kind { Shape, Colour, Size, Relation, Position, Boundary, Which, Painted };

struct Phrase {
  std::vector<std::string> words;
  Kind kind;
  int a = -1;  // shape, colour, size or Relation; the row of a Position
  int b = -1;  // the column of a Position
};

const std::vector<std::vector<std::string>> kLeftOf = {
    {"left", "of"}, {"to", "the", "left", "of"}, {"on", "the", "left", "of"}, {"on", "the", "left", "side", "of"}};
const std::vector<std::vector<std::string>> kRightOf = {
    {"right", "of"}, {"to", "the", "right", "of"}, {"on", "the", "right", "of"}, {"on", "the", "right", "side", "of"}};
const std::vector<std::vector<std::string>> kAbove = {{"above"}, {"over"}, {"higher", "than"}};
const std::vector<std::vector<std::string>> kBelow = {
    {"below"}, {"under"}, {"beneath"}, {"underneath"}, {"lower", "than"}};

const std::vector<std::vector<std::string>>& relation_phrases(Relation relation) {
  switch (relation) {
    case Relation::LeftOf:
      return kLeftOf;
    case Relation::RightOf:
      return kRightOf;
    case Relation::Above:
      return kAbove;
    case Relation::Below:
      return kBelow;
  }
  return kLeftOf;
}

const std::vector<std::string> kPositionPrepositions = {"in", "at", "on", "near"};
const std::vector<std::string> kCenterWords = {"center", "centre", "middle"};

class Lexicon {
 public:
  Lexicon() {
    const auto add_words = [this](const std::vector<std::vector<std::string>>& table, Kind kind) {
      for (std::size_t i = 0; i < table.size(); ++i)
        for (const auto& word : table[i]) add({{word}, kind, int(i)});
    };
    add_words(shape_words(), Kind::Shape);
    add_words(colour_words(), Kind::Colour);
    add_words(size_words(), Kind::Size);
    for (const Relation relation : {Relation::LeftOf, Relation::RightOf, Relation::Above, Relation::Below})
      for (const auto& words : relation_phrases(relation)) add({words, Kind::Relation, int(relation)});
    struct Place {
      std::vector<std::string> words;
      int row, col;
    };
    std::vector<Place> places = {{{"top"}, 0, -1},           {{"bottom"}, 2, -1},        {{"left"}, -1, 0},
                                 {{"right"}, -1, 2},         {{"top", "left"}, 0, 0},    {{"top", "right"}, 0, 2},
                                 {{"bottom", "left"}, 2, 0}, {{"bottom", "right"}, 2, 2}};
    for (const auto& word : kCenterWords) places.push_back({{word}, 1, 1});
    for (const auto& preposition : kPositionPrepositions)
      for (const auto& place : places)
        for (const char* tail : {"", "corner", "side"}) {
          std::vector<std::string> words = {preposition, "the"};
          words.insert(words.end(), place.words.begin(), place.words.end());
          if (*tail) words.push_back(tail);
          add({words, Kind::Position, place.row, place.col});
        }
    for (const auto& words :
         std::vector<std::vector<std::string>>{{"and"}, {","}, {"."}, {";"}, {"with"}, {"as", "well", "as"}})
      add({words, Kind::Boundary});
    add({{"which"}, Kind::Which});
    add({{"that"}, Kind::Which});
    for (const char* word : {"painted", "coloured", "colored"}) add({{word}, Kind::Painted});
    for (auto& [first, phrases] : by_first_)
      std::stable_sort(phrases.begin(), phrases.end(),
                       [](const Phrase& x, const Phrase& y) { return x.words.size() > y.words.size(); });
  }

  const Phrase* match(const std::vector<std::string>& tokens, std::size_t at) const {
    const auto it = by_first_.find(tokens[at]);
    if (it == by_first_.end()) return nullptr;
    for (const auto& phrase : it->second) {
      if (at + phrase.words.size() > tokens.size()) continue;
      if (std::equal(phrase.words.begin(), phrase.words.end(), tokens.begin() + long(at))) return &phrase;
    }
    return nullptr;
  }

  bool knows(const std::string& word) const { return words_.count(word) != 0; }

 private:
  void add(Phrase phrase) {
    for (const auto& word : phrase.words) words_.insert(word);
    by_first_[phrase.words.front()].push_back(std::move(phrase));
  }

  std::unordered_map<std::string, std::vector<Phrase>> by_first_;
  std::unordered_set<std::string> words_;
};

const Lexicon& lexicon() {
  static const Lexicon instance;
  return instance;
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> tokens;
  std::string word;
  const auto flush = [&] {
    if (!word.empty()) tokens.push_back(word);
    word.clear();
  };
  for (const char raw : text) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(raw)));
    if (std::isspace(static_cast<unsigned char>(c))) {
      flush();
    } else if (c == ',' || c == '.' || c == ';' || c == ':' || c == '!' || c == '?') {
      flush();
      tokens.emplace_back(1, c);
    } else {
      word += c;
    }
  }
  flush();
  return tokens;
}

// Left to right: adjectives wait for their noun; a position phrase or "painted <colour>" binds
// to the noun just named; a relation links the last noun to the next one, or, opening a clause
// ("to the left of X there is Y"), the next two the other way round. "which" re-opens the last
// noun for another relation after a comma.
class CaptionParser {
 public:
  CaptionMeaning parse(const std::string& caption) {
    const auto tokens = split_words(caption);
    std::size_t at = 0;
    while (at < tokens.size()) {
      const Phrase* phrase = lexicon().match(tokens, at);
      if (phrase == nullptr) {
        ++at;
        continue;
      }
      at += phrase->words.size();
      const bool painted = after_painted_;
      after_painted_ = false;
      switch (phrase->kind) {
        case Kind::Shape:
          add_mention(phrase->a);
          break;
        case Kind::Colour:
          if (painted && last_ >= 0) {
            meaning_.mentions[std::size_t(last_)].colour = phrase->a;
          } else {
            if (colour_ >= 0) flush();
            colour_ = phrase->a;
          }
          break;
        case Kind::Size:
          if (size_ >= 0) flush();
          size_ = phrase->a;
          break;
        case Kind::Painted:
          after_painted_ = true;
          break;
        case Kind::Relation:
          flush();
          relation_ = static_cast<Relation>(phrase->a);
          relation_pending_ = true;
          fronted_ = !(clause_has_noun_ && last_ >= 0);
          subject_ = fronted_ ? -1 : last_;
          reference_ = -1;
          break;
        case Kind::Position:
          flush();
          if (clause_has_noun_ && last_ >= 0) {
            set_position(meaning_.mentions[std::size_t(last_)], phrase->a, phrase->b);
          } else {
            pending_row_ = phrase->a;
            pending_col_ = phrase->b;
          }
          break;
        case Kind::Boundary:
          flush();
          clause_has_noun_ = false;
          break;
        case Kind::Which:
          clause_has_noun_ = last_ >= 0;
          break;
      }
    }
    flush();
    return meaning_;
  }

 private:
  static void set_position(CaptionMention& mention, int row, int col) {
    if (row >= 0) mention.row = row;
    if (col >= 0) mention.col = col;
  }

  // Adjectives without a noun ("something red") still assert an object.
  void flush() {
    if (colour_ >= 0 || size_ >= 0) add_mention(-1);
  }

  void add_mention(int shape) {
    CaptionMention mention;
    mention.shape = shape;
    mention.colour = colour_;
    mention.size = size_;
    colour_ = size_ = -1;
    if (pending_row_ >= 0 || pending_col_ >= 0) {
      set_position(mention, pending_row_, pending_col_);
      pending_row_ = pending_col_ = -1;
    }
    const int index = static_cast<int>(meaning_.mentions.size());
    meaning_.mentions.push_back(mention);
    if (relation_pending_) {
      if (!fronted_) {
        meaning_.relations.push_back({subject_, index, relation_});
        relation_pending_ = false;
      } else if (reference_ < 0) {
        reference_ = index;
      } else {
        meaning_.relations.push_back({index, reference_, relation_});
        relation_pending_ = false;
      }
    }
    last_ = index;
    clause_has_noun_ = true;
  }

  CaptionMeaning meaning_;
  int colour_ = -1, size_ = -1;
  int pending_row_ = -1, pending_col_ = -1;
  int last_ = -1;
  bool clause_has_noun_ = false;
  bool after_painted_ = false;
  bool relation_pending_ = false;
  bool fronted_ = false;
  Relation relation_ = Relation::LeftOf;
  int subject_ = -1, reference_ = -1;
};

bool relation_holds(Relation relation, const SceneObject& subject, const SceneObject& reference) {
  switch (relation) {
    case Relation::LeftOf:
      return subject.col < reference.col;
    case Relation::RightOf:
      return subject.col > reference.col;
    case Relation::Above:
      return subject.row < reference.row;
    case Relation::Below:
      return subject.row > reference.row;
  }
  return false;
}

bool fits(const CaptionMention& mention, const SceneObject& object) {
  return (mention.shape < 0 || mention.shape == object.shape) &&
         (mention.colour < 0 || mention.colour == object.colour) && (mention.size < 0 || mention.size == object.size) &&
         (mention.row < 0 || mention.row == object.row) && (mention.col < 0 || mention.col == object.col);
}

bool assign(const CaptionMeaning& meaning, const Scene& scene, std::size_t next, std::vector<int>& object_of,
            std::vector<bool>& taken) {
  if (next == meaning.mentions.size()) {
    for (const auto& relation : meaning.relations)
      if (!relation_holds(relation.relation, scene.objects[std::size_t(object_of[std::size_t(relation.subject)])],
                          scene.objects[std::size_t(object_of[std::size_t(relation.reference)])]))
        return false;
    return true;
  }
  for (std::size_t o = 0; o < scene.objects.size(); ++o) {
    if (taken[o] || !fits(meaning.mentions[next], scene.objects[o])) continue;
    taken[o] = true;
    object_of[next] = int(o);
    if (assign(meaning, scene, next + 1, object_of, taken)) return true;
    taken[o] = false;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Scenes

struct Pair {
  Scene first, second;
  int swapped_a = 0, swapped_b = 0;  // the objects (same index in both) whose binding differs
};

Pair draw_pair(const SyntheticOptions& options, Rng& rng) {
  for (;;) {
    Scene scene;
    const int count = kSyntheticMinObjects + rng.below(kSyntheticMaxObjects - kSyntheticMinObjects + 1);
    std::vector<int> cells(kSyntheticGrid * kSyntheticGrid);
    std::iota(cells.begin(), cells.end(), 0);
    rng.shuffle(cells);
    while (int(scene.objects.size()) < count) {
      SceneObject object;
      object.shape = rng.below(options.shapes);
      object.colour = rng.below(options.colours);
      const bool repeated = std::any_of(scene.objects.begin(), scene.objects.end(), [&](const SceneObject& other) {
        return other.shape == object.shape && other.colour == object.colour;
      });
      if (repeated) continue;
      object.size = rng.below(3);
      const int cell = cells[scene.objects.size()];
      object.row = cell / kSyntheticGrid;
      object.col = cell % kSyntheticGrid;
      scene.objects.push_back(object);
    }
    scene.swap = rng.chance(options.position_twins) ? TwinSwap::Positions : TwinSwap::Colours;
    std::vector<std::pair<int, int>> candidates;
    for (int a = 0; a < count; ++a)
      for (int b = a + 1; b < count; ++b) {
        if (scene.swap == TwinSwap::Positions) {
          candidates.emplace_back(a, b);
          continue;
        }
        const auto& x = scene.objects[std::size_t(a)];
        const auto& y = scene.objects[std::size_t(b)];
        if (x.shape == y.shape || x.colour == y.colour) continue;
        // Each object of the twin must still be the only one of its shape and colour.
        bool clash = false;
        for (int m = 0; m < count; ++m) {
          const auto& z = scene.objects[std::size_t(m)];
          if (m == a || m == b) continue;
          clash = clash || (z.shape == x.shape && z.colour == y.colour) || (z.shape == y.shape && z.colour == x.colour);
        }
        if (!clash) candidates.emplace_back(a, b);
      }
    if (candidates.empty()) continue;
    const auto [a, b] = rng.pick(candidates);
    Pair pair;
    pair.first = scene;
    pair.second = scene;
    auto& x = pair.second.objects[std::size_t(a)];
    auto& y = pair.second.objects[std::size_t(b)];
    if (scene.swap == TwinSwap::Colours) {
      std::swap(x.colour, y.colour);
    } else {
      std::swap(x.row, y.row);
      std::swap(x.col, y.col);
    }
    pair.swapped_a = a;
    pair.swapped_b = b;
    return pair;
  }
}

// ---------------------------------------------------------------------------------------------
// Captions: draw what to say, render it in one of the templates, keep it only if the parser
// finds it true of its image and false of the twin.

// Mostly three objects, with colour and usually size: with ~3.5 objects per scene among
// 8 shapes x 8 colours, one object rarely singles out an image among a thousand, two with
// colours often do not, three nearly always do. Specificity comes mainly from attributes, which
// a model grounds more easily than relations.
constexpr double kOneObject = 0.02;
constexpr double kTwoObjects = 0.25;
constexpr double kSaysColour = 0.95;
constexpr double kSaysSize = 0.8;
constexpr double kSaysPosition = 0.15;
// Where a position twin's swapped object stands is what tells the twins apart, and absolute
// positions are easier to ground than relations.
constexpr double kKeySaysPosition = 0.5;
constexpr double kSaysRelation = 0.55;
constexpr double kTypo = 0.03;
constexpr double kRareWord = 0.04;

struct Draft {
  std::vector<CaptionMention> mentions;  // in caption order
  std::vector<int> links;                // links[i]: Relation of mention i to i + 1, or -1
};

Relation true_relation(const SceneObject& subject, const SceneObject& reference, Rng& rng) {
  std::vector<Relation> options;
  if (subject.col < reference.col) options.push_back(Relation::LeftOf);
  if (subject.col > reference.col) options.push_back(Relation::RightOf);
  if (subject.row < reference.row) options.push_back(Relation::Above);
  if (subject.row > reference.row) options.push_back(Relation::Below);
  return rng.pick(options);  // never empty: objects occupy distinct cells
}

Draft draft_caption(const Scene& scene, int key, Rng& rng) {
  const int count = static_cast<int>(scene.objects.size());
  const double draw = rng.uniform();
  const int named = std::min(count, draw < kOneObject ? 1 : draw < kOneObject + kTwoObjects ? 2 : 3);
  std::vector<int> others;
  for (int o = 0; o < count; ++o)
    if (o != key) others.push_back(o);
  rng.shuffle(others);
  std::vector<int> chosen = {key};
  chosen.insert(chosen.end(), others.begin(), others.begin() + (named - 1));
  rng.shuffle(chosen);
  Draft draft;
  for (const int o : chosen) {
    const auto& object = scene.objects[std::size_t(o)];
    CaptionMention mention;
    mention.shape = object.shape;
    // A lone object needs every attribute to stand a chance of being specific; the key object
    // of a colour twin needs its colour, the binding the twin breaks.
    if (named == 1 || rng.chance(kSaysColour) || (scene.swap == TwinSwap::Colours && o == key))
      mention.colour = object.colour;
    if (named == 1 || rng.chance(kSaysSize)) mention.size = object.size;
    if (named == 1 || rng.chance(scene.swap == TwinSwap::Positions && o == key ? kKeySaysPosition : kSaysPosition)) {
      const bool corner = object.row != 1 && object.col != 1;
      const double which = rng.uniform();
      if (object.row != 1 && (!corner || which < 0.85)) mention.row = object.row;
      if (object.col != 1 && (!corner || which < 0.7 || which >= 0.85)) mention.col = object.col;
      if (object.row == 1 && object.col == 1) mention.row = mention.col = 1;
    }
    draft.mentions.push_back(mention);
  }
  for (int i = 0; i + 1 < named; ++i)
    draft.links.push_back(rng.chance(kSaysRelation)
                              ? int(true_relation(scene.objects[std::size_t(chosen[std::size_t(i)])],
                                                  scene.objects[std::size_t(chosen[std::size_t(i) + 1])], rng))
                              : -1);
  // Templates put a lone relation first ("X left of Y and Z").
  if (named == 3 && draft.links[0] < 0 && draft.links[1] >= 0) {
    std::rotate(draft.mentions.begin(), draft.mentions.begin() + 1, draft.mentions.end());
    draft.links = {draft.links[1], -1};
  }
  return draft;
}

struct Word {
  std::string text;
  bool filler;  // carries no meaning: typos and rare words may go there
};

class Renderer {
 public:
  explicit Renderer(Rng& rng) : rng_(rng) {}

  std::string render(const Draft& draft) {
    words_.clear();
    const auto& m = draft.mentions;
    const std::size_t named = m.size();
    const bool any_link = std::any_of(draft.links.begin(), draft.links.end(), [](int link) { return link >= 0; });
    const bool has_position = m[0].row >= 0 || m[0].col >= 0;
    if (!any_link && named <= 2 && has_position && rng_.chance(0.3)) {
      // "in the top left corner there is a red circle (and a blue square)"
      position(m[0]);
      filler("there is");
      noun_phrase(m[0], false);
      if (named == 2) {
        conjunction();
        noun_phrase(m[1]);
      }
    } else if (named == 1) {
      prefix();
      noun_phrase(m[0]);
    } else if (named == 2 && any_link) {
      const auto relation = static_cast<Relation>(draft.links[0]);
      const double form = rng_.uniform();
      if (form < 0.45) {
        prefix();
        noun_phrase(m[0]);
        relation_phrase(relation);
        noun_phrase(m[1]);
      } else if (form < 0.8) {
        noun_phrase(m[0]);
        filler(rng_.pick(std::vector<std::string>{"is", "sits", "is placed", "appears", "lies", "can be seen"}));
        relation_phrase(relation);
        noun_phrase(m[1]);
      } else {
        relation_phrase(relation);
        noun_phrase(m[1]);
        filler(rng_.pick(std::vector<std::string>{"there is", "is", "sits", "we see"}));
        noun_phrase(m[0]);
      }
    } else if (named == 2) {
      prefix();
      noun_phrase(m[0]);
      conjunction();
      noun_phrase(m[1]);
    } else if (draft.links[0] >= 0 && draft.links[1] >= 0) {
      prefix();
      noun_phrase(m[0]);
      relation_phrase(static_cast<Relation>(draft.links[0]));
      noun_phrase(m[1]);
      if (rng_.chance(0.6)) {
        meaningful(",");
        meaningful("which");
        filler("is");
      }
      relation_phrase(static_cast<Relation>(draft.links[1]));
      noun_phrase(m[2]);
    } else if (draft.links[0] >= 0) {
      prefix();
      noun_phrase(m[0]);
      relation_phrase(static_cast<Relation>(draft.links[0]));
      noun_phrase(m[1]);
      conjunction();
      noun_phrase(m[2]);
    } else {
      prefix();
      noun_phrase(m[0]);
      meaningful(rng_.chance(0.6) ? "," : "with");
      noun_phrase(m[1]);
      conjunction();
      noun_phrase(m[2]);
    }
    suffix();
    add_typo();
    return join();
  }

 private:
  void add(const std::string& text, bool filler) {
    std::size_t start = 0;
    while (start < text.size()) {
      const auto end = std::min(text.find(' ', start), text.size());
      words_.push_back({text.substr(start, end - start), filler});
      start = end + 1;
    }
  }
  void filler(const std::string& text) { add(text, true); }
  void meaningful(const std::string& text) { add(text, false); }

  const std::string& synonym(const std::vector<std::string>& synonyms) {
    // The canonical word most of the time, so that every synonym is still frequent enough to
    // enter the vocabulary.
    if (synonyms.size() == 1 || rng_.chance(0.6)) return synonyms.front();
    return synonyms[1 + std::size_t(rng_.below(int(synonyms.size()) - 1))];
  }

  void noun_phrase(const CaptionMention& mention, bool with_position = true) {
    const bool painted = mention.colour >= 0 && rng_.chance(0.08);
    std::vector<std::string> words;
    if (mention.size >= 0) words.push_back(synonym(size_words()[std::size_t(mention.size)]));
    if (mention.colour >= 0 && !painted) words.push_back(synonym(colour_words()[std::size_t(mention.colour)]));
    words.push_back(synonym(shape_words()[std::size_t(mention.shape)]));
    const double article = rng_.uniform();
    if (article < 0.1) {
      filler("the");
    } else if (article < 0.15) {
      filler("one");
    } else {
      filler(std::string("aeiou").find(words.front()[0]) != std::string::npos ? "an" : "a");
    }
    for (const auto& word : words) meaningful(word);
    if (painted) {
      meaningful(rng_.pick(std::vector<std::string>{"painted", "coloured", "colored"}));
      meaningful(synonym(colour_words()[std::size_t(mention.colour)]));
    }
    if (with_position && (mention.row >= 0 || mention.col >= 0)) position(mention);
  }

  void position(const CaptionMention& mention) {
    if (mention.row == 1 && mention.col == 1) {
      meaningful("in the " + rng_.pick(kCenterWords));
    } else if (mention.row >= 0 && mention.col >= 0) {
      meaningful(std::string(rng_.chance(0.5) ? "in" : "at") + " the " + grid_row_name(mention.row) + " " +
                 grid_col_name(mention.col));
      if (rng_.chance(0.5)) meaningful("corner");
    } else if (mention.row >= 0) {
      meaningful(std::string(rng_.chance(0.7) ? "at" : "near") + " the " + grid_row_name(mention.row));
    } else {
      meaningful(std::string(rng_.chance(0.7) ? "on" : "at") + " the " + grid_col_name(mention.col));
      if (rng_.chance(0.4)) meaningful("side");
    }
  }

  void relation_phrase(Relation relation) {
    const auto& phrases = relation_phrases(relation);
    // "at the top" + "left of" would read as "at the top left" + "of".
    const bool after_row = !words_.empty() && (words_.back().text == "top" || words_.back().text == "bottom");
    const std::vector<std::string>* phrase = &rng_.pick(phrases);
    while (after_row && phrase->size() == 2 && (*phrase)[1] == "of") phrase = &rng_.pick(phrases);
    for (const auto& word : *phrase) meaningful(word);
  }

  void conjunction() { meaningful(rng_.pick(std::vector<std::string>{"and", "and", "with", "as well as"})); }

  void prefix() {
    if (rng_.chance(0.5)) return;
    filler(rng_.pick(std::vector<std::string>{"there is", "a picture of", "an image of", "a drawing of",
                                              "a picture showing", "an image showing", "a rendering of", "we can see",
                                              "this image shows", "a simple drawing of"}));
  }

  void suffix() {
    if (rng_.chance(kRareWord)) {
      filler("on a " + rare_word() + " background");
    } else if (rng_.chance(0.25)) {
      filler(rng_.pick(
          std::vector<std::string>{"on a plain background", "in the picture", "in this image", "on a blank canvas"}));
    }
  }

  // A made-up word, almost surely seen fewer times than the vocabulary threshold.
  std::string rare_word() {
    static const std::string consonants = "bdfgklmnprstvz", vowels = "aeiou";
    for (;;) {
      std::string word;
      const int syllables = 2 + rng_.below(2);
      for (int s = 0; s < syllables; ++s) {
        word += consonants[std::size_t(rng_.below(int(consonants.size())))];
        word += vowels[std::size_t(rng_.below(int(vowels.size())))];
      }
      if (!lexicon().knows(word)) return word;
    }
  }

  void add_typo() {
    if (!rng_.chance(kTypo)) return;
    std::vector<std::size_t> candidates;
    for (std::size_t i = 0; i < words_.size(); ++i)
      if (words_[i].filler && words_[i].text.size() >= 4) candidates.push_back(i);
    if (candidates.empty()) return;
    std::string& target = words_[rng_.pick(candidates)].text;
    std::string word = target;
    const std::size_t at = 1 + std::size_t(rng_.below(int(word.size()) - 2));
    switch (rng_.below(3)) {
      case 0:
        std::swap(word[at], word[at + 1]);
        break;
      case 1:
        word.erase(at, 1);
        break;
      default:
        word.insert(at, 1, word[at]);
        break;
    }
    if (!lexicon().knows(word)) target = word;
  }

  std::string join() {
    std::string text;
    for (const auto& word : words_) {
      if (!text.empty() && word.text != ",") text += ' ';
      text += word.text;
    }
    if (rng_.chance(0.3)) text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
    if (rng_.chance(0.25)) text += " .";
    return text;
  }

  Rng& rng_;
  std::vector<Word> words_;
};

std::vector<std::string> caption_image(const Scene& scene, const Scene& twin, const std::pair<int, int>& swapped,
                                       Rng& rng) {
  std::vector<std::string> captions;
  Renderer renderer(rng);
  const std::size_t wanted = kSyntheticCaptionsPerImage;
  for (int attempt = 0; attempt < 2000 && captions.size() < wanted; ++attempt) {
    const int key = rng.chance(0.5) ? swapped.first : swapped.second;
    const std::string caption = renderer.render(draft_caption(scene, key, rng));
    if (!caption_consistent(caption, scene))
      throw Error("synthetic generator: caption \"" + caption + "\" does not fit its own scene (" + describe(scene) +
                  ")");
    if (caption_consistent(caption, twin)) continue;
    if (std::find(captions.begin(), captions.end(), caption) != captions.end()) continue;
    captions.push_back(caption);
  }
  if (captions.size() < wanted)
    throw Error("synthetic generator: found no captions for scene (" + describe(scene) + ") that exclude its twin (" +
                describe(twin) + ")");
  return captions;
}

// ---------------------------------------------------------------------------------------------
// Region features

constexpr int kSizes = 3;
constexpr int kBackgrounds = 6;
constexpr int kClutter = 16;
constexpr float kNoise = 0.5f;

// Concept vectors, one feature_dim vector each, laid out in this order.
struct ConceptLayout {
  int shapes, colours;
  int conjunction(int shape, int colour) const { return shape * colours + colour; }
  int shape(int s) const { return shapes * colours + s; }
  int colour(int c) const { return shapes * colours + shapes + c; }
  int size(int z) const { return shapes * colours + shapes + colours + z; }
  int row(int r) const { return size(kSizes) + r; }
  int col(int c) const { return row(kSyntheticGrid) + c; }
  int background(int b) const { return col(kSyntheticGrid) + b; }
  int clutter(int k) const { return background(kBackgrounds) + k; }
  int count() const { return clutter(kClutter); }
};

// A detector proposes several boxes per object (more for larger ones), a few that catch only
// its colour or its outline, and fills the rest with background and clutter. Draws from `rng`
// in the order render_features always has, so that the features stay byte-identical.
struct Region {
  enum { Full, ColourOnly, ShapeOnly, Background, Clutter } kind;
  int object;
};

struct RegionPlan {
  std::vector<Region> regions;
  int background = 0;
};

RegionPlan plan_regions(Rng& rng, const Scene& scene, int regions) {
  const int count = static_cast<int>(scene.objects.size());
  if (count < 1 || count > regions)
    throw Error("synthetic features: a scene needs 1.." + std::to_string(regions) + " objects for " +
                std::to_string(regions) + " regions, got " + std::to_string(count));
  const int base = std::max(1, regions / 12);
  std::vector<int> full(scene.objects.size()), partial(scene.objects.size());
  for (int o = 0; o < count; ++o) {
    full[std::size_t(o)] = std::max(1, base + scene.objects[std::size_t(o)].size - 1);
    partial[std::size_t(o)] = regions >= 16 ? rng.below(regions >= 32 ? 3 : 2) : 0;
  }
  const auto total = [&] {
    return std::accumulate(full.begin(), full.end(), 0) + std::accumulate(partial.begin(), partial.end(), 0);
  };
  // Keep one region for the background when possible, trimming partial regions first.
  for (int o = 0; total() > std::max(count, regions - 1); o = (o + 1) % count) {
    if (partial[std::size_t(o)] > 0) {
      --partial[std::size_t(o)];
    } else if (std::accumulate(partial.begin(), partial.end(), 0) == 0 && full[std::size_t(o)] > 1) {
      --full[std::size_t(o)];
    }
  }
  RegionPlan plan;
  for (int o = 0; o < count; ++o) {
    for (int r = 0; r < full[std::size_t(o)]; ++r) plan.regions.push_back({Region::Full, o});
    for (int r = 0; r < partial[std::size_t(o)]; ++r)
      plan.regions.push_back({rng.chance(0.5) ? Region::ColourOnly : Region::ShapeOnly, o});
  }
  plan.background = rng.below(kBackgrounds);
  while (int(plan.regions.size()) < regions)
    plan.regions.push_back({rng.chance(0.35) ? Region::Clutter : Region::Background, -1});
  rng.shuffle(plan.regions);
  return plan;
}

}  // namespace

void validate_synthetic_options(const SyntheticOptions& o) {
  const auto require = [](bool ok, const std::string& message) {
    if (!ok) throw Error("synthetic data: " + message);
  };
  for (const auto& [name, images] :
       {std::pair<const char*, std::int64_t>{"train", o.train}, {"dev", o.dev}, {"test", o.test}})
    require(
        images >= 2 && images % 2 == 0,
        std::string(name) + " must be a positive even number of images (twin pairs), got " + std::to_string(images));
  // Captions and scenes are held in memory (about 1 KB an image): bound them before any work.
  for (const auto& [name, images] :
       {std::pair<const char*, std::int64_t>{"train", o.train}, {"dev", o.dev}, {"test", o.test}})
    require(images <= kSyntheticMaxImages, std::string(name) + " must be at most " +
                                               std::to_string(kSyntheticMaxImages) + " images, got " +
                                               std::to_string(images));
  require(o.regions <= kSyntheticMaxRegions,
          "regions must be at most " + std::to_string(kSyntheticMaxRegions) + ", got " + std::to_string(o.regions));
  require(o.feature_dim <= kSyntheticMaxFeatureDim, "feature-dim must be at most " +
                                                        std::to_string(kSyntheticMaxFeatureDim) + ", got " +
                                                        std::to_string(o.feature_dim));
  require(o.regions >= kSyntheticMaxObjects, "regions must be at least " + std::to_string(kSyntheticMaxObjects) +
                                                 " (one per object), got " + std::to_string(o.regions));
  require(o.feature_dim >= 1, "feature-dim must be positive, got " + std::to_string(o.feature_dim));
  require(o.shapes >= 2 && o.shapes <= int(shape_words().size()),
          "shapes must be in 2.." + std::to_string(shape_words().size()) + ", got " + std::to_string(o.shapes));
  require(o.colours >= 2 && o.colours <= int(colour_words().size()),
          "colours must be in 2.." + std::to_string(colour_words().size()) + ", got " + std::to_string(o.colours));
  require(o.threads >= 0, "threads must be 0 (all cores) or positive, got " + std::to_string(o.threads));
  require(o.position_twins >= 0 && o.position_twins <= 1,
          "position-twins must be a fraction in [0, 1], got " + std::to_string(o.position_twins));
}

const std::vector<std::string>& synthetic_shapes() {
  static const auto names = canonical(shape_words());
  return names;
}

const std::vector<std::string>& synthetic_colours() {
  static const auto names = canonical(colour_words());
  return names;
}

const std::vector<std::string>& synthetic_sizes() {
  static const auto names = canonical(size_words());
  return names;
}

CaptionMeaning parse_caption(const std::string& caption) { return CaptionParser().parse(caption); }

bool caption_consistent(const CaptionMeaning& meaning, const Scene& scene) {
  if (meaning.mentions.size() > scene.objects.size()) return false;
  std::vector<int> object_of(meaning.mentions.size(), -1);
  std::vector<bool> taken(scene.objects.size(), false);
  return assign(meaning, scene, 0, object_of, taken);
}

bool caption_consistent(const std::string& caption, const Scene& scene) {
  return caption_consistent(parse_caption(caption), scene);
}

SyntheticWorld::SyntheticWorld(const SyntheticOptions& options) : options_(options) {
  validate_synthetic_options(options_);
  const ConceptLayout layout{options_.shapes, options_.colours};
  const std::size_t dim = std::size_t(options_.feature_dim);
  concepts_.resize(std::size_t(layout.count()) * dim);
  for (int concept_id = 0; concept_id < layout.count(); ++concept_id) {
    Rng rng(stream_key(options_.seed, kConcepts, 0, std::uint64_t(concept_id)));
    for (std::size_t d = 0; d < dim; ++d) concepts_[std::size_t(concept_id) * dim + d] = rng.normal();
  }
}

SyntheticSplit SyntheticWorld::generate_split(const std::string& split, std::int64_t images) const {
  if (images < 2 || images % 2 != 0)
    throw Error("synthetic split '" + split + "': need a positive even number of images, got " +
                std::to_string(images));
  const std::uint64_t hash = split_hash(split);
  SyntheticSplit result;
  result.scenes.resize(std::size_t(images));
  std::vector<std::pair<int, int>> swapped(std::size_t(images / 2));
  for (std::int64_t p = 0; p < images / 2; ++p) {
    Rng rng(stream_key(options_.seed, kScenes, hash, std::uint64_t(p)));
    Pair pair = draw_pair(options_, rng);
    pair.first.twin = 2 * p + 1;
    pair.second.twin = 2 * p;
    pair.second.swap = pair.first.swap;
    result.scenes[std::size_t(2 * p)] = std::move(pair.first);
    result.scenes[std::size_t(2 * p + 1)] = std::move(pair.second);
    swapped[std::size_t(p)] = {pair.swapped_a, pair.swapped_b};
  }
  result.captions.reserve(std::size_t(images) * kSyntheticCaptionsPerImage);
  for (std::int64_t i = 0; i < images; ++i) {
    Rng rng(stream_key(options_.seed, kCaptions, hash, std::uint64_t(i)));
    const auto& scene = result.scenes[std::size_t(i)];
    for (auto& caption : caption_image(scene, result.scenes[std::size_t(scene.twin)], swapped[std::size_t(i / 2)], rng))
      result.captions.push_back(std::move(caption));
  }
  for (std::int64_t i = 0; i < images; ++i)
    result.scenes[std::size_t(i)].region_objects = region_objects(split, i, result.scenes[std::size_t(i)]);
  return result;
}

void SyntheticWorld::render_features(const std::string& split, std::int64_t image, const Scene& scene,
                                     float* out) const {
  const ConceptLayout layout{options_.shapes, options_.colours};
  const std::size_t dim = std::size_t(options_.feature_dim);
  const int regions = static_cast<int>(options_.regions);
  const auto concept_vector = [&](int index) { return concepts_.data() + std::size_t(index) * dim; };
  Rng rng(stream_key(options_.seed, kFeatures, split_hash(split), std::uint64_t(image)));

  const auto region_plan = plan_regions(rng, scene, regions);
  const auto& plan = region_plan.regions;
  const int background = region_plan.background;

  std::vector<float> signal(dim);
  for (int r = 0; r < regions; ++r) {
    const Region& region = plan[std::size_t(r)];
    std::fill(signal.begin(), signal.end(), 0.0f);
    const auto mix = [&](int index, float weight) {
      const float* vector = concept_vector(index);
      for (std::size_t d = 0; d < dim; ++d) signal[d] += weight * vector[d];
    };
    if (region.object >= 0) {
      const auto& object = scene.objects[std::size_t(region.object)];
      const float where = region.kind == Region::Full ? 0.5f : 0.4f;
      mix(layout.row(object.row), where);
      mix(layout.col(object.col), where);
      if (region.kind == Region::Full) {
        // The conjunction has its own direction: shape and colour alone do not add up to it,
        // which is what lets a model tell a red circle from a red square next to a blue circle.
        mix(layout.conjunction(object.shape, object.colour), 1.0f);
        mix(layout.shape(object.shape), 0.5f);
        mix(layout.colour(object.colour), 0.5f);
        mix(layout.size(object.size), 0.6f);
      } else if (region.kind == Region::ColourOnly) {
        mix(layout.colour(object.colour), 0.9f);
      } else {
        mix(layout.shape(object.shape), 0.9f);
        mix(layout.size(object.size), 0.5f);
      }
    } else {
      mix(region.kind == Region::Background ? layout.background(background) : layout.clutter(rng.below(kClutter)),
          1.0f);
      mix(layout.row(rng.below(kSyntheticGrid)), 0.3f);
      mix(layout.col(rng.below(kSyntheticGrid)), 0.3f);
    }
    const float strength = 0.8f + 0.4f * static_cast<float>(rng.uniform());
    float* row = out + std::size_t(r) * dim;
    for (std::size_t d = 0; d < dim; ++d) row[d] = std::max(0.0f, strength * signal[d] + kNoise * rng.normal());
  }
}

std::vector<int> SyntheticWorld::region_objects(const std::string& split, std::int64_t image,
                                                const Scene& scene) const {
  Rng rng(stream_key(options_.seed, kFeatures, split_hash(split), std::uint64_t(image)));
  std::vector<int> objects;
  for (const auto& region : plan_regions(rng, scene, static_cast<int>(options_.regions)).regions)
    objects.push_back(region.object);
  return objects;
}

// ---------------------------------------------------------------------------------------------

namespace {

// The files of every split into `dir`; `shown_dir` is the directory the report names (where the
// files will be once the temporary directory they are written into takes its place).
void write_dataset_files(const std::string& dir, const std::string& shown_dir, const SyntheticOptions& options,
                         const std::function<void(const std::string&)>& report) {
  const SyntheticWorld world(options);
  std::error_code ec;
  // The limits of validate() keep this product far below 2^63.
  const std::int64_t feature_bytes = (options.train + options.dev + options.test) * options.regions *
                                     options.feature_dim * std::int64_t(sizeof(float));
  const auto space = fs::space(dir, ec);
  if (!ec && std::uintmax_t(feature_bytes) > space.available)
    throw Error(dir + ": the features need " + std::to_string(feature_bytes >> 20) + " MB, the disk has " +
                std::to_string(space.available >> 20) + " MB free");
  const std::vector<std::pair<std::string, std::int64_t>> splits = {
      {"train", options.train}, {"dev", options.dev}, {"test", options.test}};
  std::vector<SyntheticSplit> generated;
  for (const auto& [name, images] : splits) generated.push_back(world.generate_split(name, images));

  std::vector<std::string> vocabulary_captions = generated[0].captions;
  vocabulary_captions.insert(vocabulary_captions.end(), generated[1].captions.begin(), generated[1].captions.end());
  Vocabulary::build(vocabulary_captions).save((fs::path(dir) / "vocab.json").string());

  const std::size_t image_floats = std::size_t(options.regions * options.feature_dim);
  // About 32 MB of features in flight, rendered in parallel, written in order.
  const std::size_t block = std::max<std::size_t>(1, (std::size_t(8) << 20) / image_floats);
  const std::int64_t threads =
      options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<float> buffer;
  for (std::size_t s = 0; s < splits.size(); ++s) {
    // Not a structured binding: lambdas below capture these, which C++17 allows only for variables (clang).
    const std::string& name = splits[s].first;
    const std::int64_t images = splits[s].second;
    const auto& data = generated[s];
    const auto path = [&](const std::string& suffix) { return (fs::path(dir) / (name + suffix)).string(); };
    write_file_atomically(path("_caps.txt"), [&](std::ostream& out) {
      for (const auto& caption : data.captions) out << caption << '\n';
    });
    write_file_atomically(scenes_path(dir, name), [&](std::ostream& out) {
      for (const auto& scene : data.scenes) out << scene_json(scene) << '\n';
    });
    NpyWriter writer(path("_ims.npy"), DType::Float32, {images, options.regions, options.feature_dim});
    for (std::int64_t first = 0; first < images; first += std::int64_t(block)) {
      const std::int64_t count = std::min<std::int64_t>(std::int64_t(block), images - first);
      buffer.resize(std::size_t(count) * image_floats);
      std::vector<std::thread> workers;
      for (std::int64_t t = 0; t < std::min(threads, count); ++t)
        workers.emplace_back([&, t] {
          for (std::int64_t i = t; i < count; i += threads)
            world.render_features(name, first + i, data.scenes[std::size_t(first + i)],
                                  buffer.data() + std::size_t(i) * image_floats);
        });
      for (auto& worker : workers) worker.join();
      writer.write(buffer.data(), buffer.size());
    }
    writer.finish();
    if (report)
      report(name + ": " + std::to_string(images) + " images (" + std::to_string(options.regions) + " regions x " +
             std::to_string(options.feature_dim) + " features), " + std::to_string(data.captions.size()) +
             " captions -> " + (fs::path(shown_dir) / (name + "_ims.npy")).string());
  }
}

}  // namespace

const std::vector<std::string>& synthetic_dataset_signature() {
  static const std::vector<std::string> files = {"vocab.json", "train_scenes.jsonl", "dev_scenes.jsonl",
                                                 "test_scenes.jsonl"};
  return files;
}

void write_synthetic_dataset(const std::string& dir, const SyntheticOptions& options,
                             const std::function<void(const std::string&)>& report,
                             const std::function<void(const std::string&)>& also) {
  require_own_directory(dir, "dataset written by imram synth", synthetic_dataset_signature());
  write_directory_atomically(dir, [&](const std::string& tmp) {
    write_dataset_files(tmp, dir, options, report);
    if (also) also(tmp);
  });
}

}  // namespace imram
