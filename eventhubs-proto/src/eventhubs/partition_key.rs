//! Partition key → partition id, computed on the client as the service
//! does (Bob Jenkins' lookup3 `hashlittle2`, as the .NET SDK's
//! `PartitionResolver` computes it).
//!
//! The service hashes the partition key of events sent to the hub itself;
//! a client only needs this when it must know the partition in advance
//! (buffered producers send to partition targets). The algorithm is Bob
//! Jenkins' lookup3 `hashlittle2` with both seeds 0 over the key's UTF-8
//! bytes, folded to a signed 16-bit hash code, then reduced with a
//! *truncated* modulo (C#/Java/JS `%`) and an absolute value. This matches
//! .NET, Java and JS; Python's buffered producer uses a floor modulo and so
//! disagrees for negative hash codes.

/// lookup3 `rot`.
fn rot(x: u32, k: u32) -> u32 {
    x.rotate_left(k)
}

/// lookup3 `mix`: reversibly mixes three 32-bit words.
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= rot(*c, 4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= rot(*a, 6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= rot(*b, 8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= rot(*c, 16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= rot(*a, 19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= rot(*b, 4);
    *b = b.wrapping_add(*a);
}

/// lookup3 `final`: final mixing of three 32-bit words into `c` (and `b`).
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(rot(*b, 14));
    *a ^= *c;
    *a = a.wrapping_sub(rot(*c, 11));
    *b ^= *a;
    *b = b.wrapping_sub(rot(*a, 25));
    *c ^= *b;
    *c = c.wrapping_sub(rot(*b, 16));
    *a ^= *c;
    *a = a.wrapping_sub(rot(*c, 4));
    *b ^= *a;
    *b = b.wrapping_sub(rot(*a, 14));
    *c ^= *b;
    *c = c.wrapping_sub(rot(*b, 24));
}

/// Little-endian word from up to four bytes, missing bytes taken as zero.
fn le_word(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .enumerate()
        .fold(0u32, |w, (i, &b)| w | (u32::from(b) << (8 * i)))
}

/// Bob Jenkins' lookup3 `hashlittle2` over `data` with seeds `seed1`
/// (`*pc` in lookup3) and `seed2` (`*pb`); returns `(c, b)`, the primary and
/// secondary 32-bit hashes (lookup3's `*pc` and `*pb` on return).
///
/// The length enters the initial state as a wrapping 32-bit value, as the C
/// code's `(uint32_t)length` does.
pub fn hashlittle2(data: &[u8], seed1: u32, seed2: u32) -> (u32, u32) {
    // Truncation to 32 bits is what lookup3 does with the length.
    let len = data.len() as u32;
    let init = 0xdead_beef_u32.wrapping_add(len).wrapping_add(seed1);
    let (mut a, mut b, mut c) = (init, init, init.wrapping_add(seed2));

    let mut rest = data;
    while rest.len() > 12 {
        a = a.wrapping_add(le_word(&rest[0..4]));
        b = b.wrapping_add(le_word(&rest[4..8]));
        c = c.wrapping_add(le_word(&rest[8..12]));
        mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if rest.is_empty() {
        return (c, b);
    }
    // 1 to 12 bytes left: the same as zero-padding to 12 and adding words.
    a = a.wrapping_add(le_word(rest));
    b = b.wrapping_add(le_word(rest.get(4..).unwrap_or(&[])));
    c = c.wrapping_add(le_word(rest.get(8..).unwrap_or(&[])));
    final_mix(&mut a, &mut b, &mut c);
    (c, b)
}

/// The Event Hubs hash code of a partition key: `hashlittle2` over the
/// key's UTF-8 bytes with seeds 0/0, the two hashes XORed and the low 16
/// bits taken as a signed value (.NET `(short)(hash1 ^ hash2)`).
///
/// The empty key hashes to 0 (as does a null key in the SDKs).
pub fn partition_key_hash(key: &str) -> i16 {
    let (c, b) = hashlittle2(key.as_bytes(), 0, 0);
    // Keeping the low 16 bits is the point of the cast.
    (c ^ b) as u16 as i16
}

/// Index of the partition `key` maps to among `partition_count` partitions:
/// `|hash % partition_count|` with C#-style truncated `%`. The index
/// addresses the partition ids in the order the service's `partition_ids`
/// lists them. `None` when `partition_count` is 0.
pub fn partition_index(key: &str, partition_count: usize) -> Option<usize> {
    if partition_count == 0 {
        return None;
    }
    let hash = i64::from(partition_key_hash(key));
    // Rust's `%` on signed integers truncates, like C#'s.
    let n = i64::try_from(partition_count).unwrap_or(i64::MAX);
    usize::try_from((hash % n).unsigned_abs()).ok()
}

/// The partition id `key` maps to, given the hub's partition ids in the
/// order `partition_ids` returned them; `None` for an empty list.
pub fn resolve_partition<'a, S: AsRef<str>>(key: &str, partition_ids: &'a [S]) -> Option<&'a str> {
    let index = partition_index(key, partition_ids.len())?;
    partition_ids.get(index).map(AsRef::as_ref)
}

/// Round-robin assignment of events without a partition key, as .NET's
/// `AssignRoundRobin`: `partitions[counter++ % N]`, the counter starting at
/// 0 and going back to 0 instead of overflowing a signed 32-bit integer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundRobin {
    counter: u32,
}

impl RoundRobin {
    /// A round robin starting at the first partition.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next partition index among `partition_count` partitions; `None`
    /// (and the counter left alone) when there are none.
    pub fn next_index(&mut self, partition_count: usize) -> Option<usize> {
        if partition_count == 0 {
            return None;
        }
        let index = usize::try_from(self.counter).ok()? % partition_count;
        self.counter = if self.counter >= i32::MAX as u32 {
            0
        } else {
            self.counter + 1
        };
        Some(index)
    }

    /// The next partition id from `partition_ids`; `None` for an empty list.
    pub fn next_partition<'a, S: AsRef<str>>(&mut self, partition_ids: &'a [S]) -> Option<&'a str> {
        let index = self.next_index(partition_ids.len())?;
        partition_ids.get(index).map(AsRef::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From the .NET SDK's `PartitionResolverTests.cs`.
    const VECTORS: &[(&str, i16)] = &[
        ("7", -15263),
        ("131", 30562),
        ("7149583486996073602", 12977),
        ("FWfAT", -22341),
        ("sOdeEAsyQoEuEFPGerWO", -6503),
        (
            "FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs",
            5226,
        ),
        (
            "1XYM6!(7(lF5wq4k4m*e$Nc!1ezLJv*1YK1Y-C^*&B$O)lq^iUkG(TNzXG;Zi#z2Og*Qq0#^*k):vXh$3,C7We7%W0meJ;b3,rQCg^J;^twXgs5E$$hWKxqp",
            23950,
        ),
        (
            "E(x;RRIaQcJs*P;D&jTPau-4K04oqr:lF6Z):ERpo&;9040qyV@G1_c9mgOs-8_8/10Fwa-7b7-yP!T-!IH&968)FWuI;(^g$2fN;)HJ^^yTn:",
            -29304,
        ),
        ("!c*_!I@1^c", 15372),
        ("p4*!jioeO/z-!-;w:dh", -3104),
        ("$0cb", 26269),
        ("-4189260826195535198", 453),
    ];

    #[test]
    fn hash_codes_match_dotnet_vectors() {
        for &(key, expected) in VECTORS {
            assert_eq!(partition_key_hash(key), expected, "key {key:?}");
        }
    }

    #[test]
    fn empty_key_hashes_to_zero() {
        assert_eq!(partition_key_hash(""), 0);
        let (c, b) = hashlittle2(b"", 0, 0);
        assert_eq!((c, b), (0xdead_beef, 0xdead_beef));
    }

    #[test]
    fn derived_partition_indices() {
        // key, hash, index for N = 2, 4, 8, 32 (.NET `PartitionResolverTests.cs`).
        let table: &[(&str, i16, [usize; 4])] = &[
            ("7", -15263, [1, 3, 7, 31]),
            ("131", 30562, [0, 2, 2, 2]),
            ("FWfAT", -22341, [1, 1, 5, 5]),
            ("sOdeEAsyQoEuEFPGerWO", -6503, [1, 3, 7, 7]),
            ("$0cb", 26269, [1, 1, 5, 29]),
            ("this-is-a-key-1", 26223, [1, 3, 7, 15]),
        ];
        for &(key, hash, indices) in table {
            assert_eq!(partition_key_hash(key), hash, "key {key:?}");
            for (n, expected) in [2usize, 4, 8, 32].into_iter().zip(indices) {
                assert_eq!(partition_index(key, n), Some(expected), "key {key:?} N={n}");
            }
        }
    }

    #[test]
    fn truncated_modulo_differs_from_python() {
        // .NET: |(-15263) % 4| = 3; Python's floor modulo would give 1.
        assert_eq!(partition_index("7", 4), Some(3));
    }

    #[test]
    fn resolve_uses_the_given_order() {
        let ids = ["0", "1", "2", "3"];
        assert_eq!(resolve_partition("7", &ids), Some("3"));
        let reversed = ["3", "2", "1", "0"];
        assert_eq!(resolve_partition("7", &reversed), Some("0"));
        let owned: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        assert_eq!(resolve_partition("131", &owned), Some("2"));
        let none: [&str; 0] = [];
        assert_eq!(resolve_partition("7", &none), None);
        assert_eq!(partition_index("7", 0), None);
    }

    #[test]
    fn exactly_twelve_bytes_go_through_the_tail() {
        // A 12-byte key takes the tail path and `final`, a 13-byte key one
        // `mix` round and a 1-byte tail; both must differ from each other
        // and from the empty hash.
        let twelve = hashlittle2(b"abcdefghijkl", 0, 0);
        let thirteen = hashlittle2(b"abcdefghijklm", 0, 0);
        assert_ne!(twelve, thirteen);
        assert_ne!(twelve, (0xdead_beef, 0xdead_beef));
    }

    #[test]
    fn lookup3_reference_values() {
        // From lookup3.c's driver5(): hashlittle2("", 0, 0) -> deadbeef
        // deadbeef; ("", 0, deadbeef) -> bd5b7dde deadbeef; ("", deadbeef,
        // deadbeef) -> 9c093ccd bd5b7dde; ("Four score and seven years ago",
        // 0, 0) -> 17770551 ce7226e6; (…, 0, 1) -> e3607cae bd371de4; (…, 1,
        // 0) -> cd628161 6cbea4b3 (arguments here: seed1 = *pc, seed2 = *pb).
        assert_eq!(hashlittle2(b"", 0, 0), (0xdeadbeef, 0xdeadbeef));
        assert_eq!(hashlittle2(b"", 0, 0xdeadbeef), (0xbd5b7dde, 0xdeadbeef));
        assert_eq!(
            hashlittle2(b"", 0xdeadbeef, 0xdeadbeef),
            (0x9c093ccd, 0xbd5b7dde)
        );
        let s = b"Four score and seven years ago";
        assert_eq!(hashlittle2(s, 0, 0), (0x17770551, 0xce7226e6));
        assert_eq!(hashlittle2(s, 0, 1), (0xe3607cae, 0xbd371de4));
        assert_eq!(hashlittle2(s, 1, 0), (0xcd628161, 0x6cbea4b3));
    }

    #[test]
    fn round_robin_cycles_and_wraps() {
        let mut rr = RoundRobin::new();
        let ids = ["a", "b", "c"];
        let got: Vec<_> = (0..7).map(|_| rr.next_partition(&ids)).collect();
        assert_eq!(
            got,
            [
                Some("a"),
                Some("b"),
                Some("c"),
                Some("a"),
                Some("b"),
                Some("c"),
                Some("a")
            ]
        );
        let none: [&str; 0] = [];
        assert_eq!(rr.next_partition(&none), None);

        let mut rr = RoundRobin {
            counter: i32::MAX as u32,
        };
        assert_eq!(rr.next_index(4), Some((i32::MAX as usize) % 4));
        assert_eq!(rr.next_index(4), Some(0));
        assert_eq!(rr.next_index(4), Some(1));
    }
}
