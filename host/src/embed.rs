//! Embeds a guest's WIT source in its component, as a `witbox-wit` custom section.
//!
//! Components keep their types but drop `///` docs; the host reads the docs
//! (tool descriptions, field descriptions) from this section. Only `std`: `xtask`
//! includes this file too, so it can build the guests before the host exists.

use std::path::Path;

/// A custom section `witbox-wit` holding `{"world": …, "files": {path: text}}`
/// for every `.wit` file in `dir` and `dir/deps/*/` (symlinks followed).
pub fn wit_section(dir: &Path, world: &str) -> Result<Vec<u8>, String> {
    let mut files = Vec::new();
    collect(dir, "", &mut files)?;
    let deps = dir.join("deps");
    if deps.is_dir() {
        for entry in read_dir(&deps)? {
            if entry.is_dir() {
                let name = entry.file_name().unwrap().to_string_lossy().into_owned();
                collect(&entry, &format!("deps/{name}/"), &mut files)?;
            }
        }
    }
    let body: Vec<String> = files
        .iter()
        .map(|(p, t)| format!("{}:{}", json_string(p), json_string(t)))
        .collect();
    let payload = format!(
        "{{\"world\":{},\"files\":{{{}}}}}",
        json_string(world),
        body.join(",")
    );
    Ok(custom_section("witbox-wit", payload.as_bytes()))
}

/// A custom section, encoded: append it to a component to add it.
pub fn custom_section(name: &str, data: &[u8]) -> Vec<u8> {
    let mut content = leb(name.len());
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(data);
    let mut section = vec![0u8];
    section.extend(leb(content.len()));
    section.extend(content);
    section
}

fn read_dir(dir: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("failed to read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, String)>) -> Result<(), String> {
    for path in read_dir(dir)? {
        if path.extension().is_some_and(|e| e == "wit") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
            files.push((
                format!("{prefix}{}", path.file_name().unwrap().to_string_lossy()),
                text,
            ));
        }
    }
    Ok(())
}

fn leb(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
