//! What an Envoy config needs to know about a plugin configuration: its subsets, their
//! clusters and routing headers — read through the filter's own validation (the core), so the
//! renderer can never disagree with the filter.

use subset_router_core::router::Router;

use crate::{Spec, Upstream};

/// The routing a valid plugin configuration asks of Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRoutes {
    /// `(subset, cluster)` for every subset the config can choose: the default route's first,
    /// then the rules' in order, each once.
    pub subsets: Vec<(String, String)>,
    pub cluster_header: Option<String>,
    pub subset_header: Option<String>,
    /// The clusters the guards' `fleet` queries go through (`guards[].fleet.cluster`), each
    /// once, in guard order: clusters outside the Envoy, which the Envoy config must define.
    pub fleet_clusters: Vec<String>,
}

impl PluginRoutes {
    /// Reads a plugin configuration; `Err` holds the filter's `path: reason` lines.
    pub fn from_json(json: &str) -> Result<Self, String> {
        Ok(Self::from_router(&load(json)?))
    }

    pub fn from_router(router: &Router) -> Self {
        let mut summaries = router.summaries();
        // The default route's subsets first: its first subset is the fallback cluster.
        summaries.rotate_right(1);
        let mut subsets: Vec<(String, String)> = Vec::new();
        for summary in &summaries {
            for (target, _) in &summary.targets {
                if !subsets.iter().any(|(s, _)| *s == target.subset) {
                    subsets.push((target.subset.clone(), target.cluster.clone()));
                }
            }
        }
        let mut fleet_clusters: Vec<String> = Vec::new();
        for fleet in router.guards().iter().filter_map(|g| g.fleet.as_ref()) {
            if !fleet_clusters.contains(&fleet.cluster) {
                fleet_clusters.push(fleet.cluster.clone());
            }
        }
        Self {
            subsets,
            cluster_header: router.cluster_header().map(str::to_owned),
            subset_header: router.subset_header().map(str::to_owned),
            fleet_clusters,
        }
    }

    /// Fills a spec's routes and upstreams: one upstream per subset on consecutive ports from
    /// `first_port`, a route per subset on `subsetHeader`, then `cluster_header` on
    /// `clusterHeader` or the default route's first subset.
    pub fn apply(&self, spec: &mut Spec, first_port: u16) {
        spec.upstreams = self
            .subsets
            .iter()
            .zip(first_port..)
            .map(|((subset, cluster), port)| Upstream {
                cluster: cluster.clone(),
                subset: subset.clone(),
                port,
                ..Upstream::default()
            })
            .collect();
        spec.header_routes = self.subset_header.as_ref().map(|header| {
            let routes = self
                .subsets
                .iter()
                .map(|(subset, cluster)| (subset.clone(), cluster.clone()))
                .collect();
            (header.clone(), routes)
        });
        spec.cluster_header = self.cluster_header.clone();
        spec.fallback_cluster = self.subsets.first().map(|(_, cluster)| cluster.clone());
    }
}

/// What a valid plugin configuration asks that the native build's cluster-specifier form
/// ([`NativeForm::ClusterSpecifier`](crate::NativeForm::ClusterSpecifier)) cannot do, one
/// `path: reason` a line (empty: the form can run it): the module's own check
/// ([`subset_router_core::route_form::refusals`]), so that the renderer refuses such a
/// configuration before Envoy does. `Err`: the configuration is invalid for either form.
pub fn cluster_specifier_refusals(json: &str) -> Result<Vec<String>, String> {
    load(json)?;
    let config = subset_router_core::parse(json.as_bytes()).map_err(|e| e.to_string())?;
    Ok(subset_router_core::route_form::refusals(&config)
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// The filter's own loading (validation and compilation); `Err` holds its `path: reason` lines.
fn load(json: &str) -> Result<Router, String> {
    subset_router_core::load(json.as_bytes()).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// The subsets a configuration can choose, in [`PluginRoutes::subsets`] order.
pub fn subsets_of(json: &str) -> Result<Vec<String>, String> {
    Ok(PluginRoutes::from_json(json)?
        .subsets
        .into_iter()
        .map(|(subset, _)| subset)
        .collect())
}
