//! The policy callback's answer.

/// What the policy callback decides about one call. A verdict can only
/// tighten what the supervisor decided: `Allow` never lets through a call
/// that was already denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Let the supervisor's decision stand.
    Allow,
    /// As `Allow`, and log the call at info level (target `unotify::audit`).
    Audit,
    /// Fail the call with `EPERM`.
    Deny,
    /// Fail the call with this errno.
    DenyWith(i32),
}

impl Verdict {
    /// Lower-case name, for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Audit => "audit",
            Verdict::Deny | Verdict::DenyWith(_) => "deny",
        }
    }

    /// The errno a denying verdict answers with.
    pub fn errno(self) -> Option<i32> {
        match self {
            Verdict::Allow | Verdict::Audit => None,
            Verdict::Deny => Some(libc::EPERM),
            Verdict::DenyWith(e) => Some(e),
        }
    }
}
