//! Building the classic-BPF seccomp program.
//!
//! A [`FilterBuilder`] collects per-syscall rules (notify, deny with an errno,
//! or a conditional rule on the arguments) and [`FilterBuilder::build`] turns
//! them into a [`Filter`]: a list of `libc::sock_filter` instructions ready for
//! `seccomp(SECCOMP_SET_MODE_FILTER, ...)`. Every system call without a rule is
//! allowed.
//!
//! # Program layout
//!
//! ```text
//!  0: ld  [4]                    ; A = seccomp_data.arch
//!  1: jeq #AUDIT_ARCH, 1, 0      ; the builder's architecture?
//!  2: ret #KILL_PROCESS          ; no: foreign ABI
//!  3: ld  [0]                    ; A = seccomp_data.nr
//!  4: jge #X32_SYSCALL_BIT, 0, 1 ; x86_64 only: an x32 call?
//!  5: ret #KILL_PROCESS          ; x86_64 only: yes, kill
//!  6: decision tree over A
//! ```
//!
//! The decision tree works on *intervals*: the rules, sorted by number, split
//! the 32-bit number space into runs `[start, next start)` that share one
//! outcome (runs without a rule are `Allow`; neighbouring runs with the same
//! unconditional action are merged). The tree is a balanced binary search
//! over the interval starts: each inner node is one `jge #start` whose false
//! branch is the lower half, laid out directly after it, and whose true branch
//! is the upper half, laid out after the lower half. A leaf is reached only
//! for numbers inside its interval, so an unconditional leaf is a single `ret`
//! and no `jeq` is needed (an interval holding one syscall is `[nr, nr + 1)`).
//! A lookup therefore executes about `log2(intervals)` jumps.
//!
//! BPF conditional jumps have 8-bit offsets. When the lower half of a node is
//! longer than 255 instructions, the node becomes `jge #start, 0, 1` followed
//! by a `ja` (32-bit offset) trampoline over the lower half.
//!
//! A conditional rule's leaf (its interval is always exactly one number) loads
//! the argument words it needs from `seccomp_data.args` (offset `16 + 8 * i`;
//! both supported architectures are little-endian, so the low word is at that
//! offset and the high word 4 bytes later), masks them with `and`, compares
//! them with `jeq`, and returns the action of the first case whose checks all
//! match, or the rule's `otherwise` action. Every path through a leaf ends in
//! a `ret`, so clobbering `A` (which held the syscall number) is harmless.
//! Failed comparisons jump to the next case; if that is more than 255
//! instructions away a `ja` trampoline is used there too.

use std::collections::BTreeMap;

use libc::sock_filter;

use crate::arch::{Arch, X32_SYSCALL_BIT};
use crate::{syscalls, Error, Result};

/// `io_uring_setup`: the operations of a ring run in the kernel without
/// passing the filter (opens, connects, sends), so wherever a trapped call
/// guards something the ring is refused (`EPERM`).
pub(crate) const IO_URING: &[&str] = &["io_uring_setup"];

/// The kernel's limit on the number of instructions in one BPF program.
pub const BPF_MAXINSNS: usize = 4096;

/// Offset of `seccomp_data.nr`.
const OFFSET_NR: u32 = 0;
/// Offset of `seccomp_data.arch`.
const OFFSET_ARCH: u32 = 4;
/// Offset of `seccomp_data.args[0]`.
const OFFSET_ARGS: u32 = 16;
/// Number of syscall arguments in `seccomp_data.args`.
const NUM_ARGS: u8 = 6;
/// `errno` as a filter's `SECCOMP_RET_ERRNO` data, if it is a valid errno.
fn filter_errno(errno: i32) -> Result<u16> {
    crate::action::Errno::new(errno)
        .and_then(|e| u16::try_from(e.get()).ok())
        .ok_or(Error::InvalidErrno { errno })
}

const OP_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const OP_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const OP_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const OP_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const OP_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const OP_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

fn ret(action: SyscallAction) -> sock_filter {
    stmt(OP_RET_K, action.seccomp_ret())
}

/// Converts a forward distance to a `ja` offset.
fn ja(distance: usize) -> sock_filter {
    // Programs longer than u32::MAX instructions cannot be built in memory in
    // practice; saturate rather than wrap (the size check rejects them anyway).
    stmt(OP_JA, u32::try_from(distance).unwrap_or(u32::MAX))
}

/// What the filter does with a system call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyscallAction {
    /// Let the call run (`SECCOMP_RET_ALLOW`).
    Allow,
    /// Stop the caller and notify the supervisor (`SECCOMP_RET_USER_NOTIF`).
    Notify,
    /// Fail the call with this errno (`SECCOMP_RET_ERRNO`); must be 1..=4095.
    Errno(u16),
    /// Kill the whole process (`SECCOMP_RET_KILL_PROCESS`).
    KillProcess,
}

impl SyscallAction {
    /// The `SECCOMP_RET_*` value the filter returns for this action.
    pub const fn seccomp_ret(self) -> u32 {
        match self {
            SyscallAction::Allow => libc::SECCOMP_RET_ALLOW,
            SyscallAction::Notify => libc::SECCOMP_RET_USER_NOTIF,
            SyscallAction::Errno(errno) => {
                libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
            }
            SyscallAction::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        }
    }

    fn validate(self) -> Result<()> {
        match self {
            SyscallAction::Errno(errno) => filter_errno(i32::from(errno)).map(drop),
            _ => Ok(()),
        }
    }
}

/// One condition on a system call argument: matches when
/// `(args[index] & mask) == value`, compared as full 64-bit values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ArgCheck {
    /// The argument, `0..6`.
    pub index: u8,
    /// The bits of the argument that are compared.
    pub mask: u64,
    /// The value the masked argument must equal; must not have bits outside
    /// `mask`.
    pub value: u64,
}

impl ArgCheck {
    /// A check that `(args[index] & mask) == value`.
    pub const fn new(index: u8, mask: u64, value: u64) -> Self {
        ArgCheck { index, mask, value }
    }

    /// A check that `args[index] == value` (all 64 bits).
    pub const fn equals(index: u8, value: u64) -> Self {
        ArgCheck {
            index,
            mask: u64::MAX,
            value,
        }
    }

    /// Whether the check holds for these argument values.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        args.get(usize::from(self.index))
            .is_some_and(|&arg| arg & self.mask == self.value)
    }

    fn validate(&self) -> std::result::Result<(), &'static str> {
        if self.index >= NUM_ARGS {
            return Err("argument index must be below 6");
        }
        if self.value & !self.mask != 0 {
            return Err("argument check can never match: value has bits outside mask");
        }
        Ok(())
    }
}

/// One case of a conditional rule: all checks must match for the action to
/// apply.
type Case = (Vec<ArgCheck>, SyscallAction);

/// The rule for one system call number.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// The same action whatever the arguments.
    Fixed(SyscallAction),
    /// The first matching case decides, else `otherwise`.
    Conditional {
        cases: Vec<Case>,
        otherwise: SyscallAction,
    },
}

impl Rule {
    fn may(&self, action: SyscallAction) -> bool {
        match self {
            Rule::Fixed(a) => *a == action,
            Rule::Conditional { cases, otherwise } => {
                *otherwise == action || cases.iter().any(|(_, a)| *a == action)
            }
        }
    }
}

/// Collects per-syscall rules and builds a [`Filter`].
///
/// Every system call without a rule is allowed.
///
/// ```
/// use unotify::arch::Arch;
/// use unotify::filter::FilterBuilder;
/// use unotify::syscalls;
///
/// let arch = Arch::native();
/// let mut builder = FilterBuilder::new(arch);
/// builder
///     .notify(syscalls::number(arch, "openat").unwrap())?
///     .deny(syscalls::number(arch, "mkdirat").unwrap(), libc::EPERM)?;
/// let filter = builder.build()?;
/// assert!(!filter.is_empty());
/// # Ok::<(), unotify::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FilterBuilder {
    arch: Arch,
    rules: BTreeMap<u32, Rule>,
}

impl FilterBuilder {
    /// An empty builder for `arch`: everything is allowed.
    pub fn new(arch: Arch) -> Self {
        FilterBuilder {
            arch,
            rules: BTreeMap::new(),
        }
    }

    /// The architecture the filter is built for.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Sends system call `nr` to the supervisor.
    ///
    /// # Errors
    ///
    /// [`Error::ConflictingRule`] if `nr` already has a different rule, or is
    /// an x32 number on x86_64 (those are always killed).
    pub fn notify(&mut self, nr: u32) -> Result<&mut Self> {
        // Refusals put first ([`refuse_first`](Self::refuse_first)) stay
        // first: what they leave is notified instead of allowed.
        if let Some(Rule::Conditional { cases, otherwise }) = self.rules.get_mut(&nr) {
            let refusals_only = cases
                .iter()
                .all(|(_, a)| matches!(a, SyscallAction::Errno(_) | SyscallAction::KillProcess));
            if refusals_only && matches!(*otherwise, SyscallAction::Allow | SyscallAction::Notify) {
                *otherwise = SyscallAction::Notify;
                return Ok(self);
            }
        }
        self.insert(nr, Rule::Fixed(SyscallAction::Notify))
    }

    /// Fails system call `nr` with `errno`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidErrno`] unless `errno` is in `1..=4095`;
    /// [`Error::ConflictingRule`] if `nr` already has a different rule, or is
    /// an x32 number on x86_64.
    pub fn deny(&mut self, nr: u32, errno: i32) -> Result<&mut Self> {
        let errno = filter_errno(errno)?;
        self.insert(nr, Rule::Fixed(SyscallAction::Errno(errno)))
    }

    /// Conditional rule: the first matching check (all ArgChecks of one entry
    /// must match) decides, else `otherwise`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidErrno`] for an `Errno` action outside `1..=4095`;
    /// [`Error::InvalidConfig`] for an argument index of 6 or more or a check
    /// whose `value` has bits outside its `mask` (it could never match);
    /// [`Error::ConflictingRule`] if `nr` already has a different rule, or is
    /// an x32 number on x86_64.
    pub fn rule(
        &mut self,
        nr: u32,
        cases: Vec<(Vec<ArgCheck>, SyscallAction)>,
        otherwise: SyscallAction,
    ) -> Result<&mut Self> {
        otherwise.validate()?;
        for (checks, action) in &cases {
            action.validate()?;
            for check in checks {
                check.validate().map_err(|reason| Error::InvalidConfig {
                    message: format!("rule for `{}`, {check:?}: {reason}", self.display_name(nr)),
                })?;
            }
        }
        let rule = if cases.is_empty() {
            Rule::Fixed(otherwise)
        } else {
            Rule::Conditional { cases, otherwise }
        };
        self.insert(nr, rule)
    }

    /// Puts a case in front of the rule `nr` has (none: allowed): when all
    /// `checks` match (an empty list always does), the call fails with
    /// `errno` before anything else is decided. A call already refused
    /// whatever its arguments keeps its errno. For refusals that must win
    /// over every handler. A later [`notify`](Self::notify) of `nr` keeps
    /// the refusals first and notifies the rest; a later conditional
    /// [`rule`](Self::rule) conflicts (put refusals after those).
    ///
    /// # Errors
    ///
    /// As [`rule`](Self::rule).
    pub fn refuse_first(
        &mut self,
        nr: u32,
        checks: Vec<ArgCheck>,
        errno: i32,
    ) -> Result<&mut Self> {
        let action = SyscallAction::Errno(filter_errno(errno)?);
        for check in &checks {
            check.validate().map_err(|reason| Error::InvalidConfig {
                message: format!("rule for `{}`, {check:?}: {reason}", self.display_name(nr)),
            })?;
        }
        let case = (checks, action);
        let rule = match self.rules.get(&nr).cloned() {
            None => Rule::Conditional {
                cases: vec![case],
                otherwise: SyscallAction::Allow,
            },
            Some(Rule::Fixed(a @ (SyscallAction::Errno(_) | SyscallAction::KillProcess))) => {
                Rule::Fixed(a)
            }
            Some(Rule::Fixed(otherwise)) => Rule::Conditional {
                cases: vec![case],
                otherwise,
            },
            Some(Rule::Conditional {
                mut cases,
                otherwise,
            }) => {
                cases.insert(0, case);
                Rule::Conditional { cases, otherwise }
            }
        };
        self.rules.remove(&nr);
        self.insert(nr, rule)
    }

    /// Notifies the calls of `nr` whose arguments match all `checks`, after
    /// the cases the rule has (refusals put first stay first); calls already
    /// notified or refused whatever their arguments are left as they are.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a check that could never match or an
    /// argument index of 6 or more; [`Error::ConflictingRule`] for an x32
    /// number on x86_64.
    pub fn notify_if(&mut self, nr: u32, checks: Vec<ArgCheck>) -> Result<&mut Self> {
        for check in &checks {
            check.validate().map_err(|reason| Error::InvalidConfig {
                message: format!("rule for `{}`, {check:?}: {reason}", self.display_name(nr)),
            })?;
        }
        let case = (checks, SyscallAction::Notify);
        match self.rules.get_mut(&nr) {
            None => {
                self.insert(
                    nr,
                    Rule::Conditional {
                        cases: vec![case],
                        otherwise: SyscallAction::Allow,
                    },
                )?;
            }
            Some(Rule::Fixed(_)) => {}
            Some(Rule::Conditional { otherwise, .. }) if *otherwise == SyscallAction::Notify => {}
            Some(Rule::Conditional { cases, .. }) => {
                if !cases.contains(&case) {
                    cases.push(case);
                }
            }
        }
        Ok(self)
    }

    /// Whether system call `nr` may be sent to the supervisor: it is notified
    /// unconditionally, or by some case (or the fallback) of a conditional rule.
    pub fn is_notified(&self, nr: u32) -> bool {
        self.rules
            .get(&nr)
            .is_some_and(|r| r.may(SyscallAction::Notify))
    }

    /// Denies each call of `names` (known on this architecture) with
    /// `errno`, unless a rule already decides it (denied, or trapped).
    pub(crate) fn refuse_undecided(&mut self, names: &[&str], errno: i32) -> Result<()> {
        for name in names {
            if let Some(nr) = syscalls::number(self.arch(), name) {
                if self.is_denied(nr).is_none() && !self.is_notified(nr) {
                    self.deny(nr, errno)?;
                }
            }
        }
        Ok(())
    }

    /// Fails every call of `nr` with `errno`, ahead of any handler (a
    /// trapped call is refused first; an untrapped one denied), unless it
    /// is denied whatever its arguments already.
    pub(crate) fn refuse_always(&mut self, nr: u32, errno: i32) -> Result<()> {
        if self.is_notified(nr) {
            self.refuse_first(nr, Vec::new(), errno)?;
        } else if self.is_denied(nr).is_none() {
            self.deny(nr, errno)?;
        }
        Ok(())
    }

    /// The errno system call `nr` is unconditionally denied with, if any.
    pub fn is_denied(&self, nr: u32) -> Option<i32> {
        match self.rules.get(&nr) {
            Some(Rule::Fixed(SyscallAction::Errno(e))) => Some(i32::from(*e)),
            _ => None,
        }
    }

    /// Generates the BPF program.
    ///
    /// # Errors
    ///
    /// [`Error::FilterTooLarge`] if the program would exceed
    /// [`BPF_MAXINSNS`] instructions.
    pub fn build(&self) -> Result<Filter> {
        let mut insns = vec![
            stmt(OP_LD_W_ABS, OFFSET_ARCH),
            jump(OP_JEQ_K, self.arch.audit_arch(), 1, 0),
            ret(SyscallAction::KillProcess),
            stmt(OP_LD_W_ABS, OFFSET_NR),
        ];
        if self.arch == Arch::X86_64 {
            insns.push(jump(OP_JGE_K, X32_SYSCALL_BIT, 0, 1));
            insns.push(ret(SyscallAction::KillProcess));
        }
        let intervals = self.intervals();
        emit_tree(&intervals, &mut insns);
        if insns.len() > BPF_MAXINSNS {
            return Err(Error::FilterTooLarge {
                len: insns.len(),
                max: BPF_MAXINSNS,
            });
        }
        Ok(Filter { insns })
    }

    fn display_name(&self, nr: u32) -> String {
        syscalls::name(self.arch, nr).map_or_else(|| nr.to_string(), str::to_owned)
    }

    fn insert(&mut self, nr: u32, rule: Rule) -> Result<&mut Self> {
        if self.arch == Arch::X86_64 && nr >= X32_SYSCALL_BIT {
            return Err(Error::ConflictingRule {
                syscall: self.display_name(nr),
                reason: "x32 system call numbers are always killed by the filter",
            });
        }
        match self.rules.get(&nr) {
            None => {
                self.rules.insert(nr, rule);
            }
            Some(existing) if *existing == rule => {}
            Some(existing) => {
                let reason = match (existing, &rule) {
                    (Rule::Fixed(SyscallAction::Notify), Rule::Fixed(SyscallAction::Errno(_)))
                    | (Rule::Fixed(SyscallAction::Errno(_)), Rule::Fixed(SyscallAction::Notify)) => {
                        "the system call is both notified and denied"
                    }
                    (
                        Rule::Fixed(SyscallAction::Errno(_)),
                        Rule::Fixed(SyscallAction::Errno(_)),
                    ) => "the system call is denied with two different errnos",
                    _ => "the system call already has a different rule",
                };
                return Err(Error::ConflictingRule {
                    syscall: self.display_name(nr),
                    reason,
                });
            }
        }
        Ok(self)
    }

    /// Splits the number space into intervals, sorted by start; the first
    /// starts at 0 and each one ends where the next starts.
    fn intervals<'a>(&'a self) -> Vec<(u32, Leaf<'a>)> {
        let mut out: Vec<(u32, Leaf<'a>)> = Vec::with_capacity(2 * self.rules.len() + 1);
        let push =
            |out: &mut Vec<(u32, Leaf<'a>)>, start: u32, leaf: Leaf<'a>| match (out.last(), leaf) {
                (Some((_, Leaf::Fixed(prev))), Leaf::Fixed(action)) if *prev == action => {}
                _ => out.push((start, leaf)),
            };
        // The first number not yet covered; `None` once u32::MAX is covered.
        let mut next = Some(0u32);
        for (&nr, rule) in &self.rules {
            if let Some(gap) = next.filter(|&gap| gap < nr) {
                push(&mut out, gap, Leaf::Fixed(SyscallAction::Allow));
            }
            let leaf = match rule {
                Rule::Fixed(action) => Leaf::Fixed(*action),
                Rule::Conditional { cases, otherwise } => Leaf::Conditional(cases, *otherwise),
            };
            push(&mut out, nr, leaf);
            next = nr.checked_add(1);
        }
        if let Some(gap) = next {
            push(&mut out, gap, Leaf::Fixed(SyscallAction::Allow));
        }
        out
    }
}

/// The outcome for one interval of syscall numbers.
#[derive(Clone, Copy, Debug)]
enum Leaf<'a> {
    Fixed(SyscallAction),
    Conditional(&'a [Case], SyscallAction),
}

/// Appends the decision tree for `intervals` (non-empty, sorted) to `out`.
fn emit_tree(intervals: &[(u32, Leaf<'_>)], out: &mut Vec<sock_filter>) {
    match intervals {
        [] => out.push(ret(SyscallAction::Allow)),
        [(_, leaf)] => emit_leaf(*leaf, out),
        _ => {
            let (low, high) = intervals.split_at(intervals.len() / 2);
            let pivot = high[0].0;
            let mut low_code = Vec::new();
            emit_tree(low, &mut low_code);
            match u8::try_from(low_code.len()) {
                Ok(skip) => out.push(jump(OP_JGE_K, pivot, skip, 0)),
                Err(_) => {
                    out.push(jump(OP_JGE_K, pivot, 0, 1));
                    out.push(ja(low_code.len()));
                }
            }
            out.append(&mut low_code);
            emit_tree(high, out);
        }
    }
}

/// Appends the code for one leaf to `out`.
fn emit_leaf(leaf: Leaf<'_>, out: &mut Vec<sock_filter>) {
    let (cases, otherwise) = match leaf {
        Leaf::Fixed(action) => {
            out.push(ret(action));
            return;
        }
        Leaf::Conditional(cases, otherwise) => (cases, otherwise),
    };
    // A case whose checks are all trivially true ends the list.
    let live = cases
        .iter()
        .position(|(checks, _)| checks.iter().all(|c| c.mask == 0))
        .map_or(cases, |i| &cases[..=i]);
    let unconditional = live
        .last()
        .is_some_and(|(checks, _)| checks.iter().all(|c| c.mask == 0));

    // Built back to front, so that when an instruction is emitted,
    // `rev.len()` is the number of instructions following it.
    let mut rev = Vec::new();
    if !unconditional {
        rev.push(ret(otherwise));
    }
    for (checks, action) in live.iter().rev() {
        // Everything from the next case on: where failed comparisons go.
        let next_case = rev.len();
        rev.push(ret(*action));
        for check in checks.iter().rev() {
            let base = OFFSET_ARGS + 8 * u32::from(check.index);
            let words = [
                (
                    base + 4,
                    (check.mask >> 32) as u32,
                    (check.value >> 32) as u32,
                ),
                (base, check.mask as u32, check.value as u32),
            ];
            for (offset, mask, value) in words {
                if mask == 0 {
                    // Validation guarantees `value == 0`: always true.
                    continue;
                }
                let distance = rev.len() - next_case;
                match u8::try_from(distance) {
                    Ok(skip) => rev.push(jump(OP_JEQ_K, value, 0, skip)),
                    Err(_) => {
                        rev.push(ja(distance));
                        rev.push(jump(OP_JEQ_K, value, 1, 0));
                    }
                }
                if mask != u32::MAX {
                    rev.push(stmt(OP_AND_K, mask));
                }
                rev.push(stmt(OP_LD_W_ABS, offset));
            }
        }
    }
    out.extend(rev.into_iter().rev());
}

/// Whether `insns` can make the kernel send a notification to the
/// listener: some `ret` gives `SECCOMP_RET_USER_NOTIF`, or returns the
/// accumulator (not known here, so taken as yes).
pub(crate) fn may_notify(insns: &[sock_filter]) -> bool {
    const OP_RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
    insns.iter().any(|i| {
        i.code == OP_RET_A
            || (i.code == OP_RET_K
                && i.k & libc::SECCOMP_RET_ACTION_FULL == libc::SECCOMP_RET_USER_NOTIF)
    })
}

/// A generated seccomp BPF program.
#[derive(Clone, Debug)]
pub struct Filter {
    insns: Vec<sock_filter>,
}

impl Filter {
    /// The program's instructions.
    pub fn instructions(&self) -> &[sock_filter] {
        &self.insns
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether the program has no instructions (never true for a built filter).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// A `sock_fprog` pointing at the instructions, for passing to
    /// `seccomp(SECCOMP_SET_MODE_FILTER, ...)` or `prctl(PR_SET_SECCOMP, ...)`.
    ///
    /// The pointer borrows from `self`: the filter must outlive every use of
    /// the returned value. The kernel only reads through it.
    pub fn as_sock_fprog(&self) -> libc::sock_fprog {
        libc::sock_fprog {
            // `build` guarantees len <= BPF_MAXINSNS < u16::MAX.
            len: u16::try_from(self.insns.len()).unwrap_or(u16::MAX),
            filter: self.insns.as_ptr().cast_mut(),
        }
    }
}

#[cfg(test)]
pub(crate) mod interp {
    //! A small classic-BPF interpreter, enough to run seccomp programs on
    //! synthetic `seccomp_data`.

    use super::*;

    /// The input of a seccomp filter.
    #[derive(Clone, Copy, Debug)]
    pub struct Data {
        pub nr: u32,
        pub arch: u32,
        pub ip: u64,
        pub args: [u64; 6],
    }

    impl Data {
        pub fn new(arch: Arch, nr: u32) -> Self {
            Data {
                nr,
                arch: arch.audit_arch(),
                ip: 0x7f00_dead_beef,
                args: [0; 6],
            }
        }

        pub fn with_args(mut self, args: [u64; 6]) -> Self {
            self.args = args;
            self
        }

        fn bytes(&self) -> [u8; 64] {
            let mut b = [0u8; 64];
            b[0..4].copy_from_slice(&self.nr.to_le_bytes());
            b[4..8].copy_from_slice(&self.arch.to_le_bytes());
            b[8..16].copy_from_slice(&self.ip.to_le_bytes());
            for (i, a) in self.args.iter().enumerate() {
                b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
            }
            b
        }
    }

    /// The verdict and the number of instructions executed.
    pub fn run(prog: &[sock_filter], data: &Data) -> (u32, usize) {
        let bytes = data.bytes();
        let mut a: u32 = 0;
        let mut pc = 0usize;
        let mut steps = 0usize;
        loop {
            let insn = prog
                .get(pc)
                .unwrap_or_else(|| panic!("pc {pc} out of program (len {})", prog.len()));
            steps += 1;
            pc += 1;
            let k = insn.k;
            match insn.code {
                OP_LD_W_ABS => {
                    let off = k as usize;
                    assert!(
                        off.is_multiple_of(4) && off + 4 <= 64,
                        "bad load offset {off}"
                    );
                    a = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
                }
                OP_AND_K => a &= k,
                OP_JA => pc += k as usize,
                OP_JEQ_K => pc += usize::from(if a == k { insn.jt } else { insn.jf }),
                OP_JGE_K => pc += usize::from(if a >= k { insn.jt } else { insn.jf }),
                OP_RET_K => return (k, steps),
                code => panic!("unsupported opcode {code:#x} at {}", pc - 1),
            }
        }
    }

    /// Static checks the kernel's `bpf_check_classic` also makes.
    pub fn verify(prog: &[sock_filter]) {
        assert!(!prog.is_empty() && prog.len() <= BPF_MAXINSNS);
        assert_eq!(prog.last().unwrap().code, OP_RET_K, "must end in ret");
        for (pc, insn) in prog.iter().enumerate() {
            let targets: Vec<usize> = match insn.code {
                OP_JA => vec![pc + 1 + insn.k as usize],
                OP_JEQ_K | OP_JGE_K => {
                    vec![pc + 1 + usize::from(insn.jt), pc + 1 + usize::from(insn.jf)]
                }
                OP_LD_W_ABS | OP_AND_K | OP_RET_K => vec![],
                code => panic!("unexpected opcode {code:#x} at {pc}"),
            };
            for t in targets {
                assert!(t < prog.len(), "jump at {pc} to {t} out of range");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::interp::{run, verify, Data};
    use super::*;

    const ARCHES: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;

    /// xorshift64*: deterministic pseudo-random numbers without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn verdict(filter: &Filter, data: &Data) -> u32 {
        run(filter.instructions(), data).0
    }

    fn errno(e: u16) -> u32 {
        libc::SECCOMP_RET_ERRNO | u32::from(e)
    }

    #[test]
    fn empty_filter_allows_everything() {
        for arch in ARCHES {
            let f = FilterBuilder::new(arch).build().unwrap();
            verify(f.instructions());
            assert!(!f.is_empty());
            for nr in [0, 1, 59, 257, 1000, X32_SYSCALL_BIT - 1] {
                assert_eq!(verdict(&f, &Data::new(arch, nr)), ALLOW);
            }
        }
    }

    #[test]
    fn action_return_values() {
        assert_eq!(SyscallAction::Allow.seccomp_ret(), 0x7fff_0000);
        assert_eq!(SyscallAction::Notify.seccomp_ret(), 0x7fc0_0000);
        assert_eq!(SyscallAction::KillProcess.seccomp_ret(), 0x8000_0000);
        assert_eq!(SyscallAction::Errno(13).seccomp_ret(), 0x0005_000d);
    }

    #[test]
    fn random_rule_sets() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut sizes: Vec<usize> = vec![
            1, 2, 3, 4, 5, 63, 64, 65, 127, 128, 255, 256, 257, 400, 599, 600,
        ];
        sizes.extend((0..20).map(|_| 1 + rng.below(600) as usize));
        for (round, &n) in sizes.iter().enumerate() {
            let arch = ARCHES[round % 2];
            // Dense sets produce merged runs, sparse ones isolated leaves.
            let space = if round % 3 == 0 { n as u64 + 50 } else { 3000 };
            let mut b = FilterBuilder::new(arch);
            let mut expected = BTreeMap::new();
            while expected.len() < n {
                let nr = rng.below(space) as u32;
                if expected.contains_key(&nr) {
                    continue;
                }
                let v = match rng.below(4) {
                    0 | 1 => {
                        b.notify(nr).unwrap();
                        NOTIFY
                    }
                    2 => {
                        let e = 1 + rng.below(4095) as i32;
                        b.deny(nr, e).unwrap();
                        assert_eq!(b.is_denied(nr), Some(e));
                        errno(e as u16)
                    }
                    _ => {
                        b.rule(nr, vec![], SyscallAction::KillProcess).unwrap();
                        KILL
                    }
                };
                expected.insert(nr, v);
            }
            let f = b.build().unwrap();
            verify(f.instructions());
            for nr in 0..(space as u32 + 100) {
                let want = expected.get(&nr).copied().unwrap_or(ALLOW);
                assert_eq!(
                    verdict(&f, &Data::new(arch, nr)),
                    want,
                    "n={n} arch={arch} nr={nr}"
                );
                assert_eq!(b.is_notified(nr), want == NOTIFY);
            }
            for nr in [100_000, 1 << 20, X32_SYSCALL_BIT - 1] {
                assert_eq!(verdict(&f, &Data::new(arch, nr)), ALLOW);
            }
        }
    }

    #[test]
    fn arch_mismatch_kills() {
        for arch in ARCHES {
            let mut b = FilterBuilder::new(arch);
            b.notify(1).unwrap();
            let f = b.build().unwrap();
            for other in [
                0,
                0x4000_0003,
                Arch::X86_64.audit_arch() ^ Arch::Aarch64.audit_arch() ^ arch.audit_arch(),
            ] {
                let mut d = Data::new(arch, 1);
                d.arch = other;
                assert_eq!(verdict(&f, &d), KILL);
                d.nr = 2;
                assert_eq!(verdict(&f, &d), KILL);
            }
        }
    }

    #[test]
    fn x32_numbers_kill_on_x86_64_only() {
        let mut b = FilterBuilder::new(Arch::X86_64);
        b.notify(0).unwrap();
        let f = b.build().unwrap();
        for nr in [
            X32_SYSCALL_BIT,
            X32_SYSCALL_BIT | 1,
            X32_SYSCALL_BIT | 257,
            u32::MAX,
        ] {
            assert_eq!(verdict(&f, &Data::new(Arch::X86_64, nr)), KILL, "{nr:#x}");
        }
        assert!(matches!(
            b.notify(X32_SYSCALL_BIT | 2),
            Err(Error::ConflictingRule { .. })
        ));

        let mut b = FilterBuilder::new(Arch::Aarch64);
        b.notify(0).unwrap().notify(u32::MAX).unwrap();
        let f = b.build().unwrap();
        verify(f.instructions());
        assert_eq!(
            verdict(&f, &Data::new(Arch::Aarch64, X32_SYSCALL_BIT)),
            ALLOW
        );
        assert_eq!(verdict(&f, &Data::new(Arch::Aarch64, u32::MAX)), NOTIFY);
        assert_eq!(verdict(&f, &Data::new(Arch::Aarch64, u32::MAX - 1)), ALLOW);
    }

    #[test]
    fn conditional_rules() {
        const SOCKET: u32 = 41;
        let af_inet = libc::AF_INET as u64;
        let af_unix = libc::AF_UNIX as u64;
        let dgram = libc::SOCK_DGRAM as u64;
        for arch in ARCHES {
            let mut b = FilterBuilder::new(arch);
            b.notify(SOCKET - 1).unwrap().notify(SOCKET + 1).unwrap();
            b.rule(
                SOCKET,
                vec![
                    (
                        vec![ArgCheck::equals(0, af_inet), ArgCheck::new(1, 0xf, dgram)],
                        SyscallAction::Errno(libc::EACCES as u16),
                    ),
                    (vec![ArgCheck::equals(0, af_unix)], SyscallAction::Allow),
                    (
                        vec![ArgCheck::new(
                            2,
                            0xffff_0000_0000_0000,
                            0x1234_0000_0000_0000,
                        )],
                        SyscallAction::KillProcess,
                    ),
                ],
                SyscallAction::Notify,
            )
            .unwrap();
            assert!(b.is_notified(SOCKET));
            assert_eq!(b.is_denied(SOCKET), None);
            let f = b.build().unwrap();
            verify(f.instructions());
            let call = |args: [u64; 6]| verdict(&f, &Data::new(arch, SOCKET).with_args(args));
            let flags = libc::SOCK_CLOEXEC as u64;
            assert_eq!(
                call([af_inet, dgram, 0, 0, 0, 0]),
                errno(libc::EACCES as u16)
            );
            assert_eq!(
                call([af_inet, dgram | flags, 0, 0, 0, 0]),
                errno(libc::EACCES as u16)
            );
            // The high word of the argument counts.
            assert_eq!(call([af_inet | 1 << 32, dgram, 0, 0, 0, 0]), NOTIFY);
            assert_eq!(
                call([af_inet, libc::SOCK_STREAM as u64, 0, 0, 0, 0]),
                NOTIFY
            );
            assert_eq!(call([af_unix, libc::SOCK_STREAM as u64, 0, 0, 0, 0]), ALLOW);
            assert_eq!(call([af_unix, dgram, 0, 0, 0, 0]), ALLOW);
            assert_eq!(call([af_unix | 1 << 63, dgram, 0, 0, 0, 0]), NOTIFY);
            assert_eq!(call([9, 9, 0x1234_5678_0000_0000, 0, 0, 0]), KILL);
            assert_eq!(call([9, 9, 0x1235_0000_0000_0000, 0, 0, 0]), NOTIFY);
            assert_eq!(call([0; 6]), NOTIFY);
            // Neighbours are unaffected by the clobbered accumulator.
            assert_eq!(verdict(&f, &Data::new(arch, SOCKET - 1)), NOTIFY);
            assert_eq!(verdict(&f, &Data::new(arch, SOCKET + 1)), NOTIFY);
            assert_eq!(verdict(&f, &Data::new(arch, SOCKET + 2)), ALLOW);
        }
    }

    #[test]
    fn refuse_first_wins_over_every_rule() {
        let eperm = errno(libc::EPERM as u16);
        for arch in ARCHES {
            let mut b = FilterBuilder::new(arch);
            b.notify(10).unwrap().deny(11, libc::EACCES).unwrap();
            b.rule(
                12,
                vec![(vec![ArgCheck::equals(0, 7)], SyscallAction::Allow)],
                SyscallAction::Notify,
            )
            .unwrap();
            let bit = ArgCheck::new(0, 0x2_0000, 0x2_0000);
            for nr in [10, 11, 12, 13] {
                b.refuse_first(nr, vec![bit], libc::EPERM).unwrap();
            }
            b.refuse_first(14, Vec::new(), libc::EPERM).unwrap();
            assert!(b.refuse_first(15, Vec::new(), 0).is_err());
            let f = b.build().unwrap();
            verify(f.instructions());
            let call =
                |nr: u32, a0: u64| verdict(&f, &Data::new(arch, nr).with_args([a0, 0, 0, 0, 0, 0]));
            assert_eq!(call(10, 0x2_0011), eperm);
            assert_eq!(call(10, 0x11), NOTIFY);
            // Refused whatever the arguments: keeps its own errno.
            assert_eq!(call(11, 0x2_0000), errno(libc::EACCES as u16));
            assert_eq!(call(12, 0x2_0007), eperm);
            assert_eq!(call(12, 7), ALLOW);
            assert_eq!(call(12, 8), NOTIFY);
            assert_eq!(call(13, 0x2_0000), eperm);
            assert_eq!(call(13, 1 << 32), ALLOW);
            assert_eq!(call(14, 0), eperm);
            assert_eq!(call(15, 0), ALLOW);
        }
    }

    #[test]
    fn a_notify_after_refusals_keeps_them_first() {
        let eperm = errno(libc::EPERM as u16);
        for arch in ARCHES {
            let mut b = FilterBuilder::new(arch);
            b.refuse_first(20, vec![ArgCheck::new(1, 0xffff_ffff, 0x5412)], libc::EPERM)
                .unwrap();
            b.notify(20).unwrap();
            b.notify(20).unwrap();
            assert!(b.is_notified(20));
            // A conditional rule that allows some calls is not widened.
            b.rule(
                21,
                vec![(vec![ArgCheck::equals(0, 0)], SyscallAction::Allow)],
                SyscallAction::Errno(1),
            )
            .unwrap();
            assert!(b.notify(21).is_err());
            let f = b.build().unwrap();
            verify(f.instructions());
            let call = |a1: u64| verdict(&f, &Data::new(arch, 20).with_args([0, a1, 0, 0, 0, 0]));
            assert_eq!(call(0x5412), eperm);
            assert_eq!(call(0x7_0000_5412), eperm);
            assert_eq!(call(0x5413), NOTIFY);
        }
    }

    #[test]
    fn notify_if_adds_cases_after_refusals() {
        let eperm = errno(libc::EPERM as u16);
        for arch in ARCHES {
            let mut b = FilterBuilder::new(arch);
            let flags = ArgCheck::new(1, 0xffff_ffff, 0x4008_6602);
            b.refuse_first(30, vec![ArgCheck::new(1, 0xffff_ffff, 0x5412)], libc::EPERM)
                .unwrap();
            b.notify_if(30, vec![flags]).unwrap();
            b.notify_if(30, vec![flags]).unwrap();
            b.notify_if(31, vec![flags]).unwrap();
            b.refuse_first(31, vec![ArgCheck::new(1, 0xffff_ffff, 0x5412)], libc::EPERM)
                .unwrap();
            b.notify(32).unwrap();
            b.notify_if(32, vec![flags]).unwrap();
            let f = b.build().unwrap();
            verify(f.instructions());
            let call =
                |nr: u32, a1: u64| verdict(&f, &Data::new(arch, nr).with_args([3, a1, 0, 0, 0, 0]));
            for nr in [30, 31] {
                assert_eq!(call(nr, 0x5412), eperm);
                assert_eq!(call(nr, 0x4008_6602), NOTIFY);
                assert_eq!(call(nr, 0x5413), ALLOW);
            }
            assert_eq!(call(32, 0x5413), NOTIFY);
        }
    }

    #[test]
    fn conditional_rules_random() {
        let mut rng = Rng(0xfeed_f00d_1234_5678);
        let arch = Arch::native();
        for _ in 0..30 {
            let mut b = FilterBuilder::new(arch);
            let mut rules = Vec::new();
            for _ in 0..(1 + rng.below(40)) {
                let nr = rng.below(500) as u32;
                let cases: Vec<Case> = (0..rng.below(5))
                    .map(|_| {
                        let checks = (0..rng.below(4))
                            .map(|_| {
                                let mask = match rng.below(4) {
                                    0 => u64::MAX,
                                    1 => 0xffff_ffff,
                                    2 => 0xffff_ffff_0000_0000,
                                    _ => rng.next(),
                                };
                                ArgCheck::new(rng.below(6) as u8, mask, rng.below(3) & mask)
                            })
                            .collect();
                        (checks, SyscallAction::Errno(1 + rng.below(100) as u16))
                    })
                    .collect();
                if b.rule(nr, cases.clone(), SyscallAction::Notify).is_ok() {
                    rules.push((nr, cases));
                }
            }
            let f = b.build().unwrap();
            verify(f.instructions());
            for (nr, cases) in &rules {
                for _ in 0..50 {
                    let args = [0; 6].map(|_: u64| rng.below(3));
                    let want = cases
                        .iter()
                        .find(|(checks, _)| checks.iter().all(|c| c.matches(&args)))
                        .map_or(NOTIFY, |(_, a)| a.seccomp_ret());
                    let data = Data::new(arch, *nr).with_args(args);
                    assert_eq!(verdict(&f, &data), want, "nr {nr} args {args:?}");
                }
            }
        }
    }

    #[test]
    fn long_conditional_case_uses_trampolines() {
        // 60 checks of 2 words each: failed comparisons of the first case must
        // jump further than 255 instructions.
        let checks: Vec<ArgCheck> = (0..60)
            .map(|i| ArgCheck::new(i % 6, u64::MAX - 1, 0))
            .collect();
        let mut b = FilterBuilder::new(Arch::X86_64);
        b.rule(
            7,
            vec![
                (checks, SyscallAction::Errno(1)),
                (vec![ArgCheck::equals(0, 5)], SyscallAction::Errno(2)),
            ],
            SyscallAction::Errno(3),
        )
        .unwrap();
        let f = b.build().unwrap();
        verify(f.instructions());
        assert!(f.len() > 300);
        assert!(f.instructions().iter().any(|i| i.code == OP_JA));
        let call = |args: [u64; 6]| verdict(&f, &Data::new(Arch::X86_64, 7).with_args(args));
        assert_eq!(call([0; 6]), errno(1));
        assert_eq!(call([1, 1, 1, 1, 0, 1]), errno(1));
        assert_eq!(call([5, 0, 0, 0, 0, 0]), errno(2));
        assert_eq!(call([0, 0, 0, 0, 0, 2]), errno(3));
        assert_eq!(call([0, 0, 0, 1 << 40, 0, 0]), errno(3));
    }

    #[test]
    fn always_true_case_ends_rule() {
        let mut b = FilterBuilder::new(Arch::Aarch64);
        b.rule(
            3,
            vec![
                (vec![ArgCheck::equals(1, 9)], SyscallAction::Errno(9)),
                (vec![ArgCheck::new(0, 0, 0)], SyscallAction::KillProcess),
                (vec![ArgCheck::equals(1, 10)], SyscallAction::Errno(10)),
            ],
            SyscallAction::Notify,
        )
        .unwrap();
        let f = b.build().unwrap();
        verify(f.instructions());
        let call = |args: [u64; 6]| verdict(&f, &Data::new(Arch::Aarch64, 3).with_args(args));
        assert_eq!(call([0, 9, 0, 0, 0, 0]), errno(9));
        assert_eq!(call([0, 10, 0, 0, 0, 0]), KILL);
        assert_eq!(call([0; 6]), KILL);
    }

    #[test]
    fn jump_offsets_stay_in_range() {
        // Isolated rules give the largest subtrees; check that the tree needed
        // trampolines and that every jump lands inside the program.
        for n in [100, 300, 600, 900] {
            let mut b = FilterBuilder::new(Arch::X86_64);
            for i in 0..n {
                b.notify(i * 2).unwrap();
            }
            let f = b.build().unwrap();
            verify(f.instructions());
            if f.len() > 2 * 256 {
                assert!(f.instructions().iter().any(|i| i.code == OP_JA));
            }
            for nr in 0..(2 * n + 10) {
                let want = if nr % 2 == 0 && nr < 2 * n {
                    NOTIFY
                } else {
                    ALLOW
                };
                assert_eq!(verdict(&f, &Data::new(Arch::X86_64, nr)), want);
            }
        }
    }

    #[test]
    fn lookup_depth_is_logarithmic() {
        let n = 400u32;
        let mut rng = Rng(42);
        for arch in ARCHES {
            let mut b = FilterBuilder::new(arch);
            let mut nrs = Vec::new();
            while nrs.len() < n as usize {
                let nr = rng.below(5000) as u32;
                if b.notify(nr).is_ok() && !nrs.contains(&nr) {
                    nrs.push(nr);
                }
            }
            let f = b.build().unwrap();
            let limit = 2 * (n as f64).log2().ceil() as usize + 10;
            let mut worst = 0;
            for nr in 0..5100 {
                let (_, steps) = run(f.instructions(), &Data::new(arch, nr));
                worst = worst.max(steps);
            }
            assert!(worst <= limit, "{worst} steps > {limit}");
        }
    }

    #[test]
    fn too_large_is_rejected() {
        let mut b = FilterBuilder::new(Arch::X86_64);
        for i in 0..2000 {
            b.notify(i * 2).unwrap();
        }
        match b.build() {
            Err(Error::FilterTooLarge { len, max }) => {
                assert!(len > BPF_MAXINSNS);
                assert_eq!(max, BPF_MAXINSNS);
            }
            other => panic!("{other:?}"),
        }
        // Contiguous runs merge into one interval, so size is no problem.
        let mut b = FilterBuilder::new(Arch::X86_64);
        for i in 0..5000 {
            b.notify(i).unwrap();
        }
        assert!(b.build().unwrap().len() < 20);
    }

    #[test]
    fn conflicts() {
        let mut b = FilterBuilder::new(Arch::X86_64);
        b.notify(257).unwrap().notify(257).unwrap();
        b.deny(83, libc::EPERM)
            .unwrap()
            .deny(83, libc::EPERM)
            .unwrap();
        match b.deny(257, libc::EPERM) {
            Err(Error::ConflictingRule { syscall, .. }) => assert_eq!(syscall, "openat"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(b.notify(83), Err(Error::ConflictingRule { .. })));
        assert!(matches!(
            b.deny(83, libc::ENOENT),
            Err(Error::ConflictingRule { .. })
        ));
        assert!(matches!(
            b.rule(257, vec![], SyscallAction::Allow),
            Err(Error::ConflictingRule { .. })
        ));
        match b.notify(100_000).unwrap().deny(100_000, 1) {
            Err(Error::ConflictingRule { syscall, .. }) => assert_eq!(syscall, "100000"),
            other => panic!("{other:?}"),
        }
        let cases = vec![(vec![ArgCheck::equals(0, 1)], SyscallAction::Allow)];
        b.rule(41, cases.clone(), SyscallAction::Notify).unwrap();
        b.rule(41, cases, SyscallAction::Notify).unwrap();
        assert!(matches!(b.notify(41), Err(Error::ConflictingRule { .. })));
        assert!(b.is_notified(257));
        assert!(b.is_notified(41));
        assert!(!b.is_notified(83));
        assert_eq!(b.is_denied(83), Some(libc::EPERM));
        assert_eq!(b.is_denied(257), None);
        assert_eq!(b.is_denied(1), None);
    }

    /// A sandbox whose program cannot notify runs no poll thread: the test
    /// of that must see every way a notification can come out of the
    /// program, and none where it cannot.
    #[test]
    fn may_notify_sees_every_notifying_return() {
        let mut b = FilterBuilder::new(Arch::native());
        b.deny(83, libc::EPERM).unwrap();
        b.rule(
            16,
            vec![(vec![ArgCheck::equals(1, 0x5412)], SyscallAction::Errno(1))],
            SyscallAction::Allow,
        )
        .unwrap();
        assert!(!may_notify(b.build().unwrap().instructions()));
        // An unconditional trap, a trapped case, a trapped otherwise.
        let mut n = b.clone();
        n.notify(257).unwrap();
        assert!(may_notify(n.build().unwrap().instructions()));
        for (case, otherwise) in [
            (SyscallAction::Notify, SyscallAction::Allow),
            (SyscallAction::Allow, SyscallAction::Notify),
        ] {
            let mut n = b.clone();
            n.rule(41, vec![(vec![ArgCheck::equals(0, 1)], case)], otherwise)
                .unwrap();
            assert!(may_notify(n.build().unwrap().instructions()));
        }
        // A notify with low bits set, and a return of the accumulator.
        let odd = [stmt(OP_RET_K, NOTIFY | 7)];
        assert!(may_notify(&odd));
        let ret_a = [stmt((libc::BPF_RET | libc::BPF_A) as u16, 0)];
        assert!(may_notify(&ret_a));
        assert!(!may_notify(&[stmt(OP_RET_K, ALLOW), stmt(OP_RET_K, KILL)]));
    }

    #[test]
    fn invalid_values() {
        let mut b = FilterBuilder::new(Arch::Aarch64);
        for e in [0, -1, 4096, 70_000, i32::MIN] {
            assert!(matches!(b.deny(1, e), Err(Error::InvalidErrno { errno }) if errno == e));
        }
        b.deny(1, 4095).unwrap();
        assert!(matches!(
            b.rule(2, vec![], SyscallAction::Errno(0)),
            Err(Error::InvalidErrno { errno: 0 })
        ));
        assert!(matches!(
            b.rule(
                2,
                vec![(vec![], SyscallAction::Errno(5000))],
                SyscallAction::Allow
            ),
            Err(Error::InvalidErrno { errno: 5000 })
        ));
        assert!(matches!(
            b.rule(
                2,
                vec![(vec![ArgCheck::equals(6, 0)], SyscallAction::Allow)],
                SyscallAction::Notify
            ),
            Err(Error::InvalidConfig { .. })
        ));
        assert!(matches!(
            b.rule(
                2,
                vec![(vec![ArgCheck::new(0, 0xff, 0x100)], SyscallAction::Allow)],
                SyscallAction::Notify
            ),
            Err(Error::InvalidConfig { .. })
        ));
        assert!(!b.is_notified(2));
    }

    #[test]
    fn sock_fprog_points_at_instructions() {
        let mut b = FilterBuilder::new(Arch::native());
        b.notify(1).unwrap();
        let f = b.build().unwrap();
        let prog = f.as_sock_fprog();
        assert_eq!(usize::from(prog.len), f.len());
        assert_eq!(prog.filter.cast_const(), f.instructions().as_ptr());
    }
}
