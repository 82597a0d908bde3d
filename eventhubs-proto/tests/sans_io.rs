//! The core's rule, checked: `eventhubs-proto` does no I/O, reads no clock,
//! draws no randomness and spawns nothing; time, bytes and seeds come from
//! the caller. This reads the crate's own sources (outside `#[cfg(test)]`
//! items, whose tests may make an `Instant` to hand in) and its manifest,
//! and fails naming the file and line of anything that breaks the rule.

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
        } else if path.extension().is_some_and(|e| e == "rs")
            // `mod tests;` files are compiled for tests only.
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// The file's lines with comments blanked and every `#[cfg(test)]` item
/// (the attribute and the braced block after it) removed; line numbers are
/// kept.
fn library_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut skip_depth: Option<i64> = None;
    let mut pending_test_attr = false;
    for (i, raw) in text.lines().enumerate() {
        let code = match raw.find("//") {
            Some(at) => &raw[..at],
            None => raw,
        };
        let trimmed = code.trim();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += brace_delta(code);
            if *depth <= 0 && code.contains('}') {
                skip_depth = None;
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[cfg(all(test") {
            pending_test_attr = true;
            continue;
        }
        if pending_test_attr {
            if trimmed.starts_with("#[") || trimmed.is_empty() {
                continue;
            }
            pending_test_attr = false;
            let delta = brace_delta(code);
            if code.contains('{') && delta > 0 {
                skip_depth = Some(delta);
            }
            // A one-line item (`use`, `mod x;`, a block opened and closed
            // on this line) is skipped with its attribute.
            continue;
        }
        out.push((i + 1, code.to_owned()));
    }
    out
}

/// Opening minus closing braces outside string and character literals.
fn brace_delta(code: &str) -> i64 {
    let mut delta = 0;
    let mut in_str = false;
    let mut prev = ' ';
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_str {
            if c == '"' && prev != '\\' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if c == '\'' && i + 2 < bytes.len() && bytes[i + 2] == '\'' {
            i += 2; // a character literal such as '{'
        } else if c == '{' {
            delta += 1;
        } else if c == '}' {
            delta -= 1;
        }
        prev = c;
        i += 1;
    }
    delta
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
        for (line, code) in library_lines(&text) {
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
    // Library code is seen, test modules and comments are not.
    let text = "fn a() { let t = Instant::now(); }\n\
                // Instant::now() in a comment\n\
                #[cfg(test)]\n\
                mod tests {\n\
                    fn b() { let _ = Instant::now(); let s = \"}\"; }\n\
                }\n\
                fn c() { std::thread::spawn(|| ()); }\n";
    let lines = library_lines(text);
    let hits: Vec<usize> = lines
        .iter()
        .filter(|(_, l)| l.contains("Instant::now") || l.contains("thread::spawn"))
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(hits, vec![1, 7]);
}
