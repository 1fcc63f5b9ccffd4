//! C ABI tests (filled in below).
