#include "imram/data/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <initializer_list>
#include <string_view>

#include "imram/error.h"

// A port of nltk.word_tokenize (NLTK 3.8/3.9) on lower-cased text: Punkt splits the text
// into sentences with the English model, then NLTKWordTokenizer applies its regular
// expression substitutions to each sentence. Each substitution is a hand-written pass here,
// in NLTK's order and with re.sub's semantics (leftmost, non-overlapping matches), because
// the later rules depend on the spaces the earlier ones insert; std::regex would be several
// times slower and has no Unicode classes anyway.
//
// NLTK matches Python's Unicode classes (\s, \w) on decoded text. Text stays UTF-8 here and
// is decoded where a class needs a code point. Every rule inserts spaces only next to ASCII
// characters or around whole code points, so multi-byte sequences are never split. Bytes
// that are not valid UTF-8 count as one-byte symbols (neither space nor word).

namespace imram {
namespace {

using std::size_t;
using std::string_view;
constexpr size_t npos = string_view::npos;

// ---------------------------------------------------------------------------------------
// Characters

struct CodePoint {
  char32_t value;
  size_t size;  // bytes
};

constexpr char32_t kInvalid = 0xFFFFFFFF;

CodePoint decode_multibyte(string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  size_t size = 0;
  char32_t value = 0;
  if ((lead & 0xE0) == 0xC0) {
    size = 2, value = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    size = 3, value = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    size = 4, value = lead & 0x07;
  } else {
    return {kInvalid, 1};
  }
  if (i + size > s.size()) return {kInvalid, 1};
  for (size_t k = 1; k < size; ++k) {
    const auto byte = static_cast<unsigned char>(s[i + k]);
    if ((byte & 0xC0) != 0x80) return {kInvalid, 1};
    value = (value << 6) | (byte & 0x3F);
  }
  return {value, size};
}

inline CodePoint decode(string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  return lead < 0x80 ? CodePoint{lead, 1} : decode_multibyte(s, i);
}

// The code point that ends just before byte i (i > 0).
CodePoint decode_before(string_view s, size_t i) {
  size_t start = i - 1;
  while (start > 0 && i - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  const CodePoint c = decode(s, start);
  if (start + c.size != i) return {kInvalid, 1};
  return c;
}

// Python's str.isspace(), which is what \s and str.split() use.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

inline bool is_space_at(string_view s, size_t i) {
  const auto byte = static_cast<unsigned char>(s[i]);
  if (byte < 0x80) return (byte >= 0x09 && byte <= 0x0D) || (byte >= 0x1C && byte <= 0x20);
  return is_space(decode_multibyte(s, i).value);
}

// Python's string.whitespace, which Punkt uses to find the word before a period.
bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// \d is ASCII here: other scripts' digits do not occur in captions.
bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }

// \w: letters, digits and '_'. Outside ASCII, every code point is taken for a letter except
// spaces, combining marks and the punctuation, symbol and emoji blocks.
bool is_word(char32_t c) {
  if (c < 0x80) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_';
  }
  if (c == kInvalid || is_space(c)) return false;
  if (c <= 0xBF) {
    return c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA || (c >= 0xBC && c <= 0xBE);
  }
  if (c == 0xD7 || c == 0xF7) return false;
  if (c >= 0x0300 && c <= 0x036F) return false;  // combining diacritics
  if (c >= 0x2000 && c <= 0x2BFF) return false;  // punctuation, symbols, arrows, shapes
  if (c >= 0x3000 && c <= 0x303F) return false;  // CJK punctuation
  if (c >= 0xE000 && c <= 0xF8FF) return false;  // private use
  if (c >= 0xFE30 && c <= 0xFE4F) return false;  // CJK compatibility forms
  if (c >= 0xFF00 && c <= 0xFF0F) return false;  // full-width punctuation
  if (c >= 0xFF1A && c <= 0xFF20) return false;
  if (c >= 0xFF3B && c <= 0xFF40) return false;
  if (c >= 0xFF5B && c <= 0xFF65) return false;
  if (c >= 0xFFF0 && c <= 0xFFFF) return false;    // specials
  if (c >= 0x1F000 && c <= 0x1FAFF) return false;  // emoji and pictographs
  return true;
}

bool is_word_at(string_view s, size_t i) { return i < s.size() && is_word(decode(s, i).value); }

bool is_word_before(string_view s, size_t i) { return i > 0 && is_word(decode_before(s, i).value); }

// [^\W\d]
bool is_alpha(char32_t c) { return is_word(c) && !is_digit(c); }

// str.islower() of a token's first character. The text went through Python's lower(), so
// every cased letter counts as lower case, including those this port leaves unchanged.
bool is_lower_case(char32_t c) {
  if (c < 0x80) return c >= 'a' && c <= 'z';
  return c == 0xAA || c == 0xB5 || c == 0xBA || (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7) ||
         (c >= 0x250 && c <= 0x2AF) || (c >= 0x370 && c <= 0x52F);
}

bool starts_with(string_view s, string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(string_view s, string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), npos, suffix) == 0;
}

// A set of ASCII characters, tested by table lookup.
class CharSet {
 public:
  constexpr explicit CharSet(const char* chars) {
    for (; *chars != '\0'; ++chars) contains_[static_cast<unsigned char>(*chars)] = true;
  }
  constexpr bool operator()(char c) const { return contains_[static_cast<unsigned char>(c)]; }

 private:
  bool contains_[256] = {};
};

bool has_non_ascii(string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

void pad(std::string& out, string_view s) {
  out += ' ';
  out.append(s);
  out += ' ';
}

// ---------------------------------------------------------------------------------------
// Punkt sentence splitting (nltk.tokenize.punkt with the English punkt_tab model).
//
// Only the model's abbreviation list matters once the text is lower-case. Its orthographic
// heuristic and sentence starters only mark a sentence start before a capitalised word, so
// here an abbreviation never ends a sentence, and an initial or a number ends one unless
// the next token starts with a lower-case letter or is punctuation. Its collocations only
// pair initials and numbers with lower-case words, which keep them anyway. One
// approximation: a lower-case word is taken to be no sentence starter, which the model's
// per-word orthographic table says for all but a handful of rare words.

// abbrev_types of the English model.
constexpr std::array<string_view, 156> kAbbreviations = {
    ". . ", "a.a",  "a.c",  "a.d",   "a.g",   "a.h", "a.m",   "a.m.e",   "a.s",   "a.t",   "adm",  "ala",   "ariz",
    "aug",  "ave",  "b.f",  "b.v",   "bros",  "c",   "c.i.t", "c.o.m.b", "c.v",   "calif", "chg",  "cie",   "co",
    "col",  "colo", "conn", "corp",  "cos",   "ct",  "d",     "d.c",     "d.h",   "d.w",   "dec",  "dr",    "e",
    "e.f",  "e.h",  "e.l",  "e.m",   "f",     "f.g", "f.j",   "feb",     "fla",   "fri",   "ft",   "g",     "g.d",
    "g.f",  "g.k",  "ga",   "gen",   "h",     "h.c", "h.f",   "h.m",     "i.m.s", "ill",   "inc",  "j.b",   "j.c",
    "j.j",  "j.k",  "j.p",  "j.r",   "jan",   "jr",  "k",     "kan",     "ky",    "l",     "l.a",  "l.f",   "l.p",
    "lt",   "ltd",  "m",    "m.b.a", "m.d.c", "m.j", "maj",   "messrs",  "mg",    "mich",  "minn", "mr",    "mrs",
    "ms",   "n",    "n.c",  "n.d",   "n.h",   "n.j", "n.m",   "n.v",     "n.y",   "nev",   "nov",  "oct",   "ok",
    "okla", "ore",  "p",    "p.a.m", "p.m",   "pa",  "ph.d",  "prof",    "r",     "r.a",   "r.h",  "r.i",   "r.j",
    "r.k",  "r.t",  "rep",  "reps",  "s",     "s.a", "s.a.y", "s.c",     "s.g",   "s.p.a", "s.s",  "sen",   "sep",
    "sept", "sr",   "st",   "sw",    "t",     "t.j", "tenn",  "tues",    "u.k",   "u.n",   "u.s",  "u.s.a", "u.s.s.r",
    "v",    "va",   "vs",   "vt",    "w",     "w.c", "w.r",   "w.va",    "w.w",   "wash",  "wed",  "wis",   "yr"};

constexpr bool is_sorted(const std::array<string_view, kAbbreviations.size()>& words) {
  for (size_t i = 1; i < words.size(); ++i) {
    if (!(words[i - 1] < words[i])) return false;
  }
  return true;
}
static_assert(is_sorted(kAbbreviations), "is_abbreviation() searches kAbbreviations by halves");

bool is_abbreviation(string_view type) {
  return std::binary_search(kAbbreviations.begin(), kAbbreviations.end(), type);
}

// Characters that cannot appear within a Punkt word.
constexpr CharSet is_non_word_char(")\";}]*:@'({[?!");

// Characters that cannot start a Punkt word.
constexpr CharSet is_non_word_start("(\"`{[:;&#*@)}]-,");

// Length of the multi-character punctuation at i ("--", "..", ". . ."), or 0.
size_t multi_char_punct(string_view s, size_t i) {
  if (i >= s.size() || (s[i] != '-' && s[i] != '.')) return 0;
  const size_t run = s.find_first_not_of(s[i], i);
  const size_t run_size = (run == npos ? s.size() : run) - i;
  if (run_size >= 2) return run_size;
  if (s[i] != '.') return 0;
  std::array<size_t, 2> after_pairs{};  // end of the last two ". " pairs seen
  size_t pairs = 0;
  size_t j = i;
  while (j + 1 < s.size() && s[j] == '.' && is_space_at(s, j + 1)) {
    j += 1 + decode(s, j + 1).size;
    after_pairs[pairs++ % 2] = j;
  }
  // The pairs are matched greedily and given back until a period follows.
  for (size_t k = 0; k < 2 && pairs - k >= 2; ++k) {
    const size_t end = after_pairs[(pairs - 1 - k) % 2];
    if (end < s.size() && s[end] == '.') return end + 1 - i;
  }
  return 0;
}

bool punkt_word_ends_at(string_view s, size_t j) {
  if (j >= s.size() || is_space_at(s, j) || is_non_word_char(s[j]) || multi_char_punct(s, j)) return true;
  if (s[j] != ',') return false;
  return j + 1 >= s.size() || is_space_at(s, j + 1) || is_non_word_char(s[j + 1]) || multi_char_punct(s, j + 1);
}

struct PunktToken {
  string_view text;
  bool sentbreak = false;
  bool abbr = false;
  bool ellipsis = false;
};

// PunktLanguageVars.word_tokenize: splits off punctuation other than periods.
void punkt_words(string_view line, std::vector<PunktToken>& out) {
  for (size_t i = 0; i < line.size();) {
    if (const size_t m = multi_char_punct(line, i)) {
      out.push_back({line.substr(i, m)});
      i += m;
      continue;
    }
    const CodePoint c = decode(line, i);
    if (is_space(c.value)) {
      i += c.size;
      continue;
    }
    size_t j = i + c.size;
    if (!is_non_word_start(line[i])) {
      while (!punkt_word_ends_at(line, j)) j += decode(line, j).size;
    }
    out.push_back({line.substr(i, j - i)});
    i = j;
  }
}

// ^-?[\.,]?\d[\d,\.-]*\.?$
bool is_number(string_view tok) {
  size_t i = 0;
  if (i < tok.size() && tok[i] == '-') ++i;
  if (i < tok.size() && (tok[i] == '.' || tok[i] == ',')) ++i;
  if (i >= tok.size() || !is_digit(static_cast<unsigned char>(tok[i]))) return false;
  return tok.find_first_not_of("0123456789,.-", i) == npos;
}

// [^\W\d]\.
bool is_initial(string_view tok) {
  if (tok.empty()) return false;
  const CodePoint c = decode(tok, 0);
  return is_alpha(c.value) && tok.size() == c.size + 1 && tok.back() == '.';
}

// Letters each followed by a period, at least two: "e.s.e.". The reference tokens keep
// such acronyms whole before a lower-case word although the English model knows only some
// of them as abbreviations, so all of them are treated as abbreviations.
bool is_acronym(string_view tok) {
  size_t letters = 0;
  for (size_t i = 0; i < tok.size(); ++letters) {
    const CodePoint c = decode(tok, i);
    if (!is_alpha(c.value) || i + c.size >= tok.size() || tok[i + c.size] != '.') return false;
    i += c.size + 1;
  }
  return letters >= 2;
}

void first_pass(PunktToken& token) {
  const string_view tok = token.text;
  if (tok == "." || tok == "?" || tok == "!") {
    token.sentbreak = true;
  } else if (tok.size() >= 2 && tok.find_first_not_of('.') == npos) {
    token.ellipsis = true;
  } else if (ends_with(tok, ".") && !ends_with(tok, "..")) {
    const string_view stem = tok.substr(0, tok.size() - 1);
    const size_t hyphen = stem.rfind('-');
    const string_view last_part = hyphen == npos ? stem : stem.substr(hyphen + 1);
    if (is_abbreviation(stem) || is_abbreviation(last_part) || is_acronym(tok)) {
      token.abbr = true;
    } else {
      token.sentbreak = true;
    }
  }
}

// The orthographic heuristic's "this is not a sentence starter".
bool is_not_sentence_starter(string_view next) {
  if (next == ";" || next == ":" || next == "," || next == "." || next == "!" || next == "?") return true;
  return is_lower_case(decode(next, 0).value);
}

void second_pass(PunktToken& token, const PunktToken& next) {
  if (!ends_with(token.text, ".")) return;
  if ((is_initial(token.text) || is_number(token.text)) && is_not_sentence_starter(next.text)) {
    token.sentbreak = false;
    token.abbr = true;
  }
}

// PunktSentenceTokenizer.text_contains_sentbreak: true when a token other than the last
// ends a sentence.
bool contains_sentence_break(string_view context, std::vector<PunktToken>& tokens) {
  tokens.clear();
  for (size_t begin = 0; begin <= context.size();) {
    size_t end = context.find('\n', begin);
    if (end == npos) end = context.size();
    punkt_words(context.substr(begin, end - begin), tokens);
    begin = end + 1;
  }
  for (PunktToken& token : tokens) first_pass(token);
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    second_pass(tokens[i], tokens[i + 1]);
    if (tokens[i].sentbreak) return true;
  }
  return false;
}

struct Span {
  size_t begin;
  size_t end;
};

// Length of text.rstrip().
size_t stripped_size(string_view text) {
  size_t end = 0;
  for (size_t i = 0; i < text.size();) {
    const CodePoint c = decode(text, i);
    i += c.size;
    if (!is_space(c.value)) end = i;
  }
  return end;
}

// re_boundary_realignment, ["\')\]}]+?(?:\s+|(?=--)|$), at the start of s: the closing
// quotes and brackets that belong to the previous sentence, and the whole match length.
bool boundary_realignment(string_view s, size_t& quotes, size_t& length) {
  constexpr CharSet is_closer("\"')]}");
  for (size_t k = 1; k <= s.size() && is_closer(s[k - 1]); ++k) {
    if (k == s.size() || starts_with(s.substr(k), "--")) {
      quotes = length = k;
      return true;
    }
    if (is_space_at(s, k)) {
      size_t j = k;
      while (j < s.size() && is_space_at(s, j)) j += decode(s, j).size;
      quotes = k;
      length = j;
      return true;
    }
  }
  return false;
}

// PunktSentenceTokenizer.span_tokenize with realign_boundaries.
void sentence_spans(string_view text, std::vector<Span>& sentences) {
  struct Candidate {
    size_t punct;        // the '.', '?' or '!'
    size_t context_end;  // end of the token after it
    size_t next_token;   // where the next sentence would start, npos: right after punct
  };
  std::vector<Span> slices;
  std::vector<PunktToken> scratch;
  size_t last_break = 0;
  // The context of a candidate is "the word before" it (word_begin to punct), the punct
  // and the token after it.
  const auto decide = [&](const Candidate& c, size_t word_begin) {
    const string_view context = text.substr(word_begin, c.context_end - word_begin);
    if (!contains_sentence_break(context, scratch)) return;
    slices.push_back({last_break, c.punct + 1});
    last_break = c.next_token == npos ? c.punct + 1 : c.next_token;
  };

  // _match_potential_end_contexts, quirks included: the word before a candidate starts
  // after the last ASCII whitespace since the previous candidate, but a whitespace found
  // at the very start of that search (only possible at text[0]) is missed; without one,
  // the word reaches back to the previous candidate's word, and the previous candidate is
  // dropped unless its own word was empty.
  bool pending = false;
  Candidate candidate{};
  Span word{0, 0};  // the previous candidate's word
  size_t last_space = npos;
  for (size_t p = 0; p < text.size(); ++p) {
    const char ch = text[p];
    if (is_ascii_space(ch)) {
      last_space = p;
      continue;
    }
    if (ch != '.' && ch != '?' && ch != '!') continue;
    Candidate next{p, p + 2, npos};
    if (p + 1 >= text.size() || !is_non_word_char(text[p + 1])) {
      size_t j = p + 1;
      while (j < text.size() && is_space_at(text, j)) j += decode(text, j).size;
      if (j == p + 1 || j == text.size()) continue;
      next.next_token = j;
      while (j < text.size() && !is_space_at(text, j)) j += decode(text, j).size;
      next.context_end = j;
    }
    const bool space_since = last_space != npos && last_space > word.end;
    const Span next_word{space_since ? last_space + 1 : word.begin, p};
    if (pending && word.end <= next_word.begin) decide(candidate, word.begin);
    candidate = next;
    word = next_word;
    pending = true;
  }
  if (pending) decide(candidate, word.begin);
  slices.push_back({last_break, stripped_size(text)});

  size_t realign = 0;
  for (size_t i = 0; i < slices.size(); ++i) {
    const Span current{slices[i].begin + realign, slices[i].end};
    realign = 0;
    if (i + 1 < slices.size()) {
      const Span& following = slices[i + 1];
      const string_view rest = following.begin < following.end
                                   ? text.substr(following.begin, following.end - following.begin)
                                   : string_view();
      size_t quotes = 0;
      if (boundary_realignment(rest, quotes, realign)) {
        sentences.push_back({current.begin, following.begin + quotes});
        continue;
      }
    }
    if (current.begin < current.end) sentences.push_back(current);
  }
}

// ---------------------------------------------------------------------------------------
// NLTKWordTokenizer. Each pass is one regular expression substitution, named after it; a
// pass returns false when it leaves the text unchanged.

// ([«“‘„]|[`]+) -> " \1 "
bool pad_opening_quotes(string_view in, std::string& out) {
  if (in.find('`') == npos && !has_non_ascii(in)) return false;
  for (size_t i = 0; i < in.size();) {
    if (in[i] == '`') {
      const size_t end = std::min(in.find_first_not_of('`', i), in.size());
      pad(out, in.substr(i, end - i));
      i = end;
      continue;
    }
    const CodePoint c = decode(in, i);
    if (c.value == 0xAB || c.value == 0x201C || c.value == 0x2018 || c.value == 0x201E) {
      pad(out, in.substr(i, c.size));
    } else {
      out.append(in.substr(i, c.size));
    }
    i += c.size;
  }
  return true;
}

// ^\" -> ``
bool convert_leading_double_quote(string_view in, std::string& out) {
  if (!starts_with(in, "\"")) return false;
  out += "``";
  out.append(in.substr(1));
  return true;
}

// (``) -> " \1 "
bool pad_double_backticks(string_view in, std::string& out) {
  if (in.find("``") == npos) return false;
  for (size_t i = 0; i < in.size();) {
    if (in.compare(i, 2, "``") == 0) {
      out += " `` ";
      i += 2;
    } else {
      out += in[i++];
    }
  }
  return true;
}

// ([ \(\[{<])(\"|\'{2}) -> "\1 `` "
bool convert_opening_double_quotes(string_view in, std::string& out) {
  constexpr CharSet is_opener(" ([{<");
  if (in.find('"') == npos && in.find("''") == npos) return false;
  for (size_t i = 0; i < in.size();) {
    out += in[i];
    if (is_opener(in[i])) {
      if (in.compare(i + 1, 1, "\"") == 0) {
        out += " `` ";
        i += 2;
        continue;
      }
      if (in.compare(i + 1, 2, "''") == 0) {
        out += " `` ";
        i += 3;
        continue;
      }
    }
    ++i;
  }
  return true;
}

// (?i)(\')(?!re|ve|ll|m|t|s|d|n)(\w)\b -> "\1 \2": an opening single quote before a
// one-character word ("'a"), but not a clitic ("'s").
bool split_quoted_letter(string_view in, std::string& out) {
  constexpr CharSet is_clitic_letter("mtsdn");
  if (in.find('\'') == npos) return false;
  for (size_t i = 0; i < in.size();) {
    if (in[i] == '\'' && i + 1 < in.size()) {
      const string_view rest = in.substr(i + 1);
      const bool clitic =
          starts_with(rest, "re") || starts_with(rest, "ve") || starts_with(rest, "ll") || is_clitic_letter(rest[0]);
      const CodePoint c = decode(in, i + 1);
      const size_t end = i + 1 + c.size;
      if (!clitic && is_word(c.value) && !is_word_at(in, end)) {
        out += "' ";
        out.append(in.substr(i + 1, c.size));
        i = end;
        continue;
      }
    }
    out += in[i++];
  }
  return true;
}

// The final period: ([^\.])(\.)([\]\)}>"\'»”’ ]*)\s*$ -> "\1 \2 \3 " (with_spaces), and
// ([^\.])(\.)([\]\)}>"\']*)\s*$ -> "\1 \2\3 ".
bool split_final_period(string_view in, std::string& out, bool with_spaces) {
  constexpr CharSet is_closer("])}>\"'");
  const auto closing = [with_spaces, &is_closer](char32_t c) {
    if (c < 0x80 && is_closer(static_cast<char>(c))) return true;
    return with_spaces && (c == ' ' || c == 0xBB || c == 0x201D || c == 0x2019);
  };
  // The closing characters run back from the last non-space character to the period.
  size_t closing_begin = stripped_size(in);
  while (closing_begin > 0) {
    const CodePoint c = decode_before(in, closing_begin);
    if (!closing(c.value)) break;
    closing_begin -= c.size;
  }
  if (closing_begin < 2 || in[closing_begin - 1] != '.' || in[closing_begin - 2] == '.') return false;
  size_t closing_end = closing_begin;
  while (closing_end < in.size()) {
    const CodePoint c = decode(in, closing_end);
    if (!closing(c.value)) break;
    closing_end += c.size;
  }
  out.append(in.substr(0, closing_begin - 1));
  out += with_spaces ? " . " : " .";
  out.append(in.substr(closing_begin, closing_end - closing_begin));
  out += ' ';
  return true;
}

bool split_final_period_and_closing(string_view in, std::string& out) { return split_final_period(in, out, true); }

bool split_final_period_keep_closing(string_view in, std::string& out) { return split_final_period(in, out, false); }

// ([:,])([^\d]) -> " \1 \2"
bool pad_comma_colon(string_view in, std::string& out) {
  if (in.find_first_of(",:") == npos) return false;
  for (size_t i = 0; i < in.size();) {
    if ((in[i] == ',' || in[i] == ':') && i + 1 < in.size()) {
      const CodePoint c = decode(in, i + 1);
      if (!is_digit(c.value)) {
        out += ' ';
        out += in[i];
        out += ' ';
        out.append(in.substr(i + 1, c.size));
        i += 1 + c.size;
        continue;
      }
    }
    out += in[i++];
  }
  return true;
}

// ([:,])$ -> " \1 ", where $ also matches before a final newline.
bool pad_final_comma_colon(string_view in, std::string& out) {
  const auto comma_colon = [](char c) { return c == ',' || c == ':'; };
  size_t at = npos;
  if (!in.empty() && comma_colon(in.back())) {
    at = in.size() - 1;
  } else if (in.size() >= 2 && in.back() == '\n' && comma_colon(in[in.size() - 2])) {
    at = in.size() - 2;
  }
  if (at == npos) return false;
  out.append(in.substr(0, at));
  pad(out, in.substr(at, 1));
  out.append(in.substr(at + 1));
  return true;
}

// \.{2,} -> " \g<0> "
bool pad_ellipses(string_view in, std::string& out) {
  if (in.find("..") == npos) return false;
  for (size_t i = 0; i < in.size();) {
    const size_t end = std::min(in.find_first_not_of('.', i), in.size());
    if (in[i] == '.' && end - i >= 2) {
      pad(out, in.substr(i, end - i));
      i = end;
    } else {
      out += in[i++];
    }
  }
  return true;
}

// [<set>] -> " \g<0> "
bool pad_each(string_view in, std::string& out, const CharSet& set) {
  bool changed = false;
  for (const char c : in) {
    if (set(c)) {
      out += ' ';
      out += c;
      out += ' ';
      changed = true;
    } else {
      out += c;
    }
  }
  return changed;
}

bool pad_symbols(string_view in, std::string& out) {
  constexpr CharSet symbols(";@#$%&");
  return pad_each(in, out, symbols);
}
bool pad_question_exclamation(string_view in, std::string& out) {
  constexpr CharSet marks("?!");
  return pad_each(in, out, marks);
}
bool pad_asterisks(string_view in, std::string& out) {
  constexpr CharSet asterisk("*");
  return pad_each(in, out, asterisk);
}
bool pad_brackets(string_view in, std::string& out) {
  constexpr CharSet brackets("][(){}<>");
  return pad_each(in, out, brackets);
}

// ([^'])' -> "\1 ' "
bool split_quote_before_space(string_view in, std::string& out) {
  if (in.find("' ") == npos) return false;
  for (size_t i = 0; i < in.size();) {
    out += in[i];
    if (in[i] != '\'' && in.compare(i + 1, 2, "' ") == 0) {
      out += " ' ";
      i += 3;
    } else {
      ++i;
    }
  }
  return true;
}

// -- -> " -- "
bool pad_double_dashes(string_view in, std::string& out) {
  if (in.find("--") == npos) return false;
  for (size_t i = 0; i < in.size();) {
    if (in.compare(i, 2, "--") == 0) {
      out += " -- ";
      i += 2;
    } else {
      out += in[i++];
    }
  }
  return true;
}

// ([»”’]) -> " \1 "
bool pad_closing_quotes(string_view in, std::string& out) {
  if (!has_non_ascii(in)) return false;
  for (size_t i = 0; i < in.size();) {
    const CodePoint c = decode(in, i);
    if (c.value == 0xBB || c.value == 0x201D || c.value == 0x2019) {
      pad(out, in.substr(i, c.size));
    } else {
      out.append(in.substr(i, c.size));
    }
    i += c.size;
  }
  return true;
}

// '' -> " '' "
bool pad_two_single_quotes(string_view in, std::string& out) {
  if (in.find("''") == npos) return false;
  for (size_t i = 0; i < in.size();) {
    if (in.compare(i, 2, "''") == 0) {
      out += " '' ";
      i += 2;
    } else {
      out += in[i++];
    }
  }
  return true;
}

// " -> " '' "
bool convert_closing_double_quotes(string_view in, std::string& out) {
  if (in.find('"') == npos) return false;
  for (const char c : in) {
    if (c == '"') {
      out += " '' ";
    } else {
      out += c;
    }
  }
  return true;
}

// \s+ -> " "
bool collapse_spaces(string_view in, std::string& out) {
  for (size_t i = 0; i < in.size();) {
    if (!is_space_at(in, i)) {
      const size_t size = decode(in, i).size;
      out.append(in.substr(i, size));
      i += size;
      continue;
    }
    out += ' ';
    while (i < in.size() && is_space_at(in, i)) i += decode(in, i).size;
  }
  return true;
}

// ([^' ])(<clitics>) -> "\1 \2 ", where each clitic ends with the space that follows it.
bool split_clitics(string_view in, std::string& out, std::initializer_list<string_view> clitics) {
  if (in.find('\'') == npos) return false;
  for (size_t i = 0; i < in.size();) {
    out += in[i];
    if (in[i] != '\'' && in[i] != ' ') {
      const string_view rest = in.substr(i + 1);
      const auto clitic =
          std::find_if(clitics.begin(), clitics.end(), [rest](string_view c) { return starts_with(rest, c); });
      if (clitic != clitics.end()) {
        out += ' ';
        out.append(*clitic);
        i += 1 + clitic->size();
        continue;
      }
    }
    ++i;
  }
  return true;
}

bool split_short_clitics(string_view in, std::string& out) {
  return split_clitics(in, out, {"'s ", "'S ", "'m ", "'M ", "'d ", "'D ", "' "});
}

bool split_long_clitics(string_view in, std::string& out) {
  return split_clitics(in, out, {"'ll ", "'LL ", "'re ", "'RE ", "'ve ", "'VE ", "n't ", "N'T "});
}

// MacIntyre's contractions, (?i)\b(first)(second)\b -> " \1 \2 ", e.g. "cannot" -> "can not";
// "wanna" only splits before a space. The text is lower-case, so matching is exact.
struct Contraction {
  string_view word;
  size_t split;            // size of the first part
  bool before_space_only;  // (?=\s) instead of \b after the word
};

bool split_contraction(string_view in, std::string& out, const Contraction& c) {
  size_t from = 0;
  for (size_t at = in.find(c.word); at != npos; at = in.find(c.word, at + 1)) {
    const size_t end = at + c.word.size();
    const bool right = c.before_space_only ? in.compare(end, 1, " ") == 0 : !is_word_at(in, end);
    if (at < from || is_word_before(in, at) || !right) continue;
    out.append(in.substr(from, at - from));
    pad(out, c.word.substr(0, c.split));
    out.append(c.word.substr(c.split));
    out += ' ';
    from = end;
  }
  if (from == 0) return false;
  out.append(in.substr(from));
  return true;
}

// (?i) ('t)(is|was)\b -> " \1 \2 ": "'tis" -> "'t is".
bool split_old_contraction(string_view in, std::string& out, string_view word) {
  const std::string pattern = " 't" + std::string(word);
  size_t from = 0;
  for (size_t at = in.find(pattern); at != npos; at = in.find(pattern, at + 1)) {
    const size_t end = at + pattern.size();
    if (at < from || is_word_at(in, end)) continue;
    out.append(in.substr(from, at - from));
    out += " 't ";
    out.append(word);
    out += ' ';
    from = end;
  }
  if (from == 0) return false;
  out.append(in.substr(from));
  return true;
}

// Applies passes in place, reusing its two buffers from sentence to sentence.
class Rewriter {
 public:
  void reset(string_view text) { text_.assign(text.data(), text.size()); }

  template <class Pass>
  void apply(Pass&& pass) {
    scratch_.clear();
    if (pass(string_view(text_), scratch_)) text_.swap(scratch_);
  }

  const std::string& text() const { return text_; }

 private:
  std::string text_;
  std::string scratch_;
};

void tokenize_sentence(string_view sentence, Rewriter& r, std::vector<std::string>& tokens) {
  r.reset(sentence);
  // STARTING_QUOTES
  r.apply(pad_opening_quotes);
  r.apply(convert_leading_double_quote);
  r.apply(pad_double_backticks);
  r.apply(convert_opening_double_quotes);
  r.apply(split_quoted_letter);

  // PUNCTUATION
  r.apply(split_final_period_and_closing);
  r.apply(pad_comma_colon);
  r.apply(pad_final_comma_colon);
  r.apply(pad_ellipses);
  r.apply(pad_symbols);
  r.apply(split_final_period_keep_closing);
  r.apply(pad_question_exclamation);
  r.apply(split_quote_before_space);
  r.apply(pad_asterisks);

  // PARENS_BRACKETS, DOUBLE_DASHES
  r.apply(pad_brackets);
  r.apply(pad_double_dashes);

  // ENDING_QUOTES, on the text with a space added at each end
  r.apply([](string_view in, std::string& out) {
    pad(out, in);
    return true;
  });
  r.apply(pad_closing_quotes);
  r.apply(pad_two_single_quotes);
  r.apply(convert_closing_double_quotes);
  r.apply(collapse_spaces);
  r.apply(split_short_clitics);
  r.apply(split_long_clitics);

  // CONTRACTIONS2, CONTRACTIONS3
  constexpr std::array<Contraction, 8> kContractions = {{
      {"cannot", 3, false},
      {"d'ye", 1, false},
      {"gimme", 3, false},
      {"gonna", 3, false},
      {"gotta", 3, false},
      {"lemme", 3, false},
      {"more'n", 4, false},
      {"wanna", 3, true},
  }};
  for (const Contraction& c : kContractions) {
    r.apply([&c](string_view in, std::string& out) { return split_contraction(in, out, c); });
  }
  r.apply([](string_view in, std::string& out) { return split_old_contraction(in, out, "is"); });
  r.apply([](string_view in, std::string& out) { return split_old_contraction(in, out, "was"); });

  const string_view text = r.text();
  for (size_t i = 0; i < text.size();) {
    const size_t end = std::min(text.find(' ', i), text.size());
    if (end > i) tokens.emplace_back(text.substr(i, end - i));
    i = end + 1;
  }
}

}  // namespace

std::vector<std::string> tokenize(const std::string& caption) {
  std::string text = caption;
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  std::vector<Span> sentences;
  sentence_spans(text, sentences);
  std::vector<std::string> tokens;
  Rewriter rewriter;
  for (const Span& s : sentences) {
    tokenize_sentence(string_view(text).substr(s.begin, s.end - s.begin), rewriter, tokens);
  }
  return tokens;
}

std::string join_tokens(const std::vector<std::string>& tokens) {
  std::string joined;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) joined += ' ';
    joined += tokens[i];
  }
  return joined;
}

std::vector<std::string> query_tokens(const std::string& text, std::size_t max_tokens) {
  auto tokens = tokenize(text);
  if (tokens.empty()) throw Error("the query has no words");
  if (tokens.size() > max_tokens)
    throw Error("the query has " + std::to_string(tokens.size()) + " tokens, more than the limit of " +
                std::to_string(max_tokens));
  return tokens;
}

}  // namespace imram
