#pragma once
// Word <-> id mapping, compatible with the authors' JSON vocabularies
// ({"word2idx": {...}, "idx2word": {"0": "<pad>", ...}, "idx": N}).
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace imram {

class Vocabulary {
 public:
  static constexpr std::int64_t kPad = 0;
  static constexpr std::int64_t kStart = 1;
  static constexpr std::int64_t kEnd = 2;
  static constexpr std::int64_t kUnknown = 3;
  static constexpr int kDefaultThreshold = 4;

  Vocabulary();  // only the four special tokens

  static Vocabulary from_file(const std::string& path);
  // As the authors' build_vocab: tokenize every caption, keep words seen >= threshold times,
  // in order of first appearance, after the four special tokens.
  static Vocabulary build(const std::vector<std::string>& captions, int threshold = kDefaultThreshold);
  void save(const std::string& path) const;  // atomic

  std::int64_t size() const { return static_cast<std::int64_t>(words_.size()); }
  bool contains(const std::string& word) const { return ids_.count(word) != 0; }
  std::int64_t id(const std::string& word) const;  // kUnknown when absent
  const std::string& word(std::int64_t id) const;  // throws when out of range

  // <start>, the ids of the caption's tokens (kUnknown for unknown words), <end>.
  std::vector<std::int64_t> encode(const std::string& caption) const;
  std::vector<std::int64_t> encode_tokens(const std::vector<std::string>& tokens) const;

 private:
  void add(const std::string& word);

  std::vector<std::string> words_;
  std::unordered_map<std::string, std::int64_t> ids_;
};

}  // namespace imram
