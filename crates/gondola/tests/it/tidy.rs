//! Tidiness as a test: every Rust file says what it is in a `//!` line, and nothing meant for a
//! debugging session reaches `main`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            // npm's installs (the web app's libraries) are not Gondola's sources.
            if path.file_name().is_some_and(|name| name == "node_modules") {
                continue;
            }
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_source_file_has_a_module_doc_and_no_debugging_leftovers() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates dir");
    let mut files = Vec::new();
    rust_files(crates, &mut files);
    assert!(files.len() > 20, "found the sources");
    let forbidden = [
        concat!("db", "g!("),
        concat!("to", "do!("),
        concat!("FIX", "ME"),
        concat!("unimpl", "emented!("),
    ];
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        if !text.starts_with("//!") {
            problems.push(format!(
                "{}: does not start with a //! doc line",
                file.display()
            ));
        }
        for word in forbidden {
            if text.contains(word) {
                problems.push(format!("{}: contains {word}", file.display()));
            }
        }
        if text.contains("unsafe ") && !text.contains("// SAFETY:") {
            problems.push(format!(
                "{}: unsafe code without a SAFETY comment",
                file.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The module path of `file` under `src` (`chat`, `pipeline`, `pipeline::payment`); `None` for
/// the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        return None;
    }
    Some(parts.join("::"))
}

/// The modules `text` (the source of `module`) names: `crate::a::b` and `super::c` paths,
/// resolved to the longest module of `modules` they start with.
fn named_modules(module: &str, text: &str, modules: &[String]) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
    let mut named = Vec::new();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent.to_owned())] {
        for (at, _) in text.match_indices(prefix) {
            // `crate::` inside a longer name (`$crate::`, `a_crate::`) is not a path.
            if text[..at]
                .chars()
                .next_back()
                .is_some_and(|before| before.is_alphanumeric() || before == '_' || before == '$')
            {
                continue;
            }
            let path: String = text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            let full = match (base.is_empty(), path.is_empty()) {
                (true, _) => path.to_owned(),
                (false, true) => base.clone(),
                (false, false) => format!("{base}::{path}"),
            };
            if let Some(target) = modules
                .iter()
                .filter(|candidate| {
                    full == **candidate || full.starts_with(&format!("{candidate}::"))
                })
                .max_by_key(|candidate| candidate.len())
            {
                named.push(target.clone());
            }
        }
    }
    named
}

#[test]
fn the_gateways_modules_name_each_other_without_a_cycle() {
    // A module may use its parent's items (a stage uses the pipeline's shared types); any
    // other chain of modules that leads back to where it started is a cycle.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .filter_map(|file| {
            let module = module_of(&src, file)?;
            Some((module, std::fs::read_to_string(file).expect("read source")))
        })
        .collect();
    let modules: Vec<String> = sources.iter().map(|(module, _)| module.clone()).collect();
    assert!(modules.iter().any(|module| module == "pipeline::payment"));
    let mut edges: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for (module, text) in &sources {
        // Test code may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for target in named_modules(module, text, &modules) {
            let ancestor = module.starts_with(&format!("{target}::"));
            if target != *module && !ancestor {
                edges.entry(module.as_str()).or_default().insert(target);
            }
        }
    }
    assert!(
        edges
            .get("chat")
            .is_some_and(|to| to.contains("pipeline::dispatch")),
        "the graph is read: {edges:?}"
    );
    // Depth-first search for a way back.
    fn visit<'a>(
        module: &'a str,
        edges: &'a std::collections::BTreeMap<&str, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|on_path| *on_path == module) {
            let mut cycle: Vec<String> = path[start..].iter().map(|m| (*m).to_owned()).collect();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for target in edges.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(target, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for module in &modules {
        let cycle = visit(module, &edges, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "the gateway's modules name each other in a cycle: {}",
            cycle.unwrap_or_default().join(" -> ")
        );
    }
}
