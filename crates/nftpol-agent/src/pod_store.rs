//! The pod store: every pod's view, found by namespace and name through
//! the view itself.
//!
//! kube-runtime's reflector store keys each object by an `ObjectRef` (its
//! name and namespace again, plus the resource version and uid a key may
//! carry, and a second `Arc`): about 200 bytes a pod beside the view, over
//! 20 MiB at 100,000 pods, the largest single item of the agent's memory
//! after the ruleset. Pods are the one kind counted in the hundreds of
//! thousands, so they get this store: a hash table of one pointer per pod.
//! It applies watcher events as the reflector's does (a relist is gathered
//! aside and swapped in whole at its end), and is ready after the first
//! complete list.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use kube::runtime::watcher::Event;
use nftpol_model::PodView;
use tokio::sync::watch;

/// Pods by namespace and name.
#[derive(Debug, Default)]
struct Pods {
    table: HashTable<Arc<PodView>>,
    hasher: RandomState,
}

impl Pods {
    fn hash(&self, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&Arc<PodView>> {
        self.table.find(self.hash(namespace, name), |held| {
            &*held.namespace == namespace && held.name == name
        })
    }

    fn insert(&mut self, pod: Arc<PodView>) {
        let hash = self.hash(&pod.namespace, &pod.name);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |held| held.namespace == pod.namespace && held.name == pod.name,
            |held| hasher.hash_one((&*held.namespace, held.name.as_str())),
        ) {
            Entry::Occupied(mut held) => *held.get_mut() = pod,
            Entry::Vacant(free) => {
                free.insert(pod);
            }
        }
    }

    fn remove(&mut self, pod: &PodView) {
        let hash = self.hash(&pod.namespace, &pod.name);
        if let Ok(held) = self.table.find_entry(hash, |held| {
            held.namespace == pod.namespace && held.name == pod.name
        }) {
            held.remove();
        }
    }
}

/// The write handle: the pod watch applies its events here.
#[derive(Debug)]
pub struct PodWriter {
    live: Arc<RwLock<Pods>>,
    /// The relist under way, swapped in at its end.
    relist: Option<Pods>,
    ready: watch::Sender<bool>,
}

/// A read handle.
#[derive(Debug, Clone)]
pub struct PodStore {
    live: Arc<RwLock<Pods>>,
    ready: watch::Receiver<bool>,
}

/// The write handle dropped before the first complete list.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the pod watch ended before its initial list completed")]
pub struct PodWriterDropped;

impl Default for PodWriter {
    fn default() -> Self {
        Self {
            live: Arc::default(),
            relist: None,
            ready: watch::Sender::new(false),
        }
    }
}

impl PodWriter {
    /// A read handle on this store.
    pub fn as_reader(&self) -> PodStore {
        PodStore {
            live: Arc::clone(&self.live),
            ready: self.ready.subscribe(),
        }
    }

    /// The stored view of the pod named as `pod` is.
    pub fn get(&self, pod: &PodView) -> Option<Arc<PodView>> {
        read(&self.live)
            .get(&pod.namespace, &pod.name)
            .map(Arc::clone)
    }

    /// Applies one watcher event.
    pub fn apply_watcher_event(&mut self, event: &Event<Arc<PodView>>) {
        match event {
            Event::Apply(pod) => write(&self.live).insert(Arc::clone(pod)),
            Event::Delete(pod) => write(&self.live).remove(pod),
            Event::Init => self.relist = Some(Pods::default()),
            Event::InitApply(pod) => self
                .relist
                .get_or_insert_with(Pods::default)
                .insert(Arc::clone(pod)),
            Event::InitDone => {
                *write(&self.live) = self.relist.take().unwrap_or_default();
                self.ready.send_replace(true);
            }
        }
    }
}

impl PodStore {
    /// Every stored pod, in no particular order.
    pub fn state(&self) -> Vec<Arc<PodView>> {
        read(&self.live).table.iter().map(Arc::clone).collect()
    }

    /// How many pods are stored.
    pub fn len(&self) -> usize {
        read(&self.live).table.len()
    }

    /// Whether no pod is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the first complete list is in.
    pub async fn wait_until_ready(&self) -> Result<(), PodWriterDropped> {
        self.ready
            .clone()
            .wait_for(|ready| *ready)
            .await
            .map(drop)
            .map_err(|_| PodWriterDropped)
    }
}

// A panic elsewhere cannot leave the table half-updated: every change is
// one call on it.
fn read(pods: &RwLock<Pods>) -> std::sync::RwLockReadGuard<'_, Pods> {
    pods.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(pods: &RwLock<Pods>) -> std::sync::RwLockWriteGuard<'_, Pods> {
    pods.write().unwrap_or_else(PoisonError::into_inner)
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
