//! The layering ARCHITECTURE.md promises, checked on the source text: no import circles
//! between files, `config` knows no stage, and the leaves know no stage.
//!
//! The graph is built from paths that start with `crate::`, `super::` or `snapmail::`
//! (each file's own module and its tests excluded), resolved to the longest prefix that is a
//! file under `src/`. `self::` paths (a module re-exporting its children) are not edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// The modules a file of the daemon belongs to, and the modules its code names.
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    collect(&root, &root, &mut sources);
    let modules: BTreeSet<Module> = sources.keys().cloned().collect();
    let path = regex::Regex::new(r"\b(crate|super|snapmail)((?:::[a-z_][a-z0-9_]*)+)").unwrap();
    let group =
        regex::Regex::new(r"use\s+(crate|super|snapmail)((?:::[a-z_][a-z0-9_]*)*)::\{([^}]*)\}")
            .unwrap();
    let mut edges = BTreeMap::new();
    for (module, text) in &sources {
        let code = code_of(text);
        let mut named = BTreeSet::new();
        let mut add = |start: &str, rest: &str| {
            let segments = rest.split("::").filter(|s| !s.is_empty());
            let mut full: Module = match start {
                "super" => module[..module.len().saturating_sub(1)].to_vec(),
                _ => Vec::new(),
            };
            full.extend(segments.map(str::to_owned));
            if let Some(target) = longest_module(&modules, &full) {
                if !target.is_empty() && target != *module {
                    named.insert(target);
                }
            }
        };
        for c in path.captures_iter(&code) {
            add(&c[1], &c[2]);
        }
        for c in group.captures_iter(&code) {
            for item in c[3].split(',') {
                let item = item.trim().split("::").next().unwrap_or("");
                let item = item.split_whitespace().next().unwrap_or("");
                if item.starts_with(|ch: char| ch.is_ascii_lowercase()) && item != "self" {
                    add(&c[1], &format!("{}::{item}", &c[2]));
                }
            }
        }
        edges.insert(module.clone(), named);
    }
    edges
}

/// Every `.rs` file under `dir`, keyed by its module path (`a/mod.rs` is `a`; `lib.rs` and
/// `main.rs` are the root).
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<Module, String>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] {
                module.clear();
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            out.entry(module).or_default().push_str(&text);
        }
    }
}

/// The code without line comments and without the unit tests at the end of the file.
fn code_of(text: &str) -> String {
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or("");
    before_tests
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn longest_module(modules: &BTreeSet<Module>, path: &[String]) -> Option<Module> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// The modules reachable from `from`.
fn reachable(edges: &BTreeMap<Module, BTreeSet<Module>>, from: &Module) -> BTreeSet<Module> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&Module> = edges[from].iter().collect();
    while let Some(m) = todo.pop() {
        if seen.insert(m.clone()) {
            todo.extend(edges.get(m).into_iter().flatten());
        }
    }
    seen
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let edges = graph();
    assert!(
        edges.len() > 50,
        "the walk found the sources: {}",
        edges.len()
    );
    let circles: Vec<String> = edges
        .keys()
        .filter(|m| reachable(&edges, m).contains(*m))
        .map(name)
        .collect();
    assert!(
        circles.is_empty(),
        "modules on an import circle: {circles:?}"
    );
}

#[test]
fn config_and_the_leaves_know_no_stage() {
    let stages = [
        "mqtt", "sources", "policy", "snapshot", "mail", "outbox", "ops", "pipeline", "plan", "cli",
    ];
    let leaves = [
        "config",
        "metrics",
        "errors",
        "secret",
        "tls",
        "backoff",
        "xml",
        "text",
        "state_file",
    ];
    let edges = graph();
    let mut wrong = Vec::new();
    for (module, named) in &edges {
        if !module.first().is_some_and(|m| leaves.contains(&m.as_str())) {
            continue;
        }
        for target in named {
            if target.first().is_some_and(|t| stages.contains(&t.as_str())) {
                wrong.push(format!("{} names {}", name(module), name(target)));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The check sees imports at all: the mail stage names config.
    assert!(edges[&vec!["mail".to_string(), "settings".to_string()]]
        .iter()
        .any(|t| t.first().is_some_and(|m| m == "config")));
}
