//! The view stores: every pod's view, and every NetworkPolicy's, found by
//! namespace and name through the view itself.
//!
//! kube-runtime's reflector store keys each object by an `ObjectRef` (its
//! name and namespace again, plus the resource version and uid a key may
//! carry, and a second `Arc`): about 200 bytes a pod beside the view, over
//! 20 MiB at 100,000 pods, the largest single item of the agent's memory
//! after the ruleset. Pods are the one kind counted in the hundreds of
//! thousands, and NetworkPolicies the one whose objects are far larger
//! than what enforcement reads (a label selector is a `BTreeMap` of over
//! half a kilobyte), so both are kept as views in this store: a hash table
//! of one pointer per object. It applies watcher events as the reflector's
//! does (a relist is gathered aside and swapped in whole at its end), and
//! is ready after the first complete list.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use kube::runtime::watcher::Event;
use nftpol_model::{PodView, PolicyView};
use tokio::sync::watch;

/// A view that knows the namespace and name of its object.
pub trait Named {
    /// The object's namespace.
    fn namespace(&self) -> &str;
    /// The object's name.
    fn name(&self) -> &str;
}

impl Named for PodView {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for PolicyView {
    fn namespace(&self) -> &str {
        &self.id().namespace
    }

    fn name(&self) -> &str {
        &self.id().name
    }
}

/// Views by namespace and name.
#[derive(Debug)]
struct Views<V> {
    table: HashTable<Arc<V>>,
    hasher: RandomState,
}

impl<V> Default for Views<V> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            hasher: RandomState::new(),
        }
    }
}

impl<V: Named> Views<V> {
    fn hash(&self, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&Arc<V>> {
        self.table.find(self.hash(namespace, name), |held| {
            held.namespace() == namespace && held.name() == name
        })
    }

    fn insert(&mut self, view: Arc<V>) {
        let hash = self.hash(view.namespace(), view.name());
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |held| held.namespace() == view.namespace() && held.name() == view.name(),
            |held| hasher.hash_one((held.namespace(), held.name())),
        ) {
            Entry::Occupied(mut held) => *held.get_mut() = view,
            Entry::Vacant(free) => {
                free.insert(view);
            }
        }
    }

    fn remove(&mut self, view: &V) {
        let hash = self.hash(view.namespace(), view.name());
        if let Ok(held) = self.table.find_entry(hash, |held| {
            held.namespace() == view.namespace() && held.name() == view.name()
        }) {
            held.remove();
        }
    }
}

/// The write handle: a watch applies its events here.
#[derive(Debug)]
pub struct ViewWriter<V> {
    live: Arc<RwLock<Views<V>>>,
    /// The relist under way, swapped in at its end.
    relist: Option<Views<V>>,
    ready: watch::Sender<bool>,
}

/// A read handle.
#[derive(Debug)]
pub struct ViewStore<V> {
    live: Arc<RwLock<Views<V>>>,
    ready: watch::Receiver<bool>,
}

impl<V> Clone for ViewStore<V> {
    fn clone(&self) -> Self {
        Self {
            live: Arc::clone(&self.live),
            ready: self.ready.clone(),
        }
    }
}

/// The pods' store: read handle and write handle.
pub type PodStore = ViewStore<PodView>;
/// The pods' write handle.
pub type PodWriter = ViewWriter<PodView>;
/// The NetworkPolicies' store.
pub type PolicyStore = ViewStore<PolicyView>;
/// The NetworkPolicies' write handle.
pub type PolicyWriter = ViewWriter<PolicyView>;

/// The write handle dropped before the first complete list.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the watch ended before its initial list completed")]
pub struct ViewWriterDropped;

impl<V> Default for ViewWriter<V> {
    fn default() -> Self {
        Self {
            live: Arc::default(),
            relist: None,
            ready: watch::Sender::new(false),
        }
    }
}

impl<V: Named> ViewWriter<V> {
    /// A read handle on this store.
    pub fn as_reader(&self) -> ViewStore<V> {
        ViewStore {
            live: Arc::clone(&self.live),
            ready: self.ready.subscribe(),
        }
    }

    /// The stored view of the object named as `view` is.
    pub fn get(&self, view: &V) -> Option<Arc<V>> {
        read(&self.live)
            .get(view.namespace(), view.name())
            .map(Arc::clone)
    }

    /// Applies one watcher event.
    pub fn apply_watcher_event(&mut self, event: &Event<Arc<V>>) {
        match event {
            Event::Apply(view) => write(&self.live).insert(Arc::clone(view)),
            Event::Delete(view) => write(&self.live).remove(view),
            Event::Init => self.relist = Some(Views::default()),
            Event::InitApply(view) => self
                .relist
                .get_or_insert_with(Views::default)
                .insert(Arc::clone(view)),
            Event::InitDone => {
                *write(&self.live) = self.relist.take().unwrap_or_default();
                self.ready.send_replace(true);
            }
        }
    }
}

impl<V> ViewStore<V> {
    /// Every stored view, in no particular order.
    pub fn state(&self) -> Vec<Arc<V>> {
        read(&self.live).table.iter().map(Arc::clone).collect()
    }

    /// How many views are stored.
    pub fn len(&self) -> usize {
        read(&self.live).table.len()
    }

    /// Whether no view is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the first complete list is in.
    pub async fn wait_until_ready(&self) -> Result<(), ViewWriterDropped> {
        self.ready
            .clone()
            .wait_for(|ready| *ready)
            .await
            .map(drop)
            .map_err(|_| ViewWriterDropped)
    }
}

// A panic elsewhere cannot leave the table half-updated: every change is
// one call on it.
fn read<V>(views: &RwLock<Views<V>>) -> std::sync::RwLockReadGuard<'_, Views<V>> {
    views.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<V>(views: &RwLock<Views<V>>) -> std::sync::RwLockWriteGuard<'_, Views<V>> {
    views.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(namespace: &str, name: &str, node: &str) -> Arc<PodView> {
        Arc::new(PodView::from_pod(&Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.to_owned()),
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: Some(node.to_owned()),
                ..Default::default()
            }),
            ..Pod::default()
        }))
    }

    fn names(store: &PodStore) -> Vec<String> {
        let mut names: Vec<String> = store.state().iter().map(|pod| pod.key()).collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn applies_events_by_namespace_and_name() {
        let mut writer = PodWriter::default();
        let store = writer.as_reader();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(pod("a", "x", "n1")));
        writer.apply_watcher_event(&Event::InitApply(pod("b", "x", "n1")));
        assert!(store.is_empty(), "a list is not visible before its end");
        writer.apply_watcher_event(&Event::InitDone);
        store
            .wait_until_ready()
            .await
            .expect("ready after the list");
        assert_eq!(names(&store), ["a/x", "b/x"]);

        // Same name in another namespace is another pod; same key replaces.
        writer.apply_watcher_event(&Event::Apply(pod("a", "x", "n2")));
        assert_eq!(store.len(), 2);
        let replaced = writer.get(&pod("a", "x", "n9")).expect("stored");
        assert_eq!(replaced.node_name.as_deref(), Some("n2"));

        writer.apply_watcher_event(&Event::Delete(pod("b", "x", "n1")));
        writer.apply_watcher_event(&Event::Delete(pod("c", "absent", "n1")));
        assert_eq!(names(&store), ["a/x"]);
    }

    #[tokio::test]
    async fn a_relist_replaces_the_store_whole_at_its_end() {
        let mut writer = PodWriter::default();
        let store = writer.as_reader();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(pod("a", "old", "n1")));
        writer.apply_watcher_event(&Event::InitDone);
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(pod("a", "new", "n1")));
        assert_eq!(names(&store), ["a/old"], "the last complete list stays");
        writer.apply_watcher_event(&Event::InitDone);
        assert_eq!(names(&store), ["a/new"]);
    }

    #[tokio::test]
    async fn waiting_fails_when_the_writer_is_gone_before_a_list() {
        let writer = PodWriter::default();
        let store = writer.as_reader();
        drop(writer);
        assert!(store.wait_until_ready().await.is_err());
    }
}
