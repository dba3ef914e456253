//! Interned names: event types, topics and producers as `u16` ids.
//!
//! Every trace keeps its timeline as small fixed-size steps, so a step names
//! its event type, topic and producer by a 2-byte id instead of a string.
//! The writer (the correlating thread) owns the [`Interner`]; readers (the
//! HTTP API) resolve ids through the shared [`NameList`], which only grows.
//! The number of names is capped (a flood of distinct producers must not
//! grow memory without bound); past the cap every new name is
//! [`OVERFLOW_ID`].

use std::sync::{Arc, RwLock};

use crate::metrics::{OVERFLOW, UNKNOWN};

/// Id of a name the record did not carry.
pub const UNKNOWN_ID: u16 = 0;
/// Id of every name past the cap.
pub const OVERFLOW_ID: u16 = 1;

/// The names behind the ids, readable from any thread.
#[derive(Debug)]
pub struct NameList {
    names: RwLock<Vec<Arc<str>>>,
}

impl NameList {
    fn new() -> Self {
        Self { names: RwLock::new(vec![Arc::from(UNKNOWN), Arc::from(OVERFLOW)]) }
    }

    /// The name of `id`; unknown ids read as [`UNKNOWN`].
    pub fn name(&self, id: u16) -> Arc<str> {
        let names = self.names.read().expect("name list lock poisoned");
        names.get(id as usize).cloned().unwrap_or_else(|| names[UNKNOWN_ID as usize].clone())
    }

    /// Every name, indexed by id (one lock for a whole API response).
    pub fn snapshot(&self) -> Vec<Arc<str>> {
        self.names.read().expect("name list lock poisoned").clone()
    }

    pub fn len(&self) -> usize {
        self.names.read().expect("name list lock poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Name → id on the writer's side.
#[derive(Debug)]
pub struct Interner {
    ids: ahash::AHashMap<Box<str>, u16>,
    list: Arc<NameList>,
    max_names: usize,
}

impl Interner {
    /// At most `max_names` distinct names (besides the two markers), and
    /// never more than `u16` ids allow.
    pub fn new(max_names: usize) -> Self {
        Self {
            ids: ahash::AHashMap::default(),
            list: Arc::new(NameList::new()),
            max_names: max_names.min(u16::MAX as usize - 2),
        }
    }

    pub fn list(&self) -> Arc<NameList> {
        self.list.clone()
    }

    /// The id of `name`; a new name is added (one allocation) while there is room.
    /// Returns the id and whether it was new.
    pub fn id(&mut self, name: Option<&str>) -> (u16, bool) {
        let Some(name) = name else { return (UNKNOWN_ID, false) };
        if let Some(id) = self.ids.get(name) {
            return (*id, false);
        }
        if self.ids.len() >= self.max_names {
            return (OVERFLOW_ID, false);
        }
        let mut names = self.list.names.write().expect("name list lock poisoned");
        let id = names.len() as u16;
        names.push(Arc::from(name));
        drop(names);
        self.ids.insert(name.into(), id);
        (id, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_stable_ids_up_to_the_cap() {
        let mut interner = Interner::new(2);
        assert_eq!(interner.id(None), (UNKNOWN_ID, false));
        assert_eq!(interner.id(Some("a")), (2, true));
        assert_eq!(interner.id(Some("b")), (3, true));
        assert_eq!(interner.id(Some("a")), (2, false));
        assert_eq!(interner.id(Some("c")), (OVERFLOW_ID, false));
        let list = interner.list();
        assert_eq!(&*list.name(2), "a");
        assert_eq!(&*list.name(OVERFLOW_ID), OVERFLOW);
        assert_eq!(&*list.name(999), UNKNOWN);
        assert_eq!(list.len(), 4);
    }
}
