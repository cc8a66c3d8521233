//! Checks that a function can be wrapped, reporting every problem at once.

use syn::{Error, ItemFn};

use crate::errors::Errors;
use crate::test_attr;

/// Checks `func` (the function `#[leakcheck]` is on) and returns every problem found.
pub(crate) fn check_fn(func: &ItemFn) -> syn::Result<()> {
    let mut errors = Errors::default();
    let sig = &func.sig;

    if !sig.inputs.is_empty() && !test_attr::supplies_arguments(&func.attrs) {
        // `new_spanned`, not `inputs.span()`: on stable a span cannot be joined, and only
        // `new_spanned` underlines from the first parameter to the last.
        let message = if test_attr::generates_arguments(&func.attrs) {
            "#[leakcheck] test functions cannot take arguments; put #[quickcheck] above \
             #[leakcheck], so that #[leakcheck] checks the test it generates"
        } else {
            "#[leakcheck] test functions cannot take arguments"
        };
        errors.push(Error::new_spanned(&sig.inputs, message));
    }

    if let Some(asyncness) = &sig.asyncness {
        if test_attr::find_test(&func.attrs).is_none() {
            errors.push(Error::new(
                asyncness.span,
                "async tests need a runtime attribute such as `#[tokio::test]`; add it below or above #[leakcheck]",
            ));
        }
    }

    if let Some(again) = test_attr::find_leakcheck(&func.attrs) {
        errors.push(Error::new_spanned(
            again,
            "duplicate #[leakcheck] attribute",
        ));
    }

    errors.finish()
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn messages(func: ItemFn) -> Vec<String> {
        match check_fn(&func) {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn plain_tests_pass() {
        assert!(messages(parse_quote!(
            fn t() {}
        ))
        .is_empty());
        assert!(messages(parse_quote!(
            #[should_panic]
            pub fn t() -> () {}
        ))
        .is_empty());
        assert!(messages(parse_quote!(
            fn t() -> Result<(), String> {
                Ok(())
            }
        ))
        .is_empty());
        assert!(messages(parse_quote!(
            #[tokio::test]
            async fn t() {}
        ))
        .is_empty());
    }

    #[test]
    fn arguments_are_rejected() {
        assert_eq!(
            messages(parse_quote!(
                fn t(x: u32, y: u32) {}
            )),
            ["#[leakcheck] test functions cannot take arguments"]
        );
    }

    #[test]
    fn quickcheck_below_names_the_order_that_works() {
        assert_eq!(
            messages(parse_quote!(
                #[quickcheck]
                fn t(x: u32) -> bool {
                    true
                }
            )),
            [
                "#[leakcheck] test functions cannot take arguments; put #[quickcheck] above \
              #[leakcheck], so that #[leakcheck] checks the test it generates"
            ]
        );
    }

    #[test]
    fn rstest_may_supply_arguments() {
        assert!(messages(parse_quote!(
            #[rstest]
            fn t(#[case] x: u32) {}
        ))
        .is_empty());
    }

    #[test]
    fn async_needs_a_runtime_attribute() {
        assert_eq!(
            messages(parse_quote!(async fn t() {})),
            ["async tests need a runtime attribute such as `#[tokio::test]`; add it below or above #[leakcheck]"]
        );
    }

    #[test]
    fn leakcheck_twice() {
        assert_eq!(
            messages(parse_quote!(
                #[leakcheck]
                fn t() {}
            )),
            ["duplicate #[leakcheck] attribute"]
        );
    }

    #[test]
    fn all_problems_at_once() {
        assert_eq!(
            messages(parse_quote!(
                #[leakcheck::leakcheck]
                async fn t(x: u32) {}
            ))
            .len(),
            3
        );
    }
}
