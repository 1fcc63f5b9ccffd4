//! Where `unotify`'s logs go: the library's `log` records on stderr,
//! filtered by `RUST_LOG` (default [`DEFAULT_LOG_FILTER`]), and the traces
//! asked for with `--trace` (target `unotify::trace`), which no `RUST_LOG`
//! silences, on stderr or in the `--trace-output` file. Used by `main`.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

/// Filter used when `RUST_LOG` is not set: warnings.
pub const DEFAULT_LOG_FILTER: &str = "warn";

/// The log target of the library's traces.
const TRACE_TARGET: &str = "unotify::trace";

/// Where traces go.
#[derive(Debug)]
pub enum TraceSink {
    /// No `--trace`: none are made.
    Off,
    /// stderr, each line prefixed with `unotify: trace: `.
    Stderr,
    /// A file of its own (`--trace-output`), one call per line.
    File(File),
}

struct CliLogger {
    /// The library's other records, filtered by `RUST_LOG`.
    inner: env_logger::Logger,
    /// Traces.
    trace: Option<Mutex<TraceSink>>,
}

impl log::Log for CliLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        if meta.target() == TRACE_TARGET {
            return self.trace.is_some();
        }
        self.inner.enabled(meta)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.target() != TRACE_TARGET {
            if self.inner.matches(record) {
                self.inner.log(record);
            }
            return;
        }
        let Some(trace) = &self.trace else {
            return;
        };
        let mut sink = trace.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match &mut *sink {
            TraceSink::Off => Ok(()),
            TraceSink::Stderr => writeln!(std::io::stderr(), "unotify: trace: {}", record.args()),
            TraceSink::File(f) => writeln!(f, "{}", record.args()),
        };
    }

    fn flush(&self) {
        self.inner.flush();
        if let Some(trace) = &self.trace {
            if let TraceSink::File(f) = &mut *trace.lock().unwrap_or_else(|e| e.into_inner()) {
                let _ = f.flush();
            }
        }
    }
}

/// Installs the logger. Records other than traces go to stderr as
/// `unotify: LEVEL: ...`, filtered by `RUST_LOG` or [`DEFAULT_LOG_FILTER`];
/// traces go to `trace` whatever `RUST_LOG` says.
pub fn init(trace: TraceSink) {
    let mut builder = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(filter) => builder.parse_filters(&filter),
        Err(_) => builder.parse_filters(DEFAULT_LOG_FILTER),
    };
    builder.format(|buf, record| {
        let level = record.level().as_str().to_ascii_lowercase();
        writeln!(buf, "unotify: {level}: {}", record.args())
    });
    let inner = builder.build();
    let tracing = !matches!(trace, TraceSink::Off);
    let max = if tracing {
        inner.filter().max(log::LevelFilter::Info)
    } else {
        inner.filter()
    };
    let logger = CliLogger {
        inner,
        trace: tracing.then(|| Mutex::new(trace)),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}
