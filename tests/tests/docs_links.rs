//! The documentation's links lead somewhere: every relative Markdown link
//! in README.md and docs/**/*.md names a file that exists, and so does
//! every `docs/...` path they mention in prose. (Docs move between
//! docs/design, ref, guide and history; a link left behind is caught here.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
}

/// The targets of `[text](target)` links in `text`.
fn link_targets(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

/// The `docs/...` paths mentioned in `text`, up to their extension.
fn docs_paths(text: &str) -> Vec<&str> {
    text.match_indices("docs/")
        .filter(|(at, _)| {
            // Not the tail of a longer path (../docs/ in a link is checked
            // as a link; usr/share/doc/ is not ours).
            *at == 0
                || !(text.as_bytes()[at - 1].is_ascii_alphanumeric()
                    || text.as_bytes()[at - 1] == b'/')
        })
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/-_.".contains(c)))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches('.');
            (path.ends_with(".md") || path.ends_with(".json")).then_some(path)
        })
        .collect()
}

#[test]
fn every_documentation_link_resolves() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = file.parent().unwrap();
        for target in link_targets(&text) {
            let path = target.split('#').next().unwrap();
            if path.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !dir.join(path).exists() {
                broken.push(format!("{}: link to {target}", file.display()));
            }
        }
        for path in docs_paths(&text) {
            if !root.join(path).exists() {
                broken.push(format!("{}: mentions {path}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn links_and_paths_are_found() {
    let text = "see [a](../ref/a.md#x), [b](https://x.invalid/) and `docs/ref/c.md`.";
    assert_eq!(link_targets(text), ["../ref/a.md#x", "https://x.invalid/"]);
    assert_eq!(docs_paths(text), ["docs/ref/c.md"]);
    assert!(docs_paths("usr/share/docs/x.md").is_empty());
}
