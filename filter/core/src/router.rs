//! The compiled, immutable router and the per-request decision.

use crate::guard::GuardSpec;
use crate::live::{AsConfigured, Conditions};
use crate::matching::Match;
use crate::ramp::Ramp;
use crate::request::{self, RequestView};
use crate::rng::RandomSource;
use crate::selection::StickyHasher;

pub(crate) mod index;
mod split;

use split::Choice;

/// Name under which decisions of the `default` route are counted and sticky keys are salted.
pub const DEFAULT_RULE_NAME: &str = "default";

/// A validated configuration, ready to decide: built once in `on_configure`, shared read-only
/// by every request. Nothing in it is parsed, compiled or allocated again per request.
#[derive(Debug)]
pub struct Router {
    /// The top-level `name`, if any.
    pub(crate) name: Option<String>,
    /// `subset_router.` or `subset_router.<name>.` (see [`crate::compile::stat_prefix`]).
    pub(crate) stat_prefix: String,
    pub(crate) cluster_header: Option<String>,
    pub(crate) subset_header: Option<String>,
    pub(crate) response_header: Option<String>,
    pub(crate) rules: Vec<Rule>,
    /// How `rules` are evaluated: in order, runs of exact-match rules by one lookup each
    /// ([`index`]).
    pub(crate) plan: Vec<index::Step>,
    pub(crate) default: Route,
    pub(crate) slots: Vec<Slot>,
    pub(crate) uses_source_ip: bool,
    pub(crate) guards: Vec<GuardSpec>,
    /// Per observed subset ([`Target::observe`]): the guards that count its requests.
    pub(crate) observers: Vec<Vec<Observer>>,
    /// Identifies the configuration (see [`crate::aggregate`]).
    pub(crate) config_hash: u64,
}

/// A guard that counts a subset's split-decided requests: as its guarded subset, or as its
/// baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observer {
    pub guard: usize,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Guarded,
    Baseline,
}

/// One decision outcome (a rule and a subset), counted as an Envoy stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `subset_router.rule.<rule>.subset.<subset>`
    pub stat_name: String,
    pub rule: String,
    pub subset: String,
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) matcher: Match,
    pub(crate) route: Route,
}

/// A subset a route can choose, with everything the filter writes prepared in advance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub subset: String,
    /// `clusterTemplate` with `{subset}` replaced.
    pub cluster: String,
    /// Index into [`Router::slots`].
    pub slot: usize,
    /// For a split's subset that a guard watches: index into the router's observer table.
    pub observe: Option<usize>,
}

#[derive(Debug)]
pub(crate) enum Route {
    Fixed(Target),
    Split(Split),
}

#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) targets: Vec<Target>,
    pub(crate) weights: Vec<u32>,
    pub(crate) cumulative: Vec<u64>,
    pub(crate) sticky: Option<Sticky>,
    pub(crate) ramp: Option<Ramp>,
    /// (target index, guard index) for every subset of this split that has a guard.
    pub(crate) guarded: Vec<(usize, usize)>,
}

#[derive(Debug)]
pub(crate) struct Sticky {
    pub(crate) key: StickyKey,
    pub(crate) hasher: StickyHasher,
}

/// Where a sticky split takes its key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Header(String),
    Cookie(String),
    Query(String),
    /// The peer's address bytes (4 for IPv4, 16 for IPv6) are the key.
    SourceIp,
}

/// A rule's route: its subsets, their (effective) weights (`None` for a fixed subset) and its
/// sticky key source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    pub rule: String,
    pub targets: Vec<(Target, Option<u64>)>,
    pub sticky: Option<StickyKey>,
}

/// A ramp and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampView<'r> {
    pub rule: &'r str,
    /// The ramped subset.
    pub subset: &'r str,
    pub ramp: &'r Ramp,
}

/// What the router decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'r> {
    /// The rule that matched, or `default`.
    pub rule: &'r str,
    pub target: &'r Target,
    /// A sticky split found no key in the request and chose at random.
    pub sticky_key_missing: bool,
    /// An open guard (by index) took the request away from its subset: chosen again.
    pub diverted: Option<usize>,
    /// An open guard's subset got the request anyway: the split had nothing else.
    pub undivertable: Option<usize>,
}

impl Router {
    /// Evaluates the rules in order; the first that matches decides, else the default route.
    /// (Runs of exact-match rules on one key are decided by one lookup, with the same result:
    /// see [`index`].)
    /// Ramps and guards as configured (ramps not started, guards closed).
    /// `None` only if a split had no positive weight, which validation rules out.
    pub fn decide<'r>(
        &'r self,
        req: &impl RequestView,
        rng: &mut impl RandomSource,
    ) -> Option<Decision<'r>> {
        self.decide_with(req, rng, &AsConfigured)
    }

    /// [`Self::decide`] under the current ramp shares and guard states.
    pub fn decide_with<'r>(
        &'r self,
        req: &impl RequestView,
        rng: &mut impl RandomSource,
        now: &impl Conditions,
    ) -> Option<Decision<'r>> {
        let (rule, route) = index::first_match(&self.plan, &self.rules, req)
            .and_then(|i| self.rules.get(i))
            .map_or((DEFAULT_RULE_NAME, &self.default), |r| {
                (r.name.as_str(), &r.route)
            });
        let choice = match route {
            Route::Fixed(target) => Choice {
                target,
                sticky_key_missing: false,
                diverted: None,
                undivertable: None,
            },
            Route::Split(split) => split.choose(req, rng, now)?,
        };
        Some(Decision {
            rule,
            target: choice.target,
            sticky_key_missing: choice.sticky_key_missing,
            diverted: choice.diverted,
            undivertable: choice.undivertable,
        })
    }

    /// Request header set to the cluster name, if any.
    pub fn cluster_header(&self) -> Option<&str> {
        self.cluster_header.as_deref()
    }

    /// Request header set to the bare subset name, if any.
    pub fn subset_header(&self) -> Option<&str> {
        self.subset_header.as_deref()
    }

    /// Response header naming the subset that served the request, if any.
    pub fn response_header(&self) -> Option<&str> {
        self.response_header.as_deref()
    }

    /// Every (rule, subset) outcome, indexed by [`Target::slot`].
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Whether any rule needs the downstream peer address (so the filter fetches it).
    pub fn uses_source_ip(&self) -> bool {
        self.uses_source_ip
    }

    /// Each rule's route (then the default's) with its configured weights, for tools such as
    /// the simulator.
    pub fn summaries(&self) -> Vec<RouteSummary> {
        self.summaries_with(&AsConfigured)
    }

    /// Each rule's route with its effective weights under `now` (ramps applied, open guards'
    /// subsets at 0).
    pub fn summaries_with(&self, now: &impl Conditions) -> Vec<RouteSummary> {
        let summarize = |rule: &str, route: &Route| match route {
            Route::Fixed(t) => RouteSummary {
                rule: rule.to_owned(),
                targets: vec![(t.clone(), None)],
                sticky: None,
            },
            Route::Split(s) => RouteSummary {
                rule: rule.to_owned(),
                targets: s
                    .targets
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), Some(s.effective_weight(i, now))))
                    .collect(),
                sticky: s.sticky.as_ref().map(|st| st.key.clone()),
            },
        };
        self.rules
            .iter()
            .map(|r| summarize(&r.name, &r.route))
            .chain(std::iter::once(summarize(DEFAULT_RULE_NAME, &self.default)))
            .collect()
    }

    /// Every ramp, in index order ([`Ramp::index`]).
    pub fn ramps(&self) -> Vec<RampView<'_>> {
        self.ramp_views().collect()
    }

    /// [`Self::ramps`] without collecting them (the request path allocates nothing).
    pub fn ramp_views(&self) -> impl Iterator<Item = RampView<'_>> {
        self.routes().filter_map(|(rule, route)| match route {
            Route::Split(Split {
                ramp: Some(ramp),
                targets,
                ..
            }) => Some(RampView {
                rule,
                subset: targets.get(ramp.target).map_or("", |t| t.subset.as_str()),
                ramp,
            }),
            _ => None,
        })
    }

    /// The guards, in configuration order.
    pub fn guards(&self) -> &[GuardSpec] {
        &self.guards
    }

    /// The guards that count requests of observed subset `observe` ([`Target::observe`]).
    pub fn observers(&self, observe: usize) -> &[Observer] {
        self.observers.get(observe).map_or(&[], Vec::as_slice)
    }

    /// Identifies the configuration: equal for the same configuration on every worker.
    /// `subset_router.`, or with a top-level `name`, `subset_router.<name>.`: the start of
    /// every stat name.
    pub fn stat_prefix(&self) -> &str {
        &self.stat_prefix
    }

    /// The top-level `name`, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn config_hash(&self) -> u64 {
        self.config_hash
    }

    /// (rule name, route) in evaluation order, then the default.
    fn routes(&self) -> impl Iterator<Item = (&str, &Route)> {
        self.rules
            .iter()
            .map(|r| (r.name.as_str(), &r.route))
            .chain(std::iter::once((DEFAULT_RULE_NAME, &self.default)))
    }

    /// Rule names in evaluation order, then `default`.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| r.name.as_str())
            .chain(std::iter::once(DEFAULT_RULE_NAME))
    }
}

impl Sticky {
    /// Runs `f` on the request's key, or returns `None` when the key is absent or empty.
    fn with_key<T>(&self, req: &impl RequestView, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
        match &self.key {
            StickyKey::Header(name) => req.first_header(name).filter(|v| !v.is_empty()).map(f),
            StickyKey::Cookie(name) => req
                .header_values("cookie")
                .flat_map(request::cookie_pairs)
                .find(|(n, v)| *n == name.as_bytes() && !v.is_empty())
                .map(|(_, v)| f(v)),
            StickyKey::Query(name) => {
                let query = req.first_header(":path").and_then(request::query_string)?;
                let (_, value) = request::query_params(query)
                    .find(|(n, v)| n.as_ref() == name.as_bytes() && !v.is_empty())?;
                Some(f(&value))
            }
            StickyKey::SourceIp => match req.source_ip()? {
                std::net::IpAddr::V4(v4) => Some(f(&v4.octets())),
                std::net::IpAddr::V6(v6) => Some(f(&v6.octets())),
            },
        }
    }
}

#[cfg(test)]
mod cohorts;

#[cfg(test)]
mod tests {
    use crate::request::OwnedRequest;
    use crate::rng::WyRand;

    #[test]
    fn rules_are_evaluated_in_order_first_match_wins() {
        let r = crate::load(
            br#"{"rules":[
                {"name":"api-debug","match":{"pathPrefix":"/api","headers":[{"name":"x-debug","present":true}]},"route":{"subset":"v3"}},
                {"name":"api","match":{"pathPrefix":"/api"},"route":{"subset":"v2"}},
                {"name":"never","match":{"pathPrefix":"/api/x"},"route":{"subset":"v4"}}
            ],"default":{"subset":"v1"}}"#,
        )
        .unwrap();
        let mut rng = WyRand::new(1);
        let pick = |req: OwnedRequest, rng: &mut WyRand| {
            let d = r.decide(&req, rng).unwrap();
            (d.rule.to_owned(), d.target.subset.clone())
        };
        assert_eq!(
            pick(
                OwnedRequest::new()
                    .header(":path", "/api/x")
                    .header("x-debug", "1"),
                &mut rng
            ),
            ("api-debug".into(), "v3".into())
        );
        assert_eq!(
            pick(OwnedRequest::new().header(":path", "/api/x"), &mut rng),
            ("api".into(), "v2".into())
        );
        assert_eq!(
            pick(OwnedRequest::new().header(":path", "/web"), &mut rng),
            ("default".into(), "v1".into())
        );
        assert_eq!(
            r.rule_names().collect::<Vec<_>>(),
            ["api-debug", "api", "never", "default"]
        );
    }

    #[test]
    fn decisions_carry_their_stat_slot_and_cluster_name() {
        let r = crate::load(
            br#"{"clusterTemplate":"color-{subset}","rules":[{"name":"half","route":{"split":[{"subset":"red","weight":1},{"subset":"blue","weight":1}]}}],"default":{"subset":"red"}}"#,
        )
        .unwrap();
        let mut rng = WyRand::new(5);
        for _ in 0..100 {
            let d = r.decide(&OwnedRequest::new(), &mut rng).unwrap();
            let slot = &r.slots()[d.target.slot];
            assert_eq!(slot.rule, "half");
            assert_eq!(slot.subset, d.target.subset);
            assert_eq!(d.target.cluster, format!("color-{}", d.target.subset));
            assert_eq!(
                slot.stat_name,
                format!("subset_router.rule.half.subset.{}", d.target.subset)
            );
        }
    }

    #[test]
    fn sticky_keys_from_every_source() {
        let mut rng = WyRand::new(9);
        for (sticky, with_key, without_key) in [
            (
                r#"{"header":"x-user-id"}"#,
                OwnedRequest::new().header("x-user-id", "u1"),
                OwnedRequest::new().header("x-user-id", ""),
            ),
            (
                r#"{"cookie":"sid"}"#,
                OwnedRequest::new().header("cookie", "a=b; sid=u1"),
                OwnedRequest::new().header("cookie", "a=b"),
            ),
            (
                r#"{"query":"uid"}"#,
                OwnedRequest::new().header(":path", "/?uid=u%31"),
                OwnedRequest::new().header(":path", "/?other=1"),
            ),
            (
                r#"{"sourceIp":true}"#,
                OwnedRequest::new().source("10.0.0.7".parse().unwrap()),
                OwnedRequest::new(),
            ),
        ] {
            let json = format!(
                r#"{{"default":{{"split":[{{"subset":"a","weight":50}},{{"subset":"b","weight":50}}],"stickyBy":{sticky}}}}}"#
            );
            let r = crate::load(json.as_bytes()).unwrap();
            assert_eq!(r.uses_source_ip(), sticky.contains("sourceIp"));
            let first = r.decide(&with_key, &mut rng).unwrap();
            assert!(!first.sticky_key_missing, "{sticky}");
            for _ in 0..50 {
                let again = r.decide(&with_key, &mut rng).unwrap();
                assert_eq!(
                    again.target.subset, first.target.subset,
                    "{sticky} is not sticky"
                );
            }
            assert!(
                r.decide(&without_key, &mut rng).unwrap().sticky_key_missing,
                "{sticky}"
            );
        }
    }
}
