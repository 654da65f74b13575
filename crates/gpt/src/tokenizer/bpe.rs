//! The BPE merge loop: the bytes of one pre-token -> token ids.
//!
//! Start from one token per byte, then repeatedly merge the adjacent pair with the lowest merge
//! rank (the leftmost one on a tie) until no adjacent pair has a merge. This is OpenAI's
//! `encoder.py`, Hugging Face's `BPE::merge_word` and llama.cpp's `llm_tokenizer_bpe` alike.
//! Merges are looked up as `(left_id, right_id) -> (rank, merged_id)` on integer ids, never
//! strings.
//!
//! Two implementations of the loop, one the reference twin of the other:
//! - [`Bpe::merge_simple`]: a vector scanned for the minimum after every merge (tiktoken's loop).
//!   O(n^2) but the fastest for the short pieces ordinary text is made of.
//! - [`Bpe::merge_heap`]: a linked list of symbols and a binary heap of candidate pairs with lazy
//!   invalidation (Hugging Face's approach). O(n log n), so a 1 MB piece without whitespace or a run
//!   of 100,000 equal characters does not take quadratic time.

use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Pieces up to this many bytes take [`Bpe::merge_simple`]; longer ones [`Bpe::merge_heap`].
/// Below ~100 bytes the linear scan beats the heap's bookkeeping; the exact value matters little.
pub const SIMPLE_MAX_LEN: usize = 64;

/// Marks a byte that has no token in the vocabulary (it never takes part in a merge).
pub const NO_TOKEN: u32 = u32::MAX;

/// A merge rule as the loop uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    /// Priority: lower merges first. Rank r is line r of the merges list.
    pub rank: u32,
    /// The token the pair becomes.
    pub id: u32,
}

/// A small, fast, non-cryptographic hasher (the Fx hash of rustc) for the integer and short byte
/// keys of the hot loops; std's SipHash costs several times more per lookup and gives nothing here
/// (keys come from the vocabulary and the input text, not from an adversary we must resist).
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[inline]
fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

/// The merge table and the byte tokens: everything the merge loop needs.
#[derive(Debug, Clone, Default)]
pub struct Bpe {
    merges: FxHashMap<u64, Merge>,
    /// The single-byte token of each byte, or [`NO_TOKEN`].
    byte_ids: Vec<u32>,
}

/// Reusable buffers for the merge loops, so encoding a long text does not allocate per piece.
#[derive(Debug, Default)]
pub struct Scratch {
    ids: Vec<u32>,
    ranks: Vec<u32>,
    prev: Vec<u32>,
    next: Vec<u32>,
    heap: BinaryHeap<std::cmp::Reverse<(u32, u32, u32, u32)>>,
}

impl Bpe {
    /// `byte_ids[b]` is the token of byte `b` or [`NO_TOKEN`]; merges are `((left, right), merge)`.
    /// A pair listed twice keeps its first (lowest) rank, as in Hugging Face's loader.
    pub fn new(byte_ids: [u32; 256], merges: impl IntoIterator<Item = ((u32, u32), Merge)>) -> Bpe {
        let mut table = FxHashMap::default();
        for ((l, r), m) in merges {
            table.entry(pair_key(l, r)).or_insert(m);
        }
        Bpe {
            merges: table,
            byte_ids: byte_ids.to_vec(),
        }
    }

    #[inline]
    pub fn merge(&self, left: u32, right: u32) -> Option<Merge> {
        if left == NO_TOKEN || right == NO_TOKEN {
            return None;
        }
        self.merges.get(&pair_key(left, right)).copied()
    }

    /// Appends the tokens of `piece` to `out`, choosing the loop by length. Bytes without a token
    /// (a vocabulary missing some of the 256 byte tokens) come out as [`NO_TOKEN`].
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>, scratch: &mut Scratch) {
        match piece.len() {
            0 => {}
            1 => out.push(self.byte_ids[piece[0] as usize]),
            n if n <= SIMPLE_MAX_LEN => self.merge_simple(piece, out, scratch),
            _ => self.merge_heap(piece, out, scratch),
        }
    }

    /// The reference loop: scan for the lowest-ranked pair, merge it, update its two neighbours.
    pub fn merge_simple(&self, piece: &[u8], out: &mut Vec<u32>, scratch: &mut Scratch) {
        let ids = &mut scratch.ids;
        let ranks = &mut scratch.ranks;
        ids.clear();
        ids.extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        let rank_of = |l: u32, r: u32| self.merge(l, r).map_or(u32::MAX, |m| m.rank);
        // ranks[i]: the rank of the pair (ids[i], ids[i + 1]).
        ranks.clear();
        ranks.extend(ids.windows(2).map(|w| rank_of(w[0], w[1])));
        loop {
            let mut best = u32::MAX;
            let mut at = 0;
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == u32::MAX {
                break;
            }
            let merged = self.merge(ids[at], ids[at + 1]).map_or(NO_TOKEN, |m| m.id);
            ids[at] = merged;
            ids.remove(at + 1);
            ranks.remove(at);
            if at > 0 {
                ranks[at - 1] = rank_of(ids[at - 1], ids[at]);
            }
            if at + 1 < ids.len() {
                ranks[at] = rank_of(ids[at], ids[at + 1]);
            }
        }
        out.extend_from_slice(ids);
    }

    /// The fast loop: a doubly linked list over the byte positions and a min-heap of candidate
    /// merges `(rank, left position, left id, right id)`. An entry is stale once either side has
    /// merged into something else; it is then skipped when popped (checking both ids is enough,
    /// since a merged token never has the id of either of its parts).
    pub fn merge_heap(&self, piece: &[u8], out: &mut Vec<u32>, scratch: &mut Scratch) {
        use std::cmp::Reverse;
        const NONE: u32 = u32::MAX;
        /// A position whose symbol has merged into its left neighbour.
        const DEAD: u32 = u32::MAX - 1;

        let n = piece.len();
        if n == 0 {
            return;
        }
        let Scratch {
            ids,
            prev,
            next,
            heap,
            ..
        } = scratch;
        ids.clear();
        ids.extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        prev.clear();
        prev.extend((0..n as u32).map(|i| i.wrapping_sub(1)));
        next.clear();
        next.extend((1..=n as u32).map(|i| if i as usize == n { NONE } else { i }));
        heap.clear();
        for i in 0..n.saturating_sub(1) {
            if let Some(m) = self.merge(ids[i], ids[i + 1]) {
                heap.push(Reverse((m.rank, i as u32, ids[i], ids[i + 1])));
            }
        }
        while let Some(Reverse((_, pos, lid, rid))) = heap.pop() {
            let p = pos as usize;
            if ids[p] != lid {
                continue;
            }
            let r = next[p];
            if r == NONE || ids[r as usize] != rid {
                continue;
            }
            let Some(m) = self.merge(lid, rid) else {
                continue;
            };
            ids[p] = m.id;
            ids[r as usize] = DEAD;
            let after = next[r as usize];
            next[p] = after;
            if after != NONE {
                prev[after as usize] = pos;
                if let Some(m2) = self.merge(m.id, ids[after as usize]) {
                    heap.push(Reverse((m2.rank, pos, m.id, ids[after as usize])));
                }
            }
            let before = prev[p];
            if before != NONE {
                let b = before as usize;
                if let Some(m2) = self.merge(ids[b], m.id) {
                    heap.push(Reverse((m2.rank, before, ids[b], m.id)));
                }
            }
        }
        let mut i = 0u32;
        while i != NONE {
            out.push(ids[i as usize]);
            i = next[i as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// minbpe's example: "aaabdaaabac" with merges aa->Z, ab->Y, ZY->X gives "XdXac".
    fn minbpe() -> Bpe {
        let mut bytes = [NO_TOKEN; 256];
        for (i, b) in b"abcd".iter().enumerate() {
            bytes[*b as usize] = i as u32; // a=0 b=1 c=2 d=3
        }
        // Z=4 (a a), Y=5 (a b), X=6 (Z Y)
        Bpe::new(
            bytes,
            [
                ((0, 0), Merge { rank: 0, id: 4 }),
                ((0, 1), Merge { rank: 1, id: 5 }),
                ((4, 5), Merge { rank: 2, id: 6 }),
            ],
        )
    }

    #[test]
    fn both_loops_merge_aaabdaaabac_like_minbpe() {
        let bpe = minbpe();
        let mut s = Scratch::default();
        for f in [Bpe::merge_simple, Bpe::merge_heap] {
            let mut out = Vec::new();
            f(&bpe, b"aaabdaaabac", &mut out, &mut s);
            assert_eq!(out, [6, 3, 6, 0, 2]); // X d X a c
        }
    }

    #[test]
    fn equal_ranks_merge_leftmost_first() {
        let bpe = minbpe();
        let mut s = Scratch::default();
        for f in [Bpe::merge_simple, Bpe::merge_heap] {
            let mut out = Vec::new();
            f(&bpe, b"aaaaa", &mut out, &mut s);
            assert_eq!(out, [4, 4, 0]);
        }
    }
}
