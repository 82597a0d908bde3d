//! The `http_response` fuzz harness (`fuzz/src/http_response.rs`) run
//! natively: over its seeds (`tests/fixtures/http/`, written by `gen.py`
//! there), over a few thousand deterministic mutations of them, and over
//! the inputs the fuzzer once found (regressions; none yet). Whole, split
//! and byte-at-a-time parses must agree; nothing may panic.

#[path = "../../fuzz/src/http_response.rs"]
mod http_response;

use std::path::PathBuf;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http");
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .expect("seed directory")
        .filter_map(|e| {
            let path = e.ok()?.path();
            (path.extension()? == "bin").then(|| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).expect("seed"))
            })
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "seeds missing in {}", dir.display());
    seeds
}

#[test]
fn seeds_parse_identically_however_split() {
    for (name, data) in seeds() {
        // Every mode: each of the framings, methods and EOF choices.
        for mode in 0..=255u8 {
            let mut d = data.clone();
            d[0] = mode;
            if mode % 16 == 0 || mode == data[0] {
                http_response::run(&d);
            }
        }
        println!("{name}: ok");
    }
}

/// SplitMix64, for mutations that are the same on every run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn mutated_seeds() {
    const INTERESTING: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"0\r\n\r\n",
        b";",
        b" ",
        b"\r\n\r\n",
        b"ffffffffffffffff",
        b"&",
        b"<",
        b"/>",
        b"%",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 9\r\n",
    ];
    let seeds = seeds();
    let mut state = 13;
    for round in 0..3000 {
        let (_, seed) = &seeds[round % seeds.len()];
        let mut d = seed.clone();
        for _ in 0..1 + next(&mut state) % 4 {
            let at = (next(&mut state) as usize) % d.len().max(1);
            match next(&mut state) % 4 {
                0 => d[at] = next(&mut state) as u8,
                1 => {
                    d.remove(at.min(d.len() - 1));
                }
                2 => {
                    let piece = INTERESTING[(next(&mut state) as usize) % INTERESTING.len()];
                    d.splice(at..at, piece.iter().copied());
                }
                _ => d.truncate(at.max(1)),
            }
        }
        http_response::run(&d);
    }
}
