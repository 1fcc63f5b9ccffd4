//! The C ABI of `include/unotify.h` (feature `capi`): opaque handles over
//! the public Rust API ([`SandboxBuilder`](crate::SandboxBuilder),
//! [`Sandbox`](crate::Sandbox), [`Command`](crate::Command),
//! [`Child`](crate::Child), [`SupervisorHandle`](crate::SupervisorHandle)), C callbacks run as [`Handler`](crate::Handler)s,
//! status codes with a thread-local last error. Every entry point catches
//! panics; pointers are turned into references only in `sys::capi_raw`.
//! The header is the reference for C hosts; these items are its Rust side.

pub mod builder;
pub mod child;
pub mod error;
pub mod handler;
pub mod paths;
pub mod policy;
pub mod supervisor;
pub mod workdir;

/// What the header promises about threads, checked by the compiler: a
/// sandbox, a supervisor handle and a denied-path set are shared between threads, a builder,
/// command and child are moved between them.
const _: () = {
    use builder::{UnotifyBuilder, UnotifySandbox};
    use child::{UnotifyChild, UnotifyCommand};
    use paths::UnotifyDeniedPaths;
    use supervisor::UnotifySupervisor;
    const fn shared<T: Send + Sync>() {}
    const fn moved<T: Send>() {}
    shared::<UnotifySandbox>();
    shared::<UnotifySupervisor>();
    shared::<UnotifyDeniedPaths>();
    moved::<UnotifyBuilder>();
    moved::<UnotifyCommand>();
    moved::<UnotifyChild>();
};
