//! Parses the options in `#[leakcheck(...)]`.
//!
//! Every option is written `name = value` and is described by one row of [`OPTIONS`]: its name,
//! an example for error messages, and a function that parses its value into [`Args`]. An option
//! that the runtime acts on is forwarded as a method call on the runtime's `Options` builder (see
//! [`Args::forward`]), so adding one is a row here plus a method in the runtime, e.g.
//!
//! ```text
//! Spec { name: "repeat", example: "repeat = 3", parse: |args, key, value| {
//!     let n: syn::LitInt = value.parse()?;
//!     args.forward(key, n);
//!     Ok(())
//! } },
//! ```
//!
//! which makes `#[leakcheck(repeat = 3)]` expand to `let options = options.repeat(3);`.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Error, LitStr, Path, Token};

use crate::errors::Errors;

/// The options of one `#[leakcheck(...)]`, parsed.
#[derive(Default)]
pub(crate) struct Args {
    /// `crate = path`: where the runtime lives; `None` means `::leakcheck`.
    pub(crate) krate: Option<Path>,
    /// Options the runtime acts on, in the order written, as `options.method(value)` calls.
    pub(crate) calls: Vec<RuntimeCall>,
}

/// One option forwarded to the runtime: `options.method(value)`.
pub(crate) struct RuntimeCall {
    /// The method on the runtime's `Options`, named and spanned like the option.
    pub(crate) method: Ident,
    pub(crate) value: TokenStream,
    /// `value` is a path inside the runtime's `__private` module (e.g. `Reachable::Fail`).
    pub(crate) in_runtime: bool,
}

impl Args {
    /// Forwards the option `key` to the runtime as the builder call `options.key(value)`.
    pub(crate) fn forward(&mut self, key: &Ident, value: impl ToTokens) {
        self.calls.push(RuntimeCall {
            method: key.clone(),
            value: value.into_token_stream(),
            in_runtime: false,
        });
    }

    /// Like [`Args::forward`], with a value named inside the runtime's `__private` module.
    pub(crate) fn forward_runtime_path(&mut self, key: &Ident, path: TokenStream) {
        self.calls.push(RuntimeCall {
            method: key.clone(),
            value: path,
            in_runtime: true,
        });
    }
}

/// One option: its name, an example used in messages, and how to parse the tokens after `=`.
struct Spec {
    name: &'static str,
    example: &'static str,
    /// May be given more than once (each adds to a list).
    repeatable: bool,
    /// Written alone, without `= value` (`threads`).
    flag: bool,
    /// Parses the value (all tokens up to the next top-level comma); an error should be spanned
    /// on the offending tokens.
    parse: fn(&mut Args, &Ident, ParseStream) -> syn::Result<()>,
}

/// Every valid option; error messages list them in this order.
const OPTIONS: &[Spec] = &[
    Spec {
        name: "crate",
        example: "crate = path::to::leakcheck",
        repeatable: false,
        flag: false,
        parse: parse_crate,
    },
    Spec {
        name: "repeat",
        example: "repeat = 3",
        repeatable: false,
        flag: false,
        parse: parse_count,
    },
    Spec {
        name: "reachable",
        example: "reachable = \"fail\"",
        repeatable: false,
        flag: false,
        parse: parse_reachable,
    },
    Spec {
        name: "shared_threads",
        example: "shared_threads = \"fail\"",
        repeatable: false,
        flag: false,
        parse: parse_shared_threads,
    },
    Spec {
        name: "allow_bytes",
        example: "allow_bytes = 1024",
        repeatable: false,
        flag: false,
        parse: parse_count,
    },
    Spec {
        name: "allow_allocs",
        example: "allow_allocs = 2",
        repeatable: false,
        flag: false,
        parse: parse_count,
    },
    Spec {
        name: "max_allocs",
        example: "max_allocs = 0",
        repeatable: false,
        flag: false,
        parse: parse_count,
    },
    Spec {
        name: "max_bytes",
        example: "max_bytes = 4096",
        repeatable: false,
        flag: false,
        parse: parse_count,
    },
    Spec {
        name: "max_peak_bytes",
        example: "max_peak_bytes = 65536",
        repeatable: false,
        flag: false,
        parse: parse_count,
    },
    Spec {
        name: "ignore",
        example: "ignore = \"my_crate::cache::*\"",
        repeatable: true,
        flag: false,
        parse: parse_pattern,
    },
    Spec {
        name: "threads",
        example: "threads",
        repeatable: false,
        flag: true,
        parse: parse_flag,
    },
    Spec {
        name: "fds",
        example: "fds",
        repeatable: false,
        flag: true,
        parse: parse_flag,
    },
    Spec {
        name: "resources",
        example: "resources",
        repeatable: false,
        flag: true,
        parse: parse_flag,
    },
    Spec {
        name: "threads_linger_ms",
        example: "threads_linger_ms = 100",
        repeatable: false,
        flag: false,
        parse: parse_count,
    },
    Spec {
        name: "ignore_threads",
        example: "ignore_threads = \"tokio-*\"",
        repeatable: false,
        flag: false,
        parse: parse_pattern,
    },
    Spec {
        name: "ignore_fds",
        example: "ignore_fds = \"socket:*\"",
        repeatable: false,
        flag: false,
        parse: parse_pattern,
    },
];

/// A flag: `threads` becomes `options.threads()`.
fn parse_flag(args: &mut Args, key: &Ident, _value: ParseStream) -> syn::Result<()> {
    args.forward(key, TokenStream::new());
    Ok(())
}

/// A non-negative whole number, forwarded as is: `repeat = 3`, `allow_bytes = 1_024`.
fn parse_count(args: &mut Args, key: &Ident, value: ParseStream) -> syn::Result<()> {
    let expected = || format!("expected a whole number, e.g. `{}`", example_of(key));
    let literal: syn::LitInt = value
        .parse()
        .map_err(|error| Error::new(error.span(), expected()))?;
    if !literal.suffix().is_empty() || literal.base10_parse::<u64>().is_err() {
        return Err(Error::new(literal.span(), expected()));
    }
    let unsuffixed = proc_macro2::Literal::u64_unsuffixed(literal.base10_parse::<u64>()?);
    args.forward(key, unsuffixed);
    end_of_value(value, key)
}

/// `reachable = "fail"` or `reachable = "ignore"`.
fn parse_reachable(args: &mut Args, key: &Ident, value: ParseStream) -> syn::Result<()> {
    parse_choice(
        args,
        key,
        value,
        "Reachable",
        &[("fail", "Fail"), ("ignore", "Ignore")],
    )
}

/// `shared_threads = "fail"` or `shared_threads = "note"`.
fn parse_shared_threads(args: &mut Args, key: &Ident, value: ParseStream) -> syn::Result<()> {
    parse_choice(
        args,
        key,
        value,
        "SharedThreads",
        &[("fail", "Fail"), ("note", "Note")],
    )
}

/// A string value that names a variant of the runtime's enum `kind`: `choices` pairs each
/// string with its variant. Forwarded as the variant's path.
fn parse_choice(
    args: &mut Args,
    key: &Ident,
    value: ParseStream,
    kind: &str,
    choices: &[(&str, &str)],
) -> syn::Result<()> {
    let quoted: Vec<String> = choices
        .iter()
        .map(|(text, _)| format!("`\"{text}\"`"))
        .collect();
    let literal: LitStr = value.parse().map_err(|error| {
        let forms: Vec<String> = choices
            .iter()
            .map(|(text, _)| format!("`{key} = \"{text}\"`"))
            .collect();
        Error::new(error.span(), format!("expected {}", forms.join(" or ")))
    })?;
    let given = literal.value();
    let Some((_, variant)) = choices.iter().find(|(text, _)| *text == given) else {
        let message = format!(
            "unknown value `{given}` for `{key}`; expected {}",
            quoted.join(" or ")
        );
        return Err(Error::new(literal.span(), message));
    };
    let kind = Ident::new(kind, literal.span());
    let variant = Ident::new(variant, literal.span());
    args.forward_runtime_path(key, quote::quote!(#kind::#variant));
    end_of_value(value, key)
}

/// `ignore = "pattern"`, a suppression pattern in LeakSanitizer's syntax.
fn parse_pattern(args: &mut Args, key: &Ident, value: ParseStream) -> syn::Result<()> {
    let literal: LitStr = value.parse().map_err(|error| {
        Error::new(
            error.span(),
            format!("expected a pattern string, e.g. `{}`", example_of(key)),
        )
    })?;
    if literal.value().trim().is_empty() {
        return Err(Error::new(
            literal.span(),
            "the pattern is empty; expected e.g. `ignore = \"my_crate::cache::*\"`",
        ));
    }
    args.forward(key, literal);
    end_of_value(value, key)
}

fn example_of(key: &Ident) -> &'static str {
    let name = key.unraw().to_string();
    OPTIONS
        .iter()
        .find(|spec| spec.name == name)
        .map_or("", |spec| spec.example)
}

/// Rejects tokens after a complete value: `repeat = 3 4`.
fn end_of_value(value: ParseStream, key: &Ident) -> syn::Result<()> {
    if value.is_empty() {
        Ok(())
    } else {
        Err(value.error(format!(
            "unexpected tokens after the value; expected `{}`",
            example_of(key)
        )))
    }
}

/// Parses `crate = path::to::leakcheck` or `crate = "path::to::leakcheck"` (tokio's form).
fn parse_crate(args: &mut Args, _key: &Ident, value: ParseStream) -> syn::Result<()> {
    let path = if value.peek(LitStr) {
        let lit: LitStr = value.parse()?;
        lit.parse_with(Path::parse_mod_style).map_err(|_| {
            Error::new(
                lit.span(),
                format!(
                    "`{}` is not a path; expected e.g. `crate = \"::leakcheck\"`",
                    lit.value()
                ),
            )
        })?
    } else if value.peek(Token![::]) || value.peek(Ident::peek_any) {
        value.call(Path::parse_mod_style)?
    } else {
        return Err(value.error(
            "expected the path of the leakcheck crate, e.g. `crate = ::leakcheck` or `crate = \"::leakcheck\"`",
        ));
    };
    args.krate = Some(path);
    Ok(())
}

/// Parses the tokens inside `#[leakcheck(...)]`, reporting every error rather than the first.
pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
    parse_args.parse2(tokens)
}

fn parse_args(input: ParseStream) -> syn::Result<Args> {
    let mut args = Args::default();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut errors = Errors::default();
    while !input.is_empty() {
        if let Err(error) = parse_option(input, &mut args, &mut seen) {
            errors.push(error);
            skip_to_comma(input);
        }
        if !input.is_empty() {
            if let Err(error) = input.parse::<Token![,]>() {
                errors.push(error);
                skip_to_comma(input);
                let _ = input.parse::<Option<Token![,]>>();
            }
        }
    }
    errors.finish()?;
    Ok(args)
}

/// Parses one `name = value`, leaving `input` at the comma after it (or the end).
fn parse_option(
    input: ParseStream,
    args: &mut Args,
    seen: &mut Vec<&'static str>,
) -> syn::Result<()> {
    let key = input.call(Ident::parse_any).map_err(|error| {
        let message = format!("expected a leakcheck option, one of: {}", option_names());
        Error::new(error.span(), message)
    })?;
    let name = key.unraw().to_string();
    let eq: Option<Token![=]> = input.parse()?;
    let value = take_to_comma(input);

    let Some(spec) = OPTIONS.iter().find(|spec| spec.name == name) else {
        let message = format!(
            "unknown leakcheck option `{name}`; expected one of: {}",
            option_names()
        );
        return Err(Error::new(key.span(), message));
    };
    if seen.contains(&spec.name) && !spec.repeatable {
        return Err(Error::new(
            key.span(),
            format!("duplicate leakcheck option `{name}`"),
        ));
    }
    seen.push(spec.name);
    if spec.flag {
        if eq.is_some() || !value.is_empty() {
            let message = format!("`{name}` takes no value; write `#[leakcheck({name})]`");
            return Err(Error::new(key.span(), message));
        }
        return (|value: ParseStream| (spec.parse)(args, &key, value)).parse2(value);
    }
    if eq.is_none() || value.is_empty() {
        let message = format!("expected `{}`", spec.example);
        return Err(Error::new(key.span(), message));
    }
    (|value: ParseStream| (spec.parse)(args, &key, value)).parse2(value)
}

/// "`a`, `b`": the names in [`OPTIONS`], for messages.
fn option_names() -> String {
    let names: Vec<String> = OPTIONS
        .iter()
        .map(|spec| format!("`{}`", spec.name))
        .collect();
    names.join(", ")
}

/// Takes the tokens up to the next top-level comma (commas inside brackets belong to the value).
fn take_to_comma(input: ParseStream) -> TokenStream {
    let mut tokens = TokenStream::new();
    while !input.is_empty() && !input.peek(Token![,]) {
        let tree: TokenTree = input.parse().expect("input is not empty");
        tokens.extend([tree]);
    }
    tokens
}

/// Skips what is left of a bad option so the ones after it are still checked.
fn skip_to_comma(input: ParseStream) {
    let _ = take_to_comma(input);
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn error_messages(tokens: TokenStream) -> Vec<String> {
        match parse(tokens) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn krate(tokens: TokenStream) -> String {
        let args = parse(tokens).expect("parses");
        args.krate
            .expect("crate is set")
            .to_token_stream()
            .to_string()
    }

    #[test]
    fn empty_means_defaults() {
        let args = parse(TokenStream::new()).unwrap();
        assert!(args.krate.is_none());
        assert!(args.calls.is_empty());
    }

    #[test]
    fn crate_as_path() {
        assert_eq!(krate(quote!(crate = ::my::leakcheck)), ":: my :: leakcheck");
        assert_eq!(krate(quote!(crate = leakcheck2)), "leakcheck2");
        assert_eq!(krate(quote!(crate = crate::reexport)), "crate :: reexport");
        assert_eq!(krate(quote!(crate = ::leakcheck,)), ":: leakcheck");
    }

    #[test]
    fn crate_as_string() {
        assert_eq!(
            krate(quote!(crate = "::my::leakcheck")),
            ":: my :: leakcheck"
        );
        assert_eq!(krate(quote!(crate = "lc")), "lc");
    }

    #[test]
    fn crate_with_bad_values() {
        assert_eq!(
            error_messages(quote!(crate = 42)),
            ["expected the path of the leakcheck crate, e.g. `crate = ::leakcheck` or `crate = \"::leakcheck\"`"]
        );
        assert_eq!(
            error_messages(quote!(crate = "not a path!")),
            ["`not a path!` is not a path; expected e.g. `crate = \"::leakcheck\"`"]
        );
        assert_eq!(error_messages(quote!(crate = a::b c)), ["unexpected token"]);
        assert_eq!(
            error_messages(quote!(crate)),
            ["expected `crate = path::to::leakcheck`"]
        );
        assert_eq!(
            error_messages(quote!(crate =)),
            ["expected `crate = path::to::leakcheck`"]
        );
    }

    #[test]
    fn unknown_option_lists_valid_ones() {
        assert_eq!(
            error_messages(quote!(foo)),
            ["unknown leakcheck option `foo`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`"]
        );
        assert_eq!(
            error_messages(quote!(foo = 1)),
            ["unknown leakcheck option `foo`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`"]
        );
    }

    #[test]
    fn not_an_option_name() {
        assert_eq!(
            error_messages(quote!("crate")),
            ["expected a leakcheck option, one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`"]
        );
    }

    #[test]
    fn duplicate_option() {
        assert_eq!(
            error_messages(quote!(crate = a, crate = b)),
            ["duplicate leakcheck option `crate`"]
        );
    }

    #[test]
    fn every_error_is_reported() {
        assert_eq!(
            error_messages(quote!(foo, crate = 1, bar(x, y) = 2, crate = b, baz)),
            [
                "unknown leakcheck option `foo`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`",
                "expected the path of the leakcheck crate, e.g. `crate = ::leakcheck` or `crate = \"::leakcheck\"`",
                "unknown leakcheck option `bar`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`",
                "duplicate leakcheck option `crate`",
                "unknown leakcheck option `baz`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`",
            ]
        );
    }

    /// The columns (0-based, on one line) where each error of `source` starts.
    fn error_columns(source: &str) -> Vec<usize> {
        let tokens: TokenStream = source.parse().unwrap();
        let error = parse(tokens).err().expect("has errors");
        error.into_iter().map(|e| e.span().start().column).collect()
    }

    #[test]
    fn errors_are_spanned_on_the_offending_tokens() {
        // 0         1         2         3         4
        // 01234567890123456789012345678901234567890123
        // foo = 1, crate = 2, crate = x, crate = "a b"
        let source = r#"foo = 1, crate = 2, crate = x, crate = "a b""#;
        assert_eq!(error_columns(source), [0, 17, 20, 31]);
        assert_eq!(error_columns("crate"), [0]);
    }

    #[test]
    fn forward_builds_a_method_call() {
        let mut args = Args::default();
        let key = Ident::new("repeat", proc_macro2::Span::call_site());
        args.forward(&key, quote!(3));
        assert_eq!(args.calls[0].method.to_string(), "repeat");
        assert_eq!(args.calls[0].value.to_string(), "3");
    }

    fn calls(tokens: TokenStream) -> Vec<String> {
        let args = parse(tokens).expect("parses");
        args.calls
            .iter()
            .map(|call| {
                format!(
                    "{}({}){}",
                    call.method,
                    call.value,
                    if call.in_runtime { " in runtime" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn runtime_options_are_forwarded_in_order() {
        assert_eq!(
            calls(quote!(
                repeat = 3,
                allow_bytes = 1_024,
                reachable = "fail",
                shared_threads = "fail",
                ignore = "a",
                ignore = "b"
            )),
            [
                "repeat(3)",
                "allow_bytes(1024)",
                "reachable(Reachable :: Fail) in runtime",
                "shared_threads(SharedThreads :: Fail) in runtime",
                "ignore(\"a\")",
                "ignore(\"b\")"
            ]
        );
        assert_eq!(
            calls(quote!(
                max_allocs = 0,
                max_bytes = 10,
                max_peak_bytes = 20,
                allow_allocs = 1
            ))
            .len(),
            4
        );
    }

    #[test]
    fn runtime_options_reject_bad_values() {
        assert_eq!(
            error_messages(quote!(repeat = "3")),
            ["expected a whole number, e.g. `repeat = 3`"]
        );
        assert_eq!(
            error_messages(quote!(allow_bytes = -1)),
            ["expected a whole number, e.g. `allow_bytes = 1024`"]
        );
        assert_eq!(
            error_messages(quote!(max_allocs = 1u8)),
            ["expected a whole number, e.g. `max_allocs = 0`"]
        );
        assert_eq!(
            error_messages(quote!(repeat = 3 4)),
            ["unexpected tokens after the value; expected `repeat = 3`"]
        );
        assert_eq!(
            error_messages(quote!(reachable = "always")),
            ["unknown value `always` for `reachable`; expected `\"fail\"` or `\"ignore\"`"]
        );
        assert_eq!(
            error_messages(quote!(shared_threads = "ignore")),
            ["unknown value `ignore` for `shared_threads`; expected `\"fail\"` or `\"note\"`"]
        );
        assert_eq!(
            error_messages(quote!(shared_threads = fail)),
            ["expected `shared_threads = \"fail\"` or `shared_threads = \"note\"`"]
        );
        assert_eq!(
            error_messages(quote!(ignore = 3)),
            ["expected a pattern string, e.g. `ignore = \"my_crate::cache::*\"`"]
        );
        assert_eq!(
            error_messages(quote!(repeat = 1, repeat = 2)),
            ["duplicate leakcheck option `repeat`"]
        );
        assert_eq!(error_messages(quote!(repeat)), ["expected `repeat = 3`"]);
    }

    #[test]
    fn flags_take_no_value() {
        assert_eq!(calls(quote!(threads, fds)), ["threads()", "fds()"]);
        assert_eq!(
            calls(quote!(
                resources,
                threads_linger_ms = 250,
                ignore_threads = "tokio-*"
            ))
            .len(),
            3
        );
        assert_eq!(
            error_messages(quote!(threads = 1)),
            ["`threads` takes no value; write `#[leakcheck(threads)]`"]
        );
    }
}
