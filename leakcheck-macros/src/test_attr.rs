//! Recognises the attributes on the function that matter to the expansion: those that already
//! make it a test, and `#[should_panic]`.
//!
//! Only attributes *below* `#[leakcheck]` are visible on the item. An attribute above it has
//! already expanded, and the built-in `#[test]` leaves no trace on the function when it does (it
//! adds a separate hidden `const` that registers the test), so `#[test] #[leakcheck] fn` looks
//! like `#[leakcheck] fn`. [`test_written_above`] reads the source before `#[leakcheck]` to tell
//! them apart; without it the test would be registered twice.

use syn::Attribute;

/// The last path segment of attributes that make the function a test themselves:
/// `#[test]`, `#[::core::prelude::v1::test]`, `#[tokio::test]`, `#[async_std::test]`,
/// `#[test_log::test]` and the like, plus `#[rstest]`.
const TEST_ATTRIBUTES: &[&str] = &["test", "rstest"];

/// Test attributes that call the function with arguments they supply (`#[case]`s, fixtures).
const SUPPLIES_ARGUMENTS: &[&str] = &["rstest"];

fn last_segment_is(attr: &Attribute, names: &[&str]) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| names.iter().any(|name| segment.ident == name))
}

/// Whether `attr` makes the function a test on its own, so `#[leakcheck]` must not add `#[test]`.
pub(crate) fn is_test(attr: &Attribute) -> bool {
    last_segment_is(attr, TEST_ATTRIBUTES)
}

/// Whether `attr` wraps the body in code of its own that must run inside the check, so it
/// goes above `#[leakcheck]`, as a runtime attribute does: a test attribute of another crate
/// (`#[test_log::test]` installs a subscriber first), or serial_test's (`#[serial]` takes a
/// key in a table it makes on first use). Not the built-in `#[test]` (under any path) nor
/// `#[rstest]`, which makes one test per case of its own.
pub(crate) fn wraps_the_body(attr: &Attribute) -> bool {
    let segments = &attr.path().segments;
    let builtin = segments.len() == 1
        || segments
            .iter()
            .next()
            .is_some_and(|first| first.ident == "core" || first.ident == "std");
    (is_test(attr) && !builtin && !last_segment_is(attr, SUPPLIES_ARGUMENTS))
        || last_segment_is(attr, SERIAL_TEST)
}

/// serial_test's attributes, which hold a key around the body.
const SERIAL_TEST: &[&str] = &["serial", "parallel", "file_serial", "file_parallel"];

/// The first attribute that makes the function a test, if any.
pub(crate) fn find_test(attrs: &[Attribute]) -> Option<&Attribute> {
    attrs.iter().find(|attr| is_test(attr))
}

/// Whether one of `attrs` calls the function with arguments (so it may have parameters).
pub(crate) fn supplies_arguments(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| last_segment_is(attr, SUPPLIES_ARGUMENTS))
}

/// Whether one of `attrs` (below `#[leakcheck]`) makes a test that calls the function with
/// generated arguments, which works only with that attribute above `#[leakcheck]`.
pub(crate) fn generates_arguments(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| last_segment_is(attr, GENERATES_ARGUMENTS))
}

/// Test attributes that generate the test, which calls the function with arguments it makes
/// up: `#[quickcheck]`.
const GENERATES_ARGUMENTS: &[&str] = &["quickcheck"];

/// Whether the function is marked `#[should_panic]` (with or without an `expected` message).
pub(crate) fn should_panic(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| attr.path().is_ident("should_panic"))
}

/// Whether a built-in `#[test]` is written among the attributes just above the `#[leakcheck]`
/// that starts at 1-based `line`, 0-based `column` of `source`: the lines above it that are
/// attributes, comments or blank, and the text before it on its own line.
pub(crate) fn test_written_above(source: &str, line: usize, column: usize) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    let Some(own) = line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return false;
    };
    let before: String = own.chars().take(column).collect();
    // The call site of an attribute macro starts at its `[`; a `$(` opens a macro's repetition
    // of attributes (`$(#[$meta])*`), which those written above are part of.
    let before = before.trim_end();
    // Written as `#[cfg_attr(cond, leakcheck)]`: the attributes before that one count.
    let before = match before.rfind("#[cfg_attr(") {
        Some(at) if !before[at..].contains(']') => before[..at].trim_end(),
        _ => before,
    };
    let before = before.strip_suffix('#').unwrap_or(before).trim_end();
    let before = before.strip_suffix("$(").unwrap_or(before);
    let (rest, attributes) = trailing_attributes(before);
    if makes_a_test(&attributes) {
        return true;
    }
    if !rest.trim().is_empty() {
        // Other code before the attributes on this line (a `macro_rules!` arm written on one
        // line, say): the attribute list starts here.
        return false;
    }
    for text in lines[..line - 1].iter().rev() {
        let text = text.trim();
        if text.is_empty() || text.starts_with("//") {
            continue;
        }
        // A line of attributes only; one that goes on with code (`#[test] fn a() {}`) ends
        // another item, whose attributes are not this function's.
        let Some(attributes) = leading_attributes(text) else {
            return false;
        };
        if makes_a_test(&attributes) {
            return true;
        }
    }
    false
}

/// Whether one of `attributes` (the text inside each `#[...]`) written above makes the
/// function a test once it has expanded, which leaves no mark on the function: the test
/// attributes recognised below (`#[test]` by any path, `#[async_std::test]`, `#[rstest]`) and
/// those that generate the test (`#[quickcheck]`). They emit a `#[test]` above the rest, so a
/// `#[test]` of leakcheck's would register the test a second time.
fn makes_a_test(attributes: &[&str]) -> bool {
    attributes.iter().any(|attribute| {
        let path: String = attribute
            .chars()
            .take_while(|&c| c != '(' && c != '=')
            .filter(|c| !c.is_whitespace())
            .collect();
        // `#[leakcheck::test]` is this attribute itself, under its alias.
        if path.trim_start_matches("::").starts_with("leakcheck::") {
            return false;
        }
        let last = path.rsplit("::").next().unwrap_or("");
        TEST_ATTRIBUTES.contains(&last) || GENERATES_ARGUMENTS.contains(&last)
    })
}

/// The attributes that `text` ends with, each as the text inside its `#[...]`, and what comes
/// before them.
fn trailing_attributes(text: &str) -> (&str, Vec<&str>) {
    let mut attributes = Vec::new();
    let mut rest = text.trim_end();
    while rest.ends_with(']') {
        let mut depth = 0;
        let open = rest.char_indices().rev().find_map(|(i, c)| {
            match c {
                ']' => depth += 1,
                '[' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        let Some(open) = open.filter(|&open| rest[..open].ends_with('#')) else {
            break;
        };
        attributes.push(&rest[open + 1..rest.len() - 1]);
        rest = rest[..open - 1].trim_end();
    }
    attributes.reverse();
    (rest, attributes)
}

/// The attributes `text` starts with, each as the text inside its `#[...]`, if nothing but a
/// comment follows them.
fn leading_attributes(text: &str) -> Option<Vec<&str>> {
    let mut attributes = Vec::new();
    let mut rest = text;
    while let Some(after) = rest.strip_prefix("#[") {
        let mut depth = 1;
        let end = after.char_indices().find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        })?;
        attributes.push(&after[..end]);
        rest = after[end + 1..].trim_start();
    }
    (!attributes.is_empty() && (rest.is_empty() || rest.starts_with("//"))).then_some(attributes)
}

/// Whether `body` (a function's block) is what `quickcheck!` generates: a call of
/// `$crate::quickcheck(prop as fn(..) -> ..)`, which only a macro can write. `quickcheck!` puts
/// `#[test]` above the attributes it passes on, in its own source, where
/// [`test_written_above`] cannot see it when the user wrote `#[leakcheck]` under `cfg_attr`.
pub(crate) fn generated_by_quickcheck(body: &proc_macro2::TokenStream) -> bool {
    use proc_macro2::{Delimiter, TokenTree};
    let tokens: Vec<TokenTree> = body.clone().into_iter().collect();
    tokens.windows(5).any(|window| match window {
        [TokenTree::Ident(krate), TokenTree::Punct(a), TokenTree::Punct(b), TokenTree::Ident(name), TokenTree::Group(args)] => {
            krate == "$crate"
                && a.as_char() == ':'
                && b.as_char() == ':'
                && name == "quickcheck"
                && args.delimiter() == Delimiter::Parenthesis
        }
        _ => false,
    })
}

/// Another `#[leakcheck]` (or its alias `#[leakcheck::test]`) on the same function, which would
/// wrap it twice.
pub(crate) fn find_leakcheck(attrs: &[Attribute]) -> Option<&Attribute> {
    attrs.iter().find(|attr| {
        let segments = &attr.path().segments;
        let is_alias = segments.len() == 2 && segments[0].ident == "leakcheck";
        last_segment_is(attr, &["leakcheck"]) || (is_alias && segments[1].ident == "test")
    })
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn attribute_macros_that_make_a_test_above_are_seen() {
        for above in [
            "#[async_std::test]",
            "#[tokio::test(flavor = \"multi_thread\")]",
            "#[test_log::test]",
            "#[quickcheck]",
            "#[quickcheck_macros::quickcheck]",
            "#[rstest]",
            "#[::core::prelude::v1::test]",
        ] {
            let source = format!("{above}\n#[leakcheck]\nfn b() {{}}\n");
            assert!(test_written_above(&source, 2, 0), "{above}");
        }
        for above in [
            "#[should_panic]",
            "#[my::testing]",
            "#[cfg(test)]",
            "#[ignore = \"test\"]",
            "#[doc = \"#[test]\"]",
        ] {
            let source = format!("{above}\n#[leakcheck]\nfn b() {{}}\n");
            assert!(!test_written_above(&source, 2, 0), "{above}");
        }
    }

    #[test]
    fn a_test_attribute_of_the_item_above_is_not_this_one_s() {
        let source = "#[test] fn a() {}\n#[leakcheck::test]\nfn b() {}\n";
        assert!(!test_written_above(source, 2, 0));
        let source = "#[test] // the next one\n#[leakcheck]\nfn b() {}\n";
        assert!(test_written_above(source, 2, 0));
        let source = "#[cfg_attr(x, allow(y))] #[test]\n#[leakcheck]\nfn b() {}\n";
        assert!(test_written_above(source, 2, 0));
    }

    #[test]
    fn finds_test_written_above_the_attribute() {
        let source = "use x;\n\n#[test]\n/// doc\n#[leakcheck]\nfn a() {}\n";
        assert!(test_written_above(source, 5, 0));
        let source = "fn z() {}\n#[test] #[leakcheck]\nfn a() {}\n";
        assert!(test_written_above(source, 2, 8));
        let source = "#[test]\nfn z() {}\n#[leakcheck]\n#[test]\nfn a() {}\n";
        assert!(
            !test_written_above(source, 3, 0),
            "a #[test] of the previous item does not count"
        );
        assert!(!test_written_above("#[leakcheck]\nfn a() {}\n", 1, 0));
        assert!(!test_written_above("", 7, 0));
    }

    #[test]
    fn a_test_attribute_before_it_on_a_line_of_other_code_is_seen() {
        // A `macro_rules!` arm written on one line: the attributes end where ours starts.
        let source = "macro_rules! gen { ($n:ident) => { #[test] #[leakcheck] fn $n() {} } }\n";
        assert!(test_written_above(source, 1, 43));
        let source = "macro_rules! gen { ($n:ident) => { #[inline] #[leakcheck] fn $n() {} } }\n";
        assert!(!test_written_above(source, 1, 45));
        // Under `cfg_attr`, the attributes before the `cfg_attr`.
        let source = "#[test]\n#[cfg_attr(test, leakcheck::leakcheck)]\nfn a() {}\n";
        assert!(test_written_above(source, 2, 16));
        let source = "#[inline] #[cfg_attr(test, leakcheck)]\nfn a() {}\n";
        assert!(!test_written_above(source, 1, 27));
        let source = "#[test] #[cfg_attr(test, leakcheck)]\nfn a() {}\n";
        assert!(test_written_above(source, 1, 25));
        // quickcheck!'s expansion: its `#[test]`, then the user's attributes passed on.
        let source = "    #[test]\n    $(#[$m])*\n    fn $name() {}\n";
        assert!(test_written_above(source, 2, 7));
        // Above a function's name: this attribute under its alias is no other test attribute.
        let source = "#[leakcheck::test]\nfn a() {}\n";
        assert!(!test_written_above(source, 2, 0));
        let source = "#[::leakcheck::test]\n#[should_panic]\nfn a() {}\n";
        assert!(!test_written_above(source, 3, 0));
        // Code before the attribute list on its line: the lines above are another item's.
        let source = "#[test]\nfn z() {} #[leakcheck] fn a() {}\n";
        assert!(!test_written_above(source, 2, 10));
    }

    #[test]
    fn trailing_attributes_are_split_off_the_end() {
        assert_eq!(
            trailing_attributes("x => { #[a(b[1])] #[test] "),
            ("x => {", vec!["a(b[1])", "test"])
        );
        assert_eq!(trailing_attributes("v[0]"), ("v[0]", vec![]));
        assert_eq!(trailing_attributes(""), ("", vec![]));
    }

    fn attrs(item: syn::ItemFn) -> Vec<Attribute> {
        item.attrs
    }

    #[test]
    fn test_attributes_are_recognised() {
        let test_attrs: Vec<Attribute> = vec![
            parse_quote!(#[test]),
            parse_quote!(#[::core::prelude::v1::test]),
            parse_quote!(#[core::prelude::v1::test]),
            parse_quote!(#[tokio::test]),
            parse_quote!(#[tokio::test(flavor = "multi_thread")]),
            parse_quote!(#[async_std::test]),
            parse_quote!(#[test_log::test]),
            parse_quote!(#[rstest]),
            parse_quote!(#[rstest::rstest]),
        ];
        for attr in &test_attrs {
            assert!(is_test(attr), "{}", quote::quote!(#attr));
        }
    }

    #[test]
    fn other_attributes_are_not_tests() {
        let others: Vec<Attribute> = vec![
            parse_quote!(#[should_panic]),
            parse_quote!(#[ignore]),
            parse_quote!(#[doc = "test"]),
            parse_quote!(#[cfg(test)]),
            parse_quote!(#[test::other]),
            parse_quote!(#[testing]),
            parse_quote!(#[serial_test::serial]),
        ];
        for attr in &others {
            assert!(!is_test(attr), "{}", quote::quote!(#attr));
        }
    }

    #[test]
    fn finds_the_first_test_attribute() {
        let attrs = attrs(parse_quote! {
            /// docs
            #[ignore]
            #[tokio::test]
            #[test]
            fn f() {}
        });
        let found = find_test(&attrs).unwrap();
        assert!(found.path().segments.first().unwrap().ident == "tokio");
        assert!(find_test(&attrs[..1]).is_none());
    }

    #[test]
    fn should_panic_with_and_without_message() {
        assert!(should_panic(&attrs(parse_quote!(
            #[should_panic]
            fn f() {}
        ))));
        assert!(should_panic(&attrs(parse_quote!(
            #[should_panic(expected = "boom")]
            fn f() {}
        ))));
        assert!(should_panic(&attrs(parse_quote!(
            #[should_panic = "boom"]
            fn f() {}
        ))));
        assert!(!should_panic(&attrs(parse_quote!(
            #[test]
            fn f() {}
        ))));
    }

    #[test]
    fn rstest_supplies_arguments() {
        assert!(supplies_arguments(&attrs(parse_quote!(
            #[rstest]
            fn f() {}
        ))));
        assert!(!supplies_arguments(&attrs(parse_quote!(
            #[test]
            fn f() {}
        ))));
    }

    #[test]
    fn finds_a_second_leakcheck() {
        assert!(find_leakcheck(&attrs(parse_quote!(
            #[leakcheck::leakcheck]
            fn f() {}
        )))
        .is_some());
        assert!(find_leakcheck(&attrs(parse_quote!(
            #[leakcheck]
            fn f() {}
        )))
        .is_some());
        assert!(find_leakcheck(&attrs(parse_quote!(
            #[test]
            fn f() {}
        )))
        .is_none());
    }
}
