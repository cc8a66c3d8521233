//! Collects every error of one expansion, so the user sees them all at once.

use syn::Error;

/// Errors gathered so far, combined into one `syn::Error` that renders as several
/// `compile_error!`s.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Ok(())` when nothing was pushed.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
