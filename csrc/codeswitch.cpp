// Input-only codeswitching of Megatron token streams (PreAlign, Sec. 3.2).
//
// The exact algorithm (word segmentation, candidate merging, the counter-based random draws) is
// specified in megatron_prealign/data/codeswitch.py's module docstring; reference_codeswitch()
// there is the pure-Python twin of CodeswitchEngine::process below and must stay byte-identical.
//
// CodeswitchEngine is built from the flat arrays that codeswitch.py compiles from the alignment
// table; it answers one document at a time (apply) or rewrites a whole .bin in bounded blocks on
// several threads (process_dataset), writing blocks in order so that the output never depends
// on the thread count or the block size.
#include <fcntl.h>
#include <sys/stat.h>
#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <pybind11/numpy.h>

#include "common.h"

namespace py = pybind11;

namespace prealign {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
constexpr uint8_t kWordStart = 1;
constexpr uint8_t kSpecial = 2;
constexpr uint8_t kCanStart = 4;  // first token of some candidate source sequence
constexpr uint8_t kEligible = 8;  // kCanStart and not kSpecial (set once the table is built)
constexpr uint8_t kOpener = 16;   // a bare word may open right after this token (newline, quote, bracket)
constexpr uint8_t kAfterOpen = kSpecial | kOpener;  // the position after such a token opens a word
// Follow classes of the token right after a matched word, and leading classes of the token after
// that (megatron_prealign/alignment/boundaries.py).
constexpr uint8_t kFollowNo = 0, kFollowYes = 1, kFollowIfSpace = 2, kFollowIfNotDigit = 3;
constexpr uint8_t kLeadSpace = 0, kLeadSplit = 1, kLeadDigit = 2;
constexpr int64_t kMaxThreads = 4096;
constexpr int64_t kMaxLanguages = 1 << 20;
constexpr size_t kFlagsPad = 64;  // zero bytes after the flags (4-byte gathers read 3 past an id)

inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// floor(r * n / 2**64): an index in [0, n) from a uniform 64-bit draw (Lemire's reduction).
inline uint64_t mul_hi(uint64_t r, uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

template <typename T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// A 1-D integer (or bool) array from Python as CArray<T>: ValueError for another dimension, a
// float/object dtype (never truncated), or a value outside T's range (never wrapped).
template <typename T>
CArray<T> int_array(const py::array& a, const char* name) {
    const std::string what(name);
    if (a.ndim() != 1) throw py::value_error(what + " must be a 1-D array, got " + std::to_string(a.ndim()) + " dimensions");
    const char kind = a.dtype().kind();
    if (kind != 'i' && kind != 'u' && kind != 'b')
        throw py::value_error(what + " must be an integer array, got dtype " + std::string(py::str(a.dtype())));
    if (kind == 'u' && a.dtype().itemsize() == 8) {
        auto u = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(a);
        auto r = u.template unchecked<1>();
        for (py::ssize_t i = 0; i < r.shape(0); ++i)
            if (r(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
                throw py::value_error(what + "[" + std::to_string(i) + "] = " + std::to_string(r(i)) + " is out of range");
    } else {
        auto w = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
        auto r = w.template unchecked<1>();
        for (py::ssize_t i = 0; i < r.shape(0); ++i)
            if (r(i) < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                (std::numeric_limits<T>::max() < std::numeric_limits<int64_t>::max() &&
                 r(i) > static_cast<int64_t>(std::numeric_limits<T>::max())))
                throw py::value_error(what + "[" + std::to_string(i) + "] = " + std::to_string(r(i)) + " is out of range");
    }
    return CArray<T>::ensure(a);
}

// Offsets into an array of `size` elements: start at 0, non-decreasing, end at `size`.
inline void check_offsets(const std::vector<int64_t>& o, size_t size, const char* name) {
    const std::string what(name);
    if (o.empty()) throw py::value_error(what + " must hold at least one offset");
    if (o.front() != 0) throw py::value_error(what + " must start at 0");
    for (size_t i = 1; i < o.size(); ++i)
        if (o[i] < o[i - 1]) throw py::value_error(what + " must be non-decreasing (index " + std::to_string(i) + ")");
    if (o.back() != static_cast<int64_t>(size))
        throw py::value_error(what + " must end at " + std::to_string(size) + ", got " + std::to_string(o.back()));
}

template <typename T>
std::vector<T> to_vector(const CArray<T>& a) {
    auto r = a.template unchecked<1>();
    std::vector<T> v(static_cast<size_t>(r.shape(0)));
    for (py::ssize_t i = 0; i < r.shape(0); ++i) v[static_cast<size_t>(i)] = r(i);
    return v;
}

// A token id outside the vocabulary, at `position` of the document being processed.
struct BadToken {
    int64_t position;
    int64_t id;
};

// A growable array of trivially copyable values that, unlike std::vector, does not zero what
// it grows into: the output is written once, by the caller of extend().
template <typename T>
class Buffer {
   public:
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { std::free(data_); }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const T* data() const { return data_; }
    void clear() { size_ = 0; }
    void reserve(size_t cap) {
        if (cap <= cap_) return;
        T* p = static_cast<T*>(std::realloc(data_, cap * sizeof(T)));
        if (!p) throw std::bad_alloc();
        data_ = p;
        cap_ = cap;
    }
    // Grows by k uninitialised elements and returns a pointer to them; at least kSlack more
    // elements after them may be written (and are then overwritten or ignored).
    static constexpr size_t kSlack = 8;
    T* extend(size_t k) {
        if (size_ + k + kSlack > cap_) reserve(std::max(size_ + k + kSlack, cap_ + cap_ / 2 + 64));
        T* p = data_ + size_;
        size_ += k;
        return p;
    }

   private:
    T* data_ = nullptr;
    size_t size_ = 0;
    size_t cap_ = 0;
};

// The output loss mask: 1 almost everywhere. Bytes past size() (up to the capacity) are kept at
// 1, so appending ones only moves the end; zeros are written, and remembered so that clear()
// can restore them.
class MaskBuffer {
   public:
    MaskBuffer() = default;
    MaskBuffer(const MaskBuffer&) = delete;
    MaskBuffer& operator=(const MaskBuffer&) = delete;
    ~MaskBuffer() { std::free(data_); }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const uint8_t* data() const { return data_; }
    void clear() {
        for (const auto& z : zero_spans_) {
            if (z.second <= 8)
                std::memcpy(data_ + z.first, &kOnes, 8);  // within the slack; ones over ones
            else
                std::memset(data_ + z.first, 1, z.second);
        }
        zero_spans_.clear();
        size_ = 0;
    }
    void reserve(size_t cap) {
        if (cap <= cap_) return;
        uint8_t* p = static_cast<uint8_t*>(std::realloc(data_, cap));
        if (!p) throw std::bad_alloc();
        std::memset(p + cap_, 1, cap - cap_);
        data_ = p;
        cap_ = cap;
    }
    void ones(size_t k) {
        if (size_ + k + 8 > cap_) reserve(std::max(size_ + k + 8, cap_ + cap_ / 2 + 64));
        size_ += k;
    }
    void zeros(size_t k) {
        if (k == 0) return;
        if (size_ + k + 8 > cap_) reserve(std::max(size_ + k + 8, cap_ + cap_ / 2 + 64));
        if (k < 8) {  // k zero bytes, then ones (what lies past size() anyway)
            const uint64_t v = kOnes & ~((uint64_t{1} << (8 * k)) - 1);
            std::memcpy(data_ + size_, &v, 8);
        } else {
            std::memset(data_ + size_, 0, k);
        }
        zero_spans_.emplace_back(size_, k);
        size_ += k;
    }

   private:
    static constexpr uint64_t kOnes = 0x0101010101010101ULL;
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
    size_t cap_ = 0;
    std::vector<std::pair<size_t, size_t>> zero_spans_;
};

// A word whose draw succeeded: [i, j) and its hash key (then its record offset), then the
// translation chosen (nullptr: not a candidate) and its language.
struct Drawn {
    int64_t i, j;
    uint64_t key;
    const int32_t* tr;
    int64_t lang;
};

// Per-thread working memory of CodeswitchEngine::process, reused between documents.
struct Scratch {
    std::vector<uint64_t> starts, drawn_bits;
    std::vector<Drawn> drawn;
};

struct Counts {
    int64_t words = 0;
    int64_t eligible = 0;  // words whose first token starts some source sequence
    int64_t drawn = 0;     // eligible words whose draw fell below the ratio (looked up)
    int64_t substituted = 0;
    std::vector<int64_t> per_language;

    explicit Counts(size_t n_languages = 0) : per_language(n_languages, 0) {}
    void add(const Counts& o) {
        words += o.words;
        eligible += o.eligible;
        drawn += o.drawn;
        substituted += o.substituted;
        for (size_t i = 0; i < per_language.size(); ++i) per_language[i] += o.per_language[i];
    }
};

class CodeswitchEngine {
   public:
    CodeswitchEngine(const py::array& src_tokens_a, const py::array& src_offsets_a, const py::array& group_offsets_a,
                     const py::array& group_lang_a, const py::array& group_trans_offsets_a,
                     const py::array& trans_offsets_a, const py::array& trans_tokens_a, int64_t n_languages,
                     const py::array& word_start_a, const py::array& special_a, double ratio, bool input_only,
                     uint64_t seed, const py::array& opener_a, const py::array& follow_a, const py::array& lead_a)
        : ratio_(ratio), input_only_(input_only), seed_key_(mix64(seed + kGolden)) {
        if (n_languages < 0 || n_languages > kMaxLanguages)
            throw py::value_error("n_languages must lie in [0, " + std::to_string(kMaxLanguages) + "], got " +
                                  std::to_string(n_languages));
        n_languages_ = static_cast<size_t>(n_languages);
        const auto word_start = int_array<uint8_t>(word_start_a, "word_start");
        const auto special = int_array<uint8_t>(special_a, "special");
        const auto opener = int_array<uint8_t>(opener_a, "opener");
        const auto follow = int_array<uint8_t>(follow_a, "follow");
        const auto lead = int_array<uint8_t>(lead_a, "lead");
        const size_t vocab = static_cast<size_t>(word_start.shape(0));
        if (vocab == 0 || static_cast<size_t>(special.shape(0)) != vocab)
            throw py::value_error("word_start and special masks must be non-empty and of equal length");
        if (vocab > (size_t{1} << 31))
            throw py::value_error("vocabulary of " + std::to_string(vocab) + " ids is beyond int32");
        if (static_cast<size_t>(opener.shape(0)) != vocab || static_cast<size_t>(follow.shape(0)) != vocab ||
            static_cast<size_t>(lead.shape(0)) != vocab)
            throw py::value_error("opener, follow and lead must have one entry per vocabulary id");
        if (!(ratio_ >= 0.0 && ratio_ <= 1.0)) throw py::value_error("codeswitch ratio must lie in [0, 1]");
        threshold_ = static_cast<uint64_t>(std::ceil(ratio_ * 0x1.0p53));
        auto ws = word_start.unchecked<1>();
        auto sp = special.unchecked<1>();
        auto op = opener.unchecked<1>();
        vocab_ = vocab;
        flags_.assign(std::max<size_t>(vocab, size_t{1} << 16) + kFlagsPad, 0);
        for (size_t v = 0; v < vocab; ++v)
            flags_[v] = static_cast<uint8_t>((ws(v) ? kWordStart : 0) | (sp(v) ? kSpecial : 0) | (op(v) ? kOpener : 0));
        follow_ = to_vector(follow);
        lead_ = to_vector(lead);
        for (size_t v = 0; v < vocab; ++v)
            if (follow_[v] > kFollowIfNotDigit || lead_[v] > 3) throw py::value_error("follow/lead class out of range");
        const auto src_tokens = to_vector(int_array<int32_t>(src_tokens_a, "src_tokens"));
        const auto src_offsets = to_vector(int_array<int64_t>(src_offsets_a, "src_offsets"));
        const auto group_offsets = to_vector(int_array<int64_t>(group_offsets_a, "group_offsets"));
        const auto group_lang = to_vector(int_array<int32_t>(group_lang_a, "group_lang"));
        const auto group_trans_offsets = to_vector(int_array<int64_t>(group_trans_offsets_a, "group_trans_offsets"));
        const auto trans_offsets = to_vector(int_array<int64_t>(trans_offsets_a, "trans_offsets"));
        const auto trans_tokens = to_vector(int_array<int32_t>(trans_tokens_a, "trans_tokens"));
        check_offsets(src_offsets, src_tokens.size(), "src_offsets");
        check_offsets(trans_offsets, trans_tokens.size(), "trans_offsets");
        check_offsets(group_offsets, group_lang.size(), "group_offsets");
        check_offsets(group_trans_offsets, trans_offsets.size() - 1, "group_trans_offsets");
        if (group_offsets.size() != src_offsets.size())
            throw py::value_error("group_offsets must have one entry per source sequence plus one");
        if (group_trans_offsets.size() != group_lang.size() + 1)
            throw py::value_error("group_trans_offsets must have one entry per group plus one");
        build(src_tokens, src_offsets, group_offsets, group_lang, group_trans_offsets, trans_offsets, trans_tokens);
        for (size_t v = 0; v < vocab; ++v)
            if ((flags_[v] & (kCanStart | kSpecial)) == kCanStart) flags_[v] |= kEligible;
        const char* no_simd = std::getenv("PREALIGN_CODESWITCH_NO_SIMD");
        use_avx512_ = !(no_simd && *no_simd && std::strcmp(no_simd, "0") != 0) && cpu_has_avx512();
    }

    // Codeswitches one document of `n` tokens into `out`/`mask` (appended). Throws BadToken.
    //
    // (1) One branch-free pass over the tokens builds bitsets: the positions that open a word,
    // and the "drawn" ones: positions opening an eligible word (whose first token starts some
    // table source) whose random draw falls below the ratio. The AVX-512 variant gathers 16
    // flags at a time and computes the draws of all 64 positions of a word at once; the scalar
    // one draws per eligible word. (2) Only the ~ratio of drawn words are hashed and looked up
    // (batched, so that the cache misses overlap), and (3) substituted in order: unchanged runs
    // are copied with one memcpy each, and the mask is only written where it is 0.
    template <typename T, typename O>
    void process(const T* tok, int64_t n, uint64_t doc_index, Buffer<O>& out, MaskBuffer& mask, Counts& counts,
                 Scratch& scratch) const {
        const size_t n_words64 = static_cast<size_t>(n / 64 + 1);  // room for the sentinel bit n
        if (scratch.starts.size() < n_words64) {
            scratch.starts.resize(n_words64);
            scratch.drawn_bits.resize(n_words64);
        }
        uint64_t* const starts = scratch.starts.data();
        uint64_t* const drawn_bits = scratch.drawn_bits.data();
        const uint64_t doc_key = mix64(seed_key_ ^ doc_index);
        ScanCounts sc;
        if (use_avx512_) {
            // uint16 ids cannot read past the flags (padded to 2^16 + kFlagsPad): check after the scan.
            if (sizeof(T) > 2) check_tokens(tok, n);
            const uint32_t hi = scan_avx512<T>(tok, n, flags_.data(), doc_key, threshold_, starts, drawn_bits, sc);
            if (hi >= vocab_) check_tokens(tok, n);
        } else {
            check_tokens(tok, n);
            scan_scalar<T>(tok, n, flags_.data(), doc_key, threshold_, starts, drawn_bits, sc);
        }
        starts[static_cast<size_t>(n >> 6)] |= uint64_t{1} << (n & 63);  // sentinel: "a word opens at n"

        const uint8_t masked = input_only_ ? 0 : 1;
        // 2a: the drawn words not longer than the longest source, with their hash slot
        // prefetched; 2b: probe the slots and prefetch the records; 2c: substitute in order.
        if (scratch.drawn.size() < static_cast<size_t>(sc.drawn)) scratch.drawn.resize(static_cast<size_t>(sc.drawn));
        Drawn* const drawn_buf = scratch.drawn.data();
        size_t n_drawn = 0;
        for (size_t w = 0; w < n_words64; ++w) {
            for (uint64_t d = drawn_bits[w]; d; d &= d - 1) {
                const int64_t i = static_cast<int64_t>(w) * 64 + __builtin_ctzll(d);
                const int64_t j = next_start(starts, i + 1);
                if (j - i > max_src_len_) continue;
                const uint64_t key = (j - i <= 4 && n - i >= 4) ? hash_short(tok + i, j - i) : hash_seq(tok + i, j - i);
                __builtin_prefetch(slots_.data() + (key & slot_mask_));
                Drawn& dw = drawn_buf[n_drawn++];
                dw.i = i;
                dw.j = j;
                dw.key = key;
            }
        }
        for (size_t k = 0; k < n_drawn; ++k) {
            Drawn& d = drawn_buf[k];
            d.key = static_cast<uint64_t>(probe(d.key, tok + d.i, d.j - d.i, /*verify=*/false));
            if (static_cast<int64_t>(d.key) >= 0) {
                __builtin_prefetch(records_.data() + d.key);
                __builtin_prefetch(records_.data() + d.key + 16);
            }
        }
        // 2c: verify, choose the translation and prefetch it.
        for (size_t k = 0; k < n_drawn; ++k) {
            Drawn& d = drawn_buf[k];
            d.tr = nullptr;
            if (static_cast<int64_t>(d.key) < 0) continue;
            const int64_t len = d.j - d.i;
            int64_t cand = static_cast<int64_t>(d.key);
            if (!((len <= 4 && n - d.i >= 4) ? matches_short(cand, tok + d.i, len) : matches(cand, tok + d.i, len)))
                cand = probe(hash_seq(tok + d.i, len), tok + d.i, len, /*verify=*/true);  // fingerprint collision
            if (cand < 0 || !ends_word(tok, n, d.j)) continue;
            const uint64_t h = mix64(doc_key + static_cast<uint64_t>(d.i + 1) * kGolden);
            // record (see build()): group g at grp[1 + 3g], translation t at rec[grp[3 + 3g] + t]
            const int32_t* rec = records_.data() + cand;
            const int32_t* grp = rec + 1 + rec[0];
            const uint64_t g = mul_hi(mix64(h + kGolden), static_cast<uint64_t>(grp[0]));
            const int32_t* ge = grp + 1 + 3 * g;
            d.lang = ge[0];
            const uint64_t t = mul_hi(mix64(h + 2 * kGolden), static_cast<uint64_t>(ge[1]));
            d.tr = rec + rec[static_cast<size_t>(ge[2]) + t];
            __builtin_prefetch(d.tr);
        }
        // 2d: substitute in order.
        int64_t run = 0;  // start of the pending run of unchanged tokens
        for (size_t k = 0; k < n_drawn; ++k) {
            const Drawn& d = drawn_buf[k];
            if (!d.tr) continue;
            const int32_t* tr = d.tr;
            append(out, tok + run, d.i - run);
            mask.ones(static_cast<size_t>(d.i - run));
            append_short(out, tr + 1, tr[0]);
            if (masked)
                mask.ones(static_cast<size_t>(tr[0]));
            else
                mask.zeros(static_cast<size_t>(tr[0]));
            ++counts.substituted;
            ++counts.per_language[static_cast<size_t>(d.lang)];
            run = d.j;
        }
        append(out, tok + run, n - run);
        mask.ones(static_cast<size_t>(n - run));
        counts.words += sc.words;
        counts.eligible += sc.eligible;
        counts.drawn += sc.drawn;
    }

    struct ScanCounts {
        int64_t words = 0, eligible = 0, drawn = 0;
    };

    // Pass (1), portable: words[w] / drawn[w] for w in [0, n / 64], bits past n clear.
    template <typename T>
    static void scan_scalar(const T* tok, int64_t n, const uint8_t* flags, uint64_t doc_key, uint64_t threshold,
                            uint64_t* starts, uint64_t* drawn, ScanCounts& c) {
        const size_t n_words64 = static_cast<size_t>(n / 64 + 1);
        uint64_t prev_special = 1;  // position 0 always opens a word
        for (size_t w = 0; w < n_words64; ++w) {
            const int64_t base = static_cast<int64_t>(w) * 64;
            const int64_t m = std::min<int64_t>(64, n - base);
            uint64_t st = 0, el = 0;
            for (int64_t k = 0; k < m; ++k) {
                const uint64_t f = flags[static_cast<size_t>(tok[base + k])];
                st |= (static_cast<uint64_t>((f & (kWordStart | kSpecial)) != 0) | prev_special) << k;
                el |= static_cast<uint64_t>((f >> 3) & 1) << k;  // kEligible
                prev_special = static_cast<uint64_t>((f & kAfterOpen) != 0);
            }
            el &= st;
            uint64_t d = 0;
            for (uint64_t e = el; e; e &= e - 1) {
                const int k = __builtin_ctzll(e);
                const uint64_t h = mix64(doc_key + static_cast<uint64_t>(base + k + 1) * kGolden);
                d |= static_cast<uint64_t>((h >> 11) < threshold) << k;
            }
            starts[w] = st;
            drawn[w] = d;
            c.words += __builtin_popcountll(st);
            c.eligible += __builtin_popcountll(el);
            c.drawn += __builtin_popcountll(d);
        }
    }

    // Pass (1) with AVX-512 (F, BW, DQ, VL): same output as scan_scalar; returns the largest id.
    template <typename T>
    __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt"))) static uint32_t scan_avx512(
        const T* tok, int64_t n, const uint8_t* flags, uint64_t doc_key, uint64_t threshold, uint64_t* starts,
        uint64_t* drawn, ScanCounts& c) {
        const size_t n_words64 = static_cast<size_t>(n / 64 + 1);
        const __m512i m_start = _mm512_set1_epi32(kWordStart | kSpecial);
        const __m512i m_special = _mm512_set1_epi32(kAfterOpen);
        const __m512i m_elig = _mm512_set1_epi32(kEligible);
        const __m512i c1 = _mm512_set1_epi64(static_cast<long long>(0xBF58476D1CE4E5B9ULL));
        const __m512i c2 = _mm512_set1_epi64(static_cast<long long>(0x94D049BB133111EBULL));
        const __m512i thr = _mm512_set1_epi64(static_cast<long long>(threshold));
        const __m512i lanes = _mm512_mullo_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi64(static_cast<long long>(kGolden)));
        const __m512i step = _mm512_set1_epi64(static_cast<long long>(8 * kGolden));
        const int* table = reinterpret_cast<const int*>(flags);
        const __mmask8 all8 = 0xFF;  // maskz forms: GCC 12 warns about _mm512_undefined in the plain ones
        uint64_t carry = 1;  // position 0 always opens a word
        __m512i hi = _mm512_setzero_si512();
        for (size_t w = 0; w < n_words64; ++w) {
            const int64_t base = static_cast<int64_t>(w) * 64;
            const int64_t m = std::min<int64_t>(64, n - base);
            if (m <= 0) {
                starts[w] = drawn[w] = 0;
                continue;
            }
            uint64_t a = 0, s = 0, e = 0;
            for (int g = 0; g < 4; ++g) {
                const int64_t r = m - 16 * g;
                const __mmask16 lm = r >= 16 ? static_cast<__mmask16>(0xFFFF)
                                             : static_cast<__mmask16>(r <= 0 ? 0 : (1u << r) - 1);
                __m512i idx;
                if constexpr (sizeof(T) == 2)
                    idx = _mm512_maskz_cvtepu16_epi32(lm, _mm256_maskz_loadu_epi16(lm, tok + base + 16 * g));
                else
                    idx = _mm512_maskz_loadu_epi32(lm, tok + base + 16 * g);
                hi = _mm512_maskz_max_epu32(static_cast<__mmask16>(0xFFFF), hi, idx);
                const __m512i f = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lm, idx, table, 1);
                a |= static_cast<uint64_t>(_mm512_test_epi32_mask(f, m_start)) << (16 * g);
                s |= static_cast<uint64_t>(_mm512_test_epi32_mask(f, m_special)) << (16 * g);
                e |= static_cast<uint64_t>(_mm512_test_epi32_mask(f, m_elig)) << (16 * g);
            }
            const uint64_t valid = m == 64 ? ~uint64_t{0} : (uint64_t{1} << m) - 1;
            const uint64_t st = (a | (s << 1) | carry) & valid;
            carry = s >> 63;
            const uint64_t el = e & st;
            uint64_t d = 0;
            if (el) {
                __m512i x = _mm512_add_epi64(
                    _mm512_set1_epi64(static_cast<long long>(doc_key + static_cast<uint64_t>(base + 1) * kGolden)), lanes);
                for (int g = 0; g < 8; ++g) {
                    __m512i z = _mm512_xor_si512(x, _mm512_maskz_srli_epi64(all8, x, 30));
                    z = _mm512_mullo_epi64(z, c1);
                    z = _mm512_xor_si512(z, _mm512_maskz_srli_epi64(all8, z, 27));
                    z = _mm512_mullo_epi64(z, c2);
                    z = _mm512_xor_si512(z, _mm512_maskz_srli_epi64(all8, z, 31));
                    d |= static_cast<uint64_t>(_mm512_cmplt_epu64_mask(_mm512_maskz_srli_epi64(all8, z, 11), thr)) << (8 * g);
                    x = _mm512_add_epi64(x, step);
                }
                d &= el;
            }
            starts[w] = st;
            drawn[w] = d;
            c.words += __builtin_popcountll(st);
            c.eligible += __builtin_popcountll(el);
            c.drawn += __builtin_popcountll(d);
        }
        alignas(64) uint32_t lanes_hi[16];
        _mm512_store_si512(lanes_hi, hi);
        return *std::max_element(lanes_hi, lanes_hi + 16);
    }

    static bool cpu_has_avx512() {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    }

    // First set bit at or after position p (the sentinel guarantees one).
    static int64_t next_start(const uint64_t* bits, int64_t p) {
        size_t w = static_cast<size_t>(p >> 6);
        uint64_t b = bits[w] >> (p & 63);
        if (b) return p + __builtin_ctzll(b);
        for (++w;; ++w)
            if (bits[w]) return static_cast<int64_t>(w) * 64 + __builtin_ctzll(bits[w]);
    }

    py::tuple apply(const py::array& tokens_a, int64_t doc_index) const {
        if (doc_index < 0) throw py::value_error("doc_index must be >= 0");
        const auto tokens = int_array<int32_t>(tokens_a, "tokens");
        const int32_t* data = tokens.data();
        const int64_t n = tokens.shape(0);
        thread_local Buffer<int32_t> out;  // reused between calls (per thread: apply releases the GIL)
        thread_local MaskBuffer mask;
        thread_local Scratch scratch;
        out.clear();
        mask.clear();
        Counts counts(n_languages_);
        {
            py::gil_scoped_release release;
            out.reserve(static_cast<size_t>(n) + 16);
            mask.reserve(static_cast<size_t>(n) + 16);
            try {
                process(data, n, static_cast<uint64_t>(doc_index), out, mask, counts, scratch);
            } catch (const BadToken& b) {
                throw std::invalid_argument("document " + std::to_string(doc_index) + ": token id " +
                                            std::to_string(b.id) + " at position " + std::to_string(b.position) +
                                            " is outside the vocabulary (size " + std::to_string(vocab_) +
                                            ")");
            }
        }
        py::array_t<int32_t> out_a(static_cast<py::ssize_t>(out.size()));
        py::array_t<uint8_t> mask_a(static_cast<py::ssize_t>(mask.size()));
        if (!out.empty()) std::memcpy(out_a.mutable_data(), out.data(), out.size() * sizeof(int32_t));
        if (!mask.empty()) std::memcpy(mask_a.mutable_data(), mask.data(), mask.size());
        py::array_t<int64_t> counts_a(static_cast<py::ssize_t>(4 + n_languages_));
        int64_t* cp = counts_a.mutable_data();
        cp[0] = counts.words;
        cp[1] = counts.eligible;
        cp[2] = counts.drawn;
        cp[3] = counts.substituted;
        for (size_t l = 0; l < n_languages_; ++l) cp[4 + l] = counts.per_language[l];
        return py::make_tuple(out_a, mask_a, counts_a);
    }

    py::tuple process_dataset(const std::string& in_bin, const std::string& out_bin, const std::string& out_mask,
                              const py::array& lengths_a, const py::array& pointers_a, int64_t itemsize,
                              int64_t threads, int64_t chunk_tokens, const py::object& progress) const {
        if (itemsize != 2 && itemsize != 4) throw py::value_error("token itemsize must be 2 (uint16) or 4 (int32)");
        if (threads < 1 || threads > kMaxThreads)
            throw py::value_error("threads must lie in [1, " + std::to_string(kMaxThreads) + "], got " + std::to_string(threads));
        if (chunk_tokens < 1) throw py::value_error("chunk_tokens must be >= 1");
        const auto lengths = int_array<int32_t>(lengths_a, "lengths");
        const auto pointers = int_array<int64_t>(pointers_a, "pointers");
        const int64_t n_seq = lengths.shape(0);
        if (pointers.shape(0) != n_seq) throw py::value_error("lengths and pointers differ in size");
        // Outputs may not be the input (or each other): opening them for writing truncates.
        struct stat st_in {};
        if (::stat(in_bin.c_str(), &st_in) != 0) throw py::value_error(in_bin + ": no such file");
        if (out_bin == out_mask) throw py::value_error("out_bin and out_mask are the same path: " + out_bin);
        for (const std::string* out : {&out_bin, &out_mask}) {
            struct stat st_out {};
            if (*out == in_bin || (::stat(out->c_str(), &st_out) == 0 && st_out.st_dev == st_in.st_dev &&
                                   st_out.st_ino == st_in.st_ino))
                throw py::value_error("output " + *out + " is the input " + in_bin + " (it would be truncated)");
        }
        const int32_t* len = lengths.data();
        const int64_t* ptr = pointers.data();
        const int64_t file_size = static_cast<int64_t>(st_in.st_size);
        for (int64_t s = 0; s < n_seq; ++s) {
            if (len[s] < 0) throw py::value_error("lengths[" + std::to_string(s) + "] = " + std::to_string(len[s]) + " is negative");
            if (ptr[s] < 0 || ptr[s] > file_size)
                throw py::value_error("pointers[" + std::to_string(s) + "] = " + std::to_string(ptr[s]) + " is outside " + in_bin +
                                      " (" + std::to_string(file_size) + " bytes)");
            if (s > 0 && ptr[s] < ptr[s - 1] + static_cast<int64_t>(len[s - 1]) * itemsize)
                throw py::value_error("pointers[" + std::to_string(s) + "] overlaps the previous sequence (pointers must increase)");
            if (static_cast<int64_t>(len[s]) * itemsize > file_size - ptr[s])
                throw py::value_error("sequence " + std::to_string(s) + " ends past the end of " + in_bin + " (" +
                                      std::to_string(file_size) + " bytes)");
        }
        if (itemsize == 2) return run_dataset<uint16_t>(in_bin, out_bin, out_mask, lengths, pointers, threads, chunk_tokens, progress);
        if (itemsize == 4) return run_dataset<int32_t>(in_bin, out_bin, out_mask, lengths, pointers, threads, chunk_tokens, progress);
        throw std::invalid_argument("token itemsize must be 2 (uint16) or 4 (int32)");
    }

   private:
    // Whether a word matched up to position j ends there as a word of the table's word tokenizer
    // (follow class of tok[j], and the leading class of tok[j + 1] for the two-token rules).
    template <typename T>
    bool ends_word(const T* tok, int64_t n, int64_t j) const {
        if (j >= n) return true;
        const uint8_t f = follow_[static_cast<size_t>(tok[j])];
        if (f == kFollowYes) return true;
        if (f == kFollowNo) return false;
        const uint8_t l = j + 1 >= n ? kLeadSpace : lead_[static_cast<size_t>(tok[j + 1])];
        return f == kFollowIfSpace ? (l == kLeadSpace || l == kLeadSplit) : l != kLeadDigit;
    }

    // Throws BadToken for the first id outside [0, vocab); a vectorisable unsigned-max scan first
    // (a negative int32 id becomes a huge unsigned one).
    template <typename T>
    void check_tokens(const T* tok, int64_t n) const {
        using U = typename std::make_unsigned<T>::type;
        U hi = 0;
        for (int64_t k = 0; k < n; ++k) hi = std::max(hi, static_cast<U>(tok[k]));
        if (static_cast<uint64_t>(hi) < vocab_) return;
        for (int64_t k = 0; k < n; ++k) {
            const int64_t t = static_cast<int64_t>(tok[k]);
            if (t < 0 || static_cast<uint64_t>(t) >= vocab_) throw BadToken{k, t};
        }
    }

    template <typename O, typename T>
    static void append(Buffer<O>& out, const T* p, int64_t n) {
        if (n <= 0) return;
        O* dst = out.extend(static_cast<size_t>(n));
        if constexpr (std::is_same<O, T>::value) {
            std::memcpy(dst, p, static_cast<size_t>(n) * sizeof(T));
        } else {
            for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<O>(p[k]);
        }
    }

    // append() for a translation (ids from records_, which end in 4 padding ints): lengths up
    // to 4 are copied without a data-dependent loop.
    template <typename O>
    static void append_short(Buffer<O>& out, const int32_t* p, int32_t n) {
        if (n > 4) return append(out, p, n);
        O* dst = out.extend(static_cast<size_t>(n));  // + Buffer::kSlack writable
        for (int k = 0; k < 4; ++k) dst[k] = static_cast<O>(p[k]);
    }

    // Packs each candidate into one contiguous record (one or two cache lines per substitution)
    // and indexes the records by an open-addressing hash of their source sequence; a slot holds
    // (32-bit fingerprint << 32) | (record offset + 1), 0 when empty.
    void build(const std::vector<int32_t>& src_tokens, const std::vector<int64_t>& src_offsets,
               const std::vector<int64_t>& group_offsets, const std::vector<int32_t>& group_lang,
               const std::vector<int64_t>& group_trans_offsets, const std::vector<int64_t>& trans_offsets,
               const std::vector<int32_t>& trans_tokens) {
        const size_t vocab = vocab_;
        auto malformed = [](const char* what) {
            return std::invalid_argument(std::string("malformed compiled codeswitch table (") + what + ")");
        };
        if (src_offsets.empty() || group_offsets.size() != src_offsets.size() || group_trans_offsets.size() != group_lang.size() + 1 ||
            trans_offsets.empty() || src_offsets.back() != static_cast<int64_t>(src_tokens.size()) ||
            group_offsets.back() != static_cast<int64_t>(group_lang.size()) ||
            group_trans_offsets.back() != static_cast<int64_t>(trans_offsets.size()) - 1 ||
            trans_offsets.back() != static_cast<int64_t>(trans_tokens.size()))
            throw malformed("offsets");
        for (int32_t t : src_tokens)
            if (t < 0 || static_cast<size_t>(t) >= vocab) throw malformed("source id outside the vocabulary");
        for (int32_t t : trans_tokens)
            if (t < 0 || static_cast<size_t>(t) >= vocab) throw malformed("translation id outside the vocabulary");
        const size_t n_cand = src_offsets.size() - 1;
        size_t cap = 16;
        while (cap < 2 * n_cand) cap <<= 1;
        slots_.assign(cap, 0);
        slot_mask_ = cap - 1;
        max_src_len_ = 0;
        for (size_t c = 0; c < n_cand; ++c) {
            const int64_t b = src_offsets[c], e = src_offsets[c + 1];
            const int64_t g0 = group_offsets[c], g1 = group_offsets[c + 1];
            if (e <= b || g1 <= g0) throw malformed("empty source or no translations");
            if (records_.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max() - 1)) throw malformed("too large");
            const int32_t at = static_cast<int32_t>(records_.size());
            records_.push_back(static_cast<int32_t>(e - b));
            records_.insert(records_.end(), src_tokens.begin() + b, src_tokens.begin() + e);
            // [src_len, src..., n_groups, {lang, n_trans, first}..., {offset}..., {len, ids...}...]: group
            // g's translations' offsets (from the record's start) are at [first, first + n_trans).
            records_.push_back(static_cast<int32_t>(g1 - g0));
            const size_t ghead = records_.size();
            const int64_t tr0 = group_trans_offsets[g0];
            if (group_trans_offsets[g1] <= tr0) throw malformed("empty language group");
            const size_t thead = ghead + 3 * static_cast<size_t>(g1 - g0);
            records_.resize(thead + static_cast<size_t>(group_trans_offsets[g1] - tr0));
            for (int64_t g = g0; g < g1; ++g) {
                if (group_lang[g] < 0 || static_cast<size_t>(group_lang[g]) >= n_languages_) throw malformed("language");
                const int64_t t0 = group_trans_offsets[g], t1 = group_trans_offsets[g + 1];
                if (t1 <= t0) throw malformed("empty language group");
                int32_t* ge = records_.data() + ghead + 3 * static_cast<size_t>(g - g0);
                ge[0] = group_lang[g];
                ge[1] = static_cast<int32_t>(t1 - t0);
                ge[2] = static_cast<int32_t>(thead + static_cast<size_t>(t0 - tr0) - static_cast<size_t>(at));
                for (int64_t t = t0; t < t1; ++t) {
                    const int64_t tb = trans_offsets[t], te = trans_offsets[t + 1];
                    if (te <= tb) throw malformed("empty translation");
                    records_[thead + static_cast<size_t>(t - tr0)] = static_cast<int32_t>(records_.size() - static_cast<size_t>(at));
                    records_.push_back(static_cast<int32_t>(te - tb));
                    records_.insert(records_.end(), trans_tokens.begin() + tb, trans_tokens.begin() + te);
                }
            }
            max_src_len_ = std::max<int64_t>(max_src_len_, e - b);
            flags_[static_cast<size_t>(src_tokens[static_cast<size_t>(b)])] |= kCanStart;
            if (lookup(src_tokens.data() + b, e - b) >= 0) throw malformed("duplicate source");
            const uint64_t h = hash_seq(src_tokens.data() + b, e - b);
            uint64_t s = h & slot_mask_;
            while (slots_[s]) s = (s + 1) & slot_mask_;
            slots_[s] = ((h >> 32) << 32) | (static_cast<uint64_t>(at) + 1);
        }
        records_.insert(records_.end(), 4, 0);  // padding read by append_short
    }

    template <typename T>
    static uint64_t hash_seq(const T* p, int64_t n) {
        uint64_t h = static_cast<uint64_t>(n) * kGolden;
        for (int64_t k = 0; k < n; ++k) h = (h ^ static_cast<uint32_t>(p[k])) * 0x100000001B3ULL;
        return mix64(h);
    }

    // Offset of the record whose source is p[0..n), or -1.
    template <typename T>
    int64_t lookup(const T* p, int64_t n) const {
        const int64_t first = probe(hash_seq(p, n), p, n, false);
        return first < 0 ? -1 : probe_verify(first, p, n);
    }

    // The first record (offset) in the probe sequence of `key` whose fingerprint matches, or -1.
    // With verify=false the record itself is not read (so a caller can prefetch it first).
    template <typename T>
    int64_t probe(uint64_t key, const T* p, int64_t n, bool verify) const {
        const uint64_t fp = key >> 32;
        for (uint64_t s = key & slot_mask_;; s = (s + 1) & slot_mask_) {
            const uint64_t slot = slots_[s];
            if (!slot) return -1;
            if ((slot >> 32) != fp) continue;
            const int64_t at = static_cast<int64_t>((slot & 0xFFFFFFFFULL) - 1);
            if (!verify || matches(at, p, n)) return at;
        }
    }

    // `at` came from probe(): verify it, and on a fingerprint collision continue the probe.
    template <typename T>
    int64_t probe_verify(int64_t at, const T* p, int64_t n) const {
        if (matches(at, p, n)) return at;
        const uint64_t key = hash_seq(p, n);
        return probe(key, p, n, true);
    }

    // hash_seq() for n <= 4 without a data-dependent loop; p[0..4) must be readable.
    template <typename T>
    static uint64_t hash_short(const T* p, int64_t n) {
        uint64_t h = static_cast<uint64_t>(n) * kGolden;
        for (int64_t k = 0; k < 4; ++k) {
            const uint64_t hk = (h ^ static_cast<uint32_t>(p[k])) * 0x100000001B3ULL;
            h = k < n ? hk : h;
        }
        return mix64(h);
    }

    // matches() for n <= 4 without a data-dependent loop; p[0..4) must be readable (a record
    // holds at least 5 ints after its length).
    template <typename T>
    bool matches_short(int64_t at, const T* p, int64_t n) const {
        const int32_t* rec = records_.data() + at;
        uint32_t diff = static_cast<uint32_t>(rec[0]) ^ static_cast<uint32_t>(n);
        for (int64_t k = 0; k < 4; ++k)
            diff |= (static_cast<uint32_t>(rec[1 + k]) ^ static_cast<uint32_t>(p[k])) & (k < n ? ~0u : 0u);
        return diff == 0;
    }

    template <typename T>
    bool matches(int64_t at, const T* p, int64_t n) const {
        const int32_t* rec = records_.data() + at;
        if (rec[0] != n) return false;
        for (int64_t k = 0; k < n; ++k)
            if (rec[1 + k] != static_cast<int32_t>(p[k])) return false;
        return true;
    }

    // One unit of work: sequences [seq_begin, seq_end), read and written as a whole.
    template <typename T>
    struct Block {
        int64_t seq_begin = 0, seq_end = 0;
        bool ready = false;
        Buffer<T> out;
        MaskBuffer mask;
    };

    template <typename T>
    py::tuple run_dataset(const std::string& in_bin, const std::string& out_bin, const std::string& out_mask,
                          const CArray<int32_t>& lengths_a, const CArray<int64_t>& pointers_a, int64_t threads,
                          int64_t chunk_tokens, const py::object& progress) const {
        const int64_t n_seq = lengths_a.shape(0);
        if (pointers_a.shape(0) != n_seq) throw std::invalid_argument("lengths and pointers differ in size");
        if (threads < 1 || chunk_tokens < 1) throw std::invalid_argument("threads and chunk_tokens must be >= 1");
        const int32_t* lengths = lengths_a.data();
        const int64_t* pointers = pointers_a.data();

        // Block boundaries: consecutive sequences totalling >= chunk_tokens input tokens.
        std::vector<int64_t> bounds{0};
        for (int64_t s = 0, acc = 0; s < n_seq; ++s) {
            acc += lengths[s];
            if (acc >= chunk_tokens || s + 1 == n_seq) {
                bounds.push_back(s + 1);
                acc = 0;
            }
        }
        const int64_t n_blocks = static_cast<int64_t>(bounds.size()) - 1;
        const int64_t slots = 2 * threads;  // blocks in flight: bounds memory to ~2*threads blocks

        const int in_fd = ::open(in_bin.c_str(), O_RDONLY);
        if (in_fd < 0) throw std::runtime_error(in_bin + ": cannot open for reading");
        std::FILE* fo = std::fopen(out_bin.c_str(), "wb");
        std::FILE* fm = fo ? std::fopen(out_mask.c_str(), "wb") : nullptr;
        if (!fo || !fm) {
            ::close(in_fd);
            if (fo) std::fclose(fo);
            throw std::runtime_error("cannot open " + std::string(fo ? out_mask : out_bin) + " for writing");
        }

        py::array_t<int32_t> new_lengths_a(static_cast<py::ssize_t>(n_seq));
        int32_t* new_lengths = new_lengths_a.mutable_data();
        std::vector<Block<T>> ring(static_cast<size_t>(slots));
        std::vector<Counts> worker_counts(static_cast<size_t>(threads), Counts(n_languages_));
        std::mutex mu;
        std::condition_variable cv;
        int64_t next_block = 0, written = 0;
        bool abort = false;
        std::string error;
        std::exception_ptr py_error;

        auto fail = [&](const std::string& msg) {
            std::lock_guard<std::mutex> lock(mu);
            if (!abort) error = msg;
            abort = true;
            cv.notify_all();
        };

        auto work = [&](size_t w) {
            std::vector<char> in_buf;
            Scratch scratch;
            while (true) {
                int64_t b;
                {
                    std::unique_lock<std::mutex> lock(mu);
                    if (abort || next_block >= n_blocks) return;
                    b = next_block++;
                    cv.wait(lock, [&] { return abort || b < written + slots; });
                    if (abort) return;
                }
                Block<T>& blk = ring[static_cast<size_t>(b % slots)];
                blk.seq_begin = bounds[b];
                blk.seq_end = bounds[b + 1];
                blk.out.clear();
                blk.mask.clear();
                const int64_t first = blk.seq_begin, last = blk.seq_end - 1;
                const int64_t span_begin = pointers[first];
                const int64_t span_end = pointers[last] + static_cast<int64_t>(lengths[last]) * sizeof(T);
                in_buf.resize(static_cast<size_t>(span_end - span_begin));
                for (int64_t done = 0; done < span_end - span_begin;) {
                    const ssize_t r = ::pread(in_fd, in_buf.data() + done, static_cast<size_t>(span_end - span_begin - done),
                                              span_begin + done);
                    if (r < 0 && errno == EINTR) continue;
                    if (r <= 0) return fail(in_bin + ": read failed at byte " + std::to_string(span_begin + done));
                    done += r;
                }
                const char* const span = in_buf.data();
                int64_t total = 0;
                for (int64_t s = first; s <= last; ++s) total += lengths[s];
                blk.out.reserve(static_cast<size_t>(total + total / 8 + 16));
                blk.mask.reserve(static_cast<size_t>(total + total / 8 + 16));
                for (int64_t s = first; s <= last; ++s) {
                    const T* tok = reinterpret_cast<const T*>(span + (pointers[s] - span_begin));
                    const size_t before = blk.out.size();
                    try {
                        process(tok, lengths[s], static_cast<uint64_t>(s), blk.out, blk.mask, worker_counts[w], scratch);
                    } catch (const BadToken& bt) {
                        return fail(in_bin + ": sequence " + std::to_string(s) + ": token id " + std::to_string(bt.id) +
                                    " at position " + std::to_string(bt.position) +
                                    " is outside the vocabulary (size " + std::to_string(vocab_) + ")");
                    } catch (const std::exception& e) {
                        return fail(in_bin + ": sequence " + std::to_string(s) + ": " + e.what());
                    }
                    const size_t grown = blk.out.size() - before;
                    if (grown > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
                        return fail(in_bin + ": sequence " + std::to_string(s) + " exceeds 2^31 tokens after codeswitching");
                    new_lengths[s] = static_cast<int32_t>(grown);
                }
                {
                    std::lock_guard<std::mutex> lock(mu);
                    blk.ready = true;
                }
                cv.notify_all();
            }
        };
        auto worker = [&](size_t w) {
            try {
                work(w);
            } catch (const std::exception& e) {  // e.g. std::bad_alloc: never let a thread terminate()
                fail(in_bin + ": " + e.what());
            }
        };

        {
            py::gil_scoped_release release;
            std::vector<std::thread> pool;
            for (int64_t w = 0; w < threads; ++w) pool.emplace_back(worker, static_cast<size_t>(w));
            int64_t done_tokens = 0;
            auto last_report = std::chrono::steady_clock::now();
            for (int64_t b = 0; b < n_blocks; ++b) {
                Block<T>* blk;
                {
                    std::unique_lock<std::mutex> lock(mu);
                    blk = &ring[static_cast<size_t>(b % slots)];
                    cv.wait(lock, [&] { return abort || blk->ready; });
                    if (abort) break;
                }
                const size_t n_out = blk->out.size();
                if ((n_out && std::fwrite(blk->out.data(), sizeof(T), n_out, fo) != n_out) ||
                    (n_out && std::fwrite(blk->mask.data(), 1, n_out, fm) != n_out)) {
                    fail("write failed (" + out_bin + "): disk full?");
                    break;
                }
                for (int64_t s = blk->seq_begin; s < blk->seq_end; ++s) done_tokens += lengths[s];
                const int64_t done_seq = blk->seq_end;
                blk->out.clear();  // capacity kept: at most `slots` blocks of memory
                blk->mask.clear();
                {
                    std::lock_guard<std::mutex> lock(mu);
                    blk->ready = false;
                    ++written;
                }
                cv.notify_all();
                const auto now = std::chrono::steady_clock::now();
                if (!progress.is_none() && now - last_report > std::chrono::milliseconds(500)) {
                    last_report = now;
                    py::gil_scoped_acquire acquire;
                    try {
                        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                        progress(done_tokens, done_seq);
                    } catch (...) {
                        py_error = std::current_exception();
                        fail("interrupted");
                        break;
                    }
                }
            }
            for (auto& t : pool) t.join();
        }
        ::close(in_fd);
        const bool fo_ok = std::fclose(fo) == 0;
        const bool fm_ok = std::fclose(fm) == 0;
        const bool close_ok = fo_ok && fm_ok;
        if (py_error) std::rethrow_exception(py_error);
        if (abort) throw std::invalid_argument(error);
        if (!close_ok) throw std::runtime_error("write failed (" + out_bin + "): disk full?");

        Counts total(n_languages_);
        for (const auto& c : worker_counts) total.add(c);
        py::array_t<int64_t> counts_a(static_cast<py::ssize_t>(4 + n_languages_));
        int64_t* cp = counts_a.mutable_data();
        cp[0] = total.words;
        cp[1] = total.eligible;
        cp[2] = total.drawn;
        cp[3] = total.substituted;
        for (size_t l = 0; l < n_languages_; ++l) cp[4 + l] = total.per_language[l];
        return py::make_tuple(new_lengths_a, counts_a);
    }

    size_t n_languages_ = 0;
    double ratio_;
    bool input_only_;
    uint64_t threshold_ = 0;  // substitute iff (h >> 11) < threshold_ = ceil(ratio * 2^53)
    uint64_t seed_key_;
    std::vector<uint8_t> follow_, lead_;  // per token id: follow / leading class (see ends_word)
    std::vector<uint8_t> flags_;  // per token id: kWordStart | kSpecial | kCanStart | kEligible, then kFlagsPad zeros
    size_t vocab_ = 0;
    bool use_avx512_ = false;
    std::vector<int32_t> records_;
    std::vector<uint64_t> slots_;
    uint64_t slot_mask_ = 0;
    int64_t max_src_len_ = 0;
};

}  // namespace

void register_codeswitch(py::module_& m) {
    py::class_<CodeswitchEngine>(m, "CodeswitchEngine",
                                 "Compiled codeswitcher (built by megatron_prealign.data.codeswitch.Codeswitcher).")
        .def(py::init<const py::array&, const py::array&, const py::array&, const py::array&, const py::array&,
                      const py::array&, const py::array&, int64_t, const py::array&, const py::array&, double, bool,
                      uint64_t, const py::array&, const py::array&, const py::array&>(),
             py::arg("src_tokens"), py::arg("src_offsets"), py::arg("group_offsets"), py::arg("group_lang"),
             py::arg("group_trans_offsets"), py::arg("trans_offsets"), py::arg("trans_tokens"),
             py::arg("n_languages"), py::arg("word_start"), py::arg("special"), py::arg("ratio"),
             py::arg("input_only"), py::arg("seed"), py::arg("opener"), py::arg("follow"), py::arg("lead"))
        .def("apply", &CodeswitchEngine::apply, py::arg("tokens"), py::arg("doc_index"),
             "Codeswitch one document: (int32 tokens, doc_index) -> (int32 tokens, uint8 mask, int64 counts "
             "[words, eligible, drawn, substituted, per language...]).")
        .def("process_dataset", &CodeswitchEngine::process_dataset, py::arg("in_bin"), py::arg("out_bin"),
             py::arg("out_mask"), py::arg("lengths"), py::arg("pointers"), py::arg("itemsize"), py::arg("threads"),
             py::arg("chunk_tokens"), py::arg("progress"),
             "Rewrite a Megatron .bin (sequence i uses doc_index i) into out_bin/out_mask; returns "
             "(new int32 sequence lengths, int64 counts [words, eligible, drawn, substituted, per language...]).");
}

}  // namespace prealign
