//! Aligned cohorts (`stickyBy.cohort`): splits that share a cohort, a key and the same subsets
//! put the same users on each subset, nested by share; without a cohort nothing changes.

use crate::request::OwnedRequest;
use crate::rng::WyRand;
use crate::Router;

fn sticky_split(rule: &str, canary_percent: u32, cohort: Option<&str>) -> Router {
    let cohort = cohort.map_or(String::new(), |c| format!(r#","cohort":"{c}""#));
    let json = format!(
        r#"{{"rules":[{{"name":"{rule}","route":{{"split":[{{"subset":"v1","weight":{}}},{{"subset":"v2","weight":{canary_percent}}}],"stickyBy":{{"header":"x-user-id"{cohort}}}}}}}],"default":{{"subset":"v1"}}}}"#,
        100 - canary_percent
    );
    crate::load(json.as_bytes()).unwrap()
}

/// The users (of `user-0` … `user-{n-1}`) the router sends to `v2`.
fn on_canary(r: &Router, n: usize) -> Vec<usize> {
    let mut rng = WyRand::new(1);
    (0..n)
        .filter(|i| {
            let req = OwnedRequest::new().header("x-user-id", format!("user-{i}"));
            r.decide(&req, &mut rng).unwrap().target.subset == "v2"
        })
        .collect()
}

#[test]
fn without_a_cohort_every_configuration_decides_as_before() {
    // Pinned from the releases before cohorts existed: the rule's name salts the key.
    assert_eq!(
        on_canary(&sticky_split("canary", 10, None), 200),
        [6, 12, 14, 22, 27, 34, 38, 69, 92, 106, 111, 119, 136, 139, 171, 188, 195, 199]
    );
    assert_eq!(
        on_canary(&sticky_split("payments", 10, None), 200),
        [17, 37, 43, 52, 58, 63, 75, 93, 121, 148, 149, 179]
    );
    // A cohort named like the rule is the rule's own salt: the same users.
    assert_eq!(
        on_canary(&sticky_split("canary", 10, Some("canary")), 200),
        on_canary(&sticky_split("canary", 10, None), 200)
    );
}

#[test]
fn services_of_one_cohort_canary_the_same_users_nested_by_share() {
    const USERS: usize = 20_000;
    let checkout = on_canary(&sticky_split("checkout", 10, Some("shop-2026-12")), USERS);
    let payments = on_canary(&sticky_split("payments", 20, Some("shop-2026-12")), USERS);
    let same_share = on_canary(&sticky_split("search", 10, Some("shop-2026-12")), USERS);
    assert_eq!(
        checkout, same_share,
        "same cohort, key, subsets and share: same users"
    );
    let missing: Vec<_> = checkout
        .iter()
        .filter(|u| payments.binary_search(u).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "on v2 at 10% but not at 20%: {missing:?}"
    );
    // Shares still follow the weights: 10% and 20% of 20,000 within 4.5 sigma.
    for (users, p) in [(&checkout, 0.1), (&payments, 0.2)] {
        let expected = USERS as f64 * p;
        let sigma = (USERS as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (users.len() as f64 - expected).abs() <= 4.5 * sigma,
            "{} on v2, expected {expected} ± {}",
            users.len(),
            4.5 * sigma
        );
    }
    // Without a shared cohort the two canaries pick (mostly) different users.
    let apart = on_canary(&sticky_split("payments", 20, None), USERS);
    let common = checkout
        .iter()
        .filter(|u| apart.binary_search(u).is_ok())
        .count();
    assert!(
        common < checkout.len() / 2,
        "{common} of {}",
        checkout.len()
    );
}
