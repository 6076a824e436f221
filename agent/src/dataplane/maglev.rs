//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size in
//! which every backend owns an almost equal share of entries, and removing one backend of N
//! moves little more than its own 1/N share.
//!
//! Every node computes the same table from the same backend names and seed, so a flow hashes
//! to the same backend on whichever node it arrives.

/// The table size used unless configured otherwise (Cilium's default too).
pub const DEFAULT_TABLE_SIZE: u32 = 16381;

/// Table sizes that may be configured: primes, each about twice the one before, so that a
/// service can have up to a hundredth of the size in backends and stay balanced.
pub const TABLE_SIZES: [u32; 10] = [
    251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071,
];

/// Errors from building a Maglev table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaglevError {
    #[error(
        "Maglev table size {size} is not one of the supported primes {TABLE_SIZES:?}; \
         pick one of them (--maglev-table-size)"
    )]
    UnsupportedSize { size: u32 },
    #[error(
        "{backends} backends do not fit a Maglev table of {size} entries; \
         configure a larger --maglev-table-size"
    )]
    TooManyBackends { backends: usize, size: u32 },
}

/// A table size and the seed that all nodes of a cluster share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Maglev {
    size: u32,
    seed: u64,
}

impl Maglev {
    /// # Errors
    /// When `size` is not one of [`TABLE_SIZES`].
    pub fn new(size: u32, seed: u64) -> Result<Self, MaglevError> {
        if !TABLE_SIZES.contains(&size) {
            return Err(MaglevError::UnsupportedSize { size });
        }
        Ok(Self { size, seed })
    }

    /// Entries per table.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The lookup table for `backends` (named by something stable across nodes, such as
    /// `10.244.1.5:8080`): entry `i` is an index into `backends`. Empty when there are no
    /// backends. The order of `backends` does not matter.
    ///
    /// # Errors
    /// When there are more backends than table entries.
    pub fn table<S: AsRef<str>>(&self, backends: &[S]) -> Result<Vec<u32>, MaglevError> {
        if backends.is_empty() {
            return Ok(Vec::new());
        }
        let m = u64::from(self.size);
        if backends.len() as u64 > m {
            return Err(MaglevError::TooManyBackends {
                backends: backends.len(),
                size: self.size,
            });
        }
        // Fill in order of name, not of the caller's slice, so every node agrees.
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_by(|&a, &b| backends[a].as_ref().cmp(backends[b].as_ref()));
        let permutations: Vec<(u64, u64)> = order
            .iter()
            .map(|&i| {
                let name = backends[i].as_ref().as_bytes();
                let offset = hash(self.seed, name) % m;
                let skip = hash(self.seed ^ 0x9e37_79b9_7f4a_7c15, name) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; order.len()];
        let mut table = vec![u32::MAX; self.size as usize];
        let mut filled = 0usize;
        'fill: loop {
            for (turn, &(offset, skip)) in permutations.iter().enumerate() {
                let mut entry = (offset + next[turn] * skip) % m;
                while table[entry as usize] != u32::MAX {
                    next[turn] += 1;
                    entry = (offset + next[turn] * skip) % m;
                }
                table[entry as usize] = order[turn] as u32;
                next[turn] += 1;
                filled += 1;
                if filled == table.len() {
                    break 'fill;
                }
            }
        }
        Ok(table)
    }
}

/// A seeded 64-bit hash of `bytes` (FNV-1a, then the MurmurHash3 finaliser to spread it).
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(n: usize, salt: u32) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.{}.{}.{}:8080", salt % 250, i / 250, i % 250))
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        table.iter().for_each(|&b| counts[b as usize] += 1);
        counts
    }

    #[test]
    fn sizes_outside_the_prime_list_are_refused_with_the_flag_to_change() {
        let err = Maglev::new(16384, 1).unwrap_err();
        assert_eq!(err, MaglevError::UnsupportedSize { size: 16384 });
        assert!(err.to_string().contains("--maglev-table-size"));
        for size in TABLE_SIZES {
            assert!((2..size).all(|d| size % d != 0), "{size} is prime");
        }
    }

    #[test]
    fn no_backends_give_an_empty_table_and_too_many_are_refused() {
        let maglev = Maglev::new(251, 7).unwrap();
        assert!(maglev.table::<&str>(&[]).unwrap().is_empty());
        assert_eq!(
            maglev.table(&names(252, 0)).unwrap_err(),
            MaglevError::TooManyBackends {
                backends: 252,
                size: 251
            }
        );
    }

    #[test]
    fn every_node_builds_the_same_table_whatever_the_backend_order() {
        let maglev = Maglev::new(1021, 42).unwrap();
        let backends = names(7, 3);
        let mut reversed = backends.clone();
        reversed.reverse();
        let a = maglev.table(&backends).unwrap();
        let b = maglev.table(&reversed).unwrap();
        let by_name = |t: &[u32], list: &[String]| -> Vec<String> {
            t.iter().map(|&i| list[i as usize].clone()).collect()
        };
        assert_eq!(by_name(&a, &backends), by_name(&b, &reversed));
        let other_seed = Maglev::new(1021, 43).unwrap().table(&backends).unwrap();
        assert_ne!(a, other_seed, "the seed changes the table");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn each_backend_owns_its_share_of_the_table_within_two_percent(
            n in 1usize..=100,
            salt in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let maglev = Maglev::new(DEFAULT_TABLE_SIZE, seed).unwrap();
            let table = maglev.table(&names(n, salt)).unwrap();
            prop_assert_eq!(table.len(), DEFAULT_TABLE_SIZE as usize);
            let fair = f64::from(DEFAULT_TABLE_SIZE) / n as f64;
            for (backend, count) in shares(&table, n).into_iter().enumerate() {
                let off = (count as f64 - fair).abs() / fair;
                prop_assert!(off <= 0.02, "backend {backend}: {count} entries, fair {fair:.1}");
            }
        }

        #[test]
        fn removing_one_of_n_backends_moves_about_one_nth_of_the_table(
            n in 3usize..=100,
            removed in any::<prop::sample::Index>(),
            salt in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let maglev = Maglev::new(DEFAULT_TABLE_SIZE, seed).unwrap();
            let before_names = names(n, salt);
            let gone = removed.index(n);
            let after_names: Vec<String> = before_names
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != gone)
                .map(|(_, name)| name.clone())
                .collect();
            let before = maglev.table(&before_names).unwrap();
            let after = maglev.table(&after_names).unwrap();
            let moved = before
                .iter()
                .zip(&after)
                .filter(|&(&b, &a)| before_names[b as usize] != after_names[a as usize])
                .count();
            let share = 1.0 / n as f64;
            let moved = moved as f64 / f64::from(DEFAULT_TABLE_SIZE);
            // The removed backend's own entries must move; Maglev moves a little more, the
            // more so as N nears M/100 (the paper's trade-off: measured here up to 1.2x the
            // share at N = 20 and 2.6x at N = 100 with M = 16381).
            prop_assert!(moved >= share * 0.98, "moved {moved:.4} < share {share:.4}");
            let bound = if n <= 20 { 1.3 } else { 3.0 };
            prop_assert!(moved <= share * bound, "moved {moved:.4} for share {share:.4}");
        }
    }
}
