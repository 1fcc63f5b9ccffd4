//! Why an exec freeze could not be established, and why a new image was
//! not the one decided on. Both end in a definite answer: the exec is
//! refused (`EPERM`), or the new image is killed.

use std::fmt;
use std::io;

/// Why the tasks that could change an exec's argv could not be stopped.
#[derive(Debug)]
pub(crate) enum FreezeError {
    /// The ptrace thread has ended (the supervisor is stopping).
    TracerGone,
    /// The ptrace thread did not answer in time.
    NoAnswer,
    /// A task could not be seized (usually: something outside the sandbox
    /// traces it already).
    Seize {
        tid: i32,
        tgid: i32,
        source: io::Error,
    },
    /// The caller is the caller of another exec freeze still.
    CallerBusy(i32),
    /// The caller is gone.
    CallerGone(i32),
    /// The tasks sharing the caller's memory keep growing.
    Growing,
    /// A task did not stop in time.
    StopTimeout { tid: i32 },
    /// The files of a re-issued call could not be added to its task.
    Files(io::Error),
    /// The ptrace thread took a re-issue and did not finish it in time:
    /// its caller was killed.
    Stalled,
}

impl fmt::Display for FreezeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreezeError::TracerGone => f.write_str("the ptrace thread is gone"),
            FreezeError::NoAnswer => f.write_str("the ptrace thread did not answer"),
            FreezeError::Seize { tid, tgid, source } => {
                write!(f, "cannot seize task {tid} of process {tgid}: {source}")
            }
            FreezeError::CallerBusy(tid) => {
                write!(f, "exec caller {tid} is already frozen for another exec")
            }
            FreezeError::CallerGone(tid) => write!(f, "exec caller {tid} is gone"),
            FreezeError::Growing => {
                f.write_str("the tasks sharing the exec caller's memory keep growing")
            }
            FreezeError::StopTimeout { tid } => write!(
                f,
                "task {tid} did not stop within {:?}",
                super::STOP_TIMEOUT
            ),
            FreezeError::Files(e) => {
                write!(f, "cannot add the re-issued call's files to the task: {e}")
            }
            FreezeError::Stalled => f.write_str(
                "the ptrace thread took the re-issue and did not finish it in time (the task was killed)",
            ),
        }
    }
}

impl FreezeError {
    /// How loudly a refusal for this reason is logged: a caller that is
    /// gone gets no answer, which is not worth a warning.
    pub(crate) fn log_level(&self) -> log::Level {
        match self {
            FreezeError::CallerGone(_) => log::Level::Debug,
            _ => log::Level::Warn,
        }
    }
}

impl std::error::Error for FreezeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FreezeError::Seize { source, .. } | FreezeError::Files(source) => Some(source),
            _ => None,
        }
    }
}

/// Why a new image, stopped at its exec event, is not the one decided on.
#[derive(Debug)]
pub(crate) enum Mismatch {
    /// Its argv could not be read.
    Unreadable(io::Error),
    /// Its executable could not be looked at.
    NoExecutable(io::Error),
    /// The argv is the decided one, the executable another file.
    OtherExecutable,
    /// The argv is not the decided one (nor the script form of it).
    OtherArguments,
    /// The new image mapped another ELF interpreter than the one decided
    /// on (or none, or another file).
    OtherInterpreter,
    /// Nothing was decided for it.
    NoExpectation,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Unreadable(e) => write!(f, "cannot read its argv: {e}"),
            Mismatch::NoExecutable(e) => write!(f, "cannot stat its executable: {e}"),
            Mismatch::OtherExecutable => f.write_str("another executable"),
            Mismatch::OtherArguments => f.write_str("other arguments"),
            Mismatch::OtherInterpreter => f.write_str("another ELF interpreter"),
            Mismatch::NoExpectation => f.write_str("no expectation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_task_and_the_cause() {
        let e = FreezeError::Seize {
            tid: 7,
            tgid: 5,
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(e
            .to_string()
            .starts_with("cannot seize task 7 of process 5: "));
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            FreezeError::StopTimeout { tid: 9 }.to_string(),
            "task 9 did not stop within 2s"
        );
        assert_eq!(Mismatch::OtherArguments.to_string(), "other arguments");
    }
}
