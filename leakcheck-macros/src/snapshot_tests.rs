//! Snapshots of whole expansions, formatted with prettyplease. Review a changed snapshot as the
//! code users get: `cargo insta review`, or `INSTA_UPDATE=always cargo test` and read the diff.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand::expand;

/// `#[leakcheck(args)] item`, expanded and formatted.
fn expanded(args: TokenStream, item: TokenStream) -> String {
    let tokens = expand(args, item, false);
    let file = syn::parse2(tokens.clone())
        .unwrap_or_else(|error| panic!("expansion does not parse: {error}\n{tokens}"));
    prettyplease::unparse(&file)
}

#[test]
fn sync() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            /// Checks that nothing leaks.
            fn no_leak() {
                let v = vec![1, 2, 3];
                assert_eq!(v.len(), 3);
            }
        }
    ));
}

#[test]
fn result_return() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            pub fn parses() -> Result<(), std::num::ParseIntError> {
                let n: u32 = "42".parse()?;
                assert_eq!(n, 42);
                Ok(())
            }
        }
    ));
}

#[test]
fn should_panic() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[should_panic(expected = "boom")]
            fn panics() {
                panic!("boom");
            }
        }
    ));
}

#[test]
fn ignore() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[ignore = "slow"]
            fn slow() {}
        }
    ));
}

#[test]
fn already_has_test() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[test]
            fn with_test() {}
        }
    ));
}

#[test]
fn async_with_tokio() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[tokio::test(flavor = "multi_thread")]
            async fn async_no_leak() -> Result<(), Box<dyn std::error::Error>> {
                tokio::task::yield_now().await;
                Ok(())
            }
        }
    ));
}

#[test]
fn below_tokio() {
    // What `#[tokio::test] #[leakcheck] async fn below_tokio() {}` hands to #[leakcheck]: tokio
    // has run first and left a sync function marked `#[::core::prelude::v1::test]`.
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[::core::prelude::v1::test]
            fn below_tokio() {
                let body = async {};
                return tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("Failed building the Runtime")
                    .block_on(body);
            }
        }
    ));
}

#[test]
fn crate_rename() {
    insta::assert_snapshot!(expanded(
        quote!(crate = my::reexported::leakcheck),
        quote! {
            fn renamed() {}
        }
    ));
}

#[test]
fn crate_rename_string() {
    insta::assert_snapshot!(expanded(
        quote!(crate = "::lc"),
        quote! {
            fn renamed() {}
        }
    ));
}

#[test]
fn impl_trait_return() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            fn terminates() -> impl std::process::Termination {}
        }
    ));
}

#[test]
fn errors() {
    insta::assert_snapshot!(expanded(
        quote!(foo, crate = 1),
        quote! {
            fn takes(x: u32) {}
        }
    ));
}

#[test]
fn with_options() {
    insta::assert_snapshot!(expanded(
        quote!(
            repeat = 3,
            reachable = "fail",
            allow_bytes = 64,
            ignore = "my_crate::cache"
        ),
        quote! {
            fn grows() {}
        }
    ));
}

#[test]
fn module() {
    insta::assert_snapshot!(expanded(
        quote!(max_allocs = 0),
        quote! {
            mod tests {
                use super::*;
                fn helper() {}
                #[test]
                fn a() {}
                #[tokio::test]
                async fn b() {}
                mod nested {
                    #[test]
                    fn c() {}
                }
            }
        }
    ));
}

#[test]
fn inner_attribute_in_the_body() {
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[cfg(test)]
            fn uses_deprecated() {
                #![expect(deprecated)]
                let _ = std::env::home_dir();
            }
        }
    ));
}

#[test]
fn above_test_log_on_a_sync_fn() {
    // test-log installs its subscriber at the start of the body it is given: with the
    // attribute moved above, that is inside the check.
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[test_log::test]
            fn logs() {
                tracing::info!("checked");
            }
        }
    ));
}

#[test]
fn above_serial_test() {
    // serial_test makes its table of keys on first use: with the attribute moved above, that
    // is inside the check too.
    insta::assert_snapshot!(expanded(
        quote!(),
        quote! {
            #[serial(key)]
            #[test]
            fn takes_a_key() {}
        }
    ));
}
