//! The object store: one revision counter for everything (like etcd), an event history
//! for watches that is compacted as etcd's is, and list snapshots for paging.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

/// (resource index, namespace or "", name).
pub type Key = (usize, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub revision: u64,
    pub kind: EventType,
    pub resource: usize,
    pub namespace: String,
    pub object: Arc<Value>,
}

/// How many events a watch can resume from before it is told to re-list (410 Gone).
const DEFAULT_HISTORY: usize = 10_000;

pub struct Store {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    history: VecDeque<Event>,
    /// Watches from a revision below this one get 410 Gone.
    compacted: u64,
    history_limit: usize,
    uid_sequence: u64,
    events: broadcast::Sender<Event>,
    snapshots: HashMap<u64, (u64, Arc<Vec<Value>>)>,
    snapshot_sequence: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            objects: BTreeMap::new(),
            revision: 1,
            history: VecDeque::new(),
            compacted: 1,
            history_limit: DEFAULT_HISTORY,
            uid_sequence: 0,
            events: broadcast::channel(65_536).0,
            snapshots: HashMap::new(),
            snapshot_sequence: 0,
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one resource, in one namespace or all (`None`), ordered by namespace
    /// and name as the real server lists them.
    pub fn list(&self, resource: usize, namespace: Option<&str>) -> Vec<Value> {
        let start = (resource, namespace.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(|((r, ns, _), _)| {
                *r == resource && namespace.is_none_or(|wanted| ns == wanted)
            })
            .map(|(_, object)| object.clone())
            .collect()
    }

    pub fn new_uid(&mut self) -> String {
        self.uid_sequence += 1;
        let n = self.uid_sequence;
        format!(
            "5f0c1a2e-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (n >> 32) & 0xffff,
            (n >> 20) & 0xfff,
            (n >> 8) & 0xfff,
            n
        )
    }

    /// Stores `object` under `key` at a new revision and tells the watchers.
    pub fn put(&mut self, key: Key, mut object: Value, kind: EventType) -> Value {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.record(key, object.clone(), kind);
        object
    }

    /// Removes the object under `key` at a new revision; returns it as last seen.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.revision += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
        self.record(key.clone(), object.clone(), EventType::Deleted);
        Some(object)
    }

    fn record(&mut self, key: Key, object: Value, kind: EventType) {
        let event = Event {
            revision: self.revision,
            kind,
            resource: key.0,
            namespace: key.1,
            object: Arc::new(object),
        };
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.revision;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Forgets the event history, as etcd's compaction does: every watch from an older
    /// revision, and every paged list begun before, gets 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.revision;
        self.snapshots.clear();
    }

    /// The events after `revision` for a resource, and a receiver for the ones to
    /// come; `None` when `revision` has been compacted away.
    pub fn watch_from(
        &self,
        resource: usize,
        revision: u64,
    ) -> Option<(Vec<Event>, broadcast::Receiver<Event>)> {
        if revision < self.compacted {
            return None;
        }
        let past = self
            .history
            .iter()
            .filter(|e| e.resource == resource && e.revision > revision)
            .cloned()
            .collect();
        Some((past, self.events.subscribe()))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Keeps a list result for its continue tokens; returns the snapshot's id.
    pub fn keep_snapshot(&mut self, items: Vec<Value>) -> u64 {
        self.snapshot_sequence += 1;
        self.snapshots
            .insert(self.snapshot_sequence, (self.revision, Arc::new(items)));
        self.snapshot_sequence
    }

    pub fn snapshot(&self, id: u64) -> Option<(u64, Arc<Vec<Value>>)> {
        self.snapshots.get(&id).cloned()
    }
}
