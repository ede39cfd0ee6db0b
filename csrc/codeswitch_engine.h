// The codeswitching kernel (PreAlign, Sec. 3.2).
//
// The exact algorithm (word segmentation, candidate merging, the counter-based random draws) is
// specified in megatron_prealign/data/codeswitch.py's module docstring; reference_codeswitch()
// (megatron_prealign/data/codeswitch_reference.py) is the pure-Python twin of
// CodeswitchEngine::process below and must stay byte-identical.
//
// CodeswitchEngine is built from the flat arrays that codeswitch_table.py compiles from the
// alignment table; it answers one document at a time (apply) or rewrites a whole .bin
// (process_dataset, in codeswitch_pipeline.cpp).
#pragma once

#include "candidate_index.h"

namespace prealign {
namespace cs {

class CodeswitchEngine : private CandidateIndex {
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
        build(src_tokens, src_offsets, group_offsets, group_lang, group_trans_offsets, trans_offsets, trans_tokens, vocab_,
              n_languages_, flags_);
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
        return py::make_tuple(out_a, mask_a, counts.as_array());
    }

    // Rewrites a whole .bin in bounded blocks on several threads (codeswitch_pipeline.cpp).
    py::tuple process_dataset(const std::string& in_bin, const std::string& out_bin, const std::string& out_mask,
                              const py::array& lengths_a, const py::array& pointers_a, int64_t itemsize,
                              int64_t threads, int64_t chunk_tokens, const py::object& progress) const;

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

    template <typename T>
    py::tuple run_dataset(const std::string& in_bin, const std::string& out_bin, const std::string& out_mask,
                          const CArray<int32_t>& lengths_a, const CArray<int64_t>& pointers_a, int64_t threads,
                          int64_t chunk_tokens, const py::object& progress) const;

    size_t n_languages_ = 0;
    double ratio_;
    bool input_only_;
    uint64_t threshold_ = 0;  // substitute iff (h >> 11) < threshold_ = ceil(ratio * 2^53)
    uint64_t seed_key_;
    std::vector<uint8_t> follow_, lead_;  // per token id: follow / leading class (see ends_word)
    std::vector<uint8_t> flags_;  // per token id: kWordStart | kSpecial | kCanStart | kEligible, then kFlagsPad zeros
    size_t vocab_ = 0;
    bool use_avx512_ = false;
};

}  // namespace cs
}  // namespace prealign
