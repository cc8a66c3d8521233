//! Turns `#[leakcheck(...)] fn name() -> R { body }` into a test whose body runs inside the
//! runtime's `run_test`.
//!
//! An `async fn` carries its runtime's test attribute (`#[tokio::test]`) below `#[leakcheck]`.
//! The expansion moves that attribute above a fresh `#[leakcheck]`, so the runtime attribute
//! expands first and `#[leakcheck]` then wraps the synchronous function it generates: the
//! runtime is built and dropped inside the check, threads it starts belong to the test, and
//! both attribute orders behave the same.
//!
//! The generated code names the runtime only as `<crate>::__private` (`::leakcheck` unless
//! `crate = ...` says otherwise) and the standard library only as `::core`, so it works whatever
//! the user has in scope.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{AttrStyle, Error, Item, ItemFn, LitStr, ReturnType};

use crate::attr::{self, Args, RuntimeCall};
use crate::{test_attr, valid};

/// Expands `#[leakcheck(args)] item`.
///
/// On errors, returns the item unchanged followed by one `compile_error!` per error, so the rest
/// of the crate (and an IDE) still sees the function.
///
/// `test_above` says whether a built-in `#[test]` is written above the attribute (already
/// expanded, so invisible in `item`).
pub(crate) fn expand(args: TokenStream, item: TokenStream, test_above: bool) -> TokenStream {
    expand_for(args, item, test_above, harness::Build::current())
}

/// [`expand`] for the given kind of build (see [`harness::Build`]).
fn expand_for(
    args: TokenStream,
    item: TokenStream,
    test_above: bool,
    build: harness::Build,
) -> TokenStream {
    match try_expand(args, item.clone(), test_above, build) {
        Ok(expanded) => expanded,
        Err(error) => {
            let error = error.into_compile_error();
            quote!(#item #error)
        }
    }
}

fn try_expand(
    args: TokenStream,
    item: TokenStream,
    test_above: bool,
    build: harness::Build,
) -> syn::Result<TokenStream> {
    let raw_args = args.clone();
    let args = attr::parse(args);
    let item: Item = syn::parse2(item)?;
    if let Item::Mod(module) = item {
        let args = attr::parse(raw_args.clone())?;
        return expand_mod(&args, raw_args, module);
    }
    let func = into_fn(item).and_then(|func| {
        valid::check_fn(&func)?;
        Ok(func)
    });
    match (args, func) {
        (Ok(args), Ok(func)) if func.sig.asyncness.is_some() => {
            Ok(runtime_first(&args, raw_args, func, build))
        }
        (Ok(args), Ok(func)) if func.attrs.iter().any(test_attr::wraps_the_body) => {
            Ok(wrappers_first(&args, raw_args, func, build))
        }
        (Ok(args), Ok(func))
            if matches!(build, harness::Build::Harness | harness::Build::DocTest) =>
        {
            Ok(harness::expand_fn(&args, func))
        }
        (Ok(args), Ok(func)) => Ok(expand_fn(&args, func, test_above)),
        (Err(mut error), Err(more)) => {
            error.combine(more);
            Err(error)
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => Err(error),
    }
}

/// The function `#[leakcheck]` is on, or an error spanned on what it is on instead.
fn into_fn(item: Item) -> syn::Result<ItemFn> {
    let head = match item {
        Item::Fn(func) => return Ok(func),
        Item::Mod(_) => unreachable!("modules are expanded by `expand_mod`"),
        Item::Struct(i) => tokens([&i.struct_token, &i.ident]),
        Item::Enum(i) => tokens([&i.enum_token, &i.ident]),
        Item::Union(i) => tokens([&i.union_token, &i.ident]),
        Item::Trait(i) => tokens([&i.trait_token, &i.ident]),
        Item::Impl(i) => tokens([&i.impl_token as &dyn ToTokens, &i.self_ty]),
        Item::Const(i) => tokens([&i.const_token, &i.ident]),
        Item::Static(i) => tokens([&i.static_token, &i.ident]),
        Item::Type(i) => tokens([&i.type_token, &i.ident]),
        Item::Use(i) => tokens([&i.use_token as &dyn ToTokens, &i.tree]),
        mut other => {
            clear_attrs(&mut other);
            other.into_token_stream()
        }
    };
    Err(Error::new_spanned(
        head,
        "#[leakcheck] can only be applied to a function or an inline module",
    ))
}

fn tokens<const N: usize>(parts: [&dyn ToTokens; N]) -> TokenStream {
    let mut tokens = TokenStream::new();
    for part in parts {
        part.to_tokens(&mut tokens);
    }
    tokens
}

/// Drops an item's attributes, so an error spanned on it starts at its keyword.
fn clear_attrs(item: &mut Item) {
    let attrs = match item {
        Item::ExternCrate(i) => &mut i.attrs,
        Item::ForeignMod(i) => &mut i.attrs,
        Item::Macro(i) => &mut i.attrs,
        Item::TraitAlias(i) => &mut i.attrs,
        _ => return,
    };
    attrs.clear();
}

/// `#[leakcheck(args)] mod tests { ... }`: every test function inside (at any depth of inline
/// modules) gets `#[leakcheck(args)]`; other items are left alone.
fn expand_mod(
    args: &Args,
    raw_args: TokenStream,
    mut module: syn::ItemMod,
) -> syn::Result<TokenStream> {
    let Some((_, items)) = &mut module.content else {
        return Err(Error::new_spanned(
            &module.ident,
            "#[leakcheck] on a module needs its items inline (`mod tests { ... }`), not in another file",
        ));
    };
    let krate = match &args.krate {
        Some(krate) => krate.to_token_stream(),
        None => quote!(::leakcheck),
    };
    mark_tests(items, &krate, &raw_args);
    Ok(module.into_token_stream())
}

fn mark_tests(items: &mut [Item], krate: &TokenStream, raw_args: &TokenStream) {
    for item in items {
        match item {
            Item::Fn(func)
                if func.attrs.iter().any(test_attr::is_test)
                    && test_attr::find_leakcheck(&func.attrs).is_none() =>
            {
                func.attrs
                    .insert(0, syn::parse_quote!(#[#krate::leakcheck(#raw_args)]));
            }
            Item::Mod(syn::ItemMod {
                content: Some((_, items)),
                ..
            }) => mark_tests(items, krate, raw_args),
            _ => {}
        }
    }
}

/// `#[leakcheck(args)] #[serial] #[test_log::test] fn` becomes `#[serial] #[test_log::test]
/// #[leakcheck(args)] fn`: every attribute that wraps the body ([`test_attr::wraps_the_body`])
/// moves above, so that what it runs first runs inside the check.
fn wrappers_first(
    args: &Args,
    raw_args: TokenStream,
    mut func: ItemFn,
    build: harness::Build,
) -> TokenStream {
    let (wrappers, rest): (Vec<_>, Vec<_>) =
        func.attrs.drain(..).partition(test_attr::wraps_the_body);
    func.attrs = rest;
    let krate = match &args.krate {
        Some(krate) => krate.to_token_stream(),
        None => quote!(::leakcheck),
    };
    // For `leakcheck::harness`, as in `runtime_first`: a test attribute among the wrappers
    // makes a `#[test]` that is compiled out with the inner `#[leakcheck]`.
    let missing = wrappers
        .iter()
        .find(|attr| test_attr::is_test(attr))
        .filter(|_| matches!(build, harness::Build::Harness | harness::Build::DocTest))
        .map(|runtime| harness::registration(&krate, &func, harness::Body::Missing(runtime)));
    quote! {
        #(#wrappers)*
        #[#krate::leakcheck(#raw_args)]
        #func
        #missing
    }
}

/// `#[leakcheck(args)] #[rt::test] async fn` becomes `#[rt::test] #[leakcheck(args)] async fn`.
/// Validation guarantees the runtime attribute is there.
fn runtime_first(
    args: &Args,
    raw_args: TokenStream,
    mut func: ItemFn,
    build: harness::Build,
) -> TokenStream {
    let Some(position) = func.attrs.iter().position(test_attr::is_test) else {
        return func.into_token_stream();
    };
    let runtime = func.attrs.remove(position);
    let krate = match &args.krate {
        Some(krate) => krate.to_token_stream(),
        None => quote!(::leakcheck),
    };
    // For `leakcheck::harness`: should the runtime put its own `#[test]` above the inner
    // `#[leakcheck]` (compiled out with it), the harness still lists the test and says why.
    let missing = matches!(build, harness::Build::Harness | harness::Build::DocTest)
        .then(|| harness::registration(&krate, &func, harness::Body::Missing(&runtime)));
    quote! {
        #runtime
        #[#krate::leakcheck(#raw_args)]
        #func
        #missing
    }
}

/// The wrapped function: same attributes, visibility and signature; the body moved into a
/// closure that the runtime calls.
fn expand_fn(args: &Args, func: ItemFn, test_above: bool) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = &func;
    // Spanned at the return type, so that type errors about it (say, it is not a test outcome)
    // point there rather than at `#[leakcheck]`. A stable span cannot cover several tokens, so
    // this is the type's first token.
    let output_span = match &sig.output {
        ReturnType::Default => Span::call_site(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let krate = match &args.krate {
        Some(krate) => krate.to_token_stream(),
        None => quote_spanned!(output_span=> ::leakcheck),
    };
    let private = quote!(#krate::__private);
    let meta = test_meta(&private, args, &func);
    let output = closure_output(&sig.output);
    let body = quote_spanned!(output_span=> #private::run_test(#meta, move || #output #block));
    let test = (!test_above && test_attr::find_test(attrs).is_none())
        .then(|| quote!(#[::core::prelude::v1::test]));
    // syn keeps the body's inner attributes (`#![expect(deprecated)]`) with the function's:
    // they stay inner, at the start of the new body, where they still apply to the function.
    let (outer, inner): (Vec<_>, Vec<_>) = attrs
        .iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer));

    quote! {
        #test
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #body
        }
    }
}

/// `&TestMeta { ... }` for `func`, with the options forwarded as builder calls.
fn test_meta(private: &TokenStream, args: &Args, func: &ItemFn) -> TokenStream {
    let ident = &func.sig.ident;
    let fn_name = LitStr::new(&ident.unraw().to_string(), ident.span());
    // Spanned at the name: the line and column of the name, where a failure is reported, not
    // of `#[leakcheck]` (on a module, that can be a thousand lines above the test).
    let line = quote_spanned!(ident.span()=> ::core::line!());
    let column = quote_spanned!(ident.span()=> ::core::column!());
    let should_panic = test_attr::should_panic(&func.attrs);
    // Mixed-site: the user's code cannot see or shadow this local.
    let options = Ident::new("options", Span::mixed_site());
    let calls = args.calls.iter().map(
        |RuntimeCall {
             method,
             value,
             in_runtime,
         }| {
            let value = if *in_runtime {
                quote!(#private::#value)
            } else {
                value.clone()
            };
            quote!(let #options = #options.#method(#value);)
        },
    );
    quote! {
        &#private::TestMeta {
            fn_name: #fn_name,
            module_path: ::core::module_path!(),
            file: ::core::file!(),
            line: #line,
            column: #column,
            should_panic: #should_panic,
            options: {
                let #options = #private::Options::new();
                #(#calls)*
                #options
            },
        }
    }
}

/// The closure's `-> R`: the function's return type, `()` if none, and nothing when the type
/// mentions `impl Trait` (which a closure's return type may not).
fn closure_output(output: &ReturnType) -> TokenStream {
    match output {
        ReturnType::Default => quote!(-> ()),
        ReturnType::Type(arrow, ty) if !mentions_impl(ty.to_token_stream()) => quote!(#arrow #ty),
        ReturnType::Type(..) => TokenStream::new(),
    }
}

fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(group.stream()),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// `leakcheck::harness`: how a `#[leakcheck]` test registers itself for the harness of a
/// `harness = false` target.
///
/// Such a target is compiled without `--test`, where rustc compiles every `#[test]` function
/// out, while cargo still sets `cfg(test)`: no `cfg` tells the two builds apart, so the
/// attribute asks the compiler it runs in ([`Build::current`]). Under `--test` (libtest and
/// nextest) the expansion is the usual one and registers nothing. Without it, the function
/// loses its built-in `#[test]` and stays an ordinary function, with its body compiled once as
/// usual and used by an `inventory` registration that the harness collects:
///
/// ```text
/// fn name() -> R { ::leakcheck::__private::run_test(&TestMeta { .. }, move || -> R { body }) }
/// ::leakcheck::__private::inventory::submit! {
///     ::leakcheck::__private::Registration { fn_name: "name", module_path: ::core::module_path!(), ..,
///         body: ::leakcheck::__private::Body::Run(|| ::leakcheck::__private::Verdict::verdict(name())) }
/// }
/// ```
mod harness {
    use std::sync::OnceLock;

    use proc_macro2::{Span, TokenStream};
    use quote::{quote, quote_spanned, ToTokens};
    use syn::ext::IdentExt;
    use syn::spanned::Spanned;
    use syn::{Attribute, Expr, ItemFn, Lit, LitStr, Meta, ReturnType};

    use crate::attr::Args;
    use crate::test_attr;

    /// Whether the crate being expanded is compiled as a libtest test crate.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Build {
        /// `rustc --test` (`cargo test`, nextest, doc-tests), or a host that does not say
        /// (an IDE's macro server): `#[test]` functions, as always.
        Libtest,
        /// A compiler run without `--test`: a `harness = false` target (or any other crate
        /// built without `--test`), where `#[test]` functions are compiled out.
        Harness,
        /// A doc test: rustdoc compiles each one as a program named `rust_out`, without
        /// `--test`, where a test function is compiled out. As in a `harness = false` target,
        /// the function registers itself for `leakcheck::harness::main()`, which a doc test's
        /// `main` can call.
        DocTest,
    }

    impl Build {
        /// Read from the command line of the compiler this macro runs in (proc macros run
        /// inside rustc): a compiler invocation names the crate (`--crate-name`, passed by
        /// cargo and other build systems), and a libtest one has `--test`. Arguments in
        /// `@file`s (cargo uses one when the line is too long) count too.
        pub(crate) fn current() -> Build {
            static CURRENT: OnceLock<Build> = OnceLock::new();
            *CURRENT.get_or_init(|| {
                let mut args = Vec::new();
                for arg in std::env::args_os().skip(1) {
                    let arg = arg.to_string_lossy().into_owned();
                    match arg.strip_prefix('@').map(std::fs::read_to_string) {
                        Some(Ok(file)) => args.extend(file.lines().map(str::to_owned)),
                        Some(Err(_)) | None => args.push(arg),
                    }
                }
                Build::from_args(&args)
            })
        }

        fn from_args(args: &[String]) -> Build {
            let compiling = args
                .iter()
                .any(|arg| arg == "--crate-name" || arg.starts_with("--crate-name="));
            let test = args.iter().any(|arg| arg == "--test");
            let doc_test = args.windows(2).any(|pair| {
                pair[0] == "-o"
                    && std::path::Path::new(&pair[1]).file_name()
                        == Some(std::ffi::OsStr::new("rust_out"))
            });
            if doc_test && !test {
                Build::DocTest
            } else if compiling && !test {
                Build::Harness
            } else {
                Build::Libtest
            }
        }
    }

    /// What a registration runs.
    pub(super) enum Body<'a> {
        /// The checked function, whose value is judged like libtest's `Termination`.
        Run,
        /// Nothing: the function carries this other test attribute, which makes its own
        /// `#[test]` function (compiled out without `--test`).
        Missing(&'a Attribute),
    }

    /// The function expanded for a build without `--test`, and its registration.
    pub(super) fn expand_fn(args: &Args, mut func: ItemFn) -> TokenStream {
        let krate = match &args.krate {
            Some(krate) => krate.to_token_stream(),
            None => quote!(::leakcheck),
        };
        match func.attrs.iter().find(|attr| test_attr::is_test(attr)) {
            Some(other) if !is_builtin_test(other) => {
                let missing = registration(&krate, &func, Body::Missing(other));
                let expanded = super::expand_fn(args, func, false);
                quote!(#expanded #missing)
            }
            _ => {
                func.attrs.retain(|attr| !is_builtin_test(attr));
                let registration = registration(&krate, &func, Body::Run);
                // `true`: add no `#[test]`, as when one stands above.
                let expanded = super::expand_fn(args, func, true);
                quote!(#expanded #registration)
            }
        }
    }

    /// `#[test]`, `#[::core::prelude::v1::test]`, `#[std::prelude::rust_2021::test]`...: the
    /// built-in attribute's forms, among them what `#[tokio::test]` leaves below `#[leakcheck]`.
    fn is_builtin_test(attr: &Attribute) -> bool {
        let Meta::Path(path) = &attr.meta else {
            return false;
        };
        if path
            .segments
            .iter()
            .any(|segment| !segment.arguments.is_none())
        {
            return false;
        }
        let segments: Vec<String> = path
            .segments
            .iter()
            .map(|segment| segment.ident.to_string())
            .collect();
        match segments.as_slice() {
            [test] => path.leading_colon.is_none() && test == "test",
            [krate, prelude, _, test] => {
                (krate == "core" || krate == "std") && prelude == "prelude" && test == "test"
            }
            _ => false,
        }
    }

    /// `inventory::submit! { Registration { ... } }` for `func`.
    pub(super) fn registration(krate: &TokenStream, func: &ItemFn, body: Body) -> TokenStream {
        let private = quote!(#krate::__private);
        let ident = &func.sig.ident;
        let fn_name = LitStr::new(&ident.unraw().to_string(), ident.span());
        let line = quote_spanned!(ident.span()=> ::core::line!());
        let ignored = func.attrs.iter().any(|attr| attr.path().is_ident("ignore"));
        let should_panic = match should_panic(&func.attrs) {
            None => quote!(#private::ShouldPanic::No),
            Some(None) => quote!(#private::ShouldPanic::Yes),
            Some(Some(expected)) => quote!(#private::ShouldPanic::Expected(#expected)),
        };
        let body = match body {
            Body::Run => {
                // At the return type, so that an error about it (not a test outcome) points there.
                let span = match &func.sig.output {
                    ReturnType::Default => Span::call_site(),
                    ReturnType::Type(_, ty) => ty.span(),
                };
                quote_spanned! {span=>
                    #private::Body::Run(|| #private::Verdict::verdict(#ident()))
                }
            }
            Body::Missing(attribute) => {
                let path = attribute
                    .path()
                    .to_token_stream()
                    .to_string()
                    .replace(' ', "");
                let attribute = LitStr::new(&format!("#[{path}]"), Span::call_site());
                quote!(#private::Body::Missing { attribute: #attribute })
            }
        };
        quote! {
            #private::inventory::submit! {
                #private::Registration {
                    fn_name: #fn_name,
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                    ignored: #ignored,
                    should_panic: #should_panic,
                    body: #body,
                }
            }
        }
    }

    /// `None` without `#[should_panic]`; `Some(expected)` with it, with the message from
    /// `#[should_panic(expected = "...")]` or `#[should_panic = "..."]`.
    fn should_panic(attrs: &[Attribute]) -> Option<Option<LitStr>> {
        let attr = attrs
            .iter()
            .find(|attr| attr.path().is_ident("should_panic"))?;
        let literal = |expr: &Expr| match expr {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Str(text),
                ..
            }) => Some(text.clone()),
            _ => None,
        };
        Some(match &attr.meta {
            Meta::Path(_) => None,
            Meta::NameValue(pair) => literal(&pair.value),
            Meta::List(list) => {
                let mut expected = None;
                // Malformed arguments are rustc's to report; the harness then takes any panic.
                let _ = list.parse_nested_meta(|meta| {
                    if meta.path.is_ident("expected") {
                        expected = literal(&meta.value()?.parse()?);
                    }
                    Ok(())
                });
                expected
            }
        })
    }

    #[cfg(test)]
    mod tests {
        use quote::quote;
        use syn::parse_quote;

        use super::*;

        fn harness(item: TokenStream) -> String {
            super::super::expand_for(TokenStream::new(), item, false, Build::Harness).to_string()
        }

        fn args(args: &[&str]) -> Vec<String> {
            args.iter().map(|arg| arg.to_string()).collect()
        }

        #[test]
        fn the_build_is_read_from_the_compilers_arguments() {
            let rustc = [
                "--crate-name",
                "checked",
                "--edition=2021",
                "tests/checked.rs",
            ];
            assert_eq!(Build::from_args(&args(&rustc)), Build::Harness);
            let cfg_test = [&rustc[..], &["--cfg", "test"]].concat();
            assert_eq!(Build::from_args(&args(&cfg_test)), Build::Harness);
            let libtest = [&rustc[..], &["--test"]].concat();
            assert_eq!(Build::from_args(&args(&libtest)), Build::Libtest);
            assert_eq!(
                Build::from_args(&args(&["--crate-name=checked", "--test"])),
                Build::Libtest
            );
            // Not a compiler (an IDE's macro server, this test binary): as under libtest.
            assert_eq!(
                Build::from_args(&args(&["--format", "json"])),
                Build::Libtest
            );
            assert_eq!(Build::current(), Build::Libtest);
            // rustdoc's command line for a doc test.
            let doc_test = [
                "--edition",
                "2021",
                "--crate-type=bin",
                "-o",
                "/tmp/rustdoctestX/rust_out",
                "-",
            ];
            assert_eq!(Build::from_args(&args(&doc_test)), Build::DocTest);
        }

        #[test]
        fn builtin_test_attributes_are_recognised() {
            let builtin: Vec<Attribute> = vec![
                parse_quote!(#[test]),
                parse_quote!(#[::core::prelude::v1::test]),
                parse_quote!(#[core::prelude::rust_2021::test]),
                parse_quote!(#[::std::prelude::v1::test]),
            ];
            for attr in &builtin {
                assert!(is_builtin_test(attr), "{}", quote!(#attr));
            }
            let foreign: Vec<Attribute> = vec![
                parse_quote!(#[tokio::test]),
                parse_quote!(#[test_log::test]),
                parse_quote!(#[rstest]),
                parse_quote!(#[::test]),
                parse_quote!(#[test(arg)]),
                parse_quote!(#[my::prelude::v1::test]),
            ];
            for attr in &foreign {
                assert!(!is_builtin_test(attr), "{}", quote!(#attr));
            }
        }

        #[test]
        fn without_test_the_function_stays_and_registers() {
            for item in [
                quote!(
                    fn t() {}
                ),
                quote!(
                    #[test]
                    fn t() {}
                ),
                quote!(
                    #[::core::prelude::v1::test]
                    fn t() {}
                ),
            ] {
                let expanded = harness(item);
                assert!(expanded.starts_with("fn t () {"), "{expanded}");
                assert!(!expanded.contains("prelude :: v1 :: test"), "{expanded}");
                assert!(
                    expanded.contains(
                        ":: leakcheck :: __private :: inventory :: submit ! { :: leakcheck :: __private :: Registration { fn_name : \"t\" , module_path : :: core :: module_path ! () , file : :: core :: file ! () , line : :: core :: line ! () , ignored : false , should_panic : :: leakcheck :: __private :: ShouldPanic :: No , body : :: leakcheck :: __private :: Body :: Run (|| :: leakcheck :: __private :: Verdict :: verdict (t ())) , } }"
                    ),
                    "{expanded}"
                );
            }
        }

        #[test]
        fn registration_carries_ignore_and_should_panic() {
            let ignored = harness(quote!(
                #[ignore = "slow"]
                fn t() {}
            ));
            assert!(
                ignored.starts_with("# [ignore = \"slow\"] fn t"),
                "{ignored}"
            );
            assert!(ignored.contains("ignored : true"), "{ignored}");
            for (item, expected) in [
                (
                    quote!(
                        #[should_panic]
                        fn t() {}
                    ),
                    "ShouldPanic :: Yes",
                ),
                (
                    quote!(
                        #[should_panic = "boom"]
                        fn t() {}
                    ),
                    "ShouldPanic :: Expected (\"boom\")",
                ),
                (
                    quote!(
                        #[should_panic(expected = "boom")]
                        fn t() {}
                    ),
                    "ShouldPanic :: Expected (\"boom\")",
                ),
            ] {
                let expanded = harness(item);
                assert!(expanded.contains(expected), "{expanded}");
            }
        }

        #[test]
        fn renamed_crate_is_used_for_the_registration() {
            let expanded = super::super::expand_for(
                quote!(crate = my::leakcheck),
                quote!(
                    fn t() {}
                ),
                false,
                Build::Harness,
            )
            .to_string();
            assert!(
                expanded.contains("my :: leakcheck :: __private :: inventory :: submit !"),
                "{expanded}"
            );
        }

        #[test]
        fn other_test_attributes_register_as_missing() {
            let expanded = harness(quote!(
                #[test_log::test]
                fn t() {}
            ));
            // Moved above the inner `#[leakcheck]`, as a runtime attribute is.
            assert!(
                expanded.starts_with("# [test_log :: test] # [:: leakcheck :: leakcheck ()] fn t"),
                "{expanded}"
            );
            assert!(
                expanded.contains("Body :: Missing { attribute : \"#[test_log::test]\" }"),
                "{expanded}"
            );
            assert!(!expanded.contains("verdict (t ())"), "{expanded}");
        }

        #[test]
        fn async_tests_register_as_missing_until_their_runtime_expands() {
            let expanded = harness(quote!(
                #[tokio::test(flavor = "multi_thread")]
                async fn t() {}
            ));
            assert!(
                expanded.starts_with(
                    "# [tokio :: test (flavor = \"multi_thread\")] # [:: leakcheck :: leakcheck ()] async fn t () { }"
                ),
                "{expanded}"
            );
            assert!(
                expanded.contains("Body :: Missing { attribute : \"#[tokio::test]\" }"),
                "{expanded}"
            );
            // What tokio hands the inner `#[leakcheck]`: its `#[test]` below.
            let generated = harness(quote!(
                #[::core::prelude::v1::test]
                fn t() {
                    let body = async {};
                    return tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap()
                        .block_on(body);
                }
            ));
            assert!(generated.starts_with("fn t () {"), "{generated}");
            assert!(generated.contains("Body :: Run"), "{generated}");
        }

        #[test]
        fn libtest_builds_register_nothing() {
            for item in [
                quote!(
                    fn t() {}
                ),
                quote!(
                    #[tokio::test]
                    async fn t() {}
                ),
            ] {
                let expanded =
                    super::super::expand_for(TokenStream::new(), item, false, Build::Libtest)
                        .to_string();
                assert!(!expanded.contains("inventory"), "{expanded}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    /// The messages of the `compile_error!`s in an expansion.
    fn compile_errors(expanded: &TokenStream) -> Vec<String> {
        let file: syn::File = syn::parse2(expanded.clone()).expect("expansion parses");
        file.items
            .iter()
            .filter_map(|item| match item {
                Item::Macro(m) if m.mac.path.segments.last().unwrap().ident == "compile_error" => {
                    let lit: LitStr = m.mac.parse_body().unwrap();
                    Some(lit.value())
                }
                _ => None,
            })
            .collect()
    }

    fn errors_of(args: TokenStream, item: TokenStream) -> Vec<String> {
        compile_errors(&expand(args, item, false))
    }

    #[test]
    fn errors_keep_the_item_unchanged() {
        let item = quote!(
            #[ignore]
            fn t(x: u32) {
                body()
            }
        );
        let expanded = expand(quote!(foo), item.clone(), false);
        let text = expanded.to_string();
        assert!(text.starts_with(&item.to_string()), "{text}");
        assert_eq!(
            compile_errors(&expanded),
            [
                "unknown leakcheck option `foo`; expected one of: `crate`, `repeat`, `reachable`, `shared_threads`, `allow_bytes`, `allow_allocs`, `max_allocs`, `max_bytes`, `max_peak_bytes`, `ignore`, `threads`, `fds`, `resources`, `threads_linger_ms`, `ignore_threads`, `ignore_fds`",
                "#[leakcheck] test functions cannot take arguments",
            ]
        );
    }

    #[test]
    fn only_functions() {
        for item in [
            quote!(
                struct S;
            ),
            quote!(
                #[derive(Debug)]
                pub enum E {
                    A,
                }
            ),
            quote!(impl S {}),
            quote!(
                const C: u8 = 0;
            ),
            quote!(
                macro_rules! m {
                    () => {};
                }
            ),
        ] {
            assert_eq!(
                errors_of(TokenStream::new(), item),
                ["#[leakcheck] can only be applied to a function or an inline module"]
            );
        }
        assert_eq!(
            errors_of(TokenStream::new(), quote!(mod elsewhere;)),
            ["#[leakcheck] on a module needs its items inline (`mod tests { ... }`), not in another file"]
        );
    }

    #[test]
    fn option_and_item_errors_together() {
        assert_eq!(
            errors_of(quote!(crate = 1, crate = x), quote!(async fn t() {})),
            [
                "expected the path of the leakcheck crate, e.g. `crate = ::leakcheck` or `crate = \"::leakcheck\"`",
                "duplicate leakcheck option `crate`",
                "async tests need a runtime attribute such as `#[tokio::test]`; add it below or above #[leakcheck]",
            ]
        );
    }

    #[test]
    fn test_attribute_added_only_when_missing() {
        let count = |item: TokenStream| {
            let file: syn::File = syn::parse2(expand(TokenStream::new(), item, false)).unwrap();
            let Item::Fn(func) = &file.items[0] else {
                panic!()
            };
            func.attrs.iter().filter(|a| test_attr::is_test(a)).count()
        };
        assert_eq!(
            count(quote!(
                fn t() {}
            )),
            1
        );
        assert_eq!(
            count(quote!(
                #[test]
                fn t() {}
            )),
            1
        );
        assert_eq!(
            count(quote!(
                #[tokio::test]
                async fn t() {}
            )),
            1
        );
        assert_eq!(
            count(quote!(
                #[::core::prelude::v1::test]
                fn t() {}
            )),
            1
        );
    }

    #[test]
    fn impl_trait_return_types_get_no_closure_annotation() {
        assert_eq!(closure_output(&parse_quote!()).to_string(), "-> ()");
        assert_eq!(
            closure_output(&parse_quote!(-> Result<(), String>)).to_string(),
            "-> Result < () , String >"
        );
        assert!(closure_output(&parse_quote!(-> impl Termination)).is_empty());
        assert!(closure_output(&parse_quote!(-> Result<(), Box<impl Error>>)).is_empty());
    }

    #[test]
    fn raw_identifiers_are_named_without_r_hash() {
        let expanded = expand(
            TokenStream::new(),
            quote!(
                fn r#match() {}
            ),
            false,
        )
        .to_string();
        assert!(expanded.contains("fn_name : \"match\""), "{expanded}");
    }
}
