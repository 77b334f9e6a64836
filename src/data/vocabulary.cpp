#include "imram/data/vocabulary.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "imram/data/tokenizer.h"
#include "imram/error.h"
#include "imram/util/atomic_file.h"
#include "imram/util/json_file.h"

namespace imram {

namespace {
const char* const kSpecials[] = {"<pad>", "<start>", "<end>", "<unk>"};
}

Vocabulary::Vocabulary() {
  for (const char* special : kSpecials) add(special);
}

void Vocabulary::add(const std::string& word) {
  if (ids_.count(word)) return;
  ids_.emplace(word, size());
  words_.push_back(word);
}

std::int64_t Vocabulary::id(const std::string& word) const {
  const auto it = ids_.find(word);
  return it == ids_.end() ? kUnknown : it->second;
}

const std::string& Vocabulary::word(std::int64_t id) const {
  if (id < 0 || id >= size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(size()) + ")");
  return words_[static_cast<std::size_t>(id)];
}

std::vector<std::int64_t> Vocabulary::encode_tokens(const std::vector<std::string>& tokens) const {
  std::vector<std::int64_t> ids;
  ids.reserve(tokens.size() + 2);
  ids.push_back(kStart);
  for (const auto& token : tokens) ids.push_back(id(token));
  ids.push_back(kEnd);
  return ids;
}

std::vector<std::int64_t> Vocabulary::encode(const std::string& caption) const {
  return encode_tokens(tokenize(caption));
}

Vocabulary Vocabulary::build(const std::vector<std::string>& captions, int threshold) {
  if (threshold < 1) throw Error("vocabulary threshold must be >= 1, got " + std::to_string(threshold));
  std::unordered_map<std::string, int> counts;
  std::vector<std::string> first_seen;
  for (const auto& caption : captions) {
    for (auto& token : tokenize(caption)) {
      auto [it, inserted] = counts.emplace(token, 0);
      if (inserted) first_seen.push_back(token);
      ++it->second;
    }
  }
  Vocabulary vocabulary;
  for (const auto& word : first_seen)
    if (counts[word] >= threshold) vocabulary.add(word);
  return vocabulary;
}

Vocabulary Vocabulary::from_file(const std::string& path) {
  const auto json = read_json_file(path, "vocabulary file");
  if (!json.is_object() || !json.contains("idx2word") || !json["idx2word"].is_object())
    throw Error(path + ": not a vocabulary (expected an object with \"idx2word\")");
  const auto& idx2word = json["idx2word"];
  std::vector<std::string> words(idx2word.size());
  std::vector<bool> seen(idx2word.size(), false);
  for (const auto& [key, value] : idx2word.items()) {
    char* end = nullptr;
    const long long index = std::strtoll(key.c_str(), &end, 10);
    if (end == key.c_str() || *end != '\0' || index < 0 || index >= (long long)words.size() ||
        seen[std::size_t(index)] || !value.is_string())
      throw Error(path + ": idx2word must map the ids 0.." + std::to_string(words.size() - 1) +
                  " to words; bad entry \"" + key + "\"");
    seen[std::size_t(index)] = true;
    words[std::size_t(index)] = value.get<std::string>();
  }
  for (std::size_t i = 0; i < 4; ++i)
    if (words.size() <= i || words[i] != kSpecials[i])
      throw Error(path + ": id " + std::to_string(i) + " must be " + kSpecials[i]);
  Vocabulary vocabulary;  // holds the four special tokens, checked above
  for (std::size_t i = 4; i < words.size(); ++i) {
    if (vocabulary.contains(words[i])) throw Error(path + ": word \"" + words[i] + "\" appears twice");
    vocabulary.add(words[i]);
  }
  if (json.contains("word2idx")) {
    for (const auto& [word, id] : json["word2idx"].items()) {
      if (!id.is_number_integer() || vocabulary.id(word) != id.get<std::int64_t>() || !vocabulary.contains(word))
        throw Error(path + ": word2idx and idx2word disagree on \"" + word + "\"");
    }
  }
  return vocabulary;
}

void Vocabulary::save(const std::string& path) const {
  nlohmann::ordered_json json;
  nlohmann::ordered_json idx2word = nlohmann::ordered_json::object();
  nlohmann::ordered_json word2idx = nlohmann::ordered_json::object();
  for (std::size_t i = 0; i < words_.size(); ++i) {
    idx2word[std::to_string(i)] = words_[i];
    word2idx[words_[i]] = i;
  }
  json["idx2word"] = std::move(idx2word);
  json["word2idx"] = std::move(word2idx);
  json["idx"] = words_.size();
  write_file_atomically(path, [&](std::ostream& out) { out << json.dump() << "\n"; });
}

}  // namespace imram
