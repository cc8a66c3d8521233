//! Whether this compiler lets a proc macro read where its input came from
//! (`proc_macro::Span::local_file`, `line` and `column`, stable since Rust 1.88): the attribute
//! uses them to see a `#[test]` written above it, and does without them on older compilers.

use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(leakcheck_span_source)");
    println!("cargo:rerun-if-env-changed=RUSTC");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok());
    // "rustc 1.88.0 (6b00bc388 2025-06-23)"; a version that cannot be read is taken as new.
    let minor = version
        .as_deref()
        .and_then(|text| text.split_whitespace().nth(1))
        .and_then(|number| number.split('.').nth(1))
        .and_then(|minor| minor.parse::<u32>().ok());
    if minor.is_none_or(|minor| minor >= 88) {
        println!("cargo:rustc-cfg=leakcheck_span_source");
    }
}
