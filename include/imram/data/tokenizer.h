#pragma once
// Caption tokenization. The reference vocabularies were built from the tokens of NLTK's
// word_tokenize(caption.lower()) (Punkt sentence splitting, then NLTK's improved Treebank
// word tokenizer), so any other tokenization turns known words into <unk>. This is a
// reimplementation without Python that reproduces those tokens, e.g. "Don't stop."
// -> {"do", "n't", "stop", "."} and '"Hi"' -> {"``", "hi", "''"}.
#include <string>
#include <vector>

namespace imram {

// Lower-cases ASCII letters (bytes >= 0x80 pass through unchanged) and splits the caption
// into NLTK's tokens. Accepts any bytes; valid UTF-8 in gives valid UTF-8 tokens out.
std::vector<std::string> tokenize(const std::string& caption);

// The tokens of a query (a search text, a caption to explain); throws imram::Error for a query of
// no words or of more than `max_tokens` tokens, the longest text a model reads.
std::vector<std::string> query_tokens(const std::string& text, std::size_t max_tokens);

// The tokens joined by single spaces: the layout of the reference token files.
std::string join_tokens(const std::vector<std::string>& tokens);

}  // namespace imram
