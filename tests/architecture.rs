//! The layout rules of `src/`, read from the source files themselves:
//! - no import cycle between top-level modules (`use crate::<top>` / `crate::<top>::` edges of
//!   production code: comments, `tests.rs` files and a trailing `#[cfg(test)]` module are not
//!   counted, since tests may wire things up the way `server.rs` does);
//! - domain code (`domain/`, `optimizer/`, `runtime/`) names no transport or driver crate;
//! - only the wiring (`server.rs`, `cli/`, `config/`, `main.rs`) names `Settings` or
//!   `crate::config`: every component takes its own configuration (`config/components.rs`);
//! - the edge is a client of the wire: it names the contract (`api`), errors, the layers and
//!   metrics, and of the domain only the JSON depth rule; never the runtime, stores,
//!   optimizers, workbench or the gRPC services.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The top-level module a file belongs to (`src/runtime/watch.rs` → `runtime`); `None` for the
/// crate root and the binary.
fn top_module(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(SRC).expect("under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// The production lines of a file, numbered from 1, without comments: nothing of a `tests.rs`
/// file, and nothing from a `#[cfg(test)]` line that opens a `mod` on to the end of the file.
fn production_lines(file: &Path) -> Vec<(usize, String)> {
    if file.file_name().is_some_and(|n| n == "tests.rs") {
        return Vec::new();
    }
    let text = std::fs::read_to_string(file).expect("read source");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let opens_test_module = line.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod "));
        if opens_test_module {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        out.push((i + 1, code.to_string()));
    }
    out
}

/// The top-level modules a line of code names: `crate::x`, and each `x` of `crate::{x, y::z}`.
fn named_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            names.extend(
                inner
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or("").to_string()),
            );
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Edges between top-level modules: `from → to → where` (the first place that names it).
fn module_edges() -> BTreeMap<String, BTreeMap<String, String>> {
    let files = rust_files(Path::new(SRC));
    let tops: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let Some(from) = top_module(file) else {
            continue;
        };
        for (number, code) in production_lines(file) {
            for to in named_modules(&code) {
                if to != from && tops.contains(&to) {
                    let place = format!("{}:{number}", file.strip_prefix(SRC).unwrap().display());
                    edges
                        .entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_insert(place);
                }
            }
        }
    }
    edges
}

/// A cycle through `start`, if there is one: the modules on it, `start` first and last.
fn cycle_through(
    start: &str,
    edges: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<Vec<String>> {
    // Depth-first search for a path from `start` back to itself.
    let mut stack = vec![vec![start.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in edges.get(last).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push(longer);
            }
        }
    }
    None
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let edges = module_edges();
    let mut cycles = Vec::new();
    for start in edges.keys() {
        if let Some(cycle) = cycle_through(start, &edges) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|pair| format!("{} → {} ({})", pair[0], pair[1], edges[&pair[0]][&pair[1]]))
                .collect();
            cycles.push(steps.join(", "));
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules of src/:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_edge_list_sees_the_imports_it_must() {
    // The graph is read from text: make sure the reading finds edges that are known to exist,
    // so the cycle test cannot pass by reading nothing.
    let edges = module_edges();
    for (from, to) in [("runtime", "store"), ("grpc", "api"), ("server", "runtime")] {
        assert!(
            edges.get(from).is_some_and(|m| m.contains_key(to)),
            "{from} → {to} not found: {edges:?}"
        );
    }
    assert_eq!(
        named_modules("use crate::{api::pb, domain, store::Fence};"),
        ["api", "domain", "store"]
    );
}

#[test]
fn domain_optimizer_and_runtime_name_no_transport_or_driver() {
    let mut found = Vec::new();
    for dir in ["domain", "optimizer", "runtime"] {
        for file in rust_files(&Path::new(SRC).join(dir)) {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (i, line) in text.lines().enumerate() {
                if ["tonic", "axum", "hyper", "sqlx"]
                    .iter()
                    .any(|name| line.contains(name))
                {
                    found.push(format!("{}:{}: {line}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// Modules that wire the app and so may read the whole `Settings`.
const WIRING: [&str; 3] = ["config", "server", "cli"];

/// Whether a line of code names the settings: the word `Settings` or the `config` module.
fn names_the_settings(code: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let word = code.match_indices("Settings").any(|(at, word)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    });
    word || named_modules(code).iter().any(|m| m == "config")
}

/// Production lines outside the wiring that name the settings, as `file:line: code`; with
/// `wiring`, those of the wiring instead.
fn settings_readers(wiring: bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(Path::new(SRC)) {
        // The crate root and the binary (`top_module` is `None`) wire the app too.
        let in_wiring = top_module(&file).is_none_or(|top| WIRING.contains(&top.as_str()));
        if in_wiring != wiring {
            continue;
        }
        for (number, code) in production_lines(&file) {
            if names_the_settings(&code) {
                let place = file.strip_prefix(SRC).unwrap().display();
                found.push(format!("{place}:{number}: {}", code.trim()));
            }
        }
    }
    found
}

#[test]
fn only_the_wiring_names_the_settings() {
    let found = settings_readers(false);
    assert!(
        found.is_empty(),
        "components read `Settings` (give them a config of their own, built in \
         config/components.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_settings_check_sees_the_wiring_that_reads_them() {
    // The check reads text: make sure it finds the places known to name the settings, so it
    // cannot pass by reading nothing.
    let wiring = settings_readers(true);
    for place in ["server.rs:", "config/components.rs:", "main.rs:"] {
        assert!(
            wiring.iter().any(|line| line.starts_with(place)),
            "{place} not found: {wiring:?}"
        );
    }
    assert!(names_the_settings("use crate::config::Settings;"));
    assert!(names_the_settings(
        "pub fn start(settings: Arc<Settings>) {"
    ));
    assert!(names_the_settings("use crate::{config, domain};"));
    assert!(names_the_settings(
        "let s = crate::config::Settings::default();"
    ));
    assert!(!names_the_settings(
        "let config: RuntimeConfig = settings.runtime();"
    ));
    assert!(!names_the_settings("struct SseSettings;"));
}

/// What the edge may name: the contract, the error codes, the shared layers, metrics, itself.
const EDGE_MAY_NAME: [&str; 5] = ["api", "error", "layers", "metrics", "edge"];

#[test]
fn the_edge_speaks_only_the_wire() {
    let mut found = Vec::new();
    for file in rust_files(&Path::new(SRC).join("edge")) {
        for (number, code) in production_lines(&file) {
            for name in named_modules(&code) {
                let depth_rule = name == "domain" && code.contains("crate::domain::depth::");
                if !EDGE_MAY_NAME.contains(&name.as_str()) && !depth_rule {
                    let place = file.strip_prefix(SRC).unwrap().display();
                    found.push(format!("{place}:{number}: {}", code.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the edge reaches past the contract (render from `api::pb` instead):\n{}",
        found.join("\n")
    );
    // The check reads text: it must see the edge's known imports, so it cannot pass by reading
    // nothing.
    let edges = module_edges();
    let from_edge = edges.get("edge").expect("the edge imports something");
    assert!(from_edge.contains_key("api") && from_edge.contains_key("layers"));
}
