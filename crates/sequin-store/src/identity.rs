//! Identity stitching: `identify` and `alias` link an id (usually an anonymous id) to a user
//! id, and every event of the linked id — also the ones that arrived before the link —
//! belongs to that user.
//!
//! The first link of an id wins (a later, conflicting link is ignored and counted), and a
//! link that would close a cycle is ignored, so resolution always terminates.

use rustc_hash::FxHashMap as HashMap;

/// The id → canonical id map.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    links: HashMap<String, String>,
    /// The reverse: id → the ids linked directly to it.
    linked_to: HashMap<String, Vec<String>>,
    /// Links ignored because the id was already linked elsewhere or would form a cycle.
    pub conflicts: u64,
}

impl Identity {
    /// The canonical id of `id` (itself when unlinked).
    pub fn resolve<'a>(&'a self, mut id: &'a str) -> &'a str {
        // Chains are short; the bound guards against anything unexpected.
        for _ in 0..64 {
            match self.links.get(id) {
                Some(next) => id = next,
                None => break,
            }
        }
        id
    }

    /// Records `from → to`. Returns true if this is a new link.
    pub fn link(&mut self, from: &str, to: &str) -> bool {
        if from == to {
            return false;
        }
        if let Some(existing) = self.links.get(from) {
            if existing != to {
                self.conflicts += 1;
            }
            return false;
        }
        if self.resolve(to) == from {
            self.conflicts += 1;
            return false;
        }
        self.links.insert(from.to_string(), to.to_string());
        self.linked_to
            .entry(to.to_string())
            .or_default()
            .push(from.to_string());
        true
    }

    /// Every id that resolves to `canonical`, itself included.
    pub fn ids_of<'a>(&'a self, canonical: &'a str) -> Vec<&'a str> {
        let mut out = vec![canonical];
        let mut i = 0;
        while i < out.len() {
            if let Some(froms) = self.linked_to.get(out[i]) {
                out.extend(froms.iter().map(String::as_str));
            }
            i += 1;
        }
        out
    }

    /// Number of links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// No links?
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_resolve_and_cycles_are_refused() {
        let mut id = Identity::default();
        assert!(id.link("anon", "u1"));
        assert!(id.link("u1", "u2"));
        assert_eq!(id.resolve("anon"), "u2");
        assert!(!id.link("u2", "anon"), "would close a cycle");
        assert!(!id.link("anon", "other"), "first link wins");
        assert_eq!(id.conflicts, 2);
        assert_eq!(id.resolve("unknown"), "unknown");
    }
}
