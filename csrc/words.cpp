// Word segmentation of token streams.
//
// A "word" is a maximal run of tokens that starts at a word-start token (GPT-2 'Ġ', SentencePiece
// '▁', or a special token) and extends up to, not including, the next word-start token. Token 0
// of a document always opens a word, whatever its flag, because a document boundary is a word
// boundary.
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include <pybind11/numpy.h>

#include "common.h"

namespace py = pybind11;

namespace prealign {
namespace {

py::array_t<int64_t> word_starts(const py::array& tokens_a, const py::array& word_start_a) {
    // Integer (or bool) arrays only: a float array would be truncated, a 64-bit id wrapped.
    for (const py::array* a : {&tokens_a, &word_start_a}) {
        const char kind = a->dtype().kind();
        if ((kind != 'i' && kind != 'u' && kind != 'b') || a->ndim() != 1)
            throw py::value_error("word_starts: tokens and word_start must be 1-D integer arrays, got dtype " +
                                  std::string(py::str(a->dtype())));
    }
    auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(tokens_a);
    for (py::ssize_t i = 0; i < wide.shape(0); ++i)
        if (wide.at(i) < INT32_MIN || wide.at(i) > INT32_MAX)
            throw std::out_of_range("token id " + std::to_string(wide.at(i)) + " at position " + std::to_string(i) +
                                    " is outside the word-start table");
    auto tokens = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(tokens_a);
    auto word_start = py::array_t<bool, py::array::c_style | py::array::forcecast>::ensure(word_start_a);
    auto t = tokens.unchecked<1>();
    auto ws = word_start.unchecked<1>();
    const int64_t n = t.shape(0);
    const int64_t vocab = ws.shape(0);
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(n / 2 + 1));
    for (int64_t i = 0; i < n; ++i) {
        const int32_t id = t(i);
        if (id < 0 || id >= vocab) {
            throw std::out_of_range("token id " + std::to_string(id) + " at position " + std::to_string(i) +
                                    " is outside the word-start table of size " + std::to_string(vocab));
        }
        if (i == 0 || ws(id)) out.push_back(i);
    }
    py::array_t<int64_t> result(static_cast<py::ssize_t>(out.size()));
    std::copy(out.begin(), out.end(), result.mutable_data());
    return result;
}

}  // namespace

void register_words(py::module_& m) {
    m.def("word_starts", &word_starts, py::arg("tokens"), py::arg("word_start"),
          "Offsets of the tokens that open a word in one document (token 0 always does).\n\n"
          "Args:\n    tokens: int32 token ids of one document.\n"
          "    word_start: bool per vocabulary id, true when that token opens a word.\n"
          "Returns:\n    int64 array of offsets, ascending.");
}

}  // namespace prealign
