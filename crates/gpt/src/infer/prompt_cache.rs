//! Prompt caching: the keys and values of finished sequences, kept so that a later prompt that
//! starts with the same tokens (the next turn of a chat, a shared system prompt) runs only its
//! new part.
//!
//! Exact: a position's keys and values do not depend on how its sequence was cut into forward
//! passes (see [`crate::kernels::attend_block`]), so a prompt served from a kept prefix gets
//! the logits it would get from scratch. Bounded: the kept caches' bytes stay within a budget,
//! the least recently used going first.

use super::KvCache;

/// Kept caches, each with the token ids its positions hold.
pub struct PromptCache {
    entries: Vec<Entry>,
    budget: usize,
    /// The entries' bytes, kept as they come and go.
    bytes: usize,
    clock: u64,
}

struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
    last_used: u64,
}

impl PromptCache {
    /// A cache holding at most `budget` bytes of keys and values.
    pub fn new(budget: usize) -> PromptCache {
        PromptCache {
            entries: Vec::new(),
            budget,
            bytes: 0,
            clock: 0,
        }
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sequences held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Copies into `into` the longest kept prefix of `prompt` that a forward pass can go on
    /// from, and returns its length (0: none). At most `prompt.len() - 1` positions are reused:
    /// the last prompt token must run to give the logits of the first generated one.
    pub fn lookup(&mut self, prompt: &[u32], into: &mut KvCache) -> usize {
        let limit = prompt.len().saturating_sub(1);
        let mut best: Option<(usize, usize)> = None; // (entry, length)
        for (i, e) in self.entries.iter().enumerate() {
            let shared = common_prefix(&e.tokens, prompt).min(limit);
            // A sliding layer may no longer hold what a query after the prefix sees (and then
            // no shorter prefix is usable either).
            let usable = if e.cache.can_truncate(shared) {
                shared
            } else {
                0
            };
            if usable > best.map_or(0, |b| b.1) {
                best = Some((i, usable));
            }
        }
        let Some((i, n)) = best else { return 0 };
        self.clock += 1;
        let e = &mut self.entries[i];
        e.last_used = self.clock;
        into.copy_prefix(&e.cache, n);
        n
    }

    /// Keeps a copy of `cache` (of exactly its size: the caller keeps the original's memory for
    /// its next sequence), whose positions hold `tokens` (the extra ids past its length are
    /// ignored). A kept sequence that the new one extends is dropped; then the least recently
    /// used go until the budget holds. A cache larger than the whole budget is not kept.
    pub fn insert(&mut self, mut tokens: Vec<u32>, cache: &KvCache) {
        tokens.truncate(cache.len());
        if tokens.is_empty() || self.budget == 0 {
            return;
        }
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| common_prefix(&e.tokens, &tokens) == tokens.len())
        {
            // Already held (as this sequence or a longer one).
            self.clock += 1;
            e.last_used = self.clock;
            return;
        }
        let mut freed = 0;
        self.entries.retain(|e| {
            let covered = common_prefix(&e.tokens, &tokens) == e.tokens.len();
            freed += if covered { e.cache.bytes() } else { 0 };
            !covered
        });
        self.bytes -= freed;
        let cache = cache.clone();
        if cache.bytes() > self.budget {
            return;
        }
        self.clock += 1;
        self.bytes += cache.bytes();
        self.entries.push(Entry {
            tokens,
            cache,
            last_used: self.clock,
        });
        while self.bytes > self.budget {
            let oldest = (0..self.entries.len())
                .min_by_key(|&i| self.entries[i].last_used)
                .expect("over budget with no entries");
            self.bytes -= self.entries.swap_remove(oldest).cache.bytes();
        }
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache of one layer, one head of size 1, whose position p holds the value p.
    fn filled(n: usize, window: Option<usize>) -> KvCache {
        let mut c = KvCache::new(&[window], 1, 1);
        for p in 0..n {
            let x = [p as f32];
            c.layers[0].append(&x, &x, 1);
            c.layers[0].slide(1);
            c.advance(1);
        }
        c
    }

    #[test]
    fn the_longest_shared_prefix_is_reused_and_the_last_prompt_token_always_runs() {
        let mut pc = PromptCache::new(1 << 20);
        pc.insert((0..10).collect(), &filled(10, None));
        pc.insert(vec![0, 1, 2, 50, 51], &filled(5, None));
        assert_eq!(pc.len(), 2);
        let mut into = KvCache::new(&[None], 1, 1);
        let prompt: Vec<u32> = vec![0, 1, 2, 3, 4, 5, 99];
        assert_eq!(pc.lookup(&prompt, &mut into), 6);
        assert_eq!(into.len(), 6);
        assert_eq!(into.layers[0].k[0], [0., 1., 2., 3., 4., 5.]);
        // The whole prompt is held: all but its last token are reused.
        assert_eq!(pc.lookup(&[0, 1, 2, 3], &mut into), 3);
        assert_eq!(pc.lookup(&[7, 8], &mut into), 0);
    }

    #[test]
    fn a_sequence_that_extends_a_kept_one_replaces_it() {
        let mut pc = PromptCache::new(1 << 20);
        pc.insert(vec![1, 2, 3], &filled(3, None));
        pc.insert(vec![1, 2, 3, 4, 5], &filled(5, None));
        assert_eq!(pc.len(), 1);
        pc.insert(vec![1, 2], &filled(2, None)); // already held
        assert_eq!(pc.len(), 1);
    }

    #[test]
    fn least_recently_used_sequences_go_first_and_the_budget_holds() {
        // What the cache holds of one: a copy, of exactly the stored size.
        let one = filled(100, None).clone().bytes();
        let mut pc = PromptCache::new(one * 2 + one / 2);
        pc.insert((0..100).collect(), &filled(100, None));
        pc.insert((1000..1100).collect(), &filled(100, None));
        let mut into = KvCache::new(&[None], 1, 1);
        assert_eq!(pc.lookup(&[0, 1, 2], &mut into), 2); // touches the first
        pc.insert((2000..2100).collect(), &filled(100, None)); // evicts the second
        assert_eq!(pc.len(), 2);
        assert!(pc.bytes() <= one * 2 + one / 2);
        assert_eq!(pc.lookup(&[1000, 1001, 1002], &mut into), 0);
        assert_eq!(pc.lookup(&[0, 1, 2], &mut into), 2);
        // Larger than the whole budget: not kept.
        pc.insert((5000..5400).collect(), &filled(400, None));
        assert_eq!(pc.lookup(&[5000, 5001], &mut into), 0);
    }

    #[test]
    fn a_sliding_layer_limits_the_reusable_prefix_to_what_it_still_holds() {
        let w = 4;
        let mut pc = PromptCache::new(1 << 20);
        pc.insert((0..40).collect(), &filled(40, Some(w)));
        let start = {
            let mut probe = KvCache::new(&[Some(w)], 1, 1);
            let prompt: Vec<u32> = (0..41).collect();
            assert!(pc.lookup(&prompt, &mut probe) == 40);
            probe.layers[0].start
        };
        assert!(start > 0);
        // A prefix whose next query would need keys before `start` cannot be reused.
        let mut into = KvCache::new(&[Some(w)], 1, 1);
        let short: Vec<u32> = (0..(start + 1) as u32).collect();
        assert_eq!(pc.lookup(&short, &mut into), 0);
        let ok: Vec<u32> = (0..(start + w + 1) as u32).collect();
        assert_eq!(pc.lookup(&ok, &mut into), start + w);
        assert_eq!(into.layers[0].start, start);
    }
}
