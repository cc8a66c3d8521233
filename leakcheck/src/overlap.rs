//! Which checks were open at the same time: the tests whose work a shared thread (a pool or an
//! executor one test started and the others used) may have run while a check was open, named
//! in that check's report.
//!
//! The list is under a spin lock that a forked child can take back: a thread that held it at
//! the fork does not exist in the child, and a child that runs a check would wait for it
//! forever (the fork tests caught one such hang in about 500 forks).
#![forbid(unsafe_code)]

use crate::raw::spin::SpinLock;

/// Names kept per check; a longer list ends in "and N more".
const KEPT_NAMES: usize = 8;

struct Open {
    scope: u32,
    subject: String,
    /// Subjects of the checks open at some moment while this one was, first seen first.
    overlapped: Vec<String>,
    /// How many overlapped beyond [`KEPT_NAMES`].
    more: usize,
}

impl Open {
    fn saw(&mut self, subject: &str) {
        if self.overlapped.iter().any(|seen| seen == subject) {
            return;
        }
        if self.overlapped.len() < KEPT_NAMES {
            self.overlapped.push(subject.to_owned());
        } else {
            self.more += 1;
        }
    }
}

static OPEN: SpinLock<Vec<Open>> = SpinLock::new(Vec::new());

/// The checks that were open at some moment while one was.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Overlapped {
    pub(crate) subjects: Vec<String>,
    pub(crate) more: usize,
}

/// A check's entry in the list of open checks, taken off when dropped. Allocates: make it
/// where the check's scope does not record.
pub(crate) struct Registration {
    scope: u32,
}

impl Registration {
    /// Lists the check of `scope`, named `subject`, as open, and each open check as
    /// overlapping it and it them.
    pub(crate) fn open(scope: u32, subject: &str) -> Registration {
        let mut open = OPEN.lock();
        let mut entry = Open {
            scope,
            subject: subject.to_owned(),
            overlapped: Vec::new(),
            more: 0,
        };
        for other in open.iter_mut() {
            other.saw(subject);
            entry.saw(&other.subject);
        }
        open.push(entry);
        Registration { scope }
    }

    /// The checks that were open at some moment while this one was, up to now; takes the
    /// check off the list.
    pub(crate) fn close(self) -> Overlapped {
        let mut open = OPEN.lock();
        let found = open
            .iter()
            .position(|entry| entry.scope == self.scope)
            .map(|index| open.swap_remove(index));
        drop(open);
        core::mem::forget(self);
        found.map_or_else(Overlapped::default, |entry| Overlapped {
            subjects: entry.overlapped,
            more: entry.more,
        })
    }
}

/// In a freshly forked child: the list may have been half-changed by a thread the child does
/// not have. It is abandoned (not freed: its memory may be inconsistent); the child's checks
/// start a new one.
pub(crate) fn forked() {
    if OPEN.is_locked() {
        OPEN.force_unlock();
    }
    core::mem::forget(core::mem::take(&mut *OPEN.lock()));
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = OPEN.lock();
        open.retain(|entry| entry.scope != self.scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Scope ids no real scope has (real ones are at least 512).
    const FIRST: u32 = 7;
    const SECOND: u32 = 11;
    const THIRD: u32 = 13;

    #[test]
    fn a_check_names_the_checks_open_at_its_start_and_those_opened_after() {
        let first = Registration::open(FIRST, "overlap::first");
        let second = Registration::open(SECOND, "overlap::second");
        let second_saw = second.close();
        let third = Registration::open(THIRD, "overlap::third");
        let first_saw = first.close();
        drop(third);
        let named = |seen: &Overlapped, name: &str| seen.subjects.iter().any(|s| s == name);
        assert!(named(&first_saw, "overlap::second"), "{first_saw:?}");
        assert!(named(&first_saw, "overlap::third"), "{first_saw:?}");
        assert!(named(&second_saw, "overlap::first"), "{second_saw:?}");
        assert!(!named(&second_saw, "overlap::third"), "{second_saw:?}");
    }
}
