//! The core's rule, checked: `eventhubs-proto` does no I/O, reads no clock,
//! draws no randomness and spawns nothing; time, bytes and seeds come from
//! the caller. This reads every file under the crate's `src/` (unit tests
//! that make the `Instant`s they hand in live in `tests/unit/`) and its
//! manifest, and fails naming the file and line of anything that breaks
//! the rule. Comments are not read: doc examples are callers.

use std::path::{Path, PathBuf};

/// What library code of the core must not name, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    ("Instant::now", "reads the monotonic clock"),
    ("SystemTime::now", "reads the wall clock"),
    ("std::net", "does network I/O"),
    ("TcpStream", "does network I/O"),
    ("UdpSocket", "does network I/O"),
    ("std::fs", "does file I/O"),
    ("File::open", "does file I/O"),
    ("std::io::stdin", "reads standard input"),
    ("std::env::var", "reads the environment"),
    ("thread::spawn", "spawns a thread"),
    ("thread::sleep", "sleeps"),
    ("tokio::", "depends on a runtime"),
    ("async_std::", "depends on a runtime"),
    ("rand::", "draws randomness"),
    ("getrandom", "draws randomness"),
    ("RandomState", "draws randomness (std's hasher seed)"),
    ("HashMap::new", "uses a randomly seeded hasher"),
    ("HashSet::new", "uses a randomly seeded hasher"),
];

/// Dependencies the core must not have.
const FORBIDDEN_DEPS: &[&str] = &[
    "tokio",
    "async-std",
    "mio",
    "smol",
    "rand",
    "getrandom",
    "reqwest",
    "hyper",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Each line of `text` with its comment cut off, numbered from 1.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.find("//").map_or(l, |at| &l[..at])))
}

#[test]
fn library_code_does_no_io_reads_no_clock_draws_no_randomness_spawns_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 20, "the core's sources were not found");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for (line, code) in code_lines(&text) {
            for (needle, why) in FORBIDDEN {
                if code.contains(needle) {
                    found.push(format!(
                        "{}:{line}: `{needle}` {why}: {}",
                        file.strip_prefix(root).unwrap_or(file).display(),
                        code.trim()
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the sans-IO core breaks its rule:\n{}",
        found.join("\n")
    );
}

#[test]
fn manifest_has_no_runtime_or_randomness_dependency() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("read Cargo.toml");
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
            continue;
        }
        // Dev-dependencies may bring a runtime for tests and benches.
        if section != "[dependencies]" {
            continue;
        }
        let name = t.split(['=', ' ', '.']).next().unwrap_or("");
        if FORBIDDEN_DEPS.contains(&name) {
            found.push(t.to_owned());
        }
    }
    assert!(found.is_empty(), "the core depends on {found:?}");
}

#[test]
fn the_checker_sees_what_it_looks_for() {
    // Code is seen, test modules included; comments are not.
    let text = "fn a() { let t = Instant::now(); }\n\
                // Instant::now() in a comment\n\
                #[cfg(test)]\n\
                mod tests {\n\
                    fn b() { let _ = Instant::now(); }\n\
                }\n\
                fn c() { std::thread::spawn(|| ()); } // thread::sleep\n";
    let hits: Vec<usize> = code_lines(text)
        .filter(|(_, l)| {
            l.contains("Instant::now") || l.contains("thread::spawn") || l.contains("thread::sleep")
        })
        .map(|(n, _)| n)
        .collect();
    assert_eq!(hits, vec![1, 5, 7]);
}
