//! The crate's shape: every `crate::<module>` path in `src/` must point to
//! the same layer or a lower one (the list in `src/lib.rs`), and no two
//! top-level modules may import each other. Test modules inside a file
//! (`#[cfg(test)] mod tests`) are exempt.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each top-level module, parsed from the numbered list in lib.rs.
fn layers(lib: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else { continue };
        let Some((num, body)) = rest.split_once(". ") else { continue };
        let Ok(n) = num.trim().parse::<usize>() else { continue };
        let names = body.split(" — ").next().unwrap_or("");
        for name in names.split(',') {
            let name = name.trim().trim_matches('`');
            if !name.is_empty() {
                out.insert(name.to_owned(), n);
            }
        }
    }
    out
}

/// Drops `#[cfg(test)] mod tests { … }` (to the end of the file, where this
/// crate keeps them) and comment lines.
fn code_of(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Top-level module → the top-level modules it names through `crate::`.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(src).into_iter().filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path.strip_prefix(src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(path).unwrap());
        let deps = graph.entry(module.clone()).or_default();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name != module && !name.is_empty() {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn imports_point_down_the_documented_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let layer = layers(&lib);
    let graph = imports(&root.join("src"));
    let mut problems = Vec::new();
    for (module, deps) in &graph {
        let Some(&own) = layer.get(module) else {
            problems.push(format!("module '{module}' is missing from the layer list in src/lib.rs"));
            continue;
        };
        for dep in deps {
            match layer.get(dep) {
                None => problems.push(format!("{module} imports '{dep}', which is not in the layer list")),
                Some(&l) if l > own => {
                    problems.push(format!("{module} (layer {own}) imports {dep} (layer {l}): an upward import"))
                }
                Some(_) => {}
            }
        }
    }
    for (a, deps) in &graph {
        for b in deps {
            if a < b && graph.get(b).is_some_and(|d| d.contains(a)) {
                problems.push(format!("{a} and {b} import each other"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(layer.len() >= 12, "the layer list was not read: {layer:?}");
}

#[test]
fn the_checker_sees_an_upward_import() {
    let lib = "//! 1. `low` — x\n//! 2. `high` — y\n";
    let layer = layers(lib);
    assert_eq!((layer["low"], layer["high"]), (1, 2));
    let code = code_of("use crate::high::X;\n// crate::ignored\n#[cfg(test)]\nmod tests { use crate::other; }\n");
    assert!(code.contains("crate::high") && !code.contains("ignored") && !code.contains("other"));
}
