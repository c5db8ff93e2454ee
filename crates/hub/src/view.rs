//! The current record of every extension, kept in shared fixed-size chunks, so that taking a
//! snapshot under the hub's lock copies one pointer per chunk rather than one per record.
//!
//! A snapshot keeps the chunks it copied alive. A publish that then changes one of them copies
//! that chunk first (copy-on-write), so the snapshot stays as it was; that copy is at most
//! [`CHUNK`] pointer copies, whatever the number of records or subscribers.

use std::collections::HashMap;
use std::sync::Arc;

use domain::{Department, Extension, RecordId};

/// Records per chunk: small enough that a copy-on-write stays cheap, large enough that a
/// snapshot of 10,000 records copies under 200 pointers.
pub(crate) const CHUNK: usize = 64;

/// One chunk of records.
pub(crate) type Chunk = Vec<Arc<Extension>>;

/// The records, densely packed: every chunk is full except the last, and `index` says where
/// each record sits (chunk `pos / CHUNK`, slot `pos % CHUNK`).
#[derive(Default)]
pub(crate) struct View {
    chunks: Vec<Arc<Chunk>>,
    index: HashMap<RecordId, usize>,
}

impl View {
    /// A view of `records`; of two records with the same id, the later one wins.
    pub(crate) fn new(records: Vec<Extension>) -> Self {
        let mut view = Self::default();
        for record in records {
            view.upsert(Arc::new(record));
        }
        view
    }

    /// How many records there are.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The record with `id`.
    pub(crate) fn get(&self, id: &RecordId) -> Option<Arc<Extension>> {
        let pos = *self.index.get(id)?;
        self.chunks.get(pos / CHUNK)?.get(pos % CHUNK).cloned()
    }

    /// Inserts or replaces the record with `record.id`; returns the one it replaced.
    pub(crate) fn upsert(&mut self, record: Arc<Extension>) -> Option<Arc<Extension>> {
        if let Some(&pos) = self.index.get(&record.id) {
            let slot = self.slot_mut(pos)?;
            return Some(std::mem::replace(slot, record));
        }
        let pos = self.index.len();
        self.index.insert(record.id.clone(), pos);
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(record),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(record);
                self.chunks.push(Arc::new(chunk));
            }
        }
        None
    }

    /// Removes the record with `id`, moving the very last record into its place so that the
    /// chunks stay packed; returns the removed record.
    pub(crate) fn remove(&mut self, id: &RecordId) -> Option<Arc<Extension>> {
        let pos = self.index.remove(id)?;
        let last_chunk = self.chunks.last_mut()?;
        let last = Arc::make_mut(last_chunk).pop()?;
        if last_chunk.is_empty() {
            self.chunks.pop();
        }
        if last.id == *id {
            // It was the last record itself.
            return Some(last);
        }
        self.index.insert(last.id.clone(), pos);
        let slot = self.slot_mut(pos)?;
        Some(std::mem::replace(slot, last))
    }

    /// The record at `pos`, for writing (copying its chunk first if a snapshot shares it).
    fn slot_mut(&mut self, pos: usize) -> Option<&mut Arc<Extension>> {
        let chunk = self.chunks.get_mut(pos / CHUNK)?;
        Arc::make_mut(chunk).get_mut(pos % CHUNK)
    }

    /// The chunks, shared: one pointer copy each.
    pub(crate) fn share(&self) -> Vec<Arc<Chunk>> {
        self.chunks.clone()
    }
}

/// The records of shared chunks, limited to one department when `filter` is given. Runs
/// outside the lock.
pub(crate) fn flatten(chunks: &[Arc<Chunk>], filter: Option<&Department>) -> Vec<Arc<Extension>> {
    let all = chunks.iter().flat_map(|c| c.iter());
    match filter {
        None => all.cloned().collect(),
        Some(d) => all.filter(|e| e.department == *d).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use domain::{AgentName, ExtensionNumber, NewExtension};

    fn record(n: u32, name: &str) -> Arc<Extension> {
        let mut id = [0u8; 12];
        id[8..].copy_from_slice(&n.to_be_bytes());
        Arc::new(Extension::create(
            RecordId::from_bytes(id),
            NewExtension {
                extension: ExtensionNumber::parse(&(1000 + n).to_string()).expect("number"),
                agent_name: AgentName::parse(name).expect("name"),
                department: Department::parse(if n.is_multiple_of(2) { "Even" } else { "Odd" })
                    .expect("dept"),
                is_active: true,
            },
            "2026-11-30T12:00:00Z".parse().expect("time"),
        ))
    }

    fn contents(chunks: &[Arc<Chunk>]) -> BTreeMap<RecordId, String> {
        flatten(chunks, None)
            .iter()
            .map(|e| (e.id.clone(), e.agent_name.to_string()))
            .collect()
    }

    /// Checks the packing and the index against the records.
    fn check(view: &View, model: &BTreeMap<RecordId, String>) {
        assert_eq!(view.len(), model.len());
        assert_eq!(contents(&view.share()), *model);
        let n = view.chunks.len();
        for (i, chunk) in view.chunks.iter().enumerate() {
            assert!(!chunk.is_empty(), "no empty chunk");
            if i + 1 < n {
                assert_eq!(chunk.len(), CHUNK, "every chunk but the last is full");
            }
        }
        for (id, &pos) in &view.index {
            assert_eq!(view.chunks[pos / CHUNK][pos % CHUNK].id, *id);
        }
    }

    #[test]
    fn upserts_and_removals_keep_the_chunks_packed() {
        let mut view = View::default();
        let mut model = BTreeMap::new();
        // A fixed pseudo-random walk over 300 ids: inserts, replacements and removals, with
        // snapshots taken along the way that must not change afterwards.
        let mut x: u32 = 12345;
        let mut snapshots = Vec::new();
        for step in 0..5_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let n = (x >> 8) % 300;
            let name = format!("v{step}");
            if (x >> 20).is_multiple_of(3) {
                let removed = view.remove(&record(n, "x").id);
                assert_eq!(
                    removed.map(|e| e.agent_name.to_string()),
                    model.remove(&record(n, "x").id)
                );
            } else {
                let r = record(n, &name);
                let replaced = view.upsert(r.clone());
                assert_eq!(
                    replaced.map(|e| e.agent_name.to_string()),
                    model.insert(r.id.clone(), name)
                );
            }
            if step.is_multiple_of(500) {
                snapshots.push((view.share(), model.clone()));
            }
            check(&view, &model);
        }
        for (chunks, then) in snapshots {
            assert_eq!(
                contents(&chunks),
                then,
                "a snapshot is not changed by later writes"
            );
        }
    }

    #[test]
    fn later_duplicates_win_and_filters_apply() {
        let view = View::new(vec![
            (*record(1, "first")).clone(),
            (*record(2, "two")).clone(),
            (*record(1, "second")).clone(),
        ]);
        let names: Vec<String> = flatten(&view.share(), None)
            .iter()
            .map(|e| e.agent_name.to_string())
            .collect();
        assert_eq!(names, ["second", "two"]);
        let odd = Department::parse("Odd").expect("dept");
        assert_eq!(flatten(&view.share(), Some(&odd)).len(), 1);
        assert!(View::default().remove(&record(1, "x").id).is_none());
    }
}
