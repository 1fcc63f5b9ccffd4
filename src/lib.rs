pub mod action;
pub mod arch;
pub mod command;
pub mod error;
pub mod filter;
pub mod handler;
pub mod notification;
pub mod sandbox;
pub mod supervisor;
pub mod syscalls;
pub mod sys;

pub use action::{Deferred, NotifAction};
pub use error::{Error, Result};
pub use handler::{Handler, HandlerCtx, MemoryError};
pub use notification::Notification;
pub use supervisor::{Stats, Supervisor, SupervisorHandle};
pub use command::{Command, Stdio};
pub use sandbox::{Child, Sandbox, SandboxBuilder};
