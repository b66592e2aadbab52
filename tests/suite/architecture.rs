//! The packages' shape: in each of `sqm` and `sqm-core`, every
//! `crate::<module>` path must point to the same layer or a lower one (the
//! list in that package's `src/lib.rs`), and no two top-level modules may
//! import each other; and `sqm-core` pulls in no engine, async runtime or
//! device library. Test modules inside a file
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

/// Every problem with one crate's module graph against its lib.rs list.
fn layer_problems(crate_root: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(crate_root.join("src/lib.rs")).unwrap();
    let layer = layers(&lib);
    let graph = imports(&crate_root.join("src"));
    let name = crate_root.file_name().unwrap().to_string_lossy().into_owned();
    let mut problems = Vec::new();
    if layer.len() < 6 {
        problems.push(format!("{name}: the layer list was not read: {layer:?}"));
    }
    for (module, deps) in &graph {
        let Some(&own) = layer.get(module) else {
            problems.push(format!("{name}: module '{module}' is missing from the layer list in src/lib.rs"));
            continue;
        };
        for dep in deps {
            match layer.get(dep) {
                None => problems.push(format!("{name}: {module} imports '{dep}', which is not in the layer list")),
                Some(&l) if l > own => {
                    problems.push(format!("{name}: {module} (layer {own}) imports {dep} (layer {l}): an upward import"))
                }
                Some(_) => {}
            }
        }
    }
    for (a, deps) in &graph {
        for b in deps {
            if a < b && graph.get(b).is_some_and(|d| d.contains(a)) {
                problems.push(format!("{name}: {a} and {b} import each other"));
            }
        }
    }
    problems
}

#[test]
fn imports_point_down_the_documented_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = layer_problems(root);
    problems.extend(layer_problems(&root.join("crates/sqm-core")));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Package name → the names of its dependencies, from Cargo.lock.
fn lock_graph(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut graph = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let Some(name) = block.lines().find_map(|l| l.strip_prefix("name = \"")) else { continue };
        let name = name.trim_end_matches('"').to_owned();
        let mut deps = Vec::new();
        if let Some(i) = block.find("dependencies = [") {
            for line in block[i..].lines().skip(1) {
                if line.starts_with(']') {
                    break;
                }
                let dep = line.trim().trim_matches(|c| c == '"' || c == ',');
                deps.push(dep.split(' ').next().unwrap_or(dep).to_owned());
            }
        }
        graph.entry(name).or_insert_with(Vec::new).extend(deps);
    }
    graph
}

/// Everything `start` pulls in, directly or not.
fn closure(graph: &BTreeMap<String, Vec<String>>, start: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_owned()];
    while let Some(name) = todo.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn the_core_crate_pulls_in_no_engine_runtime_or_device() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = lock_graph(&std::fs::read_to_string(root.join("Cargo.lock")).unwrap());
    let core = closure(&graph, "sqm-core");
    assert!(core.contains("yaml-rust2") && core.contains("serde_json"), "Cargo.lock was not read: {core:?}");
    let heavy: Vec<_> = ["candle-core", "candle-nn", "tokenizers", "tokio", "zmq", "rodio", "cpal", "hf-hub", "clap"]
        .into_iter()
        .filter(|h| core.contains(*h))
        .collect();
    assert!(heavy.is_empty(), "sqm-core depends on {heavy:?}");
    // And the package on top really carries them (the check can see a crate).
    assert!(closure(&graph, "sqm").contains("candle-core"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let lib = "//! 1. `low` — x\n//! 2. `high` — y\n";
    let layer = layers(lib);
    assert_eq!((layer["low"], layer["high"]), (1, 2));
    let code = code_of("use crate::high::X;\n// crate::ignored\n#[cfg(test)]\nmod tests { use crate::other; }\n");
    assert!(code.contains("crate::high") && !code.contains("ignored") && !code.contains("other"));
}
