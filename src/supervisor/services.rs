//! The features' run-time state, by type: what a handler or another
//! feature may use (the process tracker, argv safety, the policy gate).
//! Filled when a supervisor starts, read-only after; it names no feature.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

/// A small map from a type to its one running value.
#[derive(Default, Clone)]
pub(crate) struct Services {
    /// (type, value); a handful of entries, searched in order.
    entries: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl Services {
    /// Adds (or replaces) the value of type `T`.
    pub(crate) fn insert<T: Any + Send + Sync>(&mut self, value: Arc<T>) {
        let id = TypeId::of::<T>();
        self.entries.retain(|(t, _)| *t != id);
        self.entries.push((id, value));
    }

    /// The value of type `T`, if a feature provides it.
    pub(crate) fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type() {
        let mut s = Services::default();
        assert!(s.get::<u32>().is_none());
        s.insert(Arc::new(1u32));
        s.insert(Arc::new("x"));
        s.insert(Arc::new(2u32));
        assert_eq!(s.get::<u32>(), Some(&2));
        assert_eq!(s.get::<&str>(), Some(&"x"));
    }
}
