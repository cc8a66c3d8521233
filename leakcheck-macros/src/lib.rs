//! The `#[leakcheck]` attribute. Use it through the `leakcheck` crate, which re-exports it and
//! documents it; this crate only turns tokens into tokens.
//!
//! The expansion lives in ordinary modules that take and return [`proc_macro2::TokenStream`], so
//! unit and snapshot tests can call it without a compiler around them.

#![forbid(unsafe_code)]

mod attr;
mod errors;
mod expand;
// Reading a `#[test]` above the attribute needs Rust 1.88 (see build.rs).
#[cfg_attr(not(leakcheck_span_source), allow(dead_code))]
mod test_attr;
mod valid;

#[cfg(test)]
mod snapshot_tests;

/// Fails the test if it leaks memory: wraps the function's body in the leakcheck runtime and, when
/// no test attribute is present, marks it `#[test]`.
///
/// See the `leakcheck` crate for the manual. The options are `crate = path::to::leakcheck` (or
/// `crate = "path::to::leakcheck"`), for when the runtime crate is renamed or re-exported.
///
/// A test attribute (`#[test]`, `#[tokio::test]`, ...) may stand above or below `#[leakcheck]`,
/// or a plain `#[test]` may be left out.
#[proc_macro_attribute]
pub fn leakcheck(
    args: proc_macro::TokenStream,
    item: proc_macro::TokenStream,
) -> proc_macro::TokenStream {
    let test_above = test_written_above(proc_macro::Span::call_site())
        || function_name(&item).is_some_and(|name| test_written_above_line(name.span()))
        || function_body(&item).is_some_and(|body| test_attr::generated_by_quickcheck(&body));
    expand::expand(args.into(), item.into(), test_above).into()
}

/// A built-in `#[test]` above `#[leakcheck]` has expanded already and left no mark on the
/// function, so the only place it still shows is the source text: before the attribute (at
/// `span`), or, when a macro passed the attributes on (`proptest!`, a `macro_rules!` of the
/// user's), above the function's name where the user wrote it. Compilers before Rust 1.88 do
/// not say where a span is (see build.rs): there the answer is no, and a `#[test]` goes below
/// `#[leakcheck]` or is left out (the manual says so).
#[cfg(leakcheck_span_source)]
#[allow(clippy::incompatible_msrv)] // only where build.rs found Rust 1.88 or newer
fn test_written_above(span: proc_macro::Span) -> bool {
    let Some(path) = span.local_file() else {
        return false;
    };
    let Ok(source) = std::fs::read_to_string(path) else {
        return false;
    };
    test_attr::test_written_above(&source, span.line(), span.column())
}

#[cfg(not(leakcheck_span_source))]
fn test_written_above(_: proc_macro::Span) -> bool {
    false
}

/// [`test_written_above`] for the lines above the one `span` starts, only.
#[cfg(leakcheck_span_source)]
#[allow(clippy::incompatible_msrv)] // only where build.rs found Rust 1.88 or newer
fn test_written_above_line(span: proc_macro::Span) -> bool {
    let Some(path) = span.local_file() else {
        return false;
    };
    let Ok(source) = std::fs::read_to_string(path) else {
        return false;
    };
    test_attr::test_written_above(&source, span.line(), 0)
}

#[cfg(not(leakcheck_span_source))]
fn test_written_above_line(_: proc_macro::Span) -> bool {
    false
}

/// The body of the function `item` declares: its last brace-delimited group.
fn function_body(item: &proc_macro::TokenStream) -> Option<proc_macro2::TokenStream> {
    let body = item.clone().into_iter().last()?;
    match body {
        proc_macro::TokenTree::Group(group)
            if group.delimiter() == proc_macro::Delimiter::Brace =>
        {
            Some(group.stream().into())
        }
        _ => None,
    }
}

/// The name of the function `item` declares, if it does.
fn function_name(item: &proc_macro::TokenStream) -> Option<proc_macro::Ident> {
    let mut tokens = item.clone().into_iter();
    while let Some(token) = tokens.next() {
        if let proc_macro::TokenTree::Ident(ident) = &token {
            if ident.to_string() == "fn" {
                return match tokens.next() {
                    Some(proc_macro::TokenTree::Ident(name)) => Some(name),
                    _ => None,
                };
            }
        }
    }
    None
}
