//! Reading the cluster an `explain` judges from the live API server, for
//! `nftpol explain` without `--manifests` and the kubectl plugin
//! (`kubectl nftpol explain …`, the same binary installed as
//! `kubectl-nftpol`).
//!
//! The API server is found as the agent finds it: `KUBECONFIG` (or
//! `~/.kube/config`) first, then the in-cluster service account. Only what
//! the evaluator reads is listed — Namespaces, Pods, NetworkPolicies,
//! Nodes and (where the CRD is installed) ClusterNetworkPolicies — with the
//! caller's own credentials: read-only, nothing is watched or changed.

use anyhow::Context;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, ObjectList};
use kube::Resource;
use nftpol_model::cluster_policy::api::ClusterNetworkPolicy;
use nftpol_model::Cluster;
use serde::de::DeserializeOwned;

/// The cluster's objects that decide enforcement, as listed now.
pub fn load() -> anyhow::Result<Cluster> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime for the API client")?
        .block_on(async {
            let client = kube::Client::try_default().await.context(
                "finding the API server (KUBECONFIG, ~/.kube/config or the in-cluster service account)",
            )?;
            Ok(Cluster {
                namespaces: list::<Namespace>(&client).await?,
                pods: list::<Pod>(&client).await?,
                policies: list::<NetworkPolicy>(&client).await?,
                cluster_policies: list_if_served::<ClusterNetworkPolicy>(&client).await?,
                nodes: list::<Node>(&client).await?,
            })
        })
}

/// Every object of kind `K`, or none where the API server does not serve
/// the kind (a CRD not installed answers 404).
async fn list_if_served<K>(client: &kube::Client) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    match api.list(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        _ => list(client).await,
    }
}

/// Every object of kind `K` in the cluster, page by page.
async fn list<K>(client: &kube::Client) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut objects = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page: ObjectList<K> = api
            .list(&params)
            .await
            .with_context(|| format!("listing {}", K::plural(&())))?;
        objects.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(objects),
        }
    }
}
